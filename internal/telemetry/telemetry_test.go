package telemetry

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCollector(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := NewCollector()
	first := Sample{At: t0, CPUs: 2,
		Node: NodeCounters{Sent: 100, TransitIn: 50, Forwarded: 50, RouteChanges: 3, CPUSeconds: 10, ProbesResolved: 10, ProbesAnswered: 10},
		Links: []LinkCounters{
			{Peer: "b", Up: true, RTT: 2 * time.Millisecond, Loss: 0.1, PathDelivery: -1, TransitOut: 1000, TransitIn: 500},
			{Peer: "c", Up: true, RTT: 4 * time.Millisecond, Loss: 0, PathDelivery: 1, TransitOut: 10, TransitIn: 10},
		}}
	if _, ok := c.Add(first); ok {
		t.Fatal("the first sample made a vector")
	}
	second := first
	second.At = t0.Add(2 * time.Second)
	second.Node = NodeCounters{Sent: 300, TransitIn: 250, Forwarded: 150, RouteChanges: 7, CPUSeconds: 11, ProbesResolved: 20, ProbesAnswered: 15}
	second.Links = []LinkCounters{
		{Peer: "b", Up: true, RTT: 2 * time.Millisecond, Loss: 0.1, PathDelivery: 0.25, TransitOut: 1400, TransitIn: 500},
		{Peer: "c", Up: false, Silent: true, RTT: 4 * time.Millisecond, PathDelivery: -1, TransitOut: 10, TransitIn: 10},
	}
	v, ok := c.Add(second)
	if !ok {
		t.Fatal("no vector")
	}
	x := v.Node
	want := map[int]float64{
		FDegree: 1, FRTT: 2, FLossMean: 0.55, FLossMax: 1, FSent: math.Log1p(100), FDelivery: 0.5,
		FWorstHop: 0.25, FTransitIn: math.Log1p(100), FForwarded: math.Log1p(50), FDropped: math.Log1p(50),
		FRouteChg: math.Log1p(2), FCPU: 0.25, FMissing: 0,
	}
	for i, w := range want {
		if !near(x[i], w) {
			t.Errorf("%s = %v, want %v", NodeNames[i], x[i], w)
		}
	}
	if len(v.Peers) != 2 || v.Peers[0] != "b" {
		t.Fatalf("peers %v", v.Peers)
	}
	b, cc := v.Edges[0], v.Edges[1]
	if !near(b[ETxTransit], 200) || !near(b[ERxTransit], 0) || !near(b[ETxTransitW], 40) || !near(b[EProbeRTT], 2) || b[EUp] != 1 {
		t.Errorf("link b: %v", v.EdgeMap(0))
	}
	if cc[EProbeLoss] != 1 || cc[EProbeRTT] != 0 || cc[EUp] != 0 {
		t.Errorf("silent link c: %v", v.EdgeMap(1))
	}
	if m := v.NodeMap(); len(m) != NumNode || m["sent"] != x[FSent] {
		t.Errorf("node map %v", m)
	}

	// A restarted counter gives 0, not a huge rate; a sample not after the last gives nothing.
	third := second
	third.At = second.At.Add(time.Second)
	third.Node.Sent = 5
	third.Links = second.Links[:1]
	v, ok = c.Add(third)
	if !ok || v.Node[FSent] != 0 {
		t.Fatalf("restarted counter: %v %v", v.Node[FSent], ok)
	}
	if len(c.rings) != 1 {
		t.Fatalf("history kept for %d links, want the 1 configured", len(c.rings))
	}
	if _, ok := c.Add(third); ok {
		t.Fatal("a sample at the same time made a vector")
	}
	stale := third
	stale.At = t0
	if _, ok := c.Add(stale); ok || !c.prev.At.Equal(third.At) {
		t.Fatal("an older sample was taken as the interval's start")
	}
}
