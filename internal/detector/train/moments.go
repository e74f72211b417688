package train

import (
	"math"

	"x0tta6bl4/internal/detector"
)

// Standardise sets m's normalisation from the graphs' features: mean and standard deviation per
// node feature, and per aggregated edge feature (incoming and outgoing means, after L), over all
// nodes.
func Standardise(m *detector.Model, gs []detector.Graph) {
	s := NewMoments(m.F, m.E)
	for i := range gs {
		s.Add(&gs[i])
	}
	s.Apply(m)
}

// Moments accumulates the first and second moments of node and edge features (for Standardise, and for
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
func (s *Moments) Add(g *detector.Graph) {
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
	agg := detector.EdgeInputs(g, e2/2)
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
func (s *Moments) Apply(m *detector.Model) {
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
