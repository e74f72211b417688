package experiment

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// The control plane's advisor (internal/control/advisory.go) names a relay when the model judges
// it a relay fault in AdvisorPersistence distinct reports in a row, or flow conservation does in
// detector.DeficitConsecutive (detector.ModelRelayFault, detector.UnexplainedDeficits). These functions choose the flow-conservation
// threshold on validation runs and measure the advisor's judgements, as deployed, on held-out runs
// (`x0tta6bl4 ai advisor`).

// AdvisorPersistence is the advisor's default persistence for the model's judgement
// (ai.advisories.consecutive): a node is named at its third judgement in a row.
const AdvisorPersistence = 3

// AdvisorMinConfidence is the advisor's default ai.advisories.min_confidence.
const AdvisorMinConfidence = 0.5

// DeficitRule is the advisor's flow-conservation judgement as a method: the unexplained deficit
// (detector.UnexplainedDeficits). It holds no state, so the advisor's explaining away over time
// (the neighbours of a relay it has named are not judged) is not part of it: that can only remove
// flags from neighbours of named relays.
func DeficitRule(threshold float64) Method {
	return Method{Name: "flow conservation (advisor)", Threshold: threshold, Score: func(g *detector.Graph) []float64 {
		return detector.UnexplainedDeficits(g, nil)
	}}
}

// ModelRelayRule is the model's part of the advisor's judgement as a method (1: judged a relay
// fault).
func ModelRelayRule(m detector.Predictor) Method {
	return Method{Name: "model (advisor)", Threshold: 0.5, Score: func(g *detector.Graph) []float64 {
		s := make([]float64, len(g.X))
		for v, p := range m.Predict(g) {
			if _, _, ok := detector.ModelRelayFault(p, m.DetectionThreshold(), AdvisorMinConfidence); ok {
				s[v] = 1
			}
		}
		return s
	}}
}

// DeficitCandidate is one flow-conservation threshold tried on the validation runs.
type DeficitCandidate struct {
	Threshold               float64
	RelayFaults, Detected   int // blackholes and grey holes, and those flagged
	Alarms                  int // false-alarm stretches on healthy nodes
	Precision, Recall, F1   float64
	HealthyFlagged, Healthy int // healthy node-intervals flagged, and all of them
}

// ChooseDeficitThreshold returns the flow-conservation threshold, among 0.01 to 0.50 in steps of
// 0.01, under which the relay-fault event F1 on the validation graphs (runs of perRun graphs) is
// highest with persistence k, the lowest on a tie, and every candidate's figures. A relay fault is
// a blackhole or grey hole, detected when flagged in one of its intervals; a false alarm is a
// stretch of flags on a healthy node; nodes with other faults count neither way. It must be given
// validation graphs only.
func ChooseDeficitThreshold(val []detector.Graph, perRun, k int) (float64, []DeficitCandidate) {
	scores := make([][]float64, len(val))
	rule := DeficitRule(0)
	for t := range val {
		scores[t] = rule.Score(&val[t])
	}
	var cands []DeficitCandidate
	best := -1
	for i := 1; i <= 50; i++ {
		th := float64(i) / 100
		flags := persist(decideScores(val, scores, th), perRun, k)
		c := relayCounts(val, flags, perRun)
		c.Threshold = th
		cands = append(cands, c)
		if best < 0 || c.F1 > cands[best].F1 {
			best = len(cands) - 1
		}
	}
	return cands[best].Threshold, cands
}

// relayCounts counts relay faults detected, false alarms and flagged healthy node-intervals.
func relayCounts(test []detector.Graph, flags [][][]bool, perRun int) DeficitCandidate {
	runs := len(test) / perRun
	rows := countEvents("", test, flags, perRun, runs, 1)
	var c DeficitCandidate
	for _, r := range rows {
		if r.Fault == sim.Blackhole || r.Fault == sim.GreyHole {
			c.RelayFaults += r.Faults
			c.Detected += r.Detected
		}
	}
	c.Alarms = rows[0].Alarms
	c.HealthyFlagged, c.Healthy = healthyFlagged(test, flags)
	c.Precision, c.Recall, c.F1 = eventF1(c.Detected, c.RelayFaults-c.Detected, c.Alarms)
	return c
}

func healthyFlagged(test []detector.Graph, flags [][][]bool) (flagged, all int) {
	for t := range test {
		for v, y := range test[t].Y {
			if y != int(sim.Normal) {
				continue
			}
			all++
			if flags[t][v][0] {
				flagged++
			}
		}
	}
	return flagged, all
}

// AdvisorRow is one method's judgements on held-out runs under the advisor's persistence.
type AdvisorRow struct {
	Method                  string
	Faults, Detected        [sim.NumKinds]int     // per kind; Normal unused
	Delay                   [sim.NumKinds]float64 // median intervals from a fault's start to its flag
	Alarms                  int                   // false-alarm stretches on healthy nodes
	HealthyFlagged, Healthy int                   // healthy node-intervals flagged, and all of them
	AlarmNodes, Nodes       int                   // healthy nodes (per run) flagged at least once, and all nodes that were healthy all run
}

