package experiment

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"text/tabwriter"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// EventRow is one method's detection of independent faults of one kind (sim.Normal: every kind):
// a fault is one victim's uninterrupted labelled stretch (a degraded link's two ends are one
// fault), detected when the method flags it for that kind in at least one of its intervals; a false
// alarm is an uninterrupted stretch of flags on a normal node.
type EventRow struct {
	Method                   string
	Fault                    sim.Kind
	Faults, Detected, Alarms int
	Precision, Recall, F1    float64
	RecallLo, RecallHi       float64 // Wilson 95 % interval
	F1Lo, F1Hi               float64 // bootstrap 95 % interval over runs
	MedianDelay              float64 // intervals from a fault's start to its first flag
	IntervalF1               float64 // per node-interval F1 of the same decisions
	Runs                     int
	perRun                   [][3]int // per run: detected, missed, false alarms
}

type episode struct {
	run, t0, t1 int
	kind        int
	nodes       []int
}

// episodes finds the faults of one run's graphs.
func episodes(run int, gs []detector.Graph) []episode {
	var out []episode
	if len(gs) == 0 {
		return nil
	}
	for v := range gs[0].Y {
		for t := 0; t < len(gs); {
			k := gs[t].Y[v]
			if k == 0 {
				t++
				continue
			}
			e := t
			for e < len(gs) && gs[e].Y[v] == k {
				e++
			}
			ep := episode{run: run, t0: t, t1: e - 1, kind: k, nodes: []int{v}}
			merged := false
			if k == int(sim.LinkDegradation) {
				for i := range out {
					o := &out[i]
					if o.kind == k && o.t0 == t && len(o.nodes) == 1 && slices.Contains(gs[t].Adj[v], o.nodes[0]) {
						o.nodes = append(o.nodes, v)
						o.t1 = max(o.t1, e-1)
						merged = true
						break
					}
				}
			}
			if !merged {
				out = append(out, ep)
			}
			t = e
		}
	}
	return out
}

// EvaluateEvents scores the test graphs (runs of perRun graphs each) with every method and counts
// independent faults detected and false alarms, per fault kind, with confidence intervals; every
// interval's own decision counts (no persistence).
func EvaluateEvents(ds []Method, test []detector.Graph, perRun int, seed uint64) []EventRow {
	return EvaluatePersistent(ds, test, perRun, 1, seed)
}

// EvaluatePersistent is EvaluateEvents under the persistence rule: a node is flagged for a kind
// only at the k-th consecutive interval of its run in which the method's own decision flags it for
// that kind (k = 1: every decision counts). The rule is the same for every method.
func EvaluatePersistent(ds []Method, test []detector.Graph, perRun, k int, seed uint64) []EventRow {
	runs := len(test) / perRun
	var out []EventRow
	for _, d := range ds {
		flags := persist(decide(d, test), perRun, k)
		out = append(out, countEvents(d.Name, test, flags, perRun, runs, seed)...)
	}
	return out
}

// decide returns a method's own per-interval decisions: flags[t][v][k] is true when node v of
// graph t is flagged for kind k (0: any fault).
func decide(d Method, test []detector.Graph) [][][]bool {
	flags := make([][][]bool, len(test))
	for t := range test {
		g := &test[t]
		var kinds []int
		if d.Classify != nil {
			_, kinds = d.Classify(g)
		}
		scores := d.Score(g)
		flags[t] = make([][]bool, len(g.X))
		for v := range g.X {
			f := make([]bool, sim.NumKinds)
			if kinds != nil {
				a := kinds[v]
				f[0], f[a] = a != 0, a != 0
			} else if scores[v] >= d.Threshold {
				for k := range f {
					f[k] = true
				}
			}
			flags[t][v] = f
		}
	}
	return flags
}

// persist keeps a flag only where the same node was flagged for the same kind in the k−1
// intervals before it in the same run (runs are perRun consecutive graphs).
func persist(flags [][][]bool, perRun, k int) [][][]bool {
	if k <= 1 {
		return flags
	}
	out := make([][][]bool, len(flags))
	for t := range flags {
		out[t] = make([][]bool, len(flags[t]))
		start := t - t%perRun
		for v := range flags[t] {
			f := make([]bool, len(flags[t][v]))
			for kind := range f {
				on := t-start >= k-1
				for u := t; on && u > t-k; u-- {
					on = flags[u][v][kind]
				}
				f[kind] = on
			}
			out[t][v] = f
		}
	}
	return out
}

