package federated

import (
	"fmt"
	"math"
	"slices"

	"x0tta6bl4/internal/gnn"
	"x0tta6bl4/internal/identity"
)

// TrainConfig configures a federated training run. Zero values take the defaults shown.
type TrainConfig struct {
	Hidden, Classes int
	Edges           int     // edge features per directed link (0: none)
	Rounds          int     // 10
	LocalEpochs     int     // 2
	LR              float64 // 0.005
	// Cosine decays LR over the rounds by half a cosine period (as ai train decays it over epochs).
	Cosine bool
	Rule   Rule    // TrimmedMean
	Trim   float64 // 0.2
	// Poisoned clients (the first ones) send −10 × their honest update: a model-poisoning attack.
	Poisoned int
	// NoClip skips norm clipping (to show what it protects against).
	NoClip   bool
	Seed     uint64
	Progress func(round, rounds int)
}

// Report describes a run.
type Report struct {
	Clients, Poisoned, Rounds int
	Verified                  int // updates whose signature was checked and accepted
	ClipNorms                 []float64
}

// Train runs federated training: one client per element of clients (its own graphs, which never
// leave it). Normalisation statistics are aggregated once (sample-weighted means of the clients'
// first and second moments). Each round every client trains LocalEpochs from the global model and
// sends its signed parameter change; the aggregator verifies each one, clips it to the round's
// median update norm, and applies the rule.
func Train(clients [][]gnn.Graph, f int, cfg TrainConfig) (*gnn.Model, *Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	if cfg.LocalEpochs <= 0 {
		cfg.LocalEpochs = 2
	}
	if cfg.LR <= 0 {
		cfg.LR = 0.005
	}
	if cfg.Rule == "" {
		cfg.Rule = TrimmedMean
	}
	if cfg.Trim == 0 {
		cfg.Trim = 0.2
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
	global := gnn.NewEdgeModel(f, cfg.Edges, cfg.Hidden, cfg.Hidden, cfg.Classes, cfg.Seed)
	// Normalisation from aggregated moments: each client's node and edge feature sums, summed.
	total := gnn.NewMoments(f, cfg.Edges)
	var all []gnn.Graph
	for _, c := range clients {
		all = append(all, c...)
		local := gnn.NewMoments(f, cfg.Edges)
		for i := range c {
			local.Add(&c[i])
		}
		total.Merge(local)
	}
	total.Apply(global)
	weights := gnn.ClassWeights(all, cfg.Classes) // class counts: aggregated like the moments
	for r := range cfg.Rounds {
		base := global.Params()
		var msgs [][]byte
		for ci, c := range clients {
			local := global.Clone()
			lr := cfg.LR
			if cfg.Cosine {
				lr *= 0.5 * (1 + math.Cos(math.Pi*float64(r)/float64(cfg.Rounds)))
			}
			if _, err := local.Train(c, gnn.TrainConfig{Epochs: cfg.LocalEpochs, LR: lr, Seed: cfg.Seed + uint64(r*1000+ci), Weights: weights}); err != nil {
				return nil, nil, err
			}
			delta := local.Params()
			var nsamp int
			for _, g := range c {
				nsamp += len(g.X)
			}
			for i := range delta {
				delta[i] -= base[i]
				if ci < cfg.Poisoned {
					delta[i] *= -10
				}
			}
			b, err := Encode(keys[ci], Update{Round: uint32(r), Samples: uint32(nsamp), Delta: delta})
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, b)
		}
		var us []*Update
		var norms []float64
		for _, b := range msgs {
			u, err := Decode(b, known, uint32(r), len(base))
			if err != nil {
				return nil, nil, err
			}
			rep.Verified++
			us = append(us, u)
			norms = append(norms, Clip(u.Delta, 0))
		}
		sorted := slices.Clone(norms)
		slices.Sort(sorted)
		clip := sorted[len(sorted)/2]
		rep.ClipNorms = append(rep.ClipNorms, clip)
		for _, u := range us {
			if !cfg.NoClip {
				Clip(u.Delta, clip)
			}
		}
		agg, err := Aggregate(us, cfg.Rule, cfg.Trim)
		if err != nil {
			return nil, nil, err
		}
		for i := range base {
			base[i] += agg[i]
		}
		if err := global.SetParams(base); err != nil {
			return nil, nil, err
		}
		if cfg.Progress != nil {
			cfg.Progress(r+1, cfg.Rounds)
		}
	}
	return global, rep, nil
}

// String summarises the report.
func (r *Report) String() string {
	return fmt.Sprintf("%d clients (%d poisoned), %d rounds, %d signed updates verified", r.Clients, r.Poisoned, r.Rounds, r.Verified)
}
