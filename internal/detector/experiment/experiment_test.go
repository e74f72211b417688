package experiment

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

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
			if !p.Sticky || p.Missing <= d.Missing[1] || p.Missing <= d.Silent[1] {
				t.Errorf("silent %v within training's %v per interval or %v per run", p.Missing, d.Missing, d.Silent)
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
		if r := float64(c.Rate); r < d.Rate[0]-0.5 || r > d.Rate[1]+0.5 || p.Noise > d.Noise[1] || p.Sticky || p.Missing > d.Missing[1] || p.Late > d.Late[1] || p.Busy > d.Busy[1] || p.Silent != 0 {
			t.Fatalf("seed %d drew rate %d, %+v", seed, c.Rate, p)
		}
		if s := drawSilent(seed); s < d.Silent[0] || s > d.Silent[1] {
			t.Fatalf("seed %d drew %v silent, outside %v", seed, s, d.Silent)
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

// TestPerturbSilent: silent nodes are a fixed set, the given fraction, with no report in any
// interval (missing, zero links), and every other node's report is untouched; on top of it the
// per-interval gaps (Missing) are drawn as they were without it.
func TestPerturbSilent(t *testing.T) {
	mk := func() []detector.Graph {
		gs := make([]detector.Graph, 4)
		for i := range gs {
			gs[i].X = make([][]float64, 20)
			gs[i].E = make([][][]float64, 20)
			for v := range gs[i].X {
				x := make([]float64, telemetry.NumNode)
				x[telemetry.FCPU], x[telemetry.FRTT] = 0.05, 3
				gs[i].X[v] = x
				e := make([]float64, telemetry.NumEdge)
				e[telemetry.EUp], e[telemetry.ETxTransit] = 1, 10
				gs[i].E[v] = [][]float64{e}
			}
		}
		return gs
	}
	missing := func(gs []detector.Graph, i int) []int {
		var out []int
		for v, x := range gs[i].X {
			if x[telemetry.FMissing] == 1 {
				if gs[i].E[v][0][telemetry.EUp] != 0 || x[telemetry.FRTT] != 0 {
					t.Fatalf("interval %d: silent node %d kept its report", i, v)
				}
				out = append(out, v)
			}
		}
		return out
	}
	gs, clean := mk(), mk()
	Perturb{Silent: 0.2}.apply(gs, 7)
	silent := missing(gs, 0)
	if len(silent) != 4 {
		t.Fatalf("%d silent nodes, want 4", len(silent))
	}
	for i := range gs {
		if got := missing(gs, i); !slices.Equal(got, silent) {
			t.Fatalf("interval %d: silent %v, want the same set %v", i, got, silent)
		}
		for v, x := range gs[i].X {
			if !slices.Contains(silent, v) && (!slices.Equal(x, clean[i].X[v]) || !slices.Equal(gs[i].E[v][0], clean[i].E[v][0])) {
				t.Fatalf("interval %d: node %d is not silent but its report changed", i, v)
			}
		}
	}
	// The per-interval gaps are the ones drawn without silent nodes, plus the silent set.
	gaps, both := mk(), mk()
	Perturb{Missing: 0.1}.apply(gaps, 7)
	Perturb{Missing: 0.1, Silent: 0.2}.apply(both, 7)
	for i := range gaps {
		want := missing(gaps, i)
		for _, v := range silent {
			if !slices.Contains(want, v) {
				want = append(want, v)
			}
		}
		slices.Sort(want)
		if got := missing(both, i); !slices.Equal(got, want) {
			t.Fatalf("interval %d: missing %v, want the gaps without silent nodes plus them: %v", i, got, want)
		}
	}
}

// TestGenerateSilent: with Silent, a randomised run has the drawn fraction of its nodes silent in
// every interval, and every other node reads exactly as in the same run without it.
func TestGenerateSilent(t *testing.T) {
	seed := uint64(3)
	for drawSilent(seed) < 0.05 {
		seed++
	}
	dc := DataConfig{Seeds: []uint64{seed}, Nodes: 40, Duration: 8 * time.Second, Faults: DefaultFaults, Randomise: true, Raw: true}
	plain, err := Generate(dc)
	if err != nil {
		t.Fatal(err)
	}
	dc.Silent = true
	quiet, err := Generate(dc)
	if err != nil {
		t.Fatal(err)
	}
	n := len(quiet[0].X)
	var silent []int
	for v := range n {
		all := true
		for i := range quiet {
			all = all && quiet[i].X[v][telemetry.FMissing] == 1
		}
		if all {
			silent = append(silent, v)
		}
	}
	if want := int(math.Round(drawSilent(seed) * float64(n))); len(silent) < want {
		t.Fatalf("%d nodes silent throughout, want at least %d", len(silent), want)
	}
	for i := range quiet {
		for v := range n {
			if !slices.Contains(silent, v) && !slices.Equal(quiet[i].X[v], plain[i].X[v]) {
				t.Fatalf("interval %d: node %d is not silent but its report changed", i, v)
			}
		}
	}
}
