// Package gnn is a GraphSAGE node classifier in pure Go (Hamilton et al. 2017) with edge features in
// the first layer's aggregation, E-GraphSAGE style (Lo et al., NOMS 2022): two layers with the mean
// aggregator over the full neighbourhood,
//
//	h1_v = ReLU(W1·[x_v ‖ mean_{u∈N(v)} x_u ‖ L(mean_{u∈N(v)} e_{u→v}) ‖ L(mean_{u∈N(v)} e_{v→u})] + b1)
//	h2_v = ReLU(W2·[h1_v ‖ mean_{u∈N(v)} h1_u] + b2)
//
// where e_{u→v} is what u's own counters say about its link to v and L is a fixed symmetric log
// (sign(a)·log(1+|a|)) of the aggregated edge features, then standardised (every input is
// standardised with training statistics), and a softmax over fault classes per node, trained with
// hand-written backpropagation and Adam. It also holds the
// two baselines it is compared with (robust z-score, isolation forest), the evaluation metrics, and
// the versioned model file format (format.go), which is plain numbers: loading it never runs code.
//
// It must never read the wall clock or use unseeded randomness: the same data and seed give the
// same model.
package gnn

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Graph is one telemetry snapshot: a feature vector per node, a feature vector per directed link,
// the known topology, and labels.
type Graph struct {
	X   [][]float64   // [node][feature], raw (the model normalises)
	E   [][][]float64 // [node v][i][edge feature]: v's counters on its link to Adj[v][i], raw; nil for a model without edge features
	Adj [][]int       // neighbour indices (symmetric)
	Y   []int         // class per node (0 = normal); nil when unknown
}

// Model is a trained GraphSAGE classifier.
type Model struct {
	F, E, H1, H2, K int       // node features, edge features (0: none), hidden sizes, classes
	Mean, Std       []float64 // node feature normalisation, len F
	EMean, EStd     []float64 // normalisation of the aggregated edge features [in ‖ out], len 2E
	Threshold       float64   // detection threshold on 1 − p(normal)
	W1, B1          []float64 // H1 × (2F+2E), H1
	W2, B2          []float64 // H2 × 2·H1, H2
	Wo, Bo          []float64 // K × H2, K
}

// NewModel returns a model without edge features, with He-initialised weights.
func NewModel(f, h1, h2, k int, seed uint64) *Model { return NewEdgeModel(f, 0, h1, h2, k, seed) }

// NewEdgeModel returns a model with f node and e edge features, with He-initialised weights.
func NewEdgeModel(f, e, h1, h2, k int, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 0x676e6e))
	m := &Model{F: f, E: e, H1: h1, H2: h2, K: k, Mean: make([]float64, f), Std: ones(f),
		EMean: make([]float64, 2*e), EStd: ones(2 * e), Threshold: 0.5}
	init := func(rows, cols int) []float64 {
		w := make([]float64, rows*cols)
		s := math.Sqrt(2 / float64(cols))
		for i := range w {
			w[i] = rng.NormFloat64() * s
		}
		return w
	}
	m.W1, m.B1 = init(h1, m.in1()), make([]float64, h1)
	m.W2, m.B2 = init(h2, 2*h1), make([]float64, h2)
	m.Wo, m.Bo = init(k, h2), make([]float64, k)
	return m
}

