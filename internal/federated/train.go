package federated

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/identity"
)

// TrainConfig configures a federated training run. Zero values take the defaults shown.
type TrainConfig struct {
	Hidden, Classes int
	Edges           int // edge features per directed link (0: none)
	Rounds          int // 10
	LocalEpochs     int // 2
	// LocalGraphs, if set, is how many of its graphs (a seeded random subset, new each round) a
	// client trains on per round: fewer local steps, less client drift.
	LocalGraphs int
	LR          float64 // 0.005
	// Cosine decays LR over the rounds by half a cosine period (as ai train decays it over epochs).
	Cosine bool
	Rule   Rule    // TrimmedMean
	Trim   float64 // 0.2
	// Poisoned clients (the first ones) send −10 × their honest update: a model-poisoning attack.
	Poisoned int
	// NoClip skips norm clipping (to show what it protects against).
	NoClip bool
	// Krum, if > 0, is the number f of Byzantine clients Multi-Krum (Blanchard et al. 2017) assumes:
	// after clipping, only the n − f updates with the lowest Krum scores (sum of squared distances to
	// their n − f − 2 nearest updates) go on to the rule.
	Krum int
	// ServerLR scales the aggregated update before it is applied (1); Momentum is the server
	// momentum β of FedAvgM (Hsu et al. 2019): v = β·v + aggregate, global += ServerLR·v (0: none).
	ServerLR, Momentum float64
	// Attack is what poisoned clients send: AttackScale (default) or AttackNoise.
	Attack Attack
	// RobustStats aggregates the normalisation statistics and class frequencies with the rule,
	// from each client's own means (otherwise: sample-weighted sums, as FedAvg).
	RobustStats bool
	// PoisonStats: poisoned clients also lie about their statistics (×100 means, ×10⁴ squares).
	PoisonStats bool
	Seed        uint64
	Progress    func(round, rounds int)
	// Validate, if set, is called with the global model after each round (e.g. to keep the round
	// with the best validation score, as central training keeps its best epoch).
	Validate func(round int, m *detector.Model)
}

// Attack is a model-poisoning attack.
type Attack string

// Attacks.
const (
	AttackScale Attack = "scale" // −10 × the honest update
	AttackNoise Attack = "noise" // Gaussian noise with 10 × the honest update's norm
	// AttackALIE is "a little is enough" (Baruch, Baruch, Goldberg 2019): every poisoned client
	// sends the honest updates' coordinate-wise mean minus z standard deviations, z the largest
	// that keeps it inside the majority (z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f). Omniscient: the
	// attackers see the honest updates of the round.
	AttackALIE Attack = "alie"
	// AttackIPM is inner-product manipulation (Xie, Koyejo, Gupta 2020): every poisoned client
	// sends −ε times the honest updates' mean, ε = 0.5, so the aggregate's inner product with the
	// true direction shrinks or turns negative. Omniscient too.
	AttackIPM Attack = "ipm"
)

// Report describes a run.
type Report struct {
	Clients, Poisoned, Rounds int
	Verified                  int // updates whose signature was checked and accepted
	ClipNorms                 []float64
}

