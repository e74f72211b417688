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
// independent faults detected and false alarms, per fault kind, with confidence intervals.
func EvaluateEvents(ds []Method, test []detector.Graph, perRun int, seed uint64) []EventRow {
	runs := len(test) / perRun
	var out []EventRow
	for _, d := range ds {
		// flags[t][v][k]: flagged for kind k (0: any fault) at graph t.
		flags := make([][][]bool, len(test))
		for t := range test {
			g := &test[t]
			var probs [][]float64
			if d.Classes != nil {
				probs = d.Classes(g)
			}
			scores := d.Score(g)
			flags[t] = make([][]bool, len(g.X))
			for v := range g.X {
				f := make([]bool, sim.NumKinds)
				if probs != nil {
					a := argmax(probs[v])
					f[0], f[a] = a != 0, a != 0
				} else if scores[v] >= d.Threshold {
					for k := range f {
						f[k] = true
					}
				}
				flags[t][v] = f
			}
		}
		for k := range int(sim.NumKinds) {
			row := EventRow{Method: d.Name, Fault: sim.Kind(k), Runs: runs, perRun: make([][3]int, runs)}
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
	}
	return out
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
