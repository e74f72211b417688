package handshake

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pki is a test CA with node identities.
type pki struct {
	ca       *meshca.CA
	verifier *meshca.Verifier
}

func newPKI(tb testing.TB, domain string) *pki {
	tb.Helper()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: domain, Name: "root", Duration: 24 * time.Hour}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		tb.Fatal(err)
	}
	return &pki{ca: ca, verifier: v}
}

type node struct {
	name string
	key  *identity.NodeKey
	cert *meshca.Certificate
	addr netip.AddrPort
}

var nextPort uint16 = 40000

func (p *pki) node(tb testing.TB, name string, lifetime time.Duration) *node {
	tb.Helper()
	key, err := identity.GenerateNodeKey()
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := p.ca.Issue(meshca.IssueRequest{Name: name, Groups: []string{"mesh"}, PublicKey: key.Public(), Duration: lifetime}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	nextPort++
	return &node{name: name, key: key, cert: cert, addr: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), nextPort)}
}

// machine builds a Machine for n, trusting v; mod adjusts the config.
func (n *node) machine(tb testing.TB, v *meshca.Verifier, mod ...func(*Config)) *Machine {
	tb.Helper()
	cfg := Config{Key: n.key, Cert: n.cert, Verifier: v, Rand: newTestRand(uint64(len(n.name)))}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// testRand is a deterministic io.Reader for the values the machine draws itself.
type testRand struct{ r *rand.ChaCha8 }

func newTestRand(seed uint64) *testRand {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return &testRand{r: rand.NewChaCha8(s)}
}

func (t *testRand) Read(b []byte) (int, error) { return t.r.Read(b) }

// network delivers packets between machines by address, in FIFO order, optionally transforming each
// batch of packets (reorder, duplicate, drop, tamper).
type network struct {
	tb       testing.TB
	now      time.Time
	machines map[netip.AddrPort]*Machine
	queue    []delivery
	results  map[netip.AddrPort][]*Result
	errs     []error
	sent     map[netip.AddrPort]int // bytes sent by each address
	packets  map[netip.AddrPort]int
	mangle   func(from netip.AddrPort, pkts []Packet) []Packet
}

type delivery struct {
	from netip.AddrPort
	pkt  Packet
}

func newNet(tb testing.TB, now time.Time) *network {
	return &network{tb: tb, now: now, machines: map[netip.AddrPort]*Machine{}, results: map[netip.AddrPort][]*Result{},
		sent: map[netip.AddrPort]int{}, packets: map[netip.AddrPort]int{}}
}

func (n *network) add(addr netip.AddrPort, m *Machine) { n.machines[addr] = m }

func (n *network) send(from netip.AddrPort, out Output) {
	pkts := out.Packets
	if n.mangle != nil {
		pkts = n.mangle(from, pkts)
	}
	for _, p := range pkts {
		n.sent[from] += len(p.Data)
		n.packets[from]++
		n.queue = append(n.queue, delivery{from: from, pkt: p})
	}
}

// run delivers until the queue is empty (bounded).
func (n *network) run() {
	for steps := 0; len(n.queue) > 0; steps++ {
		if steps > 10000 {
			n.tb.Fatal("network did not settle")
		}
		d := n.queue[0]
		n.queue = n.queue[1:]
		m, ok := n.machines[d.pkt.To]
		if !ok {
			continue
		}
		out, err := m.Handle(n.now, d.from, d.pkt.Data)
		if err != nil {
			n.errs = append(n.errs, err)
		}
		if out.Result != nil {
			n.results[d.pkt.To] = append(n.results[d.pkt.To], out.Result)
		}
		n.send(d.pkt.To, out)
	}
}

func (n *network) hasErr(target error) bool {
	for _, e := range n.errs {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

// handshake runs a complete handshake a → b on a fresh network and returns both results.
func handshake(tb testing.TB, now time.Time, a, b *node, ma, mb *Machine) (ra, rb *Result, nw *network) {
	tb.Helper()
	nw = newNet(tb, now)
	nw.add(a.addr, ma)
	nw.add(b.addr, mb)
	out, err := ma.Initiate(now, b.addr, b.cert)
	if err != nil {
		tb.Fatalf("initiate: %v", err)
	}
	nw.send(a.addr, out)
	nw.run()
	if r := nw.results[a.addr]; len(r) == 1 {
		ra = r[0]
	}
	if r := nw.results[b.addr]; len(r) == 1 {
		rb = r[0]
	}
	return ra, rb, nw
}

func checkPair(tb testing.TB, ri, rr *Result, initiator, responder *node) {
	tb.Helper()
	if ri == nil || rr == nil {
		tb.Fatalf("handshake did not complete: initiator %v, responder %v", ri != nil, rr != nil)
	}
	if !ri.Initiator || rr.Initiator {
		tb.Errorf("Initiator flags: %v, %v", ri.Initiator, rr.Initiator)
	}
	if ri.SendKey != rr.RecvKey || ri.RecvKey != rr.SendKey {
		tb.Error("directional keys do not match across the two sides")
	}
	if ri.SendKey == ri.RecvKey {
		tb.Error("send and receive keys are equal")
	}
	if ri.LocalIndex != rr.RemoteIndex || ri.RemoteIndex != rr.LocalIndex || ri.LocalIndex == 0 || rr.LocalIndex == 0 {
		tb.Errorf("indices: initiator %d/%d, responder %d/%d", ri.LocalIndex, ri.RemoteIndex, rr.LocalIndex, rr.RemoteIndex)
	}
	if ri.HandshakeHash != rr.HandshakeHash {
		tb.Error("handshake hashes differ")
	}
	if ri.Peer.Name != responder.name || rr.Peer.Name != initiator.name {
		tb.Errorf("peers: initiator sees %q, responder sees %q", ri.Peer.Name, rr.Peer.Name)
	}
	if ri.Remote != responder.addr || rr.Remote != initiator.addr {
		tb.Errorf("remotes: %s, %s", ri.Remote, rr.Remote)
	}
}
