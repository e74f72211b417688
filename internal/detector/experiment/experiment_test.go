package experiment

import (
	"math"
	"math/rand/v2"
	"testing"

	"x0tta6bl4/internal/sim"
)

func TestMetrics(t *testing.T) {
	s := []float64{0.1, 0.4, 0.35, 0.8}
	p := []bool{false, false, true, true}
	if a := AUC(s, p); math.Abs(a-0.75) > 1e-12 {
		t.Fatalf("AUC %v", a)
	}
	b := Evaluate(s, p, 0.35)
	if b.TP != 2 || b.FP != 1 || math.Abs(b.F1-0.8) > 1e-12 {
		t.Fatalf("%+v", b)
	}
	if th := BestThreshold(s, p); th != 0.8 && th != 0.35 {
		t.Fatalf("threshold %v", th)
	}
}

func TestBaselines(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var rows [][]float64
	for range 500 {
		rows = append(rows, []float64{rng.NormFloat64(), rng.NormFloat64()})
	}
	z := FitZScore(rows)
	f := FitIForest(rows, 50, 128, 1)
	out := []float64{6, 6}
	if z.Score(out) < 4 || z.Score(rows[0]) > 4 {
		t.Fatalf("z-score %v %v", z.Score(out), z.Score(rows[0]))
	}
	if f.Score(out) < 0.6 || f.Score([]float64{0, 0}) > 0.5 {
		t.Fatalf("iforest %v %v", f.Score(out), f.Score([]float64{0, 0}))
	}
}

// TestScenariosLeaveFaultsAlone: a scenario applied to run after run scales the fault counts once
// per run, never cumulatively (the list is shared by the data set's runs).
func TestScenariosLeaveFaultsAlone(t *testing.T) {
	base := []sim.FaultSpec{{Kind: sim.Blackhole, Count: 2}}
	for _, sc := range ShiftSuite() {
		if sc.Sim == nil {
			continue
		}
		for range 3 {
			c := sim.Config{Faults: base}
			sc.Sim(&c)
		}
		if base[0].Count != 2 {
			t.Fatalf("%s changed the shared fault list: %v", sc.Name, base)
		}
	}
}

// TestPersistence: under k = 2 a flag survives only at the second consecutive flagged interval of
// the same node and kind, never across a run boundary; k = 1 keeps every decision.
func TestPersistence(t *testing.T) {
	// Two runs of 3 intervals, one node; kind 0 flagged at t = 0, 1 (run 1) and 2, 3 (across runs).
	on := []bool{true, true, false, false, false, false}
	on[2], on[3] = true, true
	flags := make([][][]bool, len(on))
	for i, f := range on {
		flags[i] = [][]bool{make([]bool, sim.NumKinds)}
		flags[i][0][0] = f
	}
	got := persist(flags, 3, 2)
	want := []bool{false, true, true, false, false, false}
	for i := range want {
		if got[i][0][0] != want[i] {
			t.Fatalf("interval %d: got %v, want %v", i, got[i][0][0], want[i])
		}
	}
	if same := persist(flags, 3, 1); &same[0] != &flags[0] {
		t.Fatal("k = 1 must keep the decisions as they are")
	}
}