// countEvents turns decisions into event rows per kind, each with the per-interval F1 of the same
// decisions (that kind against normal nodes; "any": every fault against normal nodes).
func countEvents(name string, test []detector.Graph, flags [][][]bool, perRun, runs int, seed uint64) []EventRow {
	var out []EventRow
	for k := range int(sim.NumKinds) {
		row := EventRow{Method: name, Fault: sim.Kind(k), Runs: runs, perRun: make([][3]int, runs)}
		row.IntervalF1 = intervalF1(test, flags, k)
		var delays []float64
		for r := range runs {
			gs := test[r*perRun : (r+1)*perRun]
			fl := flags[r*perRun : (r+1)*perRun]
			for _, ep := range episodes(r, gs) {
				if k != 0 && ep.kind != k {
					continue
				}
				row.Faults++
				found := -1
				for t := ep.t0; t <= ep.t1 && found < 0; t++ {
					for _, v := range ep.nodes {
						if fl[t][v][k] {
							found = t
						}
					}
				}
				if found >= 0 {
					row.Detected++
					row.perRun[r][0]++
					delays = append(delays, float64(found-ep.t0))
				} else {
					row.perRun[r][1]++
				}
			}
			for v := range gs[0].Y {
				in := false
				for t := range gs {
					on := gs[t].Y[v] == 0 && fl[t][v][k]
					if on && !in {
						row.Alarms++
						row.perRun[r][2]++
					}
					in = on
				}
			}
		}
		row.Precision, row.Recall, row.F1 = eventF1(row.Detected, row.Faults-row.Detected, row.Alarms)
		row.RecallLo, row.RecallHi = Wilson(row.Detected, row.Faults)
		row.F1Lo, row.F1Hi = bootstrapF1(row.perRun, seed)
		row.MedianDelay = math.NaN()
		if len(delays) > 0 {
			row.MedianDelay = median(delays)
		}
		out = append(out, row)
	}
	return out
}

// intervalF1 is the per node-interval F1 of the flags for kind k (0: any fault) against normal
// nodes; nodes with another fault are left out, as in EvaluateAll.
func intervalF1(test []detector.Graph, flags [][][]bool, k int) float64 {
	var tp, fp, fn int
	for t := range test {
		for v, y := range test[t].Y {
			if k != 0 && y != 0 && y != k {
				continue
			}
			switch f := flags[t][v][k]; {
			case f && y != 0:
				tp++
			case f:
				fp++
			case y != 0:
				fn++
			}
		}
	}
	_, _, f1 := eventF1(tp, fn, fp)
	return f1
}

// ChoosePersistence returns the k in 1..maxK under which the methods' mean any-fault event F1 on
// the validation graphs (runs of perRun graphs) is highest, the smallest k on a tie, and that mean
// for every k. It must be given validation graphs only: k is then fixed before any test run.
func ChoosePersistence(ds []Method, val []detector.Graph, perRun, maxK int) (int, []float64) {
	runs := len(val) / perRun
	flags := make([][][][]bool, len(ds))
	for i, d := range ds {
		flags[i] = decide(d, val)
	}
	best, means := 1, make([]float64, maxK)
	for k := 1; k <= maxK; k++ {
		for i, d := range ds {
			rows := countEvents(d.Name, val, persist(flags[i], perRun, k), perRun, runs, 1)
			means[k-1] += rows[0].F1 / float64(len(ds))
		}
		if means[k-1] > means[best-1] {
			best = k
		}
	}
	return best, means
}

// ChooseJoint is ChoosePersistence with each binary method's threshold chosen together with k: for
// every k in 1..maxK, each method without classes gets the threshold (among quantiles of its
// validation scores, and its own) under which its any-fault event F1 on the validation graphs is
// highest; k is the one with the highest mean over the methods, the smallest on a tie. It returns
// that k, the means, and the methods with the thresholds chosen for it. Like ChoosePersistence it
// must be given validation graphs only.
func ChooseJoint(ds []Method, val []detector.Graph, perRun, maxK int) (int, []float64, []Method) {
	runs := len(val) / perRun
	type cand struct {
		threshold float64
		flags     [][][]bool
	}
	cands := make([][]cand, len(ds))
	for i, d := range ds {
		if d.Classify != nil {
			cands[i] = []cand{{d.Threshold, decide(d, val)}}
			continue
		}
		scores := make([][]float64, len(val))
		var all []float64
		for t := range val {
			scores[t] = d.Score(&val[t])
			all = append(all, scores[t]...)
		}
		slices.Sort(all)
		ts := []float64{d.Threshold}
		// Quantiles from the median to the top 0.01 %, denser towards the top, where faults are.
		for j := range 40 {
			q := 1 - 0.5*math.Pow(2e-4, float64(j)/39)
			ts = append(ts, all[min(len(all)-1, int(q*float64(len(all))))])
		}
		slices.Sort(ts)
		ts = slices.Compact(ts)
		for _, th := range ts {
			cands[i] = append(cands[i], cand{th, decideScores(val, scores, th)})
		}
	}
	best, means := 1, make([]float64, maxK)
	picks := make([][]float64, maxK)
	for k := 1; k <= maxK; k++ {
		picks[k-1] = make([]float64, len(ds))
		for i, d := range ds {
			bestF := -1.0
			for _, c := range cands[i] {
				if f := countEvents(d.Name, val, persist(c.flags, perRun, k), perRun, runs, 1)[0].F1; f > bestF {
					bestF, picks[k-1][i] = f, c.threshold
				}
			}
			means[k-1] += bestF / float64(len(ds))
		}
		if means[k-1] > means[best-1] {
			best = k
		}
	}
	out := slices.Clone(ds)
	for i := range out {
		out[i].Threshold = picks[best-1][i]
	}
	return best, means, out
}

