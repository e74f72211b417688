package experiment

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// Scenario is one distribution shift of the held-out suite: settings outside the training
// distribution (TrainDistribution), applied to the evaluation's default runs.
type Scenario struct {
	Name, What string
	Nodes      int // 0: the evaluation's
	Faults     []sim.FaultSpec
	Sim        func(c *sim.Config)
	Perturb    Perturb
}

// ShiftSuite is `ai eval --suite shift` (docs/intelligence.md, "Distribution shift"). None of its
// settings is drawn in training: traffic 8–50 packets per flow per interval in training, 200 and 2
// here; grey holes 10–70 % in training, 5–9 % and 75–95 % here; link loss 12–40 % against 45–70 %;
// overload 1.25–2.5 against 2.5–4; at most 8 % of reports missing or late per interval against a
// quarter missing for the whole run or 30 % late; noise up to 10 % against 30 %; 60–140 nodes
// against 300; and relays that also frame their neighbours (TestShiftOutsideTraining).
func ShiftSuite() []Scenario {
	return []Scenario{
		{Name: "nominal", What: "the evaluation's default runs"},
		{Name: "volume×10", What: "200 packets per flow per interval", Sim: func(c *sim.Config) { c.Rate = 200 }},
		{Name: "volume×0.1", What: "2 packets per flow per interval", Sim: func(c *sim.Config) { c.Rate = 2 }},
		{Name: "intensity", What: "grey holes 5–9 % or 75–95 %, link loss 45–70 %, overload 2.5–4", Sim: func(c *sim.Config) {
			grey := [2]float64{0.05, 0.09}
			if c.Seed%2 == 0 {
				grey = [2]float64{0.75, 0.95}
			}
			c.Intensity = map[sim.Kind][2]float64{sim.GreyHole: grey, sim.LinkDegradation: {0.45, 0.7}, sim.Overload: {2.5, 4}}
		}},
		{Name: "missing", What: "a quarter of the nodes never report", Perturb: Perturb{Missing: 0.25, Sticky: true}},
		{Name: "late", What: "30 % of the nodes report one interval late", Perturb: Perturb{Late: 0.3}},
		{Name: "noise", What: "30 % multiplicative counter noise", Perturb: Perturb{Noise: 0.3}},
		{Name: "simultaneous", What: "twice the faults, all starting in the same interval", Sim: func(c *sim.Config) {
			c.Simultaneous = true
			c.Faults = scaleFaults(c.Faults, 2)
		}},
		{Name: "large", What: "300 nodes, three times the faults", Nodes: 300, Sim: func(c *sim.Config) {
			c.Faults = scaleFaults(c.Faults, 3)
		}},
		{Name: "liar", What: "blackholes and grey holes also under-report what upstream relays hand them", Sim: func(c *sim.Config) { c.Frame = true }},
	}
}

// scaleFaults returns a new fault list with every count multiplied by k: the list it is given is
// shared by every run of a data set and must not change.
func scaleFaults(fs []sim.FaultSpec, k int) []sim.FaultSpec {
	out := make([]sim.FaultSpec, len(fs))
	for i, f := range fs {
		out[i] = sim.FaultSpec{Kind: f.Kind, Count: f.Count * k}
	}
	return out
}

// ShiftRow is one method's event F1 per fault kind (index sim.Kind; 0: any fault) in a scenario
// under the persistence rule with K intervals (1: none), the any-fault F1's bootstrap interval, and
// the per-interval any-fault F1 of the same decisions.
type ShiftRow struct {
	Scenario, Method string
	K                int
	Joint            bool // thresholds chosen together with K (ChooseJoint)
	F1               [sim.NumKinds]float64
	AnyLo, AnyHi     float64
	IntervalAnyF1    float64
}

// Goals reports whether r meets the suite's goals: any fault ≥ 0.90, every kind ≥ 0.80.
func (r ShiftRow) Goals() bool {
	if r.F1[0] < 0.9 {
		return false
	}
	for _, f := range r.F1[1:] {
		if f < 0.8 {
			return false
		}
	}
	return true
}

// ShiftRows condenses one scenario's event rows, evaluated with the persistence rule's k (and
// thresholds chosen jointly with it, when joint).
func ShiftRows(scenario string, k int, joint bool, ev []EventRow) []ShiftRow {
	var out []ShiftRow
	for _, e := range ev {
		if e.Fault == sim.Normal {
			out = append(out, ShiftRow{Scenario: scenario, Method: e.Method, K: k, Joint: joint, AnyLo: e.F1Lo, AnyHi: e.F1Hi, IntervalAnyF1: e.IntervalF1})
		}
		out[len(out)-1].F1[e.Fault] = e.F1
	}
	return out
}

// PrintShift writes the suite's table.
func PrintShift(w io.Writer, rs []ShiftRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "scenario\tmethod\tdecision\tany [95% CI]")
	for k := sim.Kind(1); k < sim.NumKinds; k++ {
		fmt.Fprintf(tw, "\t%s", k)
	}
	fmt.Fprintln(tw, "\tinterval any\tgoals\t")
	for _, r := range rs {
		rule := fmt.Sprintf("k=%d", r.K)
		if r.Joint {
			rule += " joint"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f [%.2f–%.2f]", r.Scenario, r.Method, rule, r.F1[0], r.AnyLo, r.AnyHi)
		for _, f := range r.F1[1:] {
			fmt.Fprintf(tw, "\t%.3f", f)
		}
		goal := "no"
		if r.Goals() {
			goal = "met"
		}
		fmt.Fprintf(tw, "\t%.3f\t%s\t\n", r.IntervalAnyF1, goal)
	}
	tw.Flush()
}

// InputQuantiles returns, for every node input of graphs gs (detector.Robust's), three percentiles
// over the node-intervals labelled kind: for normal ones the 50th, 95th and 99th (where a healthy
// node's inputs lie, so that a shift's effect on each input can be read off against the nominal
// runs), for a fault kind the 5th, 25th and 50th (how far its lower tail reaches towards them).
func InputQuantiles(gs []detector.Graph, kind sim.Kind) [][3]float64 {
	if len(gs) == 0 || len(gs[0].X) == 0 {
		return nil
	}
	levels := [3]float64{0.5, 0.95, 0.99}
	if kind != sim.Normal {
		levels = [3]float64{0.05, 0.25, 0.5}
	}
	cols := make([][]float64, len(gs[0].X[0]))
	for _, g := range gs {
		for v, x := range g.X {
			if g.Y[v] != int(kind) {
				continue
			}
			for j, f := range x {
				cols[j] = append(cols[j], f)
			}
		}
	}
	out := make([][3]float64, len(cols))
	for j, c := range cols {
		if len(c) == 0 {
			continue
		}
		slices.Sort(c)
		for i, q := range levels {
			out[j][i] = c[int(q*float64(len(c)-1))]
		}
	}
	return out
}
