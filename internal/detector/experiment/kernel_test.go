package experiment

import (
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// TestFuse: OR flags a node either side flags, AND one both flag; a node without kernel evidence
// keeps the base method's decision under both; the kernel rule alone never flags it.
func TestFuse(t *testing.T) {
	g := detector.Graph{X: make([][]float64, 4), K: make([][detector.NumKernelInputs]float64, 4)}
	base := Method{Name: "base", Threshold: 0.5, Score: func(*detector.Graph) []float64 { return []float64{0.9, 0.1, 0.9, 0.9} }}
	// Node 0: base only; 1: kernel only; 2: both; 3: base, no kernel evidence.
	for v, d := range []float64{0.01, 0.3, 0.3} {
		g.K[v][detector.KITxUnseen], g.K[v][detector.KITxUnseenPresent] = d, 1
	}
	kernel := Method{Name: "kernel rule", Threshold: 0.1, Score: kernelDiscrepancy}
	want := map[Fusion][]bool{FuseOr: {true, true, true, true}, FuseAnd: {false, false, true, true}}
	for f, w := range want {
		m := Fuse(base, kernel, f)
		flags := decide(m, []detector.Graph{g})[0]
		for v := range w {
			if flags[v][0] != w[v] {
				t.Errorf("%s: node %d flagged %v, want %v", f, v, flags[v][0], w[v])
			}
		}
	}
	if flags := decide(kernel, []detector.Graph{g})[0]; flags[3][0] {
		t.Error("the kernel rule flagged a node without kernel evidence")
	}
	if _, ok := KernelRule([]detector.Graph{{X: g.X}}); ok {
		t.Error("a kernel rule without any kernel evidence to set its threshold on")
	}
}

// TestFuseClasses: OR turns a node the classifier calls normal but the kernel rule flags into the
// more probable lying-relay kind; AND turns a lying-relay call the kernel contradicts into normal;
// other kinds, and nodes without kernel evidence, keep the classifier's call.
func TestFuseClasses(t *testing.T) {
	p := func(k int, grey bool) []float64 {
		q := make([]float64, sim.NumKinds)
		q[k] = 0.6
		if grey {
			q[sim.GreyHole] += 0.2
		} else {
			q[sim.Blackhole] += 0.2
		}
		return q
	}
	// Nodes: 0 normal, kernel flags, grey hole the likelier liar; 1 blackhole, kernel honest;
	// 2 crash, kernel honest; 3 normal, no kernel evidence; 4 normal, kernel flags, blackhole likelier.
	probs := [][]float64{p(0, true), p(int(sim.Blackhole), false), p(int(sim.Crash), false), p(0, false), p(0, false)}
	g := detector.Graph{X: make([][]float64, 5), K: make([][detector.NumKernelInputs]float64, 5)}
	for v, d := range []float64{0.3, 0.01, 0.01, 0, 0.3} {
		if v != 3 {
			g.K[v][detector.KITxUnseen], g.K[v][detector.KITxUnseenPresent] = d, 1
		}
	}
	base := Method{Name: "base", Score: func(*detector.Graph) []float64 { return make([]float64, 5) }, Classify: func(*detector.Graph) ([][]float64, []int) {
		kinds := make([]int, len(probs))
		for v, p := range probs {
			kinds[v] = argmax(p)
		}
		return probs, kinds
	}}
	kernel := Method{Name: "kernel rule", Threshold: 0.1, Score: kernelDiscrepancy}
	want := map[Fusion][]sim.Kind{
		FuseOr:  {sim.GreyHole, sim.Blackhole, sim.Crash, sim.Normal, sim.Blackhole},
		FuseAnd: {sim.Normal, sim.Normal, sim.Crash, sim.Normal, sim.Normal},
	}
	for f, w := range want {
		got, kinds := FuseClasses(base, kernel, f).Classify(&g)
		for v := range w {
			if sim.Kind(argmax(got[v])) != w[v] || sim.Kind(kinds[v]) != w[v] {
				t.Errorf("%s: node %d is %s (decision %s), want %s", f, v, sim.Kind(argmax(got[v])), sim.Kind(kinds[v]), w[v])
			}
		}
	}
}

// TestKernelRuleOnSim: on simulated runs where half the nodes have eBPF, the kernel rule's
// validation threshold catches the lying relays it can see, and fusing it with a method leaves
// every node without kernel evidence with that method's own decision.
func TestKernelRuleOnSim(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates meshes")
	}
	gen := func(seeds ...uint64) []detector.Graph {
		gs, err := Generate(DataConfig{Seeds: seeds, Nodes: 40, Duration: 20 * time.Second, KernelFraction: 0.5,
			Faults: []sim.FaultSpec{{Kind: sim.Blackhole, Count: 2}, {Kind: sim.GreyHole, Count: 2}, {Kind: sim.Crash, Count: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return gs
	}
	val, test := gen(51, 52), gen(301, 302)
	kr, ok := KernelRule(val)
	if !ok {
		t.Fatal("no kernel evidence in the validation runs")
	}
	// The lying relays with kernel evidence, and the nodes without: what the rule flags.
	var liars, caught, absentFlagged int
	flags := decide(kr, test)
	for i, g := range test {
		for v, y := range g.Y {
			present := g.K[v][detector.KITxUnseenPresent] == 1
			if !present && flags[i][v][0] {
				absentFlagged++
			}
			if present && (y == int(sim.Blackhole) || y == int(sim.GreyHole)) {
				liars++
				if flags[i][v][0] {
					caught++
				}
			}
		}
	}
	if liars == 0 || absentFlagged > 0 {
		t.Fatalf("%d liar-intervals with kernel evidence; %d flags without evidence", liars, absentFlagged)
	}
	if float64(caught) < 0.8*float64(liars) {
		t.Errorf("the kernel rule caught %d of %d lying relay-intervals with kernel evidence", caught, liars)
	}
	base := FlowConservation(val)
	for _, f := range []Fusion{FuseOr, FuseAnd} {
		fused, baseFlags := decide(Fuse(base, kr, f), test), decide(base, test)
		for i, g := range test {
			for v := range g.X {
				if g.K[v][detector.KITxUnseenPresent] == 0 && fused[i][v][0] != baseFlags[i][v][0] {
					t.Fatalf("%s: interval %d node %d has no kernel evidence and its decision changed", f, i, v)
				}
			}
		}
	}
	t.Logf("kernel rule threshold %.4f: caught %d of %d lying relay-intervals with kernel evidence", kr.Threshold, caught, liars)
}
