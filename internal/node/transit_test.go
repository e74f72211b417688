package node

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/overlay"
)

// relayedChain starts nodes a - relay - c (a and c with a device) and returns once a UDP packet from
// a, which it returns, has reached c end to end through the relay.
func relayedChain(t *testing.T) ([]*Node, []*nullTun, []byte) {
	t.Helper()
	nodes, devs := benchChain(t, 3, 0, 2)
	pkt := make([]byte, 200)
	udpPacket(pkt, nodes[0].Addr(), nodes[2].Addr())
	deadline := time.Now().Add(10 * time.Second)
	for devs[2].delivered() == 0 && time.Now().Before(deadline) {
		nodes[0].sendPacket(time.Now(), pkt)
		time.Sleep(20 * time.Millisecond)
	}
	if devs[2].delivered() == 0 {
		t.Fatal("no end-to-end delivery a -> c")
	}
	return nodes, devs, pkt
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
	nodes, devs, pkt := relayedChain(t)
	a, relay, c := nodes[0], nodes[1], nodes[2]
	e2e, link, head := e2eParts(t, a, c)
	from := a.UDPAddr()

	transit := func() []byte {
		t.Helper()
		now := time.Now()
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
		deadline := time.Now().Add(5 * time.Second)
		for c.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := c.Load(); got < want {
			t.Fatalf("%s: %d, want %d", what, got, want)
		}
	}

	fwd, delivered := relay.stats.forwarded.Load(), devs[2].delivered()
	relay.handleDatagram(time.Now(), from, transit(), nil)
	if relay.stats.forwarded.Load() != fwd+1 {
		t.Fatal("a genuine transit packet was not relayed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for devs[2].delivered() <= delivered && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if devs[2].delivered() <= delivered {
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
	relay.handleDatagram(time.Now(), from, bad, nil)
	if relay.stats.dropAuth.Load() != auth+1 || relay.stats.forwarded.Load() != fwd+1 {
		t.Fatal("a transit packet with a changed routed header was not refused by the relay")
	}

	cAuth, delivered := c.stats.dropAuth.Load(), devs[2].delivered()
	bad = transit()
	bad[len(bad)-40] ^= 1 // inside the end-to-end ciphertext
	relay.handleDatagram(time.Now(), from, bad, nil)
	if relay.stats.forwarded.Load() != fwd+2 {
		t.Fatal("the relay refused a transit packet it can only bind, not check")
	}
	waitFor("destination's authentication drops", &c.stats.dropAuth, cAuth+1)
	if devs[2].delivered() != delivered {
		t.Fatal("a changed end-to-end packet was delivered")
	}

	malformed := relay.stats.dropMalformed.Load()
	inner, err := e2e.sess.Seal(nil, pkt, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, err := link.sess.Seal(nil, append(bytes.Clone(head), inner...), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	relay.handleDatagram(time.Now(), from, old, nil)
	if relay.stats.dropMalformed.Load() != malformed+1 || relay.stats.forwarded.Load() != fwd+2 {
		t.Fatal("an end-to-end data packet in a full link packet was not refused")
	}
}
