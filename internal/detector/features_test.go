package detector

import (
	"math"
	"testing"

	"x0tta6bl4/internal/telemetry"
)

// rawLine is a line a – b – c of raw telemetry: b relays `relay` frames a second from a towards
// c and passes on `out` of them; every count is multiplied by scale.
func rawLine(scale, relay, out float64) Graph {
	node := func(transit, dropped float64) []float64 {
		x := make([]float64, telemetry.NumNode)
		x[telemetry.FDegree], x[telemetry.FRTT], x[telemetry.FDelivery], x[telemetry.FWorstHop] = 1, 4, 1, 1
		x[telemetry.FTransitIn], x[telemetry.FForwarded] = math.Log1p(transit), math.Log1p(transit-dropped)
		x[telemetry.FDropped], x[telemetry.FCPU] = math.Log1p(dropped), 0.1
		return x
	}
	link := func(tx, rx float64) []float64 {
		e := make([]float64, telemetry.NumEdge)
		e[telemetry.ETxTransit], e[telemetry.ERxTransit] = tx, rx
		e[telemetry.ETxTransitW], e[telemetry.ERxTransitW] = tx, rx
		e[telemetry.EProbeRTT], e[telemetry.EUp] = 4, 1
		return e
	}
	return Graph{
		X:   [][]float64{node(0, 0), node(scale*relay, scale*(relay-out)), node(0, 0)},
		Adj: [][]int{{1}, {0, 2}, {1}},
		E:   [][][]float64{{link(scale*relay, 0)}, {link(0, 0), link(0, 0)}, {link(0, scale*out)}},
	}
}

// TestRobustVolumeInvariant: ten times or a tenth of the traffic leaves every derived feature
// that compares counts unchanged.
func TestRobustVolumeInvariant(t *testing.T) {
	base := rawLine(1, 100, 70)
	g := Robust(&base)
	if d := g.X[1][RDeficit]; math.Abs(d-0.3) > 1e-9 {
		t.Fatalf("deficit %v, want 0.3", d)
	}
	if d := g.X[1][RDropRatio]; math.Abs(d-0.3) > 1e-9 {
		t.Fatalf("drop ratio %v, want 0.3", d)
	}
	for _, scale := range []float64{10, 0.1} {
		raw := rawLine(scale, 100, 70)
		h := Robust(&raw)
		for v := range h.X {
			for _, j := range []int{RDeficit, RDeficitW, RDropRatio, RNbrLossMin, RNbrUp, RReported} {
				if math.Abs(h.X[v][j]-g.X[v][j]) > 1e-9 {
					t.Fatalf("×%v: node %d %s %v, at ×1 %v", scale, v, RobustNames[j], h.X[v][j], g.X[v][j])
				}
			}
		}
	}
}

// TestRobustMissingIsUnknown: a node without a report has all its own features 0 and reported 0,
// its links' vectors 0, and its neighbours' view of it still computed from their reports.
func TestRobustMissingIsUnknown(t *testing.T) {
	raw := rawLine(1, 100, 0)
	raw.X[1] = make([]float64, telemetry.NumNode)
	raw.X[1][telemetry.FMissing] = 1
	g := Robust(&raw)
	for j := range RNbrReported {
		if g.X[1][j] != 0 {
			t.Fatalf("missing node's own %s = %v", RobustNames[j], g.X[1][j])
		}
	}
	for _, e := range g.E[1] {
		for j, a := range e {
			if a != 0 {
				t.Fatalf("missing node's link %s = %v", RobustEdgeNames[j], a)
			}
		}
	}
	if g.X[1][RNbrReported] != 1 || g.X[1][RDeficit] != 1 || g.X[0][RReported] != 1 {
		t.Fatalf("neighbours' view of the silent node: %v", g.X[1])
	}
}
