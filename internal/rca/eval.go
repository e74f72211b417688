package rca

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
	"x0tta6bl4/internal/sim"
)

// EvalConfig describes single-fault incidents in the simulator.
type EvalConfig struct {
	Seeds []uint64
	Nodes int
	Kinds []sim.Kind      // default: every fault kind
	Model *detector.Model // anomaly scores
	// Others are further scorers (the unsupervised baselines), ranked the same two ways; their
	// scores s are mapped to s/(s+threshold) so that the threshold maps to 0.5.
	Others   []experiment.Method
	Progress func(done, total int)
}

// Counts are hits among incidents.
type Counts struct{ Incidents, Top1, Top3 int }

// Result holds top-1/top-3 per fault kind for each scorer, ranked by personalised PageRank over
// its scores (PPR) and by the score alone (Score).
type Result struct {
	Kinds   []sim.Kind
	Scorers []string
	PPR     []map[sim.Kind]*Counts
	Score   []map[sim.Kind]*Counts
}

// EvaluateSim runs, for each seed and fault kind, a 12 s simulation with that one fault starting at
// 3 s, and at every interval from 2 s after the fault to the end forms an incident from the nodes
// the model flags (at least the 5 highest-scoring). A hit is the faulty node (either end of a
// degraded link) at rank 1 (top-1) or within the first 3 (top-3).
func EvaluateSim(cfg EvalConfig) (*Result, error) {
	if len(cfg.Kinds) == 0 {
		for k := sim.Kind(1); k < sim.NumKinds; k++ {
			cfg.Kinds = append(cfg.Kinds, k)
		}
	}
	ds := append([]experiment.Method{experiment.Anomaly(cfg.Model)}, cfg.Others...)
	res := &Result{Kinds: cfg.Kinds}
	for _, d := range ds {
		res.Scorers = append(res.Scorers, d.Name)
		res.PPR = append(res.PPR, map[sim.Kind]*Counts{})
		res.Score = append(res.Score, map[sim.Kind]*Counts{})
	}
	total := len(cfg.Seeds) * len(cfg.Kinds)
	done := 0
	topos := []string{sim.Geometric, sim.ScaleFree, sim.Grid}
	for si, seed := range cfg.Seeds {
		for _, k := range cfg.Kinds {
			r, err := sim.Run(sim.Config{Nodes: cfg.Nodes, Topology: topos[si%len(topos)], Seed: seed*1000 + uint64(k),
				Duration: 12 * time.Second, FaultFrom: 0.25, FaultTo: 0.26, Faults: []sim.FaultSpec{{Kind: k, Count: 1}}})
			if err != nil {
				return nil, err
			}
			f := r.Faults[0]
			gs := experiment.FromSim(r)
			for i := range gs {
				gs[i] = detector.Robust(&gs[i])
			}
			from := int(f.Start/r.Config.Interval) + 2
			for t := from; t < len(gs); t++ {
				for di, d := range ds {
					scores := d.Score(&gs[t])
					th := d.Threshold
					if di > 0 {
						for i, s := range scores {
							scores[i] = s / (s + th)
						}
						th = 0.5
					}
					byScore := ByScore(scores)
					anom := make([]bool, len(scores))
					for i, v := range byScore {
						anom[v] = i < 5 || scores[v] >= th
					}
					ppr, _ := Rank(r.Adj, scores, anom, Config{})
					tally(res.PPR[di], k, ppr, f)
					tally(res.Score[di], k, byScore, f)
				}
			}
			done++
			if cfg.Progress != nil {
				cfg.Progress(done, total)
			}
		}
	}
	return res, nil
}

func tally(m map[sim.Kind]*Counts, k sim.Kind, order []int, f sim.Fault) {
	c := m[k]
	if c == nil {
		c = &Counts{}
		m[k] = c
	}
	c.Incidents++
	for i, v := range order[:3] {
		if v == f.Node || v == f.Peer {
			if i == 0 {
				c.Top1++
			}
			c.Top3++
			break
		}
	}
}

// Print writes the table.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintln(w, "\nroot-cause ranking on single-fault incidents (top-1 / top-3)")
	for i, name := range r.Scorers {
		fmt.Fprintf(w, "scores from %s:\n", name)
		printOne(w, r.Kinds, r.PPR[i], r.Score[i])
	}
}

func printOne(w io.Writer, kinds []sim.Kind, pm, sm map[sim.Kind]*Counts) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\tincidents\tPPR top-1\tPPR top-3\tscore top-1\tscore top-3\t")
	var tp, ts Counts
	for _, k := range kinds {
		p, s := pm[k], sm[k]
		if p == nil {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t\n", k, p.Incidents, frac(p.Top1, p.Incidents), frac(p.Top3, p.Incidents),
			frac(s.Top1, s.Incidents), frac(s.Top3, s.Incidents))
		tp.Incidents, tp.Top1, tp.Top3 = tp.Incidents+p.Incidents, tp.Top1+p.Top1, tp.Top3+p.Top3
		ts.Top1, ts.Top3 = ts.Top1+s.Top1, ts.Top3+s.Top3
	}
	fmt.Fprintf(tw, "all\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t\n", tp.Incidents, frac(tp.Top1, tp.Incidents), frac(tp.Top3, tp.Incidents),
		frac(ts.Top1, tp.Incidents), frac(ts.Top3, tp.Incidents))
	tw.Flush()
}

func frac(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
