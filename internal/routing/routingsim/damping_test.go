package routingsim

import (
	"fmt"
	"math"
	"testing"
	"time"

	"x0tta6bl4/internal/routing"
)

// pathsOver walks every live pair's forwarding path through the nodes' own tables and counts the
// paths that cross the link a–b; it returns an error if a path loops.
func pathsOver(n *Network, a, b NodeID) (int, error) {
	var live []NodeID
	for _, id := range n.order {
		if n.nodes[id].Alive {
			live = append(live, id)
		}
	}
	over := 0
	for _, s := range live {
		for _, d := range live {
			cur := s
			for hops := 0; cur != d; hops++ {
				if hops > len(live) {
					return over, fmt.Errorf("%s→%s: forwarding loop", n.nodes[s].Name, n.nodes[d].Name)
				}
				r, ok := n.nodes[cur].Router.NextHop(d)
				if !ok {
					break
				}
				if keyOf(cur, r.NextHop) == keyOf(a, b) {
					over++
				}
				cur = r.NextHop
			}
		}
	}
	return over, nil
}

// suppressedCost is the cost checks expect when the link a–b is suppressed by flap damping: the
// cost of the same link losing routing.PenaltyLoss of its packets.
func suppressedCost(a, b NodeID) LinkCostFunc {
	return func(x, y NodeID, p LinkParams) uint64 {
		if keyOf(x, y) == keyOf(a, b) {
			m := p.Metrics()
			m.Loss = routing.PenaltyLoss
			return uint64(routing.LinkCost(m))
		}
		return MeasuredCost(x, y, p)
	}
}

// watch runs the network for d in 1 ms steps and calls check after every step in which anything
// changed.
func watch(t *testing.T, n *Network, d time.Duration, check func() error) {
	t.Helper()
	last := n.state()
	for end := n.Now().Add(d); n.Now().Before(end); {
		n.RunFor(time.Millisecond)
		if s := n.state(); s != last {
			last = s
			if err := check(); err != nil {
				t.Fatalf("at %s: %v", n.Elapsed(), err)
			}
		}
	}
}

// TestFlapDamping: one link of a ring or a grid goes down for half a second every second (detection
// 300 ms). After its third flap no route uses it and every node's table is correct and loop-free at
// every moment, whether the link is down or up; once it stays up, routes return to it at the reuse
// time the arithmetic of docs/routing.md gives, and not before.
func TestFlapDamping(t *testing.T) {
	cases := []struct {
		name  string
		count int
		build func(n *Network, ids []NodeID) error
		a, b  int
	}{
		{"ring8", 8, func(n *Network, ids []NodeID) error { return n.Ring(ids, clean) }, 0, 1},
		{"grid4x4", 16, func(n *Network, ids []NodeID) error { return n.Grid(ids, 4, clean) }, 5, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const detect = 300 * time.Millisecond
			n := newNet(t, Config{Seed: 8, DetectDelay: detect, UpDelay: 20 * time.Millisecond})
			ids := nodes(t, n, c.count)
			must(t, c.build(n, ids))
			converge(t, n, 10*time.Second)
			n.RunFor(30 * time.Second) // let the origination throttles go idle
			a, b := ids[c.a], ids[c.b]
			if over, err := pathsOver(n, a, b); over == 0 || err != nil {
				t.Fatalf("before: %d paths over the link, %v", over, err)
			}
			damped := suppressedCost(a, b)
			start := n.Now()
			const flaps = 6
			var downs []time.Duration // when the ends noticed each flap, from start
			var cleared time.Duration // when the third flap took the last path off the link
			transientLoops := 0
			for k := 1; k <= flaps; k++ {
				cut := n.Now()
				n.Cut(a, b)
				downs = append(downs, n.Now().Add(detect).Sub(start))
				check := func() error {
					if k > 3 {
						return n.CheckRoutesWith(damped)
					}
					over, err := pathsOver(n, a, b)
					if err != nil {
						transientLoops++ // link-state convergence without loop avoidance
					}
					switch {
					case k == 3 && over == 0 && cleared == 0:
						cleared = n.Now().Sub(cut)
					case k == 3 && over > 0 && cleared > 0:
						return fmt.Errorf("%d paths back on the link after the third flap", over)
					}
					return nil
				}
				watch(t, n, 500*time.Millisecond, check)
				n.Restore(a, b)
				watch(t, n, 500*time.Millisecond, check)
				over, err := pathsOver(n, a, b)
				switch {
				case k < 3 && over == 0:
					t.Fatalf("flap %d: no route back on the link: healing was damped", k)
				case k == 3 && (over > 0 || err != nil):
					t.Fatalf("after three flaps: %d paths over the link, %v", over, err)
				case k == 3:
					// The third flap is over: from here on the link is avoided, down or up.
					if err := n.CheckRoutesWith(damped); err != nil {
						t.Fatalf("after three flaps: %v", err)
					}
				}
			}
			for _, id := range []NodeID{a, b} {
				if _, s := n.Router(id).FlapPenalty(map[NodeID]NodeID{a: b, b: a}[id]); !s {
					t.Fatalf("%s has not suppressed the link", n.Node(id).Name)
				}
			}

			// The link stays up. Penalty at the last flap: Σ 1000·2^(−age/15 s) over the six; the
			// link is reused when it has decayed to 750.
			last := downs[flaps-1]
			p := 0.0
			for _, d := range downs {
				p += 1000 * math.Exp2(-(last-d).Seconds()/15)
			}
			reuse := last + time.Duration(15*math.Log2(p/750)*float64(time.Second))
			watch(t, n, reuse-n.Now().Sub(start)-time.Millisecond, func() error { return n.CheckRoutesWith(damped) })
			back, err := n.RunUntilConverged(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if back > 200*time.Millisecond {
				t.Fatalf("routes returned %s after the reuse time", back)
			}
			if over, _ := pathsOver(n, a, b); over == 0 {
				t.Fatal("no route uses the link after the reuse")
			}
			t.Logf("%s, flaps a second apart: the last path left the link %s after the third cut; "+
				"%d transient loop observations during the first three flaps, none after; penalty %.0f at the last flap; "+
				"routes back %s after it (%s after the reuse time)",
				c.name, cleared, transientLoops, p, reuse-last+back, back)
		})
	}
}

// TestSingleFailureNotDamped: a link that fails once is not suppressed: routes return to it as
// soon as it is back.
func TestSingleFailureNotDamped(t *testing.T) {
	n := newNet(t, Config{Seed: 9, DetectDelay: 300 * time.Millisecond, UpDelay: 20 * time.Millisecond})
	ids := nodes(t, n, 8)
	must(t, n.Ring(ids, clean))
	converge(t, n, 10*time.Second)
	n.RunFor(30 * time.Second)
	a, b := ids[0], ids[1]
	n.Cut(a, b)
	converge(t, n, 2*time.Second)
	n.RunFor(2 * time.Second)
	n.Restore(a, b)
	d := converge(t, n, 2*time.Second)
	if d > 200*time.Millisecond {
		t.Fatalf("routes returned %s after the repair", d)
	}
	if over, _ := pathsOver(n, a, b); over == 0 {
		t.Fatal("no route uses the repaired link")
	}
	if p, s := n.Router(a).FlapPenalty(b); s || p == 0 {
		t.Fatalf("penalty %v, suppressed %v", p, s)
	}
	t.Logf("single failure: routes back on the link %s after it came back (link-layer bring-up 20 ms)", d)
}
