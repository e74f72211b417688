package federated

import (
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
)

// Test helpers shared by the package's internal and external (federated_test) tests.

// RingTask is a small labelled graph: a ring with chords, label 1 when the neighbours' mean of
// feature 0 exceeds 0.3 (visible only through the neighbourhood).
func RingTask(seed uint64) detector.Graph {
	const n = 40
	g := detector.Graph{X: make([][]float64, n), Adj: make([][]int, n), Y: make([]int, n)}
	x := seed*2654435761 + 1
	rnd := func() float64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return float64(x%10000)/5000 - 1 }
	for v := range n {
		g.X[v] = []float64{rnd(), rnd(), rnd()}
		for _, u := range []int{(v + 1) % n, (v + 7) % n} {
			g.Adj[v] = append(g.Adj[v], u)
			g.Adj[u] = append(g.Adj[u], v)
		}
	}
	for v := range n {
		var s float64
		for _, u := range g.Adj[v] {
			s += g.X[u][0]
		}
		if s/float64(len(g.Adj[v])) > 0.3 {
			g.Y[v] = 1
		}
	}
	return g
}

// HeldOutF1 sets m's threshold on validation graphs of the ring task (seeds no client or test set
// uses) and returns its F1 on test at that threshold: thresholds never come from the test data.
func HeldOutF1(m *detector.Model, test []detector.Graph) float64 {
	var val []detector.Graph
	for s := range 3 {
		val = append(val, RingTask(uint64(900+s)))
	}
	m.Threshold = detector.FitThreshold(m, val)
	var s []float64
	var pos []bool
	for i := range test {
		s = append(s, detector.Scores(m, &test[i])...)
		for _, y := range test[i].Y {
			pos = append(pos, y == 1)
		}
	}
	return experiment.Evaluate(s, pos, m.Threshold).F1
}
