package detector

import (
	"math"
	"testing"
)

// TestUnexplainedDeficits: the judgement's three conditions, each able to silence a deficit.
func TestUnexplainedDeficits(t *testing.T) {
	node := func(deficitW, nbrLoss, nbrReported float64) []float64 {
		x := make([]float64, NumRobust)
		x[RDeficitW], x[RNbrLossMean], x[RNbrReported] = deficitW, nbrLoss, nbrReported
		return x
	}
	// A line a – b – c – d: b loses 20 % (its neighbours' probes see 2 % loss); a (no deficit)
	// and c (framed by b: 12 %) have a larger neighbour; d's deficit is 30 % but one of its
	// neighbours did not report.
	g := Graph{Adj: [][]int{{1}, {0, 2}, {1, 3}, {2}},
		X: [][]float64{node(0, 0, 1), node(0.2, 0.02, 1), node(0.12, 0, 1), node(0.3, 0, 0.5)}}
	got := UnexplainedDeficits(&g, nil)
	want := []float64{-2, 0.18, -2, -2}
	for v := range want {
		if math.Abs(got[v]-want[v]) > 1e-9 {
			t.Errorf("node %d: %v, want %v (all: %v)", v, got[v], want[v], got)
		}
	}
	// b named: c's deficit, larger now than b's (framed, with b's own fading), is put down to b,
	// so c is not judged and does not clear b.
	framed := Graph{Adj: g.Adj, X: [][]float64{node(0, 0, 1), node(0.2, 0.02, 1), node(0.3, 0, 1), node(0, 0, 1)}}
	if got := UnexplainedDeficits(&framed, nil); got[1] != -2 || math.Abs(got[2]-0.3) > 1e-9 {
		t.Errorf("without explanation: %v, want b cleared by c and c judged 0.3", got)
	}
	if got := UnexplainedDeficits(&framed, []bool{true, false, true, false}); math.Abs(got[1]-0.18) > 1e-9 || got[2] != -2 {
		t.Errorf("c explained by b: %v, want b judged 0.18 and c not judged", got)
	}
	// c, with no larger neighbour, is judged on its own deficit.
	g.X[1], g.X[3] = node(0.05, 0, 1), node(0, 0, 1)
	if got := UnexplainedDeficits(&g, nil)[2]; math.Abs(got-0.12) > 1e-9 {
		t.Errorf("c without a larger neighbour: %v, want 0.12", got)
	}
}

func TestModelRelayFault(t *testing.T) {
	p := []float64{0.1, 0, 0, 0, 0.2, 0.7, 0} // telemetry.Classes order: greyhole most probable
	if c, conf, ok := ModelRelayFault(p, 0.5, 0.5); !ok || c != "greyhole" || conf != 0.7 {
		t.Errorf("grey hole: %s %v %v", c, conf, ok)
	}
	if _, _, ok := ModelRelayFault(p, 0.95, 0.5); ok {
		t.Error("judged a relay fault below the model's threshold")
	}
	if _, _, ok := ModelRelayFault([]float64{0.1, 0, 0, 0.9, 0, 0, 0}, 0.5, 0.5); ok {
		t.Error("judged overload a relay fault")
	}
}
