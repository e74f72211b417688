package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// newLine makes count nodes, each on a UDP socket on 127.0.0.1, node i dialling node i-1; tweak
// adjusts node i's options (its device, names served) before it is made.
func newLine(t *testing.T, count int, tweak func(i int, o *Options)) []*Node {
	t.Helper()
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "dns.test", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*Node, count)
	for i := range count {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(meshca.IssueRequest{Name: "n" + string(rune('1'+i)), PublicKey: k.Public(), Duration: 30 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		opts := Options{Key: k, Cert: cert, CA: []*meshca.Certificate{ca.Certificate()}, Firewall: allowAll,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: testLogger(t), Heal: HealConfig{Disabled: true}}
		if i > 0 {
			opts.Peers = []Peer{{Addr: nodes[i-1].UDPAddr(), Cert: nodes[i-1].Certificate()}}
		}
		tweak(i, &opts)
		if nodes[i], err = New(opts); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// run runs every node until the test ends.
func run(t *testing.T, nodes []*Node) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { done <- n.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range nodes {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
}

// askOver sends one question from a node's userspace stack to a responder's overlay address, over
// UDP or TCP, and returns the answer.
func askOver(t *testing.T, from *Node, proto string, server netip.Addr, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	at := netip.AddrPortFrom(server, dnsPort)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var c net.Conn
	var err error
	if proto == "udp" {
		c, err = from.Device().Net.DialUDPAddrPort(netip.AddrPort{}, at)
	} else {
		c, err = from.Device().Net.DialContextTCPAddrPort(ctx, at)
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	conn := &dns.Conn{Conn: c}
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if err := conn.WriteMsg(q); err != nil {
		return nil, err
	}
	return conn.ReadMsg()
}

// TestDNSOverMesh: n1 asks n2's responder, across their link, for n3's name, which n2 knows because
// n3 is its neighbour; over UDP and over TCP, each inside the nodes' userspace stacks.
func TestDNSOverMesh(t *testing.T) {
	nodes := newLine(t, 3, func(i int, o *Options) { o.Device, o.DNS.Enabled = DeviceNetstack, i == 1 })
	run(t, nodes)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	deadline := time.Now().Add(30 * time.Second)
	var got *dns.Msg
	var err error
	for time.Now().Before(deadline) { // a resolver retries until the link is up and n3 is routed
		got, err = askOver(t, n1, "udp", n2.Addr(), "n3.mesh.", dns.TypeAAAA)
		if err == nil && len(got.Answer) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || got == nil || len(got.Answer) != 1 {
		t.Fatalf("no AAAA for n3.mesh from n2 within 30 s: %v %v", got, err)
	}
	if a := got.Answer[0].(*dns.AAAA).AAAA; !a.Equal(n3.Addr().AsSlice()) {
		t.Fatalf("n3.mesh is %s, want %s", a, n3.Addr())
	}
	got, err = askOver(t, n1, "tcp", n2.Addr(), "N1.Mesh.", dns.TypeAAAA)
	if err != nil || len(got.Answer) != 1 || !got.Answer[0].(*dns.AAAA).AAAA.Equal(n1.Addr().AsSlice()) {
		t.Fatalf("over TCP, N1.Mesh: %v %v; want %s", got, err, n1.Addr())
	}
	rev, _ := dns.ReverseAddr(n2.Addr().String())
	got, err = askOver(t, n1, "tcp", n2.Addr(), rev, dns.TypePTR)
	if err != nil || len(got.Answer) != 1 || got.Answer[0].(*dns.PTR).Ptr != "n2.mesh." {
		t.Fatalf("PTR of n2's address: %v %v", got, err)
	}
	for name, rcode := range map[string]int{"n9.mesh.": dns.RcodeNameError, "example.com.": dns.RcodeRefused} {
		got, err = askOver(t, n1, "udp", n2.Addr(), name, dns.TypeAAAA)
		if err != nil || got.Rcode != rcode {
			t.Fatalf("%s: %v %v, want %s", name, got, err, dns.RcodeToString[rcode])
		}
	}
}

func TestDNSConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
		want      DNSConfig
	}{
		{"dns: {enabled: true}", "", DNSConfig{Enabled: true}},
		{"dns: {enabled: true, domain: corp.example}", "", DNSConfig{Enabled: true, Domain: "corp.example"}},
		{"dns: {enabled: true, domain: ip6.arpa}", "arpa", DNSConfig{}},
		{"dns: {enabled: true, domain: bad_name}", "label", DNSConfig{}},
		{"dns: {enabled: true, zone: mesh}", "zone", DNSConfig{}},
	} {
		path := filepath.Join(t.TempDir(), "node.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := ReadFile(path)
		if err == nil {
			var got DNSConfig
			if got, err = f.DNS.config(); err == nil && got != tc.want {
				t.Errorf("%s: %+v, want %+v", tc.yaml, got, tc.want)
			}
		}
		if (err != nil) != (tc.err != "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one containing %q", tc.yaml, err, tc.err)
		}
	}
}

func TestDNSNeedsDevice(t *testing.T) {
	n := newLine(t, 1, func(_ int, o *Options) { o.DNS.Enabled = true })[0]
	if err := n.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "device mode") {
		t.Fatalf("DNS without a device: Run returned %v", err)
	}
}
