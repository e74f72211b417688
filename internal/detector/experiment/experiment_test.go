package experiment

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
	"x0tta6bl4/internal/telemetry"
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
	if th := detector.BestThreshold(s, p); th != 0.8 && th != 0.35 {
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

// TestShiftOutsideTraining: the suite's traffic, noise, silent and late fractions lie outside what
// training draws, so a widened training distribution cannot quietly swallow a scenario.
func TestShiftOutsideTraining(t *testing.T) {
	d := TrainDistribution
	for _, sc := range ShiftSuite() {
		c := sim.Config{Rate: 20}
		if sc.Sim != nil {
			sc.Sim(&c)
		}
		p := sc.Perturb
		switch sc.Name {
		case "volume×10", "volume×0.1":
			if r := float64(c.Rate); r >= d.Rate[0] && r <= d.Rate[1] {
				t.Errorf("%s: %v packets per flow is inside training's %v", sc.Name, r, d.Rate)
			}
		case "noise":
			if p.Noise <= d.Noise[1] {
				t.Errorf("noise %v within training's %v", p.Noise, d.Noise)
			}
		case "missing":
			if !p.Sticky || p.Missing <= d.Missing[1] {
				t.Errorf("silent %v within training's %v", p.Missing, d.Missing)
			}
		case "late":
			if p.Late <= d.Late[1] {
				t.Errorf("late %v within training's %v", p.Late, d.Late)
			}
		}
	}
	// Every draw stays inside the ranges.
	for seed := range uint64(200) {
		c := sim.Config{Faults: DefaultFaults}
		p := randomise(&c, seed)
		if r := float64(c.Rate); r < d.Rate[0]-0.5 || r > d.Rate[1]+0.5 || p.Noise > d.Noise[1] || p.Sticky || p.Missing > d.Missing[1] || p.Late > d.Late[1] || p.Busy > d.Busy[1] {
			t.Fatalf("seed %d drew rate %d, %+v", seed, c.Rate, p)
		}
	}
}

// TestChooseJoint: a fault scoring 0.5 for three intervals and a one-interval spike of 0.9 on a
// normal node. The interval-optimal threshold (0.5 or below) flags both; with k = 2 the spike goes
// and the fault stays, so the joint choice is k = 2 with a threshold that still flags the fault.
func TestChooseJoint(t *testing.T) {
	const perRun = 4
	score := [perRun][2]float64{{0, 0.1}, {0.5, 0.9}, {0.5, 0.1}, {0.5, 0.1}}
	val := make([]detector.Graph, perRun)
	for i := range val {
		val[i] = detector.Graph{X: [][]float64{{0}, {0}}, Adj: [][]int{{1}, {0}}, Y: []int{0, 0}}
		if i > 0 {
			val[i].Y[0] = int(sim.Blackhole)
		}
		val[i].X[0][0], val[i].X[1][0] = score[i][0], score[i][1]
	}
	m := Method{Name: "x", Threshold: 0.3, Score: func(g *detector.Graph) []float64 { return []float64{g.X[0][0], g.X[1][0]} }}
	k, means, tuned := ChooseJoint([]Method{m}, val, perRun, 3)
	if k != 2 || means[1] != 1 || tuned[0].Threshold > 0.5 || tuned[0].Threshold <= 0.1 {
		t.Fatalf("k %d, means %v, threshold %v; want k 2, mean F1 1 at k 2, threshold in (0.1, 0.5]", k, means, tuned[0].Threshold)
	}
	if m.Threshold != 0.3 {
		t.Fatal("the methods given were changed")
	}
}

// TestPerturbBusy: busy processors raise the CPU of the chosen fraction of nodes, the same nodes in
// every interval, and touch nothing else.
func TestPerturbBusy(t *testing.T) {
	mk := func() []detector.Graph {
		gs := make([]detector.Graph, 3)
		for i := range gs {
			gs[i].X = make([][]float64, 10)
			for v := range gs[i].X {
				x := make([]float64, telemetry.NumNode)
				x[telemetry.FCPU], x[telemetry.FRTT] = 0.05, 3
				gs[i].X[v] = x
			}
		}
		return gs
	}
	gs, clean := mk(), mk()
	Perturb{Busy: 0.3}.apply(gs, 7)
	var busy []int
	for v := range gs[0].X {
		if gs[0].X[v][telemetry.FCPU] > 0.05 {
			busy = append(busy, v)
		}
	}
	if len(busy) != 3 {
		t.Fatalf("%d busy nodes, want 3", len(busy))
	}
	for i := range gs {
		for v, x := range gs[i].X {
			c := x[telemetry.FCPU]
			if slices.Contains(busy, v) != (c > 0.05) || c < 0.05 || c > 1 {
				t.Fatalf("interval %d node %d: CPU %v (busy %v)", i, v, c, busy)
			}
			x[telemetry.FCPU] = 0.05
			if !slices.Equal(x, clean[i].X[v]) {
				t.Fatalf("interval %d node %d: busy changed more than the CPU: %v", i, v, x)
			}
		}
	}
}

// TestClassifierDecides: a classifier method is judged by its own decision, not by the argmax of
// its probabilities, in the event counts, the per-interval rows and the kernel fusion.
func TestClassifierDecides(t *testing.T) {
	gs := make([]detector.Graph, 3)
	for i := range gs {
		gs[i] = detector.Graph{X: [][]float64{{0}, {0}}, Adj: [][]int{{1}, {0}}, Y: []int{0, int(sim.GreyHole)}}
	}
	// The probabilities name a grey hole at both nodes; the decision only at node 1.
	probs := func(g *detector.Graph) [][]float64 {
		out := make([][]float64, len(g.X))
		for v := range out {
			out[v] = make([]float64, sim.NumKinds)
			out[v][sim.GreyHole] = 1
		}
		return out
	}
	score := func(g *detector.Graph) []float64 { return make([]float64, len(g.X)) }
	d := Method{Name: "m", Score: score, Classify: func(g *detector.Graph) ([][]float64, []int) {
		return probs(g), []int{0, int(sim.GreyHole)}
	}}
	for _, m := range []Method{d, FuseClasses(d, Method{Score: func(g *detector.Graph) []float64 { return []float64{absent, absent} }}, FuseOr)} {
		rows := EvaluatePersistent([]Method{m}, gs, 3, 1, 1)
		if r := rows[sim.GreyHole]; r.Detected != 1 || r.Alarms != 0 {
			t.Fatalf("%s: grey hole detected %d, false alarms %d; want 1 and 0 (the decision, not the argmax)", m.Name, r.Detected, r.Alarms)
		}
		if r := EvaluateAll([]Method{m}, gs)[0]; r.FP != 0 || r.TP != 3 {
			t.Fatalf("%s: per interval TP %d FP %d, want 3 and 0", m.Name, r.TP, r.FP)
		}
	}
	// With the argmax as its decision, node 0 is a false alarm.
	d.Classify = func(g *detector.Graph) ([][]float64, []int) {
		return probs(g), []int{int(sim.GreyHole), int(sim.GreyHole)}
	}
	if r := EvaluatePersistent([]Method{d}, gs, 3, 1, 1)[sim.GreyHole]; r.Alarms != 1 {
		t.Fatalf("argmax: false alarms %d, want 1", r.Alarms)
	}
}
