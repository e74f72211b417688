package experiment

import (
	"math"
	"math/rand/v2"
	"slices"
)

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
