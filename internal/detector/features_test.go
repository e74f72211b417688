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

// TestRobustAgainstHistoryAndMesh: a node as busy as its own baseline reads cpu_rel 0 however busy
// that is, a rise above it reads positive, a report without the baseline reads unknown (0); route
// churn that the whole mesh shares cancels, one node's own does not.
func TestRobustAgainstHistoryAndMesh(t *testing.T) {
	g := rawLine(1, 100, 100)
	for v, cpu := range []float64{0.1, 0.5, 0.9} {
		g.X[v][telemetry.FCPU], g.X[v][telemetry.FCPUW] = cpu, cpu
		g.X[v][telemetry.FRouteChg] = math.Log1p(2) // every node: both destinations moved
	}
	h := Robust(&g)
	for v := range h.X {
		if h.X[v][RCPURel] != 0 || h.X[v][RRouteChg] != 0 {
			t.Fatalf("node %d at its own baseline, churn shared by the mesh: cpu_rel %v, route_change_excess %v", v, h.X[v][RCPURel], h.X[v][RRouteChg])
		}
	}
	g.X[1][telemetry.FCPU], g.X[1][telemetry.FCPUW] = 0.9, 0.26
	g.X[2][telemetry.FRouteChg] = 0
	g.X[0][telemetry.FRouteChg] = 0
	h = Robust(&g)
	if want := math.Log((cpuEps + 0.9) / (cpuEps + 0.26)); math.Abs(h.X[1][RCPURel]-want) > 1e-9 {
		t.Fatalf("cpu_rel %v after a rise, want %v", h.X[1][RCPURel], want)
	}
	if math.Abs(h.X[1][RRouteChg]-1) > 1e-9 || h.X[0][RRouteChg] != 0 {
		t.Fatalf("one node's churn: %v, its quiet neighbour's %v", h.X[1][RRouteChg], h.X[0][RRouteChg])
	}
	old := g.X[1][:telemetry.FCPUW] // a report from a node that sends no baseline
	g.X[1] = old
	if h = Robust(&g); h.X[1][RCPURel] != 0 || h.X[1][RCPU] != 0.9 {
		t.Fatalf("no baseline: cpu_rel %v (want unknown, 0), cpu %v", h.X[1][RCPURel], h.X[1][RCPU])
	}
}

// TestRobustFilledDeficit: b relays a's frames to c; when c sends no report, b's own count of what
// it handed c stands in for c's, so the filled deficit stays 0 where the plain one reads 1.
func TestRobustFilledDeficit(t *testing.T) {
	raw := rawLine(1, 100, 100)
	raw.E[1][1][telemetry.ETxTransit], raw.E[1][1][telemetry.ETxTransitW] = 100, 100
	raw.X[2] = make([]float64, telemetry.NumNode)
	raw.X[2][telemetry.FMissing] = 1
	g := Robust(&raw)
	if g.X[1][RDeficitW] != 1 || g.X[1][RDeficitFilledW] != 0 {
		t.Fatalf("deficit_w %v, filled %v, want 1 and 0", g.X[1][RDeficitW], g.X[1][RDeficitFilledW])
	}
	raw = rawLine(1, 100, 60)
	if g = Robust(&raw); math.Abs(g.X[1][RDeficitFilledW]-g.X[1][RDeficitW]) > 1e-12 || math.Abs(g.X[1][RDeficitW]-0.4) > 1e-9 {
		t.Fatalf("every neighbour reporting: filled %v, plain %v, want both 0.4", g.X[1][RDeficitFilledW], g.X[1][RDeficitW])
	}
}
