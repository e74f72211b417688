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
// it a relay fault or flow conservation does (detector.ModelRelayFault, detector.RelayDeficit), in
// AdvisorPersistence distinct reports in a row. These functions choose the flow-conservation
// threshold on validation runs and measure the advisor's judgements, as deployed, on held-out runs
// (`x0tta6bl4 ai advisor`).

// AdvisorPersistence is the advisor's default persistence (ai.advisories.consecutive): a node is
// named at its third judgement in a row.
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
func ModelRelayRule(m *detector.Model) Method {
	return Method{Name: "model (advisor)", Threshold: 0.5, Score: func(g *detector.Graph) []float64 {
		s := make([]float64, len(g.X))
		for v, p := range m.Predict(g) {
			if _, _, ok := detector.ModelRelayFault(p, m.Threshold, AdvisorMinConfidence); ok {
				s[v] = 1
			}
		}
		return s
	}}
}

// AdvisorRule is the advisor as deployed: the model's judgement or flow conservation's.
func AdvisorRule(m *detector.Model, threshold float64) Method {
	model, deficit := ModelRelayRule(m), DeficitRule(threshold)
	return Method{Name: "advisor (model or flow conservation)", Threshold: 0.5, Score: func(g *detector.Graph) []float64 {
		s, d := model.Score(g), deficit.Score(g)
		for v := range s {
			if d[v] >= threshold {
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

// DeficitBudget is the false-alarm budget the flow-conservation threshold is chosen under: the
// fraction of healthy node-intervals of the validation runs that the judgement, under the advisor's
// persistence, may flag. An advisory is soft (a cost, capped, expiring, never a link taken down), so
// the judgement is as sensitive as this budget allows rather than F1-optimal.
const DeficitBudget = 1e-3

// ChooseDeficitThreshold returns the lowest flow-conservation threshold, among 0.01 to 0.50 in
// steps of 0.01, under which the judgement with persistence k flags at most DeficitBudget of the
// healthy node-intervals of the validation graphs (runs of perRun graphs), and every candidate's
// figures, among them the relay-fault event F1: a relay fault is a blackhole or grey hole,
// detected when flagged in one of its intervals; a false alarm is a stretch of flags on a healthy
// node; nodes with other faults count neither way. It must be given validation graphs only.
func ChooseDeficitThreshold(val []detector.Graph, perRun, k int) (float64, []DeficitCandidate) {
	scores := make([][]float64, len(val))
	rule := DeficitRule(0)
	for t := range val {
		scores[t] = rule.Score(&val[t])
	}
	var cands []DeficitCandidate
	chosen := math.NaN()
	for i := 1; i <= 50; i++ {
		th := float64(i) / 100
		flags := persist(decideScores(val, scores, th), perRun, k)
		c := relayCounts(val, flags, perRun)
		c.Threshold = th
		cands = append(cands, c)
		if math.IsNaN(chosen) && float64(c.HealthyFlagged) <= DeficitBudget*float64(c.Healthy) {
			chosen = th
		}
	}
	if math.IsNaN(chosen) {
		chosen = cands[len(cands)-1].Threshold
	}
	return chosen, cands
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

// EvaluateAdvisor measures each method on the test graphs (runs of perRun graphs) with persistence
// k: faults of every kind flagged (for the relay kinds, detections; for the others, a relay named
// where the fault lies elsewhere or is no relay's), false alarms on healthy nodes, and the rate of
// healthy node-intervals flagged.
func EvaluateAdvisor(ds []Method, test []detector.Graph, perRun, k int) []AdvisorRow {
	runs := len(test) / perRun
	var out []AdvisorRow
	for _, d := range ds {
		flags := persist(decide(d, test), perRun, k)
		row := AdvisorRow{Method: d.Name}
		for _, r := range countEvents(d.Name, test, flags, perRun, runs, 1) {
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
