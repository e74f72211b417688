package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"x0tta6bl4/internal/detector"
)

// lossGrad returns the weighted cross-entropy of g and adds its gradient to grads (same layout as
// Model.Trainable). weights[k] weighs class k; the loss is normalised by the total weight of g's nodes.
func lossGrad(m *detector.Model, g *detector.Graph, weights []float64, grads [][]float64) float64 {
	c := m.Forward(g)
	n := c.N
	var wsum float64
	for _, y := range g.Y {
		wsum += weights[y]
	}
	if wsum == 0 {
		return 0
	}
	dl := make([]float64, n*m.K)
	var loss float64
	for v, y := range g.Y {
		w := weights[y] / wsum
		p := c.P[v*m.K : (v+1)*m.K]
		loss -= w * math.Log(math.Max(p[y], 1e-300))
		for k := range m.K {
			d := p[k]
			if k == y {
				d--
			}
			dl[v*m.K+k] = w * d
		}
	}
	gW1, gB1, gW2, gB2, gWo, gBo := grads[0], grads[1], grads[2], grads[3], grads[4], grads[5]
	// Output layer.
	dh2 := make([]float64, n*m.H2)
	backDense(dl, c.H2, m.Wo, gWo, gBo, dh2, n, m.K, m.H2)
	for i := range dh2 {
		if c.Z2[i] <= 0 {
			dh2[i] = 0
		}
	}
	// Layer 2.
	da2 := make([]float64, n*2*m.H1)
	backDense(dh2, c.A2, m.W2, gW2, gB2, da2, n, m.H2, 2*m.H1)
	dh1 := make([]float64, n*m.H1)
	backConcatMean(dh1, da2, m.H1, g.Adj)
	for i := range dh1 {
		if c.Z1[i] <= 0 {
			dh1[i] = 0
		}
	}
	// Layer 1 (no gradient needed for the input).
	backDense(dh1, c.A1, m.W1, gW1, gB1, nil, n, m.H1, m.InputWidth())
	return loss
}

// backDense accumulates dW += dOutᵀ·in, db += Σ dOut, and sets dIn = dOut·W (when dIn is not nil).
func backDense(dOut, in, w, dW, db, dIn []float64, n, rows, cols int) {
	for v := range n {
		d := dOut[v*rows : (v+1)*rows]
		x := in[v*cols : (v+1)*cols]
		var di []float64
		if dIn != nil {
			di = dIn[v*cols : (v+1)*cols]
			clear(di)
		}
		for r, dv := range d {
			if dv == 0 {
				continue
			}
			db[r] += dv
			wr := w[r*cols : (r+1)*cols]
			gr := dW[r*cols : (r+1)*cols]
			for j, xv := range x {
				gr[j] += dv * xv
			}
			if di != nil {
				for j, wv := range wr {
					di[j] += dv * wv
				}
			}
		}
	}
}

// backConcatMean turns the gradient with respect to [h ‖ mean(h_neigh)] into one with respect to h.
func backConcatMean(dh, da []float64, d int, adj [][]int) {
	for v := range adj {
		row := da[v*2*d : (v+1)*2*d]
		self := dh[v*d : (v+1)*d]
		for j := range d {
			self[j] += row[j]
		}
		if len(adj[v]) == 0 {
			continue
		}
		inv := 1 / float64(len(adj[v]))
		for _, u := range adj[v] {
			du := dh[u*d : (u+1)*d]
			for j := range d {
				du[j] += row[d+j] * inv
			}
		}
	}
}

// Config configures Run.
type Config struct {
	Epochs int     // 40
	LR     float64 // 0.005 (Adam)
	// Cosine decays the learning rate from LR to 0 over the run (half a cosine period, per step).
	Cosine bool
	// WeightDecay is decoupled weight decay (AdamW, Loshchilov & Hutter 2019) on the weight
	// matrices, per step: w −= lr·WeightDecay·w. 0: none.
	WeightDecay float64
	Seed        uint64
	Weights     []float64 // per-class loss weights; default: inverse square root of class frequency
	Progress    func(epoch, epochs int, loss float64)
}

// Run fits m's weights to gs (which must carry labels) with Adam, one graph per step, graphs in a
// seeded random order each epoch. It returns the final epoch's mean loss. The normalisation is not
// touched: set it first with Standardise (or, in federated training, from pooled Moments).
func Run(m *detector.Model, gs []detector.Graph, cfg Config) (float64, error) {
	if len(gs) == 0 {
		return 0, errors.New("train: no training graphs")
	}
	for i := range gs {
		if err := m.CheckGraph(&gs[i]); err != nil {
			return 0, fmt.Errorf("graph %d: %w", i, err)
		}
		if len(gs[i].Y) != len(gs[i].X) {
			return 0, fmt.Errorf("train: graph %d has %d labels for %d nodes", i, len(gs[i].Y), len(gs[i].X))
		}
		for _, y := range gs[i].Y {
			if y < 0 || y >= m.K {
				return 0, fmt.Errorf("train: label %d outside 0–%d", y, m.K-1)
			}
		}
	}
	if cfg.Epochs <= 0 {
		cfg.Epochs = 40
	}
	if cfg.LR <= 0 {
		cfg.LR = 0.005
	}
	if cfg.Weights == nil {
		cfg.Weights = ClassWeights(gs, m.K)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x747261696e))
	ps := m.Trainable()
	grads, mom, vel := zerosLike(ps), zerosLike(ps), zerosLike(ps)
	const b1, b2, eps = 0.9, 0.999, 1e-8
	step := 0
	total := cfg.Epochs * len(gs)
	decay := map[int]bool{0: true, 2: true, 4: true} // W1, W2, Wo
	var last float64
	for ep := range cfg.Epochs {
		order := rng.Perm(len(gs))
		var sum float64
		for _, gi := range order {
			for _, g := range grads {
				clear(g)
			}
			sum += lossGrad(m, &gs[gi], cfg.Weights, grads)
			step++
			c1 := 1 - math.Pow(b1, float64(step))
			c2 := 1 - math.Pow(b2, float64(step))
			lr := cfg.LR
			if cfg.Cosine {
				lr *= 0.5 * (1 + math.Cos(math.Pi*float64(step-1)/float64(total)))
			}
			for t, p := range ps {
				wd := 0.0
				if decay[t] {
					wd = lr * cfg.WeightDecay
				}
				for i := range p {
					g := grads[t][i]
					mom[t][i] = b1*mom[t][i] + (1-b1)*g
					vel[t][i] = b2*vel[t][i] + (1-b2)*g*g
					p[i] -= lr*(mom[t][i]/c1)/(math.Sqrt(vel[t][i]/c2)+eps) + wd*p[i]
				}
			}
		}
		last = sum / float64(len(gs))
		if cfg.Progress != nil {
			cfg.Progress(ep+1, cfg.Epochs, last)
		}
	}
	return last, nil
}

// ClassWeights returns 1/√frequency per class, scaled so normal has weight 1 (absent classes 0).
func ClassWeights(gs []detector.Graph, k int) []float64 {
	counts := make([]float64, k)
	for _, g := range gs {
		for _, y := range g.Y {
			counts[y]++
		}
	}
	w := make([]float64, k)
	for i, c := range counts {
		if c > 0 {
			w[i] = math.Sqrt(counts[0] / c)
		}
	}
	if counts[0] == 0 {
		for i := range w {
			if counts[i] > 0 {
				w[i] = 1
			}
		}
	}
	return w
}

func zerosLike(ps [][]float64) [][]float64 {
	out := make([][]float64, len(ps))
	for i, p := range ps {
		out[i] = make([]float64, len(p))
	}
	return out
}
