package experiment

import (
	"math"
	"math/rand/v2"
	"slices"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// Inputs returns, per node of g, exactly what the model's first layer reads before its
// standardisation: the node's vector, the mean of its neighbours' vectors and the aggregated
// per-link vectors, in and out (detector.EdgeInputs). The baselines read these, so that no method
// sees less than the model.
func Inputs(g *detector.Graph) [][]float64 {
	n := len(g.X)
	if n == 0 {
		return nil
	}
	f, e := len(g.X[0]), 0
	for _, links := range g.E {
		if len(links) > 0 {
			e = len(links[0])
			break
		}
	}
	var agg []float64
	if e > 0 {
		agg = detector.EdgeInputs(g, e)
	}
	out := make([][]float64, n)
	for v := range n {
		row := make([]float64, 0, 2*f+2*e)
		row = append(row, g.X[v]...)
		mean := make([]float64, f)
		for _, u := range g.Adj[v] {
			for j, a := range g.X[u] {
				mean[j] += a
			}
		}
		for j := range mean {
			if d := len(g.Adj[v]); d > 0 {
				mean[j] /= float64(d)
			}
		}
		row = append(row, mean...)
		if e > 0 {
			row = append(row, agg[v*2*e:(v+1)*2*e]...)
		}
		out[v] = row
	}
	return out
}

// inputRows flattens the Inputs of graphs.
func inputRows(gs []detector.Graph) [][]float64 {
	var xs [][]float64
	for i := range gs {
		xs = append(xs, Inputs(&gs[i])...)
	}
	return xs
}

// perInput turns a row scorer into a graph scorer over Inputs.
func perInput(score func([]float64) float64) func(g *detector.Graph) []float64 {
	return func(g *detector.Graph) []float64 {
		in := Inputs(g)
		s := make([]float64, len(in))
		for v, x := range in {
			s[v] = score(x)
		}
		return s
	}
}

// withThreshold sets d's threshold to the F1-optimal one on the validation graphs (all faults
// positive): the one decision protocol every binary method follows.
func withThreshold(d Method, val []detector.Graph) Method {
	var scores []float64
	for i := range val {
		scores = append(scores, d.Score(&val[i])...)
	}
	_, ys := rows(val)
	d.Threshold = detector.BestThreshold(scores, anomalous(ys))
	return d
}

// RatioRule is a hand-made rule on the volume-invariant ratios (graphs of detector.Robust
// features): the largest of the node's windowed flow deficit by its neighbours' counters, the least
// probe loss any reporting neighbour sees towards it, its own worst probe loss to a neighbour and
// its own reported drop ratio.
func RatioRule(val []detector.Graph) Method {
	score := func(g *detector.Graph) []float64 {
		s := make([]float64, len(g.X))
		for v, x := range g.X {
			s[v] = max(x[detector.RDeficitW], x[detector.RNbrLossMin], x[detector.RLossMax], x[detector.RDropRatio])
		}
		return s
	}
	return withThreshold(Method{Name: "ratio rule", Score: score}, val)
}

// flowDeficit is the flow-conservation score of every node: by its neighbours' counters, 1 −
// what they received from it that it relayed over what they handed it to relay in the interval
// (0 when nothing was handed to it); from the derived feature on graphs of detector.Robust
// features, from the raw counters on raw graphs.
func flowDeficit(g *detector.Graph) []float64 {
	s := make([]float64, len(g.X))
	if len(g.X) > 0 && len(g.X[0]) == detector.NumRobust {
		for v, x := range g.X {
			s[v] = x[detector.RDeficit]
		}
		return s
	}
	in, out := make([]float64, len(g.X)), make([]float64, len(g.X))
	for u, links := range g.E {
		for i, v := range g.Adj[u] {
			in[v] += links[i][sim.ETxTransit]
			out[v] += links[i][sim.ERxTransit]
		}
	}
	for v := range s {
		if in[v] > 0.5 {
			s[v] = math.Max(0, 1-out[v]/in[v])
		}
	}
	return s
}

// ZScore is the robust z-score detector: per feature, the median and the median absolute deviation
// (MAD) of the training data; a sample's score is its largest |x − median| / (1.4826·MAD) over the
// features. Features whose MAD is zero use the mean absolute deviation instead, and then 1e-3.
type ZScore struct {
	Median, Scale []float64
}

// FitZScore fits the detector to rows.
func FitZScore(rows [][]float64) *ZScore {
	f := len(rows[0])
	z := &ZScore{Median: make([]float64, f), Scale: make([]float64, f)}
	col := make([]float64, len(rows))
	for j := range f {
		for i, r := range rows {
			col[i] = r[j]
		}
		med := median(col)
		for i, r := range rows {
			col[i] = math.Abs(r[j] - med)
		}
		mad := median(col)
		scale := 1.4826 * mad
		if scale == 0 {
			var s float64
			for _, v := range col {
				s += v
			}
			scale = 1.2533 * s / float64(len(col))
		}
		z.Median[j], z.Scale[j] = med, math.Max(scale, 1e-3)
	}
	return z
}

func median(a []float64) float64 {
	s := slices.Clone(a)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Score returns the sample's anomaly score.
func (z *ZScore) Score(x []float64) float64 {
	var m float64
	for j, v := range x {
		m = math.Max(m, math.Abs(v-z.Median[j])/z.Scale[j])
	}
	return m
}

// IForest is an isolation forest (Liu, Ting, Zhou 2008): trees grown on random subsamples by random
// splits; anomalies are isolated in fewer splits. Score is 2^(−E[h(x)]/c(ψ)).
type IForest struct {
	trees []*itree
	psi   int
}

type itree struct {
	feat        int
	split       float64
	left, right *itree
	size        int // leaf: samples that reached it
}

// FitIForest grows trees trees on subsamples of psi rows, deterministically for seed.
func FitIForest(rows [][]float64, trees, psi int, seed uint64) *IForest {
	rng := rand.New(rand.NewPCG(seed, 0x69666f72))
	psi = min(psi, len(rows))
	f := &IForest{psi: psi}
	limit := int(math.Ceil(math.Log2(float64(psi))))
	for range trees {
		idx := rng.Perm(len(rows))[:psi]
		sample := make([][]float64, psi)
		for i, j := range idx {
			sample[i] = rows[j]
		}
		f.trees = append(f.trees, grow(sample, 0, limit, rng))
	}
	return f
}

func grow(rows [][]float64, depth, limit int, rng *rand.Rand) *itree {
	if depth >= limit || len(rows) <= 1 {
		return &itree{size: len(rows)}
	}
	nf := len(rows[0])
	// Pick a random feature that varies in this node (a few tries), then a uniform split.
	for range 2 * nf {
		j := rng.IntN(nf)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, r := range rows {
			lo, hi = math.Min(lo, r[j]), math.Max(hi, r[j])
		}
		if hi <= lo {
			continue
		}
		s := lo + rng.Float64()*(hi-lo)
		var l, rr [][]float64
		for _, r := range rows {
			if r[j] < s {
				l = append(l, r)
			} else {
				rr = append(rr, r)
			}
		}
		return &itree{feat: j, split: s, left: grow(l, depth+1, limit, rng), right: grow(rr, depth+1, limit, rng)}
	}
	return &itree{size: len(rows)}
}

// c is the average path length of an unsuccessful BST search among n points.
func c(n int) float64 {
	if n <= 1 {
		return 0
	}
	if n == 2 {
		return 1
	}
	fn := float64(n)
	return 2*(math.Log(fn-1)+0.5772156649) - 2*(fn-1)/fn
}

// Score returns the anomaly score in (0, 1]; above ~0.6 is anomalous.
func (f *IForest) Score(x []float64) float64 {
	var h float64
	for _, t := range f.trees {
		d := 0.0
		for t.left != nil {
			if x[t.feat] < t.split {
				t = t.left
			} else {
				t = t.right
			}
			d++
		}
		h += d + c(t.size)
	}
	h /= float64(len(f.trees))
	return math.Pow(2, -h/c(f.psi))
}