// decideScores is decide for a binary method whose scores are already computed.
func decideScores(test []detector.Graph, scores [][]float64, threshold float64) [][][]bool {
	flags := make([][][]bool, len(test))
	for t := range test {
		flags[t] = make([][]bool, len(test[t].X))
		for v := range test[t].X {
			f := make([]bool, sim.NumKinds)
			if scores[t][v] >= threshold {
				for k := range f {
					f[k] = true
				}
			}
			flags[t][v] = f
		}
	}
	return flags
}

// PrintPersistence writes each method's any-fault event and per-interval F1 without persistence
// (before) and under the persistence rule with k intervals (after).
func PrintPersistence(w io.Writer, before, after []EventRow, k int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "method	event F1 k=1	event F1 k=%d	interval F1 k=1	interval F1 k=%d	alarms k=1	alarms k=%d	median delay s k=%d	\n", k, k, k, k)
	for i, b := range before {
		if b.Fault != sim.Normal {
			continue
		}
		a := after[i]
		fmt.Fprintf(tw, "%s	%.3f [%.2f–%.2f]	%.3f [%.2f–%.2f]	%.3f	%.3f	%d	%d	%.0f	\n", b.Method, b.F1, b.F1Lo, b.F1Hi, a.F1, a.F1Lo, a.F1Hi,
			b.IntervalF1, a.IntervalF1, b.Alarms, a.Alarms, a.MedianDelay)
	}
	tw.Flush()
}

func eventF1(tp, fn, fp int) (p, r, f float64) {
	if tp+fp > 0 {
		p = float64(tp) / float64(tp+fp)
	}
	if tp+fn > 0 {
		r = float64(tp) / float64(tp+fn)
	}
	if p+r > 0 {
		f = 2 * p * r / (p + r)
	}
	return p, r, f
}

// Wilson is the Wilson score 95 % interval of a proportion k/n.
func Wilson(k, n int) (lo, hi float64) {
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	const z = 1.959964
	p, nf := float64(k)/float64(n), float64(n)
	den := 1 + z*z/nf
	c := (p + z*z/(2*nf)) / den
	h := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return max(0, c-h), min(1, c+h)
}

// bootstrapF1 is the 95 % percentile interval of the event F1 over 1000 resamples of the runs.
func bootstrapF1(perRun [][3]int, seed uint64) (lo, hi float64) {
	if len(perRun) == 0 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(seed, 0x626f6f74))
	const b = 1000
	f1s := make([]float64, b)
	for i := range f1s {
		var tp, fn, fp int
		for range perRun {
			c := perRun[rng.IntN(len(perRun))]
			tp, fn, fp = tp+c[0], fn+c[1], fp+c[2]
		}
		_, _, f1s[i] = eventF1(tp, fn, fp)
	}
	slices.Sort(f1s)
	return f1s[b*25/1000], f1s[b*975/1000-1]
}

// PrintEvents writes the event rows as an aligned table.
func PrintEvents(w io.Writer, rs []EventRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tfault\tfaults\tdetected\trecall [95% CI]\tfalse alarms\tprecision\tF1 [95% CI]\tmedian delay s\t")
	for _, r := range rs {
		name := r.Fault.String()
		if r.Fault == sim.Normal {
			name = "any"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f [%.2f–%.2f]\t%d\t%.3f\t%.3f [%.2f–%.2f]\t%.0f\t\n", r.Method, name, r.Faults, r.Detected,
			r.Recall, r.RecallLo, r.RecallHi, r.Alarms, r.Precision, r.F1, r.F1Lo, r.F1Hi, r.MedianDelay)
	}
	tw.Flush()
}
