package detector

import (
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
	// K is each node's kernel block (KernelInputs), nil when no node has one. The model never reads
	// it; the kernel rules of internal/detector/experiment do.
	K [][NumKernelInputs]float64
}

// Model is one trained GraphSAGE classifier, the unit that training, fine-tuning and federated
// rounds fit; an Ensemble averages several.
type Model struct {
	F, E, H1, H2, K int       // node features, edge features (0: none), hidden sizes, classes
	Mean, Std       []float64 // node feature normalisation, len F
	EMean, EStd     []float64 // normalisation of the aggregated edge features [in ‖ out], len 2E
	Threshold       float64   // detection threshold on 1 − p(normal)
	W1, B1          []float64 // H1 × (2F+2E), H1
	W2, B2          []float64 // H2 × 2·H1, H2
	Wo, Bo          []float64 // K × H2, K
}

// NewModel returns a model with f node and e edge features (0: none), with He-initialised weights.
func NewModel(f, e, h1, h2, k int, seed uint64) *Model {
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
	m.W1, m.B1 = init(h1, m.InputWidth()), make([]float64, h1)
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

// InputWidth is the width of the first layer's input [x_v ‖ mean x_u ‖ mean e_{u→v} ‖ mean e_{v→u}].
func (m *Model) InputWidth() int { return 2*m.F + 2*m.E }

// Trainable returns the trainable tensors themselves, not copies, in the order Params flattens them:
// W1, B1, W2, B2, Wo, Bo. Training updates them in place.
func (m *Model) Trainable() [][]float64 { return [][]float64{m.W1, m.B1, m.W2, m.B2, m.Wo, m.Bo} }

// CheckGraph reports whether g has the shape the model needs: F features per node, E per directed
// link (one per neighbour) when the model uses edge features, neighbour indices in range.
func (m *Model) CheckGraph(g *Graph) error {
	n := len(g.X)
	if len(g.Adj) != n {
		return fmt.Errorf("detector: %d adjacency lists for %d nodes", len(g.Adj), n)
	}
	if m.E > 0 && len(g.E) != n {
		return fmt.Errorf("detector: the model uses %d edge features; graph has edge data for %d of %d nodes", m.E, len(g.E), n)
	}
	for v, x := range g.X {
		if len(x) != m.F {
			return fmt.Errorf("detector: node %d has %d features, the model %d", v, len(x), m.F)
		}
		for i, u := range g.Adj[v] {
			if u < 0 || u >= n {
				return fmt.Errorf("detector: node %d has neighbour %d outside 0–%d", v, u, n-1)
			}
			if m.E > 0 && (len(g.E[v]) != len(g.Adj[v]) || len(g.E[v][i]) != m.E) {
				return fmt.Errorf("detector: node %d: edge data does not match its %d links × %d edge features", v, len(g.Adj[v]), m.E)
			}
		}
	}
	return nil
}

// Activations are one forward pass over a graph of N nodes, row-major per node: each layer's input
// A, pre-activation Z and output H, and the class probabilities P. Inference needs only P; training
// back-propagates through the rest.
type Activations struct {
	N          int
	A1, Z1, H1 []float64 // N×InputWidth, N×H1, N×H1
	A2, Z2, H2 []float64 // N×2H1, N×H2, N×H2
	P          []float64 // N×K softmax
}

// concatMean writes into dst[v*2d+d : v*2d+2d] the mean of src rows over v's neighbours, and src row v into
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

// Forward runs the model on g, which must pass CheckGraph.
func (m *Model) Forward(g *Graph) *Activations {
	n := len(g.X)
	c := &Activations{N: n}
	x := make([]float64, n*m.F)
	for v, row := range g.X {
		for j := range m.F {
			x[v*m.F+j] = (row[j] - m.Mean[j]) / m.Std[j]
		}
	}
	if m.E > 0 && len(g.E) != n {
		panic("detector: graph without edge data for a model with edge features (see CheckGraph)")
	}
	in1 := m.InputWidth()
	c.A1 = make([]float64, n*in1)
	if m.E == 0 {
		concatMean(c.A1, x, m.F, g.Adj)
	} else {
		a := make([]float64, n*2*m.F)
		concatMean(a, x, m.F, g.Adj)
		for v := range n {
			copy(c.A1[v*in1:], a[v*2*m.F:(v+1)*2*m.F])
		}
		m.edgeMeans(c.A1, g)
	}
	c.Z1, c.H1 = make([]float64, n*m.H1), make([]float64, n*m.H1)
	dense(c.Z1, c.A1, m.W1, m.B1, n, m.H1, in1)
	relu(c.H1, c.Z1)
	c.A2 = make([]float64, n*2*m.H1)
	concatMean(c.A2, c.H1, m.H1, g.Adj)
	c.Z2, c.H2 = make([]float64, n*m.H2), make([]float64, n*m.H2)
	dense(c.Z2, c.A2, m.W2, m.B2, n, m.H2, 2*m.H1)
	relu(c.H2, c.Z2)
	c.P = make([]float64, n*m.K)
	dense(c.P, c.H2, m.Wo, m.Bo, n, m.K, m.H2)
	for v := range n {
		softmax(c.P[v*m.K : (v+1)*m.K])
	}
	return c
}

// EdgeInputs returns, per node v (n × 2E), L(mean over v's links of e_{u→v}) — what the
// neighbours' counters say about their links to v — and L(mean of e_{v→u}) — v's own counters. These
// are the first layer's edge inputs before standardisation, so training takes its statistics on them.
func EdgeInputs(g *Graph, e int) []float64 {
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
	in1, e2 := m.InputWidth(), 2*m.E
	agg := EdgeInputs(g, m.E)
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
	c := m.Forward(g)
	out := make([][]float64, c.N)
	for v := range out {
		out[v] = c.P[v*m.K : (v+1)*m.K]
	}
	return out
}

// Shape returns the model's F, E and K.
func (m *Model) Shape() Shape { return Shape{F: m.F, E: m.E, K: m.K} }

// DetectionThreshold returns Threshold.
func (m *Model) DetectionThreshold() float64 { return m.Threshold }

// Params returns a copy of the trainable parameters, flattened in a fixed order (W1, B1, W2, B2,
// Wo, Bo).
func (m *Model) Params() []float64 {
	var out []float64
	for _, p := range m.Trainable() {
		out = append(out, p...)
	}
	return out
}

// SetParams sets the trainable parameters from a vector laid out as Params returns it.
func (m *Model) SetParams(v []float64) error {
	n := 0
	for _, p := range m.Trainable() {
		n += len(p)
	}
	if len(v) != n {
		return fmt.Errorf("detector: %d parameters, model has %d", len(v), n)
	}
	for _, p := range m.Trainable() {
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
