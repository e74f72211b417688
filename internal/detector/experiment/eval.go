package experiment

import (
	"fmt"
	"io"
	"text/tabwriter"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// rows flattens graphs into samples and labels.
func rows(gs []detector.Graph) ([][]float64, []int) {
	var xs [][]float64
	var ys []int
	for _, g := range gs {
		xs = append(xs, g.X...)
		ys = append(ys, g.Y...)
	}
	return xs, ys
}

func anomalous(ys []int) []bool {
	p := make([]bool, len(ys))
	for i, y := range ys {
		p[i] = y != 0
	}
	return p
}

// Method is a fitted detection method: scores per node of a graph, and its decision threshold.
type Method struct {
	Name      string
	Threshold float64
	Score     func(g *detector.Graph) []float64
	// Classify, if set, gives per-node class probabilities and the method's decision (0: normal):
	// the method then names the fault, and for fault k a node is flagged when its decision is k
	// (score: p(k)).
	Classify func(g *detector.Graph) (probs [][]float64, kinds []int)
}

// classifyAll is Classify over graphs, concatenated.
func (d Method) classifyAll(gs []detector.Graph) ([][]float64, []int) {
	var probs [][]float64
	var kinds []int
	for i := range gs {
		p, k := d.Classify(&gs[i])
		probs, kinds = append(probs, p...), append(kinds, k...)
	}
	return probs, kinds
}

// Baselines fits the robust z-score and the isolation forest on the training graphs' Inputs (the
// model's own first-layer inputs: node, neighbours and per-link features), without labels, and adds
// the flow-conservation rule and, on derived features, the ratio rule; every threshold is the
// F1-optimal one on the validation graphs.
func Baselines(train, val []detector.Graph, seed uint64) []Method {
	xs := inputRows(train)
	z := FitZScore(xs)
	f := FitIForest(xs, 100, 256, seed)
	ds := []Method{withThreshold(Method{Name: "robust z-score", Score: perInput(z.Score)}, val),
		withThreshold(Method{Name: "isolation forest", Score: perInput(f.Score)}, val)}
	if hasEdges(val) {
		ds = append(ds, FlowConservation(val))
	}
	if len(val[0].X[0]) == detector.NumRobust {
		ds = append(ds, RatioRule(val))
	}
	return ds
}

func hasEdges(gs []detector.Graph) bool {
	for _, links := range gs[0].E {
		if len(links) > 0 {
			return true
		}
	}
	return false
}

// FlowConservation is the flow-conservation rule (flowDeficit) with its validation threshold.
func FlowConservation(val []detector.Graph) Method {
	return withThreshold(Method{Name: "flow conservation", Score: flowDeficit}, val)
}

// Anomaly returns the model as an anomaly detector: score 1 − p(normal), the model's threshold.
func Anomaly(m detector.Predictor) Method {
	return Method{Name: "GraphSAGE anomaly", Threshold: m.DetectionThreshold(), Score: func(g *detector.Graph) []float64 { return detector.Scores(m, g) }}
}

// Classifier returns the model as a fault classifier: its class probabilities, and its own
// decision (detector.Predictor's Classify).
func Classifier(m detector.Predictor) Method {
	return Method{Name: "GraphSAGE class", Threshold: m.DetectionThreshold(), Score: func(g *detector.Graph) []float64 { return detector.Scores(m, g) },
		Classify: m.Classify}
}

// Row is one line of the evaluation table.
type Row struct {
	Method string
	Fault  sim.Kind // Normal means "any fault"
	Binary
}

// EvaluateAll scores the test graphs with every detector and reports, per fault type, detection of
// that fault against normal nodes (nodes with other faults are left out), at each detector's
// threshold; the "any" line counts every fault as positive.
func EvaluateAll(ds []Method, test []detector.Graph) []Row {
	_, ys := rows(test)
	var out []Row
	for _, d := range ds {
		var scores []float64
		for i := range test {
			scores = append(scores, d.Score(&test[i])...)
		}
		if d.Classify != nil {
			probs, kinds := d.classifyAll(test)
			out = append(out, classRows(d.Name, probs, kinds, ys)...)
			continue
		}
		out = append(out, Row{d.Name, sim.Normal, Evaluate(scores, anomalous(ys), d.Threshold)})
		for k := sim.Kind(1); k < sim.NumKinds; k++ {
			var s []float64
			var p []bool
			for i, y := range ys {
				if y == 0 || y == int(k) {
					s = append(s, scores[i])
					p = append(p, y == int(k))
				}
			}
			out = append(out, Row{d.Name, k, Evaluate(s, p, d.Threshold)})
		}
	}
	return out
}

// PrintTable writes the rows as an aligned table.
func PrintTable(w io.Writer, rs []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tfault\tpositives\tprecision\trecall\tF1\tROC-AUC\t")
	for _, r := range rs {
		name := r.Fault.String()
		if r.Fault == sim.Normal {
			name = "any"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t\n", r.Method, name, r.TP+r.FN, r.Precision, r.Recall, r.F1, r.AUC)
	}
	tw.Flush()
}

// Confusion returns the model's confusion matrix on gs, by its own decisions: [true][predicted].
func Confusion(m detector.Predictor, gs []detector.Graph) [][]int {
	k := m.Shape().K
	cm := make([][]int, k)
	for i := range cm {
		cm[i] = make([]int, k)
	}
	for gi := range gs {
		_, classes := m.Classify(&gs[gi])
		for v, c := range classes {
			cm[gs[gi].Y[v]][c]++
		}
	}
	return cm
}

func argmax(p []float64) int {
	best := 0
	for k := range p {
		if p[k] > p[best] {
			best = k
		}
	}
	return best
}

// classRows evaluates a classifier: "any" flags nodes whose decision is a fault (score
// 1 − p(normal)); fault k, on normal nodes and nodes with fault k, flags those whose decision is k
// (score p(k)).
func classRows(name string, probs [][]float64, kinds []int, ys []int) []Row {
	var out []Row
	for k := 0; k < len(probs[0]); k++ {
		var s []float64
		var pos, flag []bool
		for i, y := range ys {
			if k != 0 && y != 0 && y != k {
				continue
			}
			a := kinds[i]
			if k == 0 {
				s, pos, flag = append(s, 1-probs[i][0]), append(pos, y != 0), append(flag, a != 0)
			} else {
				s, pos, flag = append(s, probs[i][k]), append(pos, y == k), append(flag, a == k)
			}
		}
		// Evaluate with a decision already made: score ≥ 1 for flagged nodes, AUC from the scores.
		dec := make([]float64, len(s))
		for i := range dec {
			if flag[i] {
				dec[i] = 1
			}
		}
		b := Evaluate(dec, pos, 1)
		b.AUC = AUC(s, pos)
		out = append(out, Row{name, sim.Kind(k), b})
	}
	return out
}

// MacroF1 is the mean over fault classes of the model's per-class F1 (its own decisions) on gs: the
// validation criterion ai train uses to keep the best epoch (no class is favoured).
func MacroF1(m detector.Predictor, gs []detector.Graph) float64 {
	probs, kinds := Classifier(m).classifyAll(gs)
	_, ys := rows(gs)
	rs := classRows("", probs, kinds, ys)
	var s float64
	for _, r := range rs[1:] {
		s += r.F1
	}
	return s / float64(len(rs)-1)
}

// Summary returns "any" and blackhole F1 of the model as a classifier on gs, for training logs.
func Summary(m detector.Predictor, gs []detector.Graph) string {
	probs, kinds := Classifier(m).classifyAll(gs)
	_, ys := rows(gs)
	rs := classRows("", probs, kinds, ys)
	return fmt.Sprintf("F1 any %.3f, blackhole %.3f, greyhole %.3f", rs[0].F1, rs[sim.Blackhole].F1, rs[sim.GreyHole].F1)
}