// AdvisorJudgements returns the advisor's decisions on the graphs (runs of perRun graphs), as
// deployed: the model's judgement after kModel in a row, flow conservation's (at threshold) after
// kDeficit in a row, and either; with their names.
func AdvisorJudgements(m detector.Predictor, threshold float64, test []detector.Graph, perRun, kModel, kDeficit int) ([]string, [][][][]bool) {
	model := persist(decide(ModelRelayRule(m), test), perRun, kModel)
	deficit := persist(decide(DeficitRule(threshold), test), perRun, kDeficit)
	either := make([][][]bool, len(test))
	for t := range test {
		either[t] = make([][]bool, len(test[t].X))
		for v := range either[t] {
			f := make([]bool, sim.NumKinds)
			for k := range f {
				f[k] = model[t][v][k] || deficit[t][v][k]
			}
			either[t][v] = f
		}
	}
	return []string{"model (advisor)", "flow conservation (advisor)", "advisor (model or flow conservation)"}, [][][][]bool{model, deficit, either}
}

// EvaluateAdvisor measures decisions (one set per name) on the test graphs (runs of perRun
// graphs): faults of every kind flagged (for the relay kinds, detections; for the others, a node
// named that is no grey hole or blackhole), false alarms on healthy nodes, and the rate of healthy
// node-intervals flagged.
func EvaluateAdvisor(names []string, decisions [][][][]bool, test []detector.Graph, perRun int) []AdvisorRow {
	runs := len(test) / perRun
	var out []AdvisorRow
	for i, name := range names {
		flags := decisions[i]
		row := AdvisorRow{Method: name}
		for _, r := range countEvents(name, test, flags, perRun, runs, 1) {
			if r.Fault == sim.Normal {
				row.Alarms = r.Alarms
				continue
			}
			row.Faults[r.Fault], row.Detected[r.Fault], row.Delay[r.Fault] = r.Faults, r.Detected, r.MedianDelay
		}
		row.HealthyFlagged, row.Healthy = healthyFlagged(test, flags)
		for r := range runs {
			gs, fl := test[r*perRun:(r+1)*perRun], flags[r*perRun:(r+1)*perRun]
			for v := range gs[0].Y {
				healthy, flagged := true, false
				for t := range gs {
					healthy = healthy && gs[t].Y[v] == 0
					flagged = flagged || fl[t][v][0]
				}
				if healthy {
					row.Nodes++
					if flagged {
						row.AlarmNodes++
					}
				}
			}
		}
		out = append(out, row)
	}
	return out
}

// PrintDeficitChoice writes the validation candidates around the chosen threshold.
func PrintDeficitChoice(w io.Writer, chosen float64, cands []DeficitCandidate) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "unexplained deficit ≥\trelay faults\tdetected\tfalse alarms\thealthy node-intervals flagged\tprecision\trecall\tF1\t")
	for _, c := range cands {
		if math.Abs(c.Threshold-chosen) > 0.055 && int(math.Round(c.Threshold*100))%5 != 0 {
			continue
		}
		mark := ""
		if c.Threshold == chosen {
			mark = " ←"
		}
		fmt.Fprintf(tw, "%.2f%s\t%d\t%d\t%d\t%d / %d (%.2g)\t%.3f\t%.3f\t%.3f\t\n", c.Threshold, mark, c.RelayFaults, c.Detected, c.Alarms,
			c.HealthyFlagged, c.Healthy, float64(c.HealthyFlagged)/float64(max(1, c.Healthy)), c.Precision, c.Recall, c.F1)
	}
	tw.Flush()
}

// PrintAdvisor writes the rows of one scenario.
func PrintAdvisor(w io.Writer, scenario string, rows []AdvisorRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmethod\tgrey holes\tblackholes\tgrey delay s\tfalse alarms\thealthy nodes alarmed\thealthy node-intervals flagged\toverload\tlinkdeg\tcrash\tflapping\t")
	for _, r := range rows {
		frac := func(k sim.Kind) string { return fmt.Sprintf("%d/%d", r.Detected[k], r.Faults[k]) }
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%d\t%d/%d\t%d / %d (%.2g)\t%s\t%s\t%s\t%s\t\n", scenario, r.Method, frac(sim.GreyHole), frac(sim.Blackhole),
			r.Delay[sim.GreyHole], r.Alarms, r.AlarmNodes, r.Nodes, r.HealthyFlagged, r.Healthy, float64(r.HealthyFlagged)/float64(max(1, r.Healthy)),
			frac(sim.Overload), frac(sim.LinkDegradation), frac(sim.Crash), frac(sim.Flapping))
	}
	tw.Flush()
}
