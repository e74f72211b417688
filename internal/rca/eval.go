package rca

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
	"x0tta6bl4/internal/sim"
	"x0tta6bl4/internal/telemetry"
)

// EvalConfig describes the incident evaluation: one incident per seed and incident kind, each its
// own simulator run, so incidents are independent.
type EvalConfig struct {
	Seeds []uint64
	Nodes int                // 60
	Kinds []sim.IncidentKind // default: every kind
	Model detector.Predictor // anomaly scores
	// Rankings default to every ranking (Rankings).
	Rankings []Ranking
	Progress func(done, total int)
}

// Tally counts an incident kind's incidents and each ranking's hits.
type Tally struct {
	Incidents int
	Top1      []int // per ranking
	Top3      []int
	// Rejected counts cascade attempts whose relay never saturated (sim.ErrNoCascade): the seed's
	// next attempt replaced them.
	Rejected int
}

// Result is the evaluation: per incident kind, per ranking.
type Result struct {
	Kinds    []sim.IncidentKind
	Rankings []string
	Tallies  map[sim.IncidentKind]*Tally
}

// cascadeAttempts is how many derived seeds a cascade incident tries before the seed is given up.
const cascadeAttempts = 4

// Hit reports whether order names every root within the first k + len(roots) − 1 places: top-1 of
// a single root is rank 1, of two roots both within the first 2. A root is named by any of its nodes
// (a link: either end); once it is named, its other nodes take no place (a link's second end is
// not a second answer).
func Hit(order []int, roots [][]int, k int) bool {
	limit := k + len(roots) - 1
	named := make([]bool, len(roots))
	left, places := len(roots), 0
	for _, v := range order {
		if places == limit || left == 0 {
			break
		}
		of := -1
		for i, root := range roots {
			if slices.Contains(root, v) {
				of = i
			}
		}
		if of >= 0 && named[of] {
			continue
		}
		places++
		if of >= 0 {
			named[of] = true
			left--
		}
	}
	return left == 0
}

// EvaluateIncidents runs the incidents and ranks each with every ranking. Single faults cycle
// through the fault kinds by seed; topologies cycle through geometric, scale-free and grid.
func EvaluateIncidents(cfg EvalConfig) (*Result, error) {
	if len(cfg.Kinds) == 0 {
		for k := range sim.NumIncidentKinds {
			cfg.Kinds = append(cfg.Kinds, k)
		}
	}
	if len(cfg.Rankings) == 0 {
		cfg.Rankings = Rankings()
	}
	res := &Result{Kinds: cfg.Kinds, Tallies: map[sim.IncidentKind]*Tally{}}
	for _, r := range cfg.Rankings {
		res.Rankings = append(res.Rankings, r.Name)
	}
	topos := []string{sim.Geometric, sim.ScaleFree, sim.Grid}
	total, done := len(cfg.Seeds)*len(cfg.Kinds), 0
	for _, k := range cfg.Kinds {
		t := &Tally{Top1: make([]int, len(cfg.Rankings)), Top3: make([]int, len(cfg.Rankings))}
		res.Tallies[k] = t
		for _, seed := range cfg.Seeds {
			ic := sim.IncidentConfig{Kind: k, Nodes: cfg.Nodes, Topology: topos[seed%uint64(len(topos))],
				Fault: sim.Kind(1 + seed%uint64(sim.NumKinds-1))}
			var inc *sim.Incident
			var err error
			for a := range uint64(cascadeAttempts) {
				ic.Seed = seed*100 + uint64(k)*10 + a
				inc, err = sim.RunIncident(ic)
				if !errors.Is(err, sim.ErrNoCascade) {
					break
				}
				t.Rejected++
			}
			done++
			if cfg.Progress != nil {
				cfg.Progress(done, total)
			}
			if errors.Is(err, sim.ErrNoCascade) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("%s incident, seed %d: %w", k, ic.Seed, err)
			}
			w := WindowOf(inc.Result, cfg.Model, inc.Start)
			t.Incidents++
			for i, r := range cfg.Rankings {
				order := r.Rank(w)
				if Hit(order, inc.Roots, 1) {
					t.Top1[i]++
				}
				if Hit(order, inc.Roots, 3) {
					t.Top3[i]++
				}
			}
		}
	}
	return res, nil
}

// WindowOf builds a ranking window from a run: the raw telemetry (node vectors and link states),
// and the model's scores on the derived inputs of every interval.
func WindowOf(r *sim.Result, m detector.Predictor, open int) *Window {
	w := &Window{Adj: r.Adj, Threshold: m.DetectionThreshold(), Open: open}
	for _, g := range experiment.FromSim(r) {
		rg := detector.Robust(&g)
		w.Scores = append(w.Scores, detector.Scores(m, &rg))
		w.Metrics = append(w.Metrics, g.X)
		up := make([][]bool, len(g.E))
		for v, links := range g.E {
			up[v] = make([]bool, len(links))
			for i, l := range links {
				up[v][i] = l[telemetry.EUp] == 1
			}
		}
		w.LinkUp = append(w.LinkUp, up)
	}
	return w
}

// Best returns the ranking with the highest top-1 averaged over the incident kinds (ties: the
// earlier in Rankings).
func (r *Result) Best() string {
	best, bestV := "", -1.0
	for i, name := range r.Rankings {
		var sum float64
		for _, k := range r.Kinds {
			t := r.Tallies[k]
			sum += frac(t.Top1[i], t.Incidents)
		}
		if sum > bestV+1e-12 {
			best, bestV = name, sum
		}
	}
	return best
}

// Print writes the table: per incident kind and ranking, top-1 and top-3 with Wilson 95 % intervals.
func (r *Result) Print(w io.Writer, title string) {
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "incident\tincidents\tranking\ttop-1\t95 % CI\ttop-3\t95 % CI\t")
	for _, k := range r.Kinds {
		t := r.Tallies[k]
		for i, name := range r.Rankings {
			l1, h1 := experiment.Wilson(t.Top1[i], t.Incidents)
			l3, h3 := experiment.Wilson(t.Top3[i], t.Incidents)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t[%.2f, %.2f]\t%.3f\t[%.2f, %.2f]\t\n", k, t.Incidents, name,
				frac(t.Top1[i], t.Incidents), l1, h1, frac(t.Top3[i], t.Incidents), l3, h3)
		}
	}
	tw.Flush()
	for _, k := range r.Kinds {
		if t := r.Tallies[k]; t.Rejected > 0 {
			fmt.Fprintf(w, "%s: %d attempts rejected (the relay never saturated) and replaced by the seed's next attempt\n", k, t.Rejected)
		}
	}
}

func frac(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
