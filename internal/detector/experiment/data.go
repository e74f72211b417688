package experiment

import (
	"fmt"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// DataConfig describes simulator runs that make a data set: one run per seed, topologies in turn.
type DataConfig struct {
	Seeds      []uint64
	Nodes      int
	Duration   time.Duration
	Faults     []sim.FaultSpec
	Topologies []string
	// SelfOnly drops the edge features (the per-link counters), leaving what each node reports
	// about itself: the ablation of docs/intelligence.md.
	SelfOnly bool
	// Progress, if set, is called after each run.
	Progress func(done, total int)
}

// DefaultFaults is the fault mix of the training and evaluation runs.
var DefaultFaults = []sim.FaultSpec{{Kind: sim.Blackhole, Count: 2}, {Kind: sim.GreyHole, Count: 2}, {Kind: sim.Crash, Count: 1}, {Kind: sim.Overload, Count: 1},
	{Kind: sim.LinkDegradation, Count: 1}, {Kind: sim.Flapping, Count: 1}}

// TrainFaults is the fault mix of the training runs (ai train --train-faults): twice the relay
// faults of DefaultFaults, so that 24 training meshes hold 96 blackhole and 96 grey-hole victims
// rather than 48 — with fewer, the model learnt the victims rather than the fault.
const TrainFaults = "blackhole:4,greyhole:4,crash:2,overload:2,linkdeg:2,flapping:2"

// Generate runs the simulator and returns the labelled graphs.
func Generate(dc DataConfig) ([]detector.Graph, error) {
	if len(dc.Topologies) == 0 {
		dc.Topologies = []string{sim.Geometric, sim.ScaleFree, sim.Grid}
	}
	var out []detector.Graph
	for i, seed := range dc.Seeds {
		r, err := sim.Run(sim.Config{Nodes: dc.Nodes, Topology: dc.Topologies[i%len(dc.Topologies)], Seed: seed,
			Duration: dc.Duration, Faults: dc.Faults})
		if err != nil {
			return nil, fmt.Errorf("seed %d: %w", seed, err)
		}
		gs := FromSim(r)
		if dc.SelfOnly {
			for i := range gs {
				gs[i].E = nil
			}
		}
		out = append(out, gs...)
		if dc.Progress != nil {
			dc.Progress(i+1, len(dc.Seeds))
		}
	}
	return out, nil
}

// FromSim turns a simulator run into one labelled graph per telemetry interval, over the known
// topology (the configured links, whether up or not), with node and edge features.
func FromSim(r *sim.Result) []detector.Graph {
	gs := make([]detector.Graph, 0, len(r.Intervals))
	for i := range r.Intervals {
		g := FromInterval(r.Adj, &r.Intervals[i])
		g.Y = make([]int, len(g.X))
		for v, k := range r.Intervals[i].Labels {
			g.Y[v] = int(k)
		}
		gs = append(gs, g)
	}
	return gs
}

// FromInterval turns one interval's telemetry into an unlabelled graph.
func FromInterval(adj [][]int, iv *sim.Interval) detector.Graph {
	g := detector.Graph{Adj: adj, X: make([][]float64, len(iv.X)), E: make([][][]float64, len(iv.X))}
	for v, x := range iv.X {
		row := make([]float64, len(x))
		for j, f := range x {
			row[j] = float64(f)
		}
		g.X[v] = row
		links := make([][]float64, len(iv.E[v]))
		for i, e := range iv.E[v] {
			l := make([]float64, len(e))
			for j, f := range e {
				l[j] = float64(f)
			}
			links[i] = l
		}
		g.E[v] = links
	}
	return g
}