// Train runs federated training: one client per element of clients (its own graphs, which never
// leave it). Normalisation statistics are aggregated once (sample-weighted means of the clients'
// first and second moments, or with the rule when RobustStats). Each round every client trains
// LocalEpochs (over LocalGraphs of its graphs) from the global model and sends its signed parameter
// change; the aggregator verifies each one, clips it to the round's median update norm, keeps the
// Multi-Krum selection (if Krum > 0), and applies the rule (and server momentum). Validate sees the
// global model after every round.
func Train(clients [][]detector.Graph, f int, cfg TrainConfig) (*detector.Model, *Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	roundDefaults(&cfg.LocalEpochs, &cfg.LR, &cfg.Rule, &cfg.Trim)
	if cfg.ServerLR <= 0 {
		cfg.ServerLR = 1
	}
	if cfg.Attack == "" {
		cfg.Attack = AttackScale
	}
	if !slices.Contains([]Attack{AttackScale, AttackNoise, AttackALIE, AttackIPM}, cfg.Attack) {
		return nil, nil, fmt.Errorf("federated: unknown attack %q", cfg.Attack)
	}
	if len(clients) == 0 {
		return nil, nil, errors.New("federated: no clients")
	}
	rep := &Report{Clients: len(clients), Poisoned: cfg.Poisoned, Rounds: cfg.Rounds}
	keys := make([]*identity.SigningKey, len(clients))
	known := map[identity.KeyID]*identity.VerifyKey{}
	for i := range clients {
		seed := make([]byte, 32)
		seed[0], seed[1], seed[2] = byte(i), byte(i>>8), byte(cfg.Seed)
		seed[31] = 0x46
		k, err := identity.NewSigningKey(seed)
		if err != nil {
			return nil, nil, err
		}
		keys[i] = k
		known[k.PublicKey().ID()] = k.PublicKey()
	}
	global := detector.NewModel(f, cfg.Edges, cfg.Hidden, cfg.Hidden, cfg.Classes, cfg.Seed)
	weights, err := aggregateStats(global, clients, cfg)
	if err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x706f69736f6e))
	var velocity []float64
	for r := range cfg.Rounds {
		base := global.Params()
		var msgs [][]byte
		var deltas [][]float64
		var counts []int
		for ci, c := range clients {
			local := global.Clone()
			lr := cfg.LR
			if cfg.Cosine {
				lr *= 0.5 * (1 + math.Cos(math.Pi*float64(r)/float64(cfg.Rounds)))
			}
			data := c
			if cfg.LocalGraphs > 0 && cfg.LocalGraphs < len(c) {
				data = make([]detector.Graph, cfg.LocalGraphs)
				for i, j := range rand.New(rand.NewPCG(cfg.Seed, uint64(r*1000+ci))).Perm(len(c))[:cfg.LocalGraphs] {
					data[i] = c[j]
				}
			}
			if _, err := train.Run(local, data, train.Config{Epochs: cfg.LocalEpochs, LR: lr, Seed: cfg.Seed + uint64(r*1000+ci), Weights: weights}); err != nil {
				return nil, nil, err
			}
			delta := local.Params()
			for i := range delta {
				delta[i] -= base[i]
			}
			if ci < cfg.Poisoned {
				poison(delta, cfg.Attack, rng)
			}
			deltas = append(deltas, delta)
			counts = append(counts, samples(data))
		}
		if cfg.Attack == AttackALIE || cfg.Attack == AttackIPM {
			omniscient(deltas, cfg.Poisoned, cfg.Attack)
		}
		for ci, delta := range deltas {
			b, err := Encode(keys[ci], Update{Round: uint32(r), Samples: uint32(counts[ci]), Delta: delta})
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, b)
		}
		var us []*Update
		for _, b := range msgs {
			u, err := Decode(b, known, uint32(r), len(base))
			if err != nil {
				return nil, nil, err
			}
			rep.Verified++
			us = append(us, u)
		}
		agg, clip, err := Combine(us, cfg.Rule, cfg.Trim, cfg.NoClip, cfg.Krum)
		if err != nil {
			return nil, nil, err
		}
		rep.ClipNorms = append(rep.ClipNorms, clip)
		if velocity == nil {
			velocity = make([]float64, len(agg))
		}
		for i := range base {
			velocity[i] = cfg.Momentum*velocity[i] + agg[i]
			base[i] += cfg.ServerLR * velocity[i]
		}
		if err := global.SetParams(base); err != nil {
			return nil, nil, err
		}
		if cfg.Validate != nil {
			cfg.Validate(r+1, global)
		}
		if cfg.Progress != nil {
			cfg.Progress(r+1, cfg.Rounds)
		}
	}
	return global, rep, nil
}

func samples(gs []detector.Graph) int {
	var n int
	for _, g := range gs {
		n += len(g.X)
	}
	return n
}

