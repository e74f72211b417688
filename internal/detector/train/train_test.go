package train

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
)

func randomGraph(n, f, k int, seed uint64) detector.Graph {
	rng := rand.New(rand.NewPCG(seed, 1))
	g := detector.Graph{X: make([][]float64, n), Adj: make([][]int, n), Y: make([]int, n)}
	for v := range n {
		g.X[v] = make([]float64, f)
		for j := range f {
			g.X[v][j] = rng.NormFloat64()
		}
		g.Y[v] = rng.IntN(k)
	}
	for v := 1; v < n; v++ { // a tree plus a few chords; one isolated node
		if v == n-1 {
			break
		}
		u := rng.IntN(v)
		g.Adj[u] = append(g.Adj[u], v)
		g.Adj[v] = append(g.Adj[v], u)
	}
	g.Adj[0] = append(g.Adj[0], n-2)
	g.Adj[n-2] = append(g.Adj[n-2], 0)
	return g
}

// withEdges adds e random features per directed link.
func withEdges(g detector.Graph, e int, seed uint64) detector.Graph {
	rng := rand.New(rand.NewPCG(seed, 3))
	g.E = make([][][]float64, len(g.X))
	for v := range g.X {
		for range g.Adj[v] {
			l := make([]float64, e)
			for j := range l {
				l[j] = rng.NormFloat64()*2 + 1
			}
			g.E[v] = append(g.E[v], l)
		}
	}
	return g
}

// TestGradient compares backpropagation with central finite differences for every parameter, with
// and without edge features (the edge columns of W1).
func TestGradient(t *testing.T) {
	t.Run("edges", func(t *testing.T) { gradCheck(t, 3) })
	t.Run("no-edges", func(t *testing.T) { gradCheck(t, 0) })
}

func gradCheck(t *testing.T, e int) {
	const f, k = 5, 4
	m := detector.NewModel(f, e, 6, 5, k, 1)
	// Biases away from zero so few ReLUs sit at the kink.
	for _, b := range [][]float64{m.B1, m.B2} {
		for i := range b {
			b[i] = 0.1
		}
	}
	g := randomGraph(12, f, k, 2)
	if e > 0 {
		g = withEdges(g, e, 4)
		Standardise(m, []detector.Graph{g})
	}
	w := []float64{1, 2, 0.5, 3}
	grads := zerosLike(m.Trainable())
	lossGrad(m, &g, w, grads)
	const h = 1e-6
	worst := 0.0
	for t2, p := range m.Trainable() {
		for i := range p {
			old := p[i]
			p[i] = old + h
			lp := lossGrad(m, &g, w, zerosLike(m.Trainable()))
			p[i] = old - h
			lm := lossGrad(m, &g, w, zerosLike(m.Trainable()))
			p[i] = old
			num := (lp - lm) / (2 * h)
			diff := math.Abs(num-grads[t2][i]) / math.Max(1e-4, math.Abs(num)+math.Abs(grads[t2][i]))
			worst = math.Max(worst, diff)
			if diff > 1e-4 {
				t.Fatalf("tensor %d index %d: backprop %.8g, numerical %.8g", t2, i, grads[t2][i], num)
			}
		}
	}
	t.Logf("worst relative gradient error %.2g", worst)
}

// TestLearnsNeighbourSignal: the label of a node is whether the mean of its neighbours' feature 0 is
// high — invisible in its own features, so only the neighbourhood aggregation can learn it.
func TestLearnsNeighbourSignal(t *testing.T) {
	var gs []detector.Graph
	for s := range 20 {
		g := randomGraph(40, 3, 2, uint64(s)+10)
		for v := range g.X {
			var sum float64
			for _, u := range g.Adj[v] {
				sum += g.X[u][0]
			}
			g.Y[v] = 0
			if len(g.Adj[v]) > 0 && sum/float64(len(g.Adj[v])) > 0.7 {
				g.Y[v] = 1
			}
		}
		gs = append(gs, g)
	}
	m := detector.NewModel(3, 0, 16, 16, 2, 3)
	trainHeldOut(t, m, gs, "GraphSAGE did not learn a neighbourhood signal")
}

// trainHeldOut trains m on the first 15 graphs, sets its threshold there, and fails the test with
// failure unless the held-out rest gets F1 ≥ 0.8.
func trainHeldOut(t *testing.T, m *detector.Model, gs []detector.Graph, failure string) {
	t.Helper()
	Standardise(m, gs[:15])
	if _, err := Run(m, gs[:15], Config{Epochs: 60, LR: 0.01, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	m.Threshold = detector.FitThreshold(m, gs[:15])
	r := experiment.EvaluateAll([]experiment.Method{experiment.Anomaly(m)}, gs[15:])[0]
	t.Logf("held-out F1 %.3f AUC %.3f", r.F1, r.AUC)
	if r.F1 < 0.8 {
		t.Fatalf("%s: F1 %.3f", failure, r.F1)
	}
}

// TestLearnsEdgeSignal: the label of a node is whether its neighbours' counters on their links to it
// (e_{u→v} feature 0) are high on average — nothing in any node vector shows it.
func TestLearnsEdgeSignal(t *testing.T) {
	var gs []detector.Graph
	for s := range 20 {
		g := withEdges(randomGraph(40, 3, 2, uint64(s)+10), 2, uint64(s)+50)
		in, deg := make([]float64, 40), make([]float64, 40)
		for u := range g.Adj {
			for i, v := range g.Adj[u] {
				in[v] += g.E[u][i][0]
				deg[v]++
			}
		}
		for v := range g.Y {
			g.Y[v] = 0
			if deg[v] > 0 && in[v]/deg[v] > 2 {
				g.Y[v] = 1
			}
		}
		gs = append(gs, g)
	}
	m := detector.NewModel(3, 2, 16, 16, 2, 3)
	trainHeldOut(t, m, gs, "E-GraphSAGE did not learn an edge signal")
	// A graph without its edge data is refused before training.
	bad := gs[0]
	bad.E = nil
	if _, err := Run(m, []detector.Graph{bad}, Config{Epochs: 1}); err == nil || !strings.Contains(err.Error(), "edge") {
		t.Fatalf("graph without edge data: %v", err)
	}
}
