package node

import (
	"math"
	"testing"
	"time"

	"x0tta6bl4/internal/telemetry"
)

// TestTelemetryVectors: the detector's features of real nodes come from real counters — a relayed
// flow shows in the sender's link to the relay (handed on), the relay's node vector (transit in,
// forwarded) and the receiver's link to the relay (relayed by it).
func TestTelemetryVectors(t *testing.T) {
	w, nodes, devs, pkt := relayedChain(t)
	a, relay, c := nodes[0], nodes[1], nodes[2]
	// Sample an hour ahead, so that the timer's own samples are ignored.
	t0 := w.Now().Add(time.Hour)
	for _, n := range nodes {
		n.sampleTelemetry(t0)
	}
	const sent = 50
	before := devs[2].delivered()
	for range sent {
		a.sendPacket(w.Now(), pkt)
	}
	if _, ok := w.RunUntil(func() bool { return devs[2].delivered() >= before+sent }, time.Second); !ok {
		t.Fatalf("delivered %d of %d", devs[2].delivered()-before, sent)
	}
	for _, n := range nodes {
		n.sampleTelemetry(t0.Add(time.Second))
	}
	edge := func(n *Node, peer string, f int) float64 {
		t.Helper()
		v, ok := n.Telemetry()
		if !ok {
			t.Fatalf("%s: no telemetry", n.self.Name)
		}
		for i, p := range v.Peers {
			if p == peer {
				return v.Edges[i][f]
			}
		}
		t.Fatalf("%s: no link to %s in %v", n.self.Name, peer, v.Peers)
		return 0
	}
	if got := edge(a, relay.self.Name, telemetry.ETxTransit); got != sent {
		t.Errorf("a handed %v packets per second to the relay, want %d", got, sent)
	}
	if got := edge(c, relay.self.Name, telemetry.ERxTransit); got != sent {
		t.Errorf("c got %v relayed packets per second from the relay, want %d", got, sent)
	}
	rv, _ := relay.Telemetry()
	if got, want := rv.Node[telemetry.FTransitIn], math.Log1p(sent); got != want {
		t.Errorf("relay transit_in %v, want %v", got, want)
	}
	if rv.Node[telemetry.FForwarded] != rv.Node[telemetry.FTransitIn] || rv.Node[telemetry.FDropped] != 0 {
		t.Errorf("relay forwarded %v dropped %v", rv.Node[telemetry.FForwarded], rv.Node[telemetry.FDropped])
	}
	av, _ := a.Telemetry()
	if av.Node[telemetry.FSent] < math.Log1p(sent) || av.Node[telemetry.FDegree] != 1 || av.Node[telemetry.FMissing] != 0 {
		t.Errorf("a's vector %v", av.NodeMap())
	}
}
