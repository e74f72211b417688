package experiment

import (
	"math"
	"math/rand/v2"
	"slices"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/telemetry"
)

// Perturb damages one run's raw telemetry the way a control plane receives it from a real mesh.
type Perturb struct {
	// Missing is the fraction of nodes whose report is missing: drawn again every interval, or a
	// fixed set for the whole run when Sticky.
	Missing float64
	Sticky  bool
	// Late is the fraction of nodes (a fixed set per run) whose report arrives one interval late, so
	// the control plane holds their previous interval's: late reports, or a reporter's skewed clock.
	Late float64
	// Noise is the relative standard deviation of multiplicative noise on every counter and RTT,
	// and a fifth of it additive on probe loss. It leaves the kernel blocks alone: their counters
	// carry the simulator's own noise (internal/sim, kernel.go), and their ratios were taken on the
	// node, from exact counts.
	Noise float64
	// Busy is the fraction of nodes (a fixed set per run) whose processor something other than the
	// mesh also uses: each reads a CPU of c + b·(1 − c) for its own b drawn from 0.2–0.8, with
	// no queueing, drops or delay to go with it. It is augmentation for training only: a busy
	// processor alone is not an overload, which is the saturation that queues and drops.
	Busy float64
}

// apply perturbs a run's raw graphs in place (deterministic for seed).
func (p Perturb) apply(gs []detector.Graph, seed uint64) {
	if p == (Perturb{}) || len(gs) == 0 {
		return
	}
	rng := rand.New(rand.NewPCG(seed, 0x70657274))
	n := len(gs[0].X)
	pick := func(frac float64) []bool {
		out := make([]bool, n)
		for _, v := range rng.Perm(n)[:int(math.Round(frac*float64(n)))] {
			out[v] = true
		}
		return out
	}
	if p.Late > 0 {
		late := pick(p.Late)
		for i := len(gs) - 1; i > 0; i-- {
			for v, l := range late {
				if l {
					gs[i].X[v] = slices.Clone(gs[i-1].X[v])
					gs[i].E[v] = cloneRows(gs[i-1].E[v])
					if gs[i].K != nil {
						gs[i].K[v] = gs[i-1].K[v]
					}
				}
			}
		}
	}
	if p.Noise > 0 {
		mul := func(a float64) float64 { return max(0, a*(1+p.Noise*rng.NormFloat64())) }
		logMul := func(a float64) float64 { return math.Log1p(mul(math.Expm1(a))) }
		for i := range gs {
			for v, x := range gs[i].X {
				if x[telemetry.FMissing] != 0 {
					continue
				}
				for _, j := range []int{telemetry.FSent, telemetry.FTransitIn, telemetry.FForwarded, telemetry.FDropped} {
					x[j] = logMul(x[j])
				}
				x[telemetry.FRTT] = mul(x[telemetry.FRTT])
				for _, e := range gs[i].E[v] {
					for _, j := range []int{telemetry.ETxTransit, telemetry.ERxTransit, telemetry.ETxTransitW, telemetry.ERxTransitW, telemetry.EProbeRTT} {
						e[j] = mul(e[j])
					}
					e[telemetry.EProbeLoss] = max(0, min(1, e[telemetry.EProbeLoss]+p.Noise/5*rng.NormFloat64()))
				}
			}
		}
	}
	if p.Busy > 0 {
		busy := rand.New(rand.NewPCG(seed, 0x62757379))
		for _, v := range busy.Perm(n)[:int(math.Round(p.Busy*float64(n)))] {
			b := 0.2 + 0.6*busy.Float64()
			for i := range gs {
				if x := gs[i].X[v]; x[telemetry.FMissing] == 0 {
					x[telemetry.FCPU] += b * (1 - max(0, min(1, x[telemetry.FCPU])))
				}
			}
		}
	}
	if p.Missing > 0 {
		var sticky []bool
		if p.Sticky {
			sticky = pick(p.Missing)
		}
		for i := range gs {
			gone := sticky
			if gone == nil {
				gone = pick(p.Missing)
			}
			for v, g := range gone {
				if g {
					gs[i].X[v] = make([]float64, len(gs[i].X[v]))
					gs[i].X[v][telemetry.FMissing] = 1
					if gs[i].K != nil {
						gs[i].K[v] = [detector.NumKernelInputs]float64{}
					}
					gs[i].E[v] = make([][]float64, len(gs[i].E[v]))
					for k := range gs[i].E[v] {
						gs[i].E[v][k] = make([]float64, telemetry.NumEdge)
					}
				}
			}
		}
	}
}

func cloneRows(rows [][]float64) [][]float64 {
	out := make([][]float64, len(rows))
	for i, r := range rows {
		out[i] = slices.Clone(r)
	}
	return out
}
