package experiment

import (
	"fmt"
	"math"
	"math/rand/v2"
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
	// Sim, if set, adjusts each run's simulator configuration (a shift scenario's settings).
	Sim func(c *sim.Config)
	// Randomise draws each run's traffic, size, fault counts, intensities, transient faults and
	// telemetry gaps from the training distribution (TrainDistribution) instead of the fixed settings.
	Randomise bool
	// NoBusy leaves Perturb.Busy out of the randomised runs: the training distribution before it
	// was added, so that a model trained without it can be compared on its own validation runs.
	NoBusy bool
	// Perturb damages the telemetry as a control plane would receive it.
	Perturb Perturb
	// Raw keeps the raw telemetry vectors (a model of the earlier feature set) instead of the
	// derived, volume-invariant ones (detector.Robust).
	Raw bool
	// SelfOnly drops the edge features (the per-link counters), leaving what each node reports
	// about itself: the ablation of docs/intelligence.md.
	SelfOnly bool
	// KernelFraction is the fraction of each run's nodes with eBPF kernel counters
	// (sim.Config.KernelFraction): their graphs' kernel blocks (detector.Graph.K) are present.
	KernelFraction float64
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

// TrainDistribution is what Randomise draws each run from (docs/intelligence.md, "Training
// distribution"); the shift suite's scenarios lie outside it.
var TrainDistribution = struct {
	Rate              [2]float64 // packets per flow per interval, log-uniform
	Nodes             [2]int
	GreyHole, LinkDeg [2]float64 // drop fraction, loss
	Overload          [2]float64 // offered load over remaining capacity
	Transient         float64
	Missing, Late     [2]float64 // per-interval fraction of nodes, uniform per run
	Noise             [2]float64 // relative counter noise
	Busy              [2]float64 // fraction of nodes whose processor something else also uses (Perturb.Busy)
}{Rate: [2]float64{8, 50}, Nodes: [2]int{60, 140}, GreyHole: [2]float64{0.1, 0.7}, LinkDeg: [2]float64{0.12, 0.4},
	Overload: [2]float64{1.25, 2.5}, Transient: 0.3, Missing: [2]float64{0, 0.08}, Late: [2]float64{0, 0.08}, Noise: [2]float64{0, 0.1}, Busy: [2]float64{0, 0.3}}

// Generate runs the simulator and returns the labelled graphs, every run the same number of
// graphs (Duration / interval), in seed order.
func Generate(dc DataConfig) ([]detector.Graph, error) {
	if len(dc.Topologies) == 0 {
		dc.Topologies = []string{sim.Geometric, sim.ScaleFree, sim.Grid}
	}
	var out []detector.Graph
	for i, seed := range dc.Seeds {
		cfg := sim.Config{Nodes: dc.Nodes, Topology: dc.Topologies[i%len(dc.Topologies)], Seed: seed,
			Duration: dc.Duration, Faults: dc.Faults, KernelFraction: dc.KernelFraction}
		pert := dc.Perturb
		if dc.Randomise {
			pert = randomise(&cfg, seed)
			if dc.NoBusy {
				pert.Busy = 0
			}
		}
		if dc.Sim != nil {
			dc.Sim(&cfg)
		}
		r, err := sim.Run(cfg)
		if err != nil {
			return nil, fmt.Errorf("seed %d: %w", seed, err)
		}
		gs := FromSim(r)
		pert.apply(gs, seed)
		for i := range gs {
			if !dc.Raw {
				k := gs[i].K
				gs[i] = detector.Robust(&gs[i])
				gs[i].K = k
			}
			if dc.SelfOnly {
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

// randomise draws one training run's settings from TrainDistribution.
func randomise(c *sim.Config, seed uint64) Perturb {
	rng := rand.New(rand.NewPCG(seed, 0x72616e64))
	d := TrainDistribution
	uni := func(r [2]float64) float64 { return r[0] + (r[1]-r[0])*rng.Float64() }
	c.Rate = int(math.Round(math.Exp(uni([2]float64{math.Log(d.Rate[0]), math.Log(d.Rate[1])}))))
	c.Nodes = d.Nodes[0] + rng.IntN(d.Nodes[1]-d.Nodes[0]+1)
	c.Intensity = map[sim.Kind][2]float64{sim.GreyHole: d.GreyHole, sim.LinkDegradation: d.LinkDeg, sim.Overload: d.Overload}
	c.Transient = d.Transient
	c.Simultaneous = rng.IntN(4) == 0
	var fs []sim.FaultSpec
	for _, f := range c.Faults {
		fs = append(fs, sim.FaultSpec{Kind: f.Kind, Count: max(1, f.Count/2+rng.IntN(f.Count+1))})
	}
	c.Faults = fs
	p := Perturb{Missing: uni(d.Missing), Late: uni(d.Late), Noise: uni(d.Noise)}
	p.Busy = uni(d.Busy) // drawn last, so that every earlier draw of a seed is what it was without it
	return p
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
	if iv.Kernel != nil {
		g.K = make([][detector.NumKernelInputs]float64, len(iv.X))
		for v, k := range iv.Kernel {
			g.K[v] = detector.KernelInputs(g.X[v], k)
		}
	}
	return g
}
