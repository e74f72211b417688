package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

const td = "mesh.test"

const exampleYAML = `
grants:
  - src: [group:ops, spiffe://mesh.test/node/laptop-1]
    dst: [group:db]
    ports: [tcp:5432, icmp]
  - src: ["*"]
    dst: [spiffe://mesh.test/node/dns-1]
    ports: [udp:53, tcp:53]
tests:
  - src: {name: laptop-1}
    dst: {name: db-1, groups: [db]}
    accept: [tcp:5432, icmp]
    deny: [tcp:22, udp:5432]
  - src: {spiffe_id: spiffe://mesh.test/node/w1, groups: [web]}
    dst: {name: dns-1}
    accept: [udp:53]
    deny: [icmp]
`

const exampleJSON = `{"grants": [
  {"src": ["group:ops", "spiffe://mesh.test/node/laptop-1"], "dst": ["group:db"], "ports": ["tcp:5432", "icmp"]},
  {"src": ["*"], "dst": ["spiffe://mesh.test/node/dns-1"], "ports": ["udp:53", "tcp:53"]}
]}`

func TestParseAndCompile(t *testing.T) {
	y, err := ParseSource([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	j, err := ParseSource([]byte(exampleJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(y.Tests) != 2 || !reflect.DeepEqual(y.Grants, j.Grants) {
		t.Fatalf("YAML and JSON read differently:\n%+v\n%+v", y, j)
	}
	grants, err := y.Compile(td)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	want := meshca.Grant{
		Src:   []meshca.Selector{{Kind: meshca.SelectGroup, Group: "ops"}, {Kind: meshca.SelectNode, TrustDomain: td, Name: "laptop-1"}},
		Dst:   []meshca.Selector{{Kind: meshca.SelectGroup, Group: "db"}},
		Ports: []meshca.PortRange{{Proto: meshca.ProtoTCP, Lo: 5432, Hi: 5432}, {Proto: meshca.ProtoICMPv6}},
	}
	if !reflect.DeepEqual(grants[0], want) {
		t.Fatalf("grant 0: %+v, want %+v", grants[0], want)
	}
}

func TestParseSourceRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"unknown key":       "grants: []\nrules: []",
		"unknown grant key": "grants: [{src: ['*'], dst: ['*'], port: ['*']}]",
		"two documents":     "grants: []\n---\ngrants: []",
		"empty":             "",
		"wrong type":        "grants: {src: x}",
	} {
		if _, err := ParseSource([]byte(src)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseSource(make([]byte, MaxSourceSize+1)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversized source: %v", err)
	}
}

func TestCompileRefuses(t *testing.T) {
	grant := func(src, dst, ports []string) *Source {
		return &Source{Grants: []GrantSource{{Src: []string{"*"}, Dst: []string{"*"}, Ports: []string{"*"}}, {Src: src, Dst: dst, Ports: ports}}}
	}
	any1 := []string{"*"}
	cases := []struct {
		name string
		src  *Source
		want string
	}{
		{"empty src", grant(nil, any1, any1), "grant 1: src is empty"},
		{"empty dst", grant(any1, nil, any1), "grant 1: dst is empty"},
		{"empty ports", grant(any1, any1, nil), "grant 1: ports is empty"},
		{"bare name", grant([]string{"ops"}, any1, any1), `selector "ops"`},
		{"bad group", grant([]string{"group:a b"}, any1, any1), "group"},
		{"spiffe not a node", grant(any1, []string{"spiffe://mesh.test/workload/x"}, any1), "can never name a node"},
		{"spiffe bad domain", grant(any1, []string{"spiffe://Mesh/node/x"}, any1), "trust domain"},
		{"protocol", grant(any1, any1, []string{"gre"}), "protocol"},
		{"icmp port", grant(any1, any1, []string{"icmp:8"}), "only tcp and udp"},
		{"port 0", grant(any1, any1, []string{"tcp:0"}), "not a port"},
		{"port 65536", grant(any1, any1, []string{"udp:65536"}), "not a port"},
		{"backwards", grant(any1, any1, []string{"tcp:9-8"}), "backwards"},
		{"too many grants", &Source{Grants: make([]GrantSource, meshca.MaxPolicyGrants+1)}, "grants"},
		{"test without entries", &Source{Tests: []Test{{Src: TestNode{Name: "a"}, Dst: TestNode{Name: "b"}}}}, "no accept or deny"},
		{"test range", &Source{Tests: []Test{{Src: TestNode{Name: "a"}, Dst: TestNode{Name: "b"}, Accept: []string{"tcp:1-2"}}}}, "name one packet"},
		{"test any", &Source{Tests: []Test{{Src: TestNode{Name: "a"}, Dst: TestNode{Name: "b"}, Deny: []string{"tcp"}}}}, "name one packet"},
		{"test node both", &Source{Tests: []Test{{Src: TestNode{Name: "a", SPIFFEID: "spiffe://mesh.test/node/a"}, Dst: TestNode{Name: "b"}, Deny: []string{"icmp"}}}}, "not both"},
		{"test node none", &Source{Tests: []Test{{Src: TestNode{Groups: []string{"ops"}}, Dst: TestNode{Name: "b"}, Deny: []string{"icmp"}}}}, "set name"},
		{"test bad group", &Source{Tests: []Test{{Src: TestNode{Name: "a"}, Dst: TestNode{Name: "b", Groups: []string{"."}}, Deny: []string{"icmp"}}}}, "group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.src.Compile(td)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestPolicyTests: a policy whose tests fail is refused, and the error lists every failing case.
func TestPolicyTests(t *testing.T) {
	s, err := ParseSource([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	s.Tests = append(s.Tests,
		Test{Src: TestNode{Name: "db-1", Groups: []string{"db"}}, Dst: TestNode{Name: "o1", Groups: []string{"ops"}}, Accept: []string{"tcp:5432"}},
		Test{Src: TestNode{Name: "w2"}, Dst: TestNode{Name: "dns-1"}, Deny: []string{"udp:53", "tcp:53", "tcp:80"}},
	)
	_, err = s.Compile(td)
	if err == nil {
		t.Fatal("failing tests accepted")
	}
	for _, want := range []string{"3 policy test cases failed",
		"test 2: spiffe://mesh.test/node/db-1 → spiffe://mesh.test/node/o1 tcp:5432: the policy denies it",
		"test 3: spiffe://mesh.test/node/w2 → spiffe://mesh.test/node/dns-1 udp:53: the policy accepts it",
		"test 3: spiffe://mesh.test/node/w2 → spiffe://mesh.test/node/dns-1 tcp:53: the policy accepts it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "tcp:80") {
		t.Errorf("a passing case is listed as failing:\n%v", err)
	}
}

// TestFromPolicy: a signed policy written back in the source format compiles to the same grants.
func TestFromPolicy(t *testing.T) {
	ca := testCA(t)
	s, err := ParseSource([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	grants, err := s.Compile(td)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.SignPolicy(3, grants, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	back := FromPolicy(p)
	if back.Grants[1].Ports[0] != "tcp:53" || back.Grants[0].Src[1] != "spiffe://mesh.test/node/laptop-1" {
		t.Fatalf("source form: %+v", back)
	}
	again, err := back.Compile(td)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ca.SignPolicy(3, again, p.IssuedAt)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q.Grants, p.Grants) {
		t.Fatalf("round trip through the source form changed the grants:\n%+v\n%+v", q.Grants, p.Grants)
	}
}

func testCA(t testing.TB) *meshca.CA {
	t.Helper()
	key, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(key, meshca.CAOptions{TrustDomain: td, Name: "root", Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestRules(t *testing.T) {
	s, err := ParseSource([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	grants, err := s.Compile(td)
	if err != nil {
		t.Fatal(err)
	}
	p := &meshca.Policy{TrustDomain: td, Grants: grants}
	db := testNode("db-1", "db")
	r := Rules(p, db)
	wantIn := []firewall.Rule{
		{Proto: "tcp", Port: "5432-5432", Group: "ops"}, {Proto: "icmp", Port: "any", Group: "ops"},
		{Proto: "tcp", Port: "5432-5432", SPIFFEID: "spiffe://mesh.test/node/laptop-1"}, {Proto: "icmp", Port: "any", SPIFFEID: "spiffe://mesh.test/node/laptop-1"},
	}
	wantOut := []firewall.Rule{{Proto: "udp", Port: "53-53", SPIFFEID: "spiffe://mesh.test/node/dns-1"}, {Proto: "tcp", Port: "53-53", SPIFFEID: "spiffe://mesh.test/node/dns-1"}}
	if !reflect.DeepEqual(r.Inbound, wantIn) || !reflect.DeepEqual(r.Outbound, wantOut) {
		t.Fatalf("db-1's rules:\n in  %+v\n out %+v", r.Inbound, r.Outbound)
	}
	// A node no grant names gets empty lists (deny everything), not nil (no policy layer).
	lone := Rules(&meshca.Policy{TrustDomain: td, Grants: grants[:1]}, testNode("x"))
	if lone.Inbound == nil || lone.Outbound == nil || len(lone.Inbound)+len(lone.Outbound) != 0 {
		t.Fatalf("rules of a node no grant names: %+v", lone)
	}
}

// TestRulesAgreeWithPolicy is the property that ties the two halves together: for random policies,
// nodes and packets, the firewall with the policy layer Rules gives decides exactly as the policy
// itself (Policy.AllowsPacket), inbound and outbound, when the local rules allow everything.
func TestRulesAgreeWithPolicy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"n1", "n2", "n3", "n4"}
	groups := []string{"a", "b", "c"}
	randSel := func() meshca.Selector {
		switch rng.IntN(5) {
		case 0:
			return meshca.Selector{Kind: meshca.SelectAny}
		case 1, 2:
			return meshca.Selector{Kind: meshca.SelectGroup, Group: groups[rng.IntN(len(groups))]}
		}
		return meshca.Selector{Kind: meshca.SelectNode, TrustDomain: td, Name: names[rng.IntN(len(names))]}
	}
	randPorts := func() meshca.PortRange {
		switch rng.IntN(6) {
		case 0:
			return meshca.PortRange{Proto: meshca.ProtoAny}
		case 1:
			return meshca.PortRange{Proto: meshca.ProtoICMPv6}
		case 2:
			return meshca.PortRange{Proto: meshca.ProtoTCP}
		}
		proto := []uint8{meshca.ProtoTCP, meshca.ProtoUDP}[rng.IntN(2)]
		lo := uint16(1 + rng.IntN(20))
		return meshca.PortRange{Proto: proto, Lo: lo, Hi: lo + uint16(rng.IntN(5))}
	}
	randNode := func() *meshca.Certificate {
		var gs []string
		for _, g := range groups {
			if rng.IntN(3) == 0 {
				gs = append(gs, g)
			}
		}
		return testNode(names[rng.IntN(len(names))], gs...)
	}
	local := firewall.Config{
		Inbound:   []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
		Outbound:  []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
		Conntrack: firewall.ConntrackConfig{MaxEntries: 16},
	}
	checked, allowed := 0, 0
	for range 300 {
		p := &meshca.Policy{TrustDomain: td}
		for range 1 + rng.IntN(4) {
			var g meshca.Grant
			for range 1 + rng.IntN(2) {
				g.Src = append(g.Src, randSel())
				g.Dst = append(g.Dst, randSel())
			}
			for range 1 + rng.IntN(3) {
				g.Ports = append(g.Ports, randPorts())
			}
			p.Grants = append(p.Grants, g)
		}
		self := randNode()
		cfg := local
		cfg.Policy = Rules(p, self)
		// A fresh firewall for every packet: a flow an earlier packet opened must not decide.
		decide := func(inbound bool, peer *meshca.Certificate, pkt []byte) bool {
			fw, err := firewall.New(cfg, time.Unix(0, 0))
			if err != nil {
				t.Fatalf("firewall refused the rules of %+v: %v", p.Grants, err)
			}
			if inbound {
				return fw.Inbound(time.Unix(0, 0), pkt, peer).Allowed()
			}
			return fw.Outbound(time.Unix(0, 0), pkt, peer).Allowed()
		}
		for range 20 {
			peer := randNode()
			if peer.Name == self.Name {
				continue
			}
			proto, port, hasPort := randPacket(rng)
			got := decide(true, peer, packet(peer.Overlay, self.Overlay, proto, 40000, port))
			if want := p.AllowsPacket(peer, self, proto, port, hasPort); got != want {
				t.Fatalf("inbound %s→%s proto %d port %d: firewall %v, policy %v\ngrants %+v", peer.Name, self.Name, proto, port, got, want, p.Grants)
			}
			got = decide(false, peer, packet(self.Overlay, peer.Overlay, proto, 40000, port))
			if want := p.AllowsPacket(self, peer, proto, port, hasPort); got != want {
				t.Fatalf("outbound %s→%s proto %d port %d: firewall %v, policy %v\ngrants %+v", self.Name, peer.Name, proto, port, got, want, p.Grants)
			}
			checked++
			if got {
				allowed++
			}
		}
	}
	// Both outcomes must be well represented, or the property says little.
	if allowed < checked/10 || allowed > checked*9/10 {
		t.Fatalf("%d of %d outbound checks allowed: the generator is lopsided", allowed, checked)
	}
}

func randPacket(rng *rand.Rand) (proto uint8, port uint16, hasPort bool) {
	switch rng.IntN(5) {
	case 0:
		return meshca.ProtoICMPv6, 0, false
	case 1:
		return 59, 0, false // no next header: a protocol without ports
	case 2:
		return meshca.ProtoUDP, uint16(1 + rng.IntN(25)), true
	}
	return meshca.ProtoTCP, uint16(1 + rng.IntN(25)), true
}

func testNode(name string, groups ...string) *meshca.Certificate {
	h := sha256.Sum256([]byte(name))
	var a [16]byte
	a[0], a[1] = 0xfd, 0x74
	copy(a[2:], h[:14])
	return &meshca.Certificate{Kind: meshca.KindNode, TrustDomain: td, Name: name,
		Groups: meshca.NormalizeGroups(groups), Overlay: netip.AddrFrom16(a)}
}

// packet builds an IPv6 packet: a TCP SYN or UDP datagram to dport, an ICMPv6 echo request, or a
// bare header with "no next header".
func packet(src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	var l4 []byte
	switch proto {
	case meshca.ProtoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12], l4[13] = 5<<4, 0x02
	case meshca.ProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], 8)
	case meshca.ProtoICMPv6:
		l4 = make([]byte, 8)
		l4[0] = 128 // echo request
		binary.BigEndian.PutUint16(l4[4:], sport)
	}
	b := make([]byte, 40, 40+len(l4))
	b[0], b[6], b[7] = 0x60, proto, 64
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, l4...)
}

// Connected holds for a pair some grant joins, in either direction, and for everyone without a policy.
func TestConnected(t *testing.T) {
	s, err := ParseSource([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	grants, err := s.Compile(td)
	if err != nil {
		t.Fatal(err)
	}
	p := &meshca.Policy{TrustDomain: td, Grants: grants}
	ops, db, web, dns := testNode("o1", "ops"), testNode("db-1", "db"), testNode("w1", "web"), testNode("dns-1")
	for _, c := range []struct {
		a, b *meshca.Certificate
		want bool
	}{{ops, db, true}, {db, ops, true}, {web, dns, true}, {dns, web, true}, {web, db, false}, {ops, web, false}} {
		if got := Connected(p, c.a, c.b); got != c.want {
			t.Errorf("Connected(%s, %s) = %v, want %v", c.a.Name, c.b.Name, got, c.want)
		}
	}
	if !Connected(nil, web, db) {
		t.Error("no policy must connect everyone")
	}
}
