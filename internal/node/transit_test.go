package node

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/memnet"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/overlay"
)

// memChain starts nodes 0 - 1 - ... - (count-1) on an in-memory network, each with a counting device,
// and runs it until node 0 has a route to the last node and its link keys are confirmed.
func memChain(t testing.TB, count int) (*memnet.Network, []*Node, []*nullTun) {
	t.Helper()
	w := memnet.New(1)
	now := w.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "test.mesh", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	nodes, devs := make([]*Node, count), make([]*nullTun, count)
	for i := range count {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(meshca.IssueRequest{Name: string(rune('a' + i)), PublicKey: k.Public(), Duration: 30 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		conn := w.Conn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, 0, byte(i)}), 4242))
		devs[i] = newNullTun()
		opts := Options{Key: k, Cert: cert, CA: []*meshca.Certificate{ca.Certificate()}, Firewall: allowAll,
			Logger: testLogger(t), Conn: conn, PacketDevice: devs[i], Now: w.Now, Heal: HealConfig{Disabled: true}}
		if i > 0 {
			prev := nodes[i-1]
			opts.Peers = []Peer{{Addr: prev.UDPAddr(), Cert: prev.self}}
			w.Link(prev.UDPAddr(), conn.LocalAddr(), memnet.LinkParams{})
		}
		if nodes[i], err = New(opts); err != nil {
			t.Fatal(err)
		}
		conn.Attach(nodes[i].NewReceiver())
	}
	w.OnTick = func(now time.Time) {
		for _, n := range nodes {
			n.Tick(now)
		}
	}
	for _, n := range nodes {
		n.Start(now)
	}
	last := nodes[count-1].Addr()
	var scratch [64]byte
	ready := func() bool {
		if _, ok := nodes[0].fib.Load().byAddr[last]; !ok {
			return false
		}
		// The responder of a link handshake seals only once the initiator's first packet confirmed
		// the keys.
		for _, n := range nodes[:min(2, count)] {
			for _, l := range n.links {
				if _, err := l.sess.Seal(scratch[:0], nil, w.Now()); err != nil {
					return false
				}
			}
		}
		return true
	}
	if _, ok := w.RunUntil(ready, 10*time.Second); !ok {
		t.Fatal("no route to the last node")
	}
	return w, nodes, devs
}

// relayedChain is memChain a - relay - c, run until a UDP packet from a, which it returns, has
// reached c end to end through the relay.
func relayedChain(t *testing.T) (*memnet.Network, []*Node, []*nullTun, []byte) {
	t.Helper()
	w, nodes, devs := memChain(t, 3)
	pkt := make([]byte, 200)
	udpPacket(pkt, nodes[0].Addr(), nodes[2].Addr())
	nodes[0].sendPacket(w.Now(), pkt)
	if _, ok := w.RunUntil(func() bool { return devs[2].delivered() > 0 }, 10*time.Second); !ok {
		t.Fatal("no end-to-end delivery a -> c")
	}
	return w, nodes, devs, pkt
}

// e2eParts returns what a sends to c through the relay with: the end-to-end session, the link to the
// relay, and the routed header.
func e2eParts(t *testing.T, a, c *Node) (e2e, link *tunnel, head []byte) {
	t.Helper()
	v, ok := a.e2eByDst.Load(c.Addr())
	if !ok {
		t.Fatal("no end-to-end session")
	}
	head = overlay.AppendRouted(nil, overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: a.Addr(), Dst: c.Addr()})
	return v.(*tunnel), a.fib.Load().byAddr[c.Addr()].nextHop, head
}

// TestTransitRelay checks what a relay does with transit packets (docs/transport.md): a genuine one is
// relayed and delivered; a changed routed header is refused by the relay; a changed end-to-end
// ciphertext is relayed and refused by the destination; an end-to-end data packet inside a full link
// packet (the old form) is refused.
func TestTransitRelay(t *testing.T) {
	w, nodes, devs, pkt := relayedChain(t)
	a, relay, c := nodes[0], nodes[1], nodes[2]
	e2e, link, head := e2eParts(t, a, c)
	from := a.UDPAddr()

	transit := func() []byte {
		t.Helper()
		now := w.Now()
		inner, err := e2e.sess.Seal(nil, pkt, now)
		if err != nil {
			t.Fatal(err)
		}
		out, err := link.sess.SealTransit(nil, head, inner, now)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	waitFor := func(what string, c *atomic.Uint64, want uint64) {
		t.Helper()
		if _, ok := w.RunUntil(func() bool { return c.Load() >= want }, time.Second); !ok {
			t.Fatalf("%s: %d, want %d", what, c.Load(), want)
		}
	}

	fwd, delivered := relay.stats.forwarded.Load(), devs[2].delivered()
	relay.handleDatagram(w.Now(), from, transit(), nil, nil)
	if relay.stats.forwarded.Load() != fwd+1 {
		t.Fatal("a genuine transit packet was not relayed")
	}
	if _, ok := w.RunUntil(func() bool { return devs[2].delivered() > delivered }, time.Second); !ok {
		t.Fatal("a relayed transit packet was not delivered")
	}

	// Per-link transit counters: a handed packets to the relay for c; c heard packets the relay
	// relayed from a; the relay handed nothing on for a node beyond c.
	if link.transitOut.Load() == 0 {
		t.Error("a's link to the relay counted no transit packets handed over")
	}
	// (c's link to the relay, found by the relay's address: c may not have a route back to a yet.)
	if in := c.fib.Load().byAddr[relay.Addr()].nextHop.transitIn.Load(); in == 0 {
		t.Error("c's link to the relay counted no packets relayed by it")
	}
	if out := relay.fib.Load().byAddr[c.Addr()].nextHop.transitOut.Load(); out != 0 {
		t.Errorf("the relay counted %d packets handed to c as transit for beyond c", out)
	}

	auth := relay.stats.dropAuth.Load()
	bad := transit()
	bad[20] ^= 1 // inside the sealed routed header
	relay.handleDatagram(w.Now(), from, bad, nil, nil)
	if relay.stats.dropAuth.Load() != auth+1 || relay.stats.forwarded.Load() != fwd+1 {
		t.Fatal("a transit packet with a changed routed header was not refused by the relay")
	}

	cAuth, delivered := c.stats.dropAuth.Load(), devs[2].delivered()
	bad = transit()
	bad[len(bad)-40] ^= 1 // inside the end-to-end ciphertext
	relay.handleDatagram(w.Now(), from, bad, nil, nil)
	if relay.stats.forwarded.Load() != fwd+2 {
		t.Fatal("the relay refused a transit packet it can only bind, not check")
	}
	waitFor("destination's authentication drops", &c.stats.dropAuth, cAuth+1)
	if devs[2].delivered() != delivered {
		t.Fatal("a changed end-to-end packet was delivered")
	}

	malformed := relay.stats.dropMalformed.Load()
	inner, err := e2e.sess.Seal(nil, pkt, w.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, err := link.sess.Seal(nil, append(bytes.Clone(head), inner...), w.Now())
	if err != nil {
		t.Fatal(err)
	}
	relay.handleDatagram(w.Now(), from, old, nil, nil)
	if relay.stats.dropMalformed.Load() != malformed+1 || relay.stats.forwarded.Load() != fwd+2 {
		t.Fatal("an end-to-end data packet in a full link packet was not refused")
	}
}