// poison turns an honest update into the attack's.
// omniscient replaces the first f deltas by an attack crafted from the honest rest.
func omniscient(deltas [][]float64, f int, a Attack) {
	n := len(deltas)
	if f <= 0 || f >= n {
		return
	}
	honest := deltas[f:]
	dim := len(deltas[0])
	mean, std := make([]float64, dim), make([]float64, dim)
	for _, d := range honest {
		for i, v := range d {
			mean[i] += v / float64(len(honest))
		}
	}
	for _, d := range honest {
		for i, v := range d {
			std[i] += (v - mean[i]) * (v - mean[i]) / float64(len(honest))
		}
	}
	s := n/2 + 1 - f
	z := 1.0
	if p := float64(n-s) / float64(n); p > 0 && p < 1 {
		z = math.Sqrt2 * math.Erfinv(2*p-1)
	}
	for _, d := range deltas[:f] {
		for i := range d {
			if a == AttackALIE {
				d[i] = mean[i] - z*math.Sqrt(std[i])
			} else {
				d[i] = -0.5 * mean[i]
			}
		}
	}
}

func poison(delta []float64, a Attack, rng *rand.Rand) {
	switch a {
	case AttackALIE, AttackIPM:
		// Crafted from the honest updates once all are known (omniscient).
	case AttackNoise:
		norm := Clip(delta, 0)
		var s float64
		for i := range delta {
			delta[i] = rng.NormFloat64()
			s += delta[i] * delta[i]
		}
		f := 10 * norm / math.Sqrt(max(s, 1e-300))
		for i := range delta {
			delta[i] *= f
		}
	default:
		for i := range delta {
			delta[i] *= -10
		}
	}
}

// aggregateStats sets global's normalisation from the clients' feature moments and returns the
// class weights from their class counts. Without RobustStats: the summed moments and counts
// (exactly the pooled statistics; one lying client can move them arbitrarily). With RobustStats:
// each client's per-sample moments (mean, mean square) and class frequencies are combined
// coordinate-wise with the rule, as updates are.
func aggregateStats(global *detector.Model, clients [][]detector.Graph, cfg TrainConfig) ([]float64, error) {
	f, e, k := global.F, global.E, global.K
	var us []*Update
	for ci, c := range clients {
		mo := train.NewMoments(f, e)
		counts := make([]float64, k)
		for i := range c {
			mo.Add(&c[i])
			for _, y := range c[i].Y {
				if y >= 0 && y < k {
					counts[y]++
				}
			}
		}
		if ci < cfg.Poisoned && cfg.PoisonStats {
			for _, p := range [][]float64{mo.Sum, mo.ESum} {
				for j := range p {
					p[j] *= 100
				}
			}
			for _, p := range [][]float64{mo.Sq, mo.ESq} {
				for j := range p {
					p[j] *= 1e4
				}
			}
			counts[0] *= 100
		}
		v := statsVector(mo, counts)
		if cfg.RobustStats && mo.N > 0 {
			var total float64
			for _, c := range counts {
				total += c
			}
			for j := 2; j < len(v)-k; j++ {
				v[j] /= mo.N
			}
			for j := len(v) - k; j < len(v); j++ {
				v[j] /= max(total, 1)
			}
			v[0], v[1] = 1, mo.EN/mo.N
		}
		us = append(us, &Update{Samples: uint32(mo.N), Delta: v})
	}
	var agg []float64
	if cfg.RobustStats {
		var err error
		if agg, err = Aggregate(us, cfg.Rule, cfg.Trim); err != nil {
			return nil, err
		}
	} else {
		agg = make([]float64, len(us[0].Delta))
		for _, u := range us {
			for j, x := range u.Delta {
				agg[j] += x
			}
		}
	}
	mo, counts, ok := statsFromVector(global, agg)
	if !ok || mo.N == 0 {
		return nil, errors.New("federated: unusable statistics")
	}
	mo.Apply(global)
	return classWeights(counts), nil
}

// String summarises the report.
func (r *Report) String() string {
	return fmt.Sprintf("%d clients (%d poisoned), %d rounds, %d signed updates verified", r.Clients, r.Poisoned, r.Rounds, r.Verified)
}
