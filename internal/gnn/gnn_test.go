package gnn

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func randomGraph(n, f, k int, seed uint64) Graph {
	rng := rand.New(rand.NewPCG(seed, 1))
	g := Graph{X: make([][]float64, n), Adj: make([][]int, n), Y: make([]int, n)}
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
func withEdges(g Graph, e int, seed uint64) Graph {
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
	m := NewEdgeModel(f, e, 6, 5, k, 1)
	// Biases away from zero so few ReLUs sit at the kink.
	for _, b := range [][]float64{m.B1, m.B2} {
		for i := range b {
			b[i] = 0.1
		}
	}
	g := randomGraph(12, f, k, 2)
	if e > 0 {
		g = withEdges(g, e, 4)
		m.Fit([]Graph{g})
	}
	w := []float64{1, 2, 0.5, 3}
	grads := zerosLike(m.params())
	m.lossGrad(&g, w, grads)
	const h = 1e-6
	worst := 0.0
	for t2, p := range m.params() {
		for i := range p {
			old := p[i]
			p[i] = old + h
			lp := m.lossGrad(&g, w, zerosLike(m.params()))
			p[i] = old - h
			lm := m.lossGrad(&g, w, zerosLike(m.params()))
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
	var gs []Graph
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
	m := NewModel(3, 16, 16, 2, 3)
	trainHeldOut(t, m, gs, "GraphSAGE did not learn a neighbourhood signal")
}

// trainHeldOut trains m on the first 15 graphs, sets its threshold there, and fails the test with
// failure unless the held-out rest gets F1 ≥ 0.8.
func trainHeldOut(t *testing.T, m *Model, gs []Graph, failure string) {
	t.Helper()
	m.Fit(gs[:15])
	if _, err := m.Train(gs[:15], TrainConfig{Epochs: 60, LR: 0.01, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	m.SetThreshold(gs[:15])
	r := EvaluateAll([]Detector{m.Detector()}, gs[15:])[0]
	t.Logf("held-out F1 %.3f AUC %.3f", r.F1, r.AUC)
	if r.F1 < 0.8 {
		t.Fatalf("%s: F1 %.3f", failure, r.F1)
	}
}

// TestLearnsEdgeSignal: the label of a node is whether its neighbours' counters on their links to it
// (e_{u→v} feature 0) are high on average — nothing in any node vector shows it.
func TestLearnsEdgeSignal(t *testing.T) {
	var gs []Graph
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
	m := NewEdgeModel(3, 2, 16, 16, 2, 3)
	trainHeldOut(t, m, gs, "E-GraphSAGE did not learn an edge signal")
	// A graph without its edge data is refused before training.
	bad := gs[0]
	bad.E = nil
	if _, err := m.Train([]Graph{bad}, TrainConfig{Epochs: 1}); err == nil || !strings.Contains(err.Error(), "edge") {
		t.Fatalf("graph without edge data: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	m := NewEdgeModel(13, 7, 8, 7, 7, 5)
	m.Threshold = 0.37
	m.Mean[3], m.Std[2] = 1.5, 0.25
	m.EMean[1], m.EStd[4] = -0.5, 3
	path := filepath.Join(t.TempDir(), "m.x6m")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := m.MarshalBinary()
	b, _ := l.MarshalBinary()
	if !bytes.Equal(a, b) || l.Version() != m.Version() {
		t.Fatal("round trip changed the model")
	}
	g := withEdges(randomGraph(10, 13, 7, 9), 7, 1)
	pa, pb := m.Predict(&g), l.Predict(&g)
	for v := range pa {
		for k := range pa[v] {
			if pa[v][k] != pb[v][k] {
				t.Fatal("loaded model predicts differently")
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	m := NewEdgeModel(4, 2, 3, 3, 2, 1)
	good, _ := m.MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":     {},
		"magic":     mut(func(b []byte) []byte { b[0] = 'Y'; return b }),
		"version 1": mut(func(b []byte) []byte { b[4] = 1; return b }),
		"version 3": mut(func(b []byte) []byte { b[4] = 3; return b }),
		"flags":     mut(func(b []byte) []byte { b[5] = 1; return b }),
		"dims":      mut(func(b []byte) []byte { b[6], b[7] = 0xff, 0xff; return b }),
		"edge dims": mut(func(b []byte) []byte { b[8], b[9] = 0, 3; return b }),
		"edge std":  mut(func(b []byte) []byte { copy(b[24+8*(4+4+4):], make([]byte, 8)); return fixSum(b) }),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"checksum":  mut(func(b []byte) []byte { b[30] ^= 1; return b }),
		"pickle":    []byte("\x80\x04\x95cos\nsystem\n"),
	}
	for name, b := range cases {
		_, err := UnmarshalModel(b)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: got %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := UnmarshalModel(cases["version 1"]); err == nil || !strings.Contains(err.Error(), "retrain") {
		t.Fatalf("version 1 error does not say what to do: %v", err)
	}
	if _, err := UnmarshalModel(cases["edge std"]); err == nil || !strings.Contains(err.Error(), "edge std") {
		t.Fatalf("zero edge std: %v", err)
	}
	// A NaN weight with a valid checksum is still refused.
	m.W1[0] = math.NaN()
	if _, err := m.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatal("NaN weight encoded")
	}
	path := filepath.Join(t.TempDir(), "bad.x6m")
	os.WriteFile(path, []byte("not a model"), 0o644)
	if _, err := Load(path); err == nil || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Load: %v", err)
	}
}

// fixSum recomputes the trailing checksum of an edited model file.
func fixSum(b []byte) []byte {
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	copy(b[len(b)-sha256.Size:], sum[:])
	return b
}

func FuzzUnmarshalModel(f *testing.F) {
	m := NewModel(3, 2, 2, 2, 1)
	good, _ := m.MarshalBinary()
	f.Add(good)
	e := NewEdgeModel(2, 2, 2, 2, 2, 1)
	good, _ = e.MarshalBinary()
	f.Add(good)
	f.Add([]byte("X6GS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalModel(b)
		if err != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatal("decode → encode is not the identity")
		}
	})
}

func TestMetrics(t *testing.T) {
	s := []float64{0.1, 0.4, 0.35, 0.8}
	p := []bool{false, false, true, true}
	if a := AUC(s, p); math.Abs(a-0.75) > 1e-12 {
		t.Fatalf("AUC %v", a)
	}
	b := Evaluate(s, p, 0.35)
	if b.TP != 2 || b.FP != 1 || math.Abs(b.F1-0.8) > 1e-12 {
		t.Fatalf("%+v", b)
	}
	if th := BestThreshold(s, p); th != 0.8 && th != 0.35 {
		t.Fatalf("threshold %v", th)
	}
}

func TestBaselines(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var rows [][]float64
	for range 500 {
		rows = append(rows, []float64{rng.NormFloat64(), rng.NormFloat64()})
	}
	z := FitZScore(rows)
	f := FitIForest(rows, 50, 128, 1)
	out := []float64{6, 6}
	if z.Score(out) < 4 || z.Score(rows[0]) > 4 {
		t.Fatalf("z-score %v %v", z.Score(out), z.Score(rows[0]))
	}
	if f.Score(out) < 0.6 || f.Score([]float64{0, 0}) > 0.5 {
		t.Fatalf("iforest %v %v", f.Score(out), f.Score([]float64{0, 0}))
	}
}
