package meshtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// flapFlow is a UDP flow from alpha to delta, one packet every 20 ms, that notes alpha's view of its
// link to bravo and its next hop to delta after every packet.
type flapFlow struct {
	m            *Mesh
	alpha, delta *Node
	sent         []time.Duration // when each packet was sent
	downs        []time.Duration // when alpha saw its link to bravo go down
	up           bool
	viaBravo     []time.Duration // samples at which alpha routed to delta through bravo
}

func (f *flapFlow) step() {
	f.sent = append(f.sent, f.m.Elapsed())
	f.alpha.Inject(UDPPacket(f.alpha.Addr(), f.delta.Addr(), 40000, 7, fmt.Appendf(nil, "flow%06d", len(f.sent)-1)))
	f.m.Run(20 * time.Millisecond)
	up := false
	for _, p := range f.alpha.Peers() {
		if p.Name == "bravo" {
			up = p.Up
		}
	}
	if f.up && !up {
		f.downs = append(f.downs, f.m.Elapsed())
	}
	f.up = up
	if r, ok := route(f.alpha, "delta"); ok && r.NextHop == "bravo" {
		f.viaBravo = append(f.viaBravo, f.m.Elapsed())
	}
}

func (f *flapFlow) run(d time.Duration) {
	for end := f.m.Elapsed() + d; f.m.Elapsed() < end; {
		f.step()
	}
}

// lost returns how many packets sent in [from, to) never reached delta, and how many were sent.
func (f *flapFlow) lost(from, to time.Duration) (lost, sent int) {
	got := map[string]bool{}
	for _, p := range f.delta.Delivered() {
		if len(p.Data) > 48 && strings.HasPrefix(string(p.Data[48:]), "flow") {
			got[string(p.Data[48:])] = true
		}
	}
	for i, at := range f.sent {
		if at >= from && at < to {
			sent++
			if !got[fmt.Sprintf("flow%06d", i)] {
				lost++
			}
		}
	}
	return lost, sent
}

// TestFlappingLinkAvoided: the link alpha–bravo, on alpha's three-hop path to delta, goes down for
// 600 ms every second (dead-after 400 ms). Flap damping moves the flow to the four-hop path through
// echo at the third flap, and it stays there, losing nothing, while the link keeps flapping; when
// the link has been stable long enough the flow returns to it. A single failure after that is not
// damped: the flow returns to the link as soon as it is back.
func TestFlappingLinkAvoided(t *testing.T) {
	m := demoMesh(t, 3)
	alpha, delta := m.Node("alpha"), m.Node("delta")
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
	}
	send(t, m, alpha, delta, "before", 5*time.Second)
	m.Run(15 * time.Second)
	down := func() {
		if err := m.SetLink("alpha", "bravo", LinkParams{Down: true}); err != nil {
			t.Fatal(err)
		}
	}
	up := func() {
		if err := m.SetLink("alpha", "bravo", LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}

	f := &flapFlow{m: m, alpha: alpha, delta: delta, up: true}
	start := m.Elapsed()
	const flaps = 6
	for range flaps {
		down()
		f.run(600 * time.Millisecond)
		up()
		f.run(400 * time.Millisecond)
	}
	if len(f.downs) != flaps {
		t.Fatalf("alpha saw %d link failures, want %d", len(f.downs), flaps)
	}
	third := f.downs[2]
	// The first two flaps are healed, not damped: the flow went back through bravo after each.
	for i := range 2 {
		back := false
		for _, at := range f.viaBravo {
			back = back || at > f.downs[i] && at < start+time.Duration(i+1)*time.Second
		}
		if !back {
			t.Fatalf("flap %d: the flow did not return to the link", i+1)
		}
	}
	// From the third failure on, never through bravo, and nothing lost.
	for _, at := range f.viaBravo {
		if at > third {
			t.Fatalf("at %s, after the third flap (%s), alpha routes through bravo again", at, third)
		}
	}
	f.run(time.Second) // the packets still in flight arrive
	if n, _ := f.lost(third, m.Elapsed()); n != 0 {
		t.Fatalf("%d packets lost after the third flap", n)
	}
	lostBefore, sentBefore := f.lost(start, third)

	// The link stays up: the flow returns to it when the suppression ends, between
	// HalfLife·log2(Suppress/Reuse) ≈ 21 s and MaxSuppress = 60 s after the last flap.
	last := f.downs[flaps-1]
	for len(f.viaBravo) == 0 || f.viaBravo[len(f.viaBravo)-1] < last {
		if m.Elapsed()-last > 61*time.Second {
			t.Fatalf("the flow did not return to the stable link within 61 s\n%s", dump(m))
		}
		f.step()
	}
	returned := f.viaBravo[len(f.viaBravo)-1] - last
	if returned < 21*time.Second {
		t.Fatalf("the flow returned to the link %s after the last flap, before any suppression can end", returned)
	}
	f.run(time.Second)
	if n, _ := f.lost(last, m.Elapsed()-time.Second); n != 0 {
		t.Fatalf("%d packets lost after the last flap", n)
	}

	// A single failure now, with the penalty just below Reuse (750 + 1000 < 2000), is not damped:
	// the route is back on the link as soon as the link is.
	down()
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 2*time.Second); !ok {
		t.Fatalf("alpha did not route around the cut\n%s", dump(m))
	}
	up()
	healed, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 2*time.Second)
	if !ok || healed > time.Second {
		t.Fatalf("the route did not return to the repaired link within 1 s (%s)\n%s", healed, dump(m))
	}
	t.Logf("link down 600 ms every second, 50 packets/s: %d packets lost during the first three flaps (%d sent), "+
		"none after; flow back on the link %s after the last flap; a single failure then healed in %s",
		lostBefore, sentBefore, returned, healed)
}
