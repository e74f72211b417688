package detector

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ringGraph is n nodes in a ring, with f node and e edge features per node and link that differ
// from node to node.
func ringGraph(n, f, e int) Graph {
	g := Graph{X: make([][]float64, n), E: make([][][]float64, n), Adj: make([][]int, n)}
	for v := range n {
		g.X[v] = make([]float64, f)
		for j := range f {
			g.X[v][j] = math.Sin(float64(v*f + j))
		}
		g.Adj[v] = []int{(v + n - 1) % n, (v + 1) % n}
		for i := range g.Adj[v] {
			l := make([]float64, e)
			for j := range l {
				l[j] = math.Cos(float64(v*e+j)) * float64(i+1)
			}
			g.E[v] = append(g.E[v], l)
		}
	}
	return g
}

func TestSaveLoad(t *testing.T) {
	m := NewModel(13, 7, 8, 7, 7, 5)
	m.Threshold = 0.37
	m.Mean[3], m.Std[2] = 1.5, 0.25
	m.EMean[1], m.EStd[4] = -0.5, 3
	path := filepath.Join(t.TempDir(), "m.x6m")
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := p.(*Model)
	if !ok {
		t.Fatalf("a single model loaded as %T", p)
	}
	a, _ := m.MarshalBinary()
	b, _ := l.MarshalBinary()
	if !bytes.Equal(a, b) || l.Version() != m.Version() {
		t.Fatal("round trip changed the model")
	}
	g := ringGraph(10, 13, 7)
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
	m := NewModel(4, 2, 3, 3, 2, 1)
	good, _ := m.MarshalBinary()
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":     {},
		"magic":     mut(func(b []byte) []byte { b[0] = 'Y'; return b }),
		"version 1": mut(func(b []byte) []byte { b[4] = 1; return b }),
		"version 3": mut(func(b []byte) []byte { b[4] = 3; return b }),
		"version 4": mut(func(b []byte) []byte { b[4] = 4; return b }),
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
	m := NewModel(3, 0, 2, 2, 2, 1)
	good, _ := m.MarshalBinary()
	f.Add(good)
	e := NewModel(2, 2, 2, 2, 2, 1)
	good, _ = e.MarshalBinary()
	f.Add(good)
	f.Add([]byte("X6GS"))
	ens, _ := NewEnsemble([]*Model{NewModel(2, 1, 2, 2, 2, 1), NewModel(2, 1, 2, 2, 2, 2)})
	good, _ = ens.MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := UnmarshalModel(b)
		if err != nil {
			return
		}
		again, err := p.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatal("decode → encode is not the identity")
		}
	})
}