func ones(n int) []float64 {
	o := make([]float64, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

// in1 is the width of the first layer's input [x_v ‖ mean x_u ‖ mean e_{u→v} ‖ mean e_{v→u}].
func (m *Model) in1() int { return 2*m.F + 2*m.E }

// params lists the trainable tensors in a fixed order.
func (m *Model) params() [][]float64 { return [][]float64{m.W1, m.B1, m.W2, m.B2, m.Wo, m.Bo} }

// Fit sets the normalisation from the graphs' features: mean and standard deviation per node
// feature, and per aggregated edge feature (incoming and outgoing means, after L), over all nodes.
func (m *Model) Fit(gs []Graph) {
	s := NewMoments(m.F, m.E)
	for i := range gs {
		s.Add(&gs[i])
	}
	s.Apply(m)
}

// Moments accumulates the first and second moments of node and edge features (for Fit, and for
// federated training, where clients' moments are summed).
type Moments struct {
	N         float64   // nodes
	EN        float64   // directed links (informational: the edge moments are per node)
	Sum, Sq   []float64 // per node feature
	ESum, ESq []float64 // per aggregated edge feature: 2E each (incoming means, outgoing means)
}

// NewMoments returns empty moments for f node and e edge features.
func NewMoments(f, e int) *Moments {
	return &Moments{Sum: make([]float64, f), Sq: make([]float64, f), ESum: make([]float64, 2*e), ESq: make([]float64, 2*e)}
}

// Add adds a graph's features.
func (s *Moments) Add(g *Graph) {
	for _, x := range g.X {
		for j, v := range x {
			s.Sum[j] += v
			s.Sq[j] += v * v
		}
		s.N++
	}
	if len(s.ESum) == 0 {
		return
	}
	e2 := len(s.ESum)
	for _, links := range g.E {
		s.EN += float64(len(links))
	}
	agg := edgeAggregate(g, e2/2)
	for v := range g.X {
		for j, a := range agg[v*e2 : (v+1)*e2] {
			s.ESum[j] += a
			s.ESq[j] += a * a
		}
	}
}

// Merge adds o's moments to s.
func (s *Moments) Merge(o *Moments) {
	s.N += o.N
	s.EN += o.EN
	for _, p := range [][2][]float64{{s.Sum, o.Sum}, {s.Sq, o.Sq}, {s.ESum, o.ESum}, {s.ESq, o.ESq}} {
		for j := range p[0] {
			p[0][j] += p[1][j]
		}
	}
}

// Apply sets the model's normalisation from the moments (standard deviation 1 where it is ~0).
func (s *Moments) Apply(m *Model) {
	set := func(mean, std, sum, sq []float64, n float64) {
		for j := range mean {
			if n == 0 {
				mean[j], std[j] = 0, 1
				continue
			}
			mu := sum[j] / n
			mean[j] = mu
			std[j] = math.Sqrt(math.Max(sq[j]/n-mu*mu, 0))
			if std[j] < 1e-6 {
				std[j] = 1
			}
		}
	}
	set(m.Mean, m.Std, s.Sum, s.Sq, s.N)
	set(m.EMean, m.EStd, s.ESum, s.ESq, s.N)
}

// CheckGraph reports whether g has the shape the model needs: F features per node, E per directed
// link (one per neighbour) when the model uses edge features, neighbour indices in range.
func (m *Model) CheckGraph(g *Graph) error {
	n := len(g.X)
	if len(g.Adj) != n {
		return fmt.Errorf("gnn: %d adjacency lists for %d nodes", len(g.Adj), n)
	}
	if m.E > 0 && len(g.E) != n {
		return fmt.Errorf("gnn: the model uses %d edge features; graph has edge data for %d of %d nodes", m.E, len(g.E), n)
	}
	for v, x := range g.X {
		if len(x) != m.F {
			return fmt.Errorf("gnn: node %d has %d features, the model %d", v, len(x), m.F)
		}
		for i, u := range g.Adj[v] {
			if u < 0 || u >= n {
				return fmt.Errorf("gnn: node %d has neighbour %d outside 0–%d", v, u, n-1)
			}
			if m.E > 0 && (len(g.E[v]) != len(g.Adj[v]) || len(g.E[v][i]) != m.E) {
				return fmt.Errorf("gnn: node %d: edge data does not match its %d links × %d edge features", v, len(g.Adj[v]), m.E)
			}
		}
	}
	return nil
}

// cache holds a forward pass.
type cache struct {
	n          int
	a1, z1, h1 []float64 // n×2F, n×H1, n×H1
	a2, z2, h2 []float64 // n×2H1, n×H2, n×H2
	p          []float64 // n×K softmax
}

// mean writes into dst[v*2d+d : v*2d+2d] the mean of src rows over v's neighbours, and src row v into
// the first half.
func concatMean(dst, src []float64, d int, adj [][]int) {
	for v := range adj {
		row := dst[v*2*d : (v+1)*2*d]
		copy(row[:d], src[v*d:(v+1)*d])
		agg := row[d:]
		clear(agg)
		if len(adj[v]) == 0 {
			continue
		}
		for _, u := range adj[v] {
			s := src[u*d : (u+1)*d]
			for j := range agg {
				agg[j] += s[j]
			}
		}
		inv := 1 / float64(len(adj[v]))
		for j := range agg {
			agg[j] *= inv
		}
	}
}

// dense computes out = in·Wᵀ + b for n rows (in: n×cols, W: rows×cols).
func dense(out, in, w, b []float64, n, rows, cols int) {
	for v := range n {
		x := in[v*cols : (v+1)*cols]
		o := out[v*rows : (v+1)*rows]
		for r := range rows {
			wr := w[r*cols : (r+1)*cols]
			s := b[r]
			for j, xv := range x {
				s += wr[j] * xv
			}
			o[r] = s
		}
	}
}

func relu(dst, src []float64) {
	for i, v := range src {
		dst[i] = max(v, 0)
	}
}

func (m *Model) forward(g *Graph) *cache {
	n := len(g.X)
	c := &cache{n: n}
	x := make([]float64, n*m.F)
	for v, row := range g.X {
		for j := range m.F {
			x[v*m.F+j] = (row[j] - m.Mean[j]) / m.Std[j]
		}
	}
	if m.E > 0 && len(g.E) != n {
		panic("gnn: graph without edge data for a model with edge features (see CheckGraph)")
	}
	in1 := m.in1()
	c.a1 = make([]float64, n*in1)
	if m.E == 0 {
		concatMean(c.a1, x, m.F, g.Adj)
	} else {
		a := make([]float64, n*2*m.F)
		concatMean(a, x, m.F, g.Adj)
		for v := range n {
			copy(c.a1[v*in1:], a[v*2*m.F:(v+1)*2*m.F])
		}
		m.edgeMeans(c.a1, g)
	}
	c.z1, c.h1 = make([]float64, n*m.H1), make([]float64, n*m.H1)
	dense(c.z1, c.a1, m.W1, m.B1, n, m.H1, in1)
	relu(c.h1, c.z1)
	c.a2 = make([]float64, n*2*m.H1)
	concatMean(c.a2, c.h1, m.H1, g.Adj)
	c.z2, c.h2 = make([]float64, n*m.H2), make([]float64, n*m.H2)
	dense(c.z2, c.a2, m.W2, m.B2, n, m.H2, 2*m.H1)
	relu(c.h2, c.z2)
	c.p = make([]float64, n*m.K)
	dense(c.p, c.h2, m.Wo, m.Bo, n, m.K, m.H2)
	for v := range n {
		softmax(c.p[v*m.K : (v+1)*m.K])
	}
	return c
}

// edgeAggregate returns, per node v (n × 2E), L(mean over v's links of e_{u→v}) — what the
// neighbours' counters say about their links to v — and L(mean of e_{v→u}) — v's own counters.
func edgeAggregate(g *Graph, e int) []float64 {
	n := len(g.X)
	agg := make([]float64, n*2*e)
	incoming := make([]int, n)
	for u, links := range g.E {
		out := agg[u*2*e+e : (u+1)*2*e]
		for i, w := range g.Adj[u] {
			in := agg[w*2*e : w*2*e+e]
			for j, x := range links[i][:e] {
				in[j] += x
				out[j] += x
			}
			incoming[w]++
		}
	}
	for v := range n {
		row := agg[v*2*e : (v+1)*2*e]
		if incoming[v] > 0 {
			inv := 1 / float64(incoming[v])
			for j := range e {
				row[j] *= inv
			}
		}
		if d := len(g.Adj[v]); d > 0 {
			inv := 1 / float64(d)
			for j := e; j < 2*e; j++ {
				row[j] *= inv
			}
		}
		for j, a := range row {
			row[j] = symlog(a)
		}
	}
	return agg
}

// symlog is sign(a)·log(1+|a|): counts that span orders of magnitude (a hub relays 50× what a leaf
// does) become differences, so a linear unit can compare what a node was handed with what it passed
// on as a ratio.
func symlog(a float64) float64 {
	if a < 0 {
		return -math.Log1p(-a)
	}
	return math.Log1p(a)
}

// edgeMeans writes the standardised aggregated edge features into a1's last 2E columns.
func (m *Model) edgeMeans(a1 []float64, g *Graph) {
	in1, e2 := m.in1(), 2*m.E
	agg := edgeAggregate(g, m.E)
	for v := range g.X {
		row := a1[v*in1+2*m.F : (v+1)*in1]
		for j, a := range agg[v*e2 : (v+1)*e2] {
			row[j] = (a - m.EMean[j]) / m.EStd[j]
		}
	}
}

func softmax(z []float64) {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = max(mx, v)
	}
	var s float64
	for i, v := range z {
		z[i] = math.Exp(v - mx)
		s += z[i]
	}
	for i := range z {
		z[i] /= s
	}
}

// Predict returns per-node class probabilities (n×K, row-major).
func (m *Model) Predict(g *Graph) [][]float64 {
	c := m.forward(g)
	out := make([][]float64, c.n)
	for v := range out {
		out[v] = c.p[v*m.K : (v+1)*m.K]
	}
	return out
}

// Scores returns each node's anomaly score, 1 − p(normal).
func (m *Model) Scores(g *Graph) []float64 {
	p := m.Predict(g)
	s := make([]float64, len(p))
	for v := range p {
		s[v] = 1 - p[v][0]
	}
	return s
}

// lossGrad returns the weighted cross-entropy of g and adds its gradient to grads (same layout as
// params). weights[k] weighs class k; the loss is normalised by the total weight of g's nodes.
func (m *Model) lossGrad(g *Graph, weights []float64, grads [][]float64) float64 {
	c := m.forward(g)
	n := c.n
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
		p := c.p[v*m.K : (v+1)*m.K]
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
	backDense(dl, c.h2, m.Wo, gWo, gBo, dh2, n, m.K, m.H2)
	for i := range dh2 {
		if c.z2[i] <= 0 {
			dh2[i] = 0
		}
	}
	// Layer 2.
	da2 := make([]float64, n*2*m.H1)
	backDense(dh2, c.a2, m.W2, gW2, gB2, da2, n, m.H2, 2*m.H1)
	dh1 := make([]float64, n*m.H1)
	backConcatMean(dh1, da2, m.H1, g.Adj)
	for i := range dh1 {
		if c.z1[i] <= 0 {
			dh1[i] = 0
		}
	}
	// Layer 1 (no gradient needed for the input).
	backDense(dh1, c.a1, m.W1, gW1, gB1, nil, n, m.H1, m.in1())
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

// TrainConfig configures Train.
type TrainConfig struct {
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

// Train fits the model to gs (which must carry labels) with Adam, one graph per step, graphs in a
// seeded random order each epoch. It returns the final epoch's mean loss.
func (m *Model) Train(gs []Graph, cfg TrainConfig) (float64, error) {
	if len(gs) == 0 {
		return 0, errors.New("gnn: no training graphs")
	}
	for i := range gs {
		if err := m.CheckGraph(&gs[i]); err != nil {
			return 0, fmt.Errorf("graph %d: %w", i, err)
		}
		if len(gs[i].Y) != len(gs[i].X) {
			return 0, fmt.Errorf("gnn: graph %d has %d labels for %d nodes", i, len(gs[i].Y), len(gs[i].X))
		}
		for _, y := range gs[i].Y {
			if y < 0 || y >= m.K {
				return 0, fmt.Errorf("gnn: label %d outside 0–%d", y, m.K-1)
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
	ps := m.params()
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
			sum += m.lossGrad(&gs[gi], cfg.Weights, grads)
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
func ClassWeights(gs []Graph, k int) []float64 {
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

// Params returns a copy of the trainable parameters, flattened in a fixed order (W1, B1, W2, B2,
// Wo, Bo).
func (m *Model) Params() []float64 {
	var out []float64
	for _, p := range m.params() {
		out = append(out, p...)
	}
	return out
}

// SetParams sets the trainable parameters from a vector laid out as Params returns it.
func (m *Model) SetParams(v []float64) error {
	n := 0
	for _, p := range m.params() {
		n += len(p)
	}
	if len(v) != n {
		return fmt.Errorf("gnn: %d parameters, model has %d", len(v), n)
	}
	for _, p := range m.params() {
		copy(p, v[:len(p)])
		v = v[len(p):]
	}
	return nil
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	c := *m
	for _, p := range []*[]float64{&c.Mean, &c.Std, &c.EMean, &c.EStd, &c.W1, &c.B1, &c.W2, &c.B2, &c.Wo, &c.Bo} {
		*p = append([]float64(nil), (*p)...)
	}
	return &c
}
