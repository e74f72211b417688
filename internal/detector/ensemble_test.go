package detector

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"testing"
)

// members returns n single models of the same shape that differ in their initialisation and
// normalisation, so their predictions differ.
func members(n int) []*Model {
	var ms []*Model
	for i := range n {
		m := NewModel(5, 3, 6, 4, 4, uint64(10+i))
		m.Threshold = 0.2 + 0.1*float64(i)
		m.Mean[1], m.Std[2] = 0.3*float64(i), 1+float64(i)
		m.Bo[0] = 0.5 * float64(i)
		ms = append(ms, m)
	}
	return ms
}

func TestEnsembleIsMeanOfMembers(t *testing.T) {
	ms := members(3)
	e, err := NewEnsemble(ms)
	if err != nil {
		t.Fatal(err)
	}
	g := ringGraph(9, 5, 3)
	got, scores := e.Predict(&g), Scores(e, &g)
	// The mean computed independently, from each member's own forward pass.
	var ps [][]float64
	for _, m := range ms {
		ps = append(ps, m.Forward(&g).P)
	}
	for v := range got {
		for c := range got[v] {
			want := 0.0
			for _, p := range ps {
				want += p[v*m0K(ms)+c]
			}
			want /= float64(len(ps))
			if math.Abs(got[v][c]-want) > 1e-12 {
				t.Fatalf("node %d class %d: ensemble %v, mean of members %v", v, c, got[v][c], want)
			}
			if c == 0 && math.Abs(scores[v]-(1-want)) > 1e-12 {
				t.Fatalf("node %d: anomaly score %v, 1 − mean p(normal) %v", v, scores[v], 1-want)
			}
		}
		// The members disagree, so a mean is not any one of them.
		if math.Abs(got[v][0]-ps[0][v*m0K(ms)]) < 1e-9 && math.Abs(got[v][0]-ps[1][v*m0K(ms)]) < 1e-9 {
			t.Fatalf("node %d: members agree, the test cannot tell a mean from a member", v)
		}
	}
}

func m0K(ms []*Model) int { return ms[0].K }

func TestEnsembleSaveLoad(t *testing.T) {
	e, err := NewEnsemble(members(4))
	if err != nil {
		t.Fatal(err)
	}
	e.Threshold = 0.61
	path := filepath.Join(t.TempDir(), "e.x6m")
	if err := e.Save(path); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := p.(*Ensemble)
	if !ok {
		t.Fatalf("an ensemble loaded as %T", p)
	}
	a, _ := e.MarshalBinary()
	b, _ := l.MarshalBinary()
	if !bytes.Equal(a, b) || l.Version() != e.Version() || len(l.Members) != 4 || l.Threshold != 0.61 {
		t.Fatal("round trip changed the ensemble")
	}
	if a[4] != ensembleVersion {
		t.Fatalf("ensemble written as version %d", a[4])
	}
	for i := range e.Members {
		if l.Members[i].Version() != e.Members[i].Version() {
			t.Fatalf("member %d changed", i)
		}
	}
	g := ringGraph(7, 5, 3)
	pa, pb := e.Predict(&g), l.Predict(&g)
	for v := range pa {
		for c := range pa[v] {
			if pa[v][c] != pb[v][c] {
				t.Fatal("loaded ensemble predicts differently")
			}
		}
	}
	// A single model is still written as version 2, with the version it always had.
	single, _ := e.Members[0].MarshalBinary()
	if single[4] != fileVersion {
		t.Fatalf("single model written as version %d", single[4])
	}
}

// container encodes an ensemble file around raw member encodings, with a valid outer checksum.
func container(n byte, threshold float64, ms ...[]byte) []byte {
	b := []byte(fileMagic)
	b = append(b, ensembleVersion, 0, n)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(threshold))
	for _, m := range ms {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func TestEnsembleMalformed(t *testing.T) {
	ms := members(2)
	m0, _ := ms[0].MarshalBinary()
	m1, _ := ms[1].MarshalBinary()
	other, _ := NewModel(6, 3, 6, 4, 4, 1).MarshalBinary()
	e, _ := NewEnsemble(ms)
	nested, _ := e.MarshalBinary()
	good := container(2, 0.5, m0, m1)
	if _, err := UnmarshalModel(good); err != nil {
		t.Fatalf("the well-formed container is refused: %v", err)
	}
	damaged := bytes.Clone(m1)
	damaged[40] ^= 1
	cases := map[string][]byte{
		"one member":        container(1, 0.5, m0),
		"too many members":  container(MaxMembers+1, 0.5, m0, m1),
		"count above data":  container(3, 0.5, m0, m1),
		"mismatched member": container(2, 0.5, m0, other),
		"nested ensemble":   container(2, 0.5, m0, nested),
		"member damaged":    container(2, 0.5, m0, damaged),
		"threshold":         container(2, math.NaN(), m0, m1),
		"trailing":          fixSum(append(bytes.Clone(good[:len(good)-sha256.Size]), append([]byte{0}, make([]byte, sha256.Size)...)...)),
		"checksum":          func() []byte { b := bytes.Clone(good); b[20] ^= 1; return b }(),
		"flags":             fixSum(func() []byte { b := bytes.Clone(good); b[5] = 1; return b }()),
		"length overflow":   fixSum(func() []byte { b := bytes.Clone(good); b[15] = 0xff; return b }()),
		"header only":       good[:ensembleHeader],
	}
	for name, b := range cases {
		_, err := UnmarshalModel(b)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: got %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := NewEnsemble(ms[:1]); err == nil {
		t.Fatal("an ensemble of one model was built")
	}
	if _, err := NewEnsemble([]*Model{ms[0], NewModel(6, 3, 6, 4, 4, 1)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("members of different shapes: %v", err)
	}
}

// BenchmarkPredict: one model against an ensemble of four, on a 100-node graph of the shipped
// model's dimensions. The ensemble's cost is its members' forward passes.
func BenchmarkPredict(b *testing.B) {
	var ms []*Model
	for i := range 4 {
		ms = append(ms, NewModel(NumRobust, NumRobustEdge, 32, 32, 7, uint64(i+1)))
	}
	e, err := NewEnsemble(ms)
	if err != nil {
		b.Fatal(err)
	}
	g := ringGraph(100, NumRobust, NumRobustEdge)
	for _, c := range []struct {
		name string
		m    Predictor
	}{{"single", ms[0]}, {"ensemble4", e}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.m.Predict(&g)
			}
		})
	}
}

// constant returns a model that gives every node the class probabilities p: its output weights
// are zero and its output biases log p.
func constant(p ...float64) *Model {
	m := NewModel(5, 3, 6, 4, len(p), 7)
	for i := range m.Wo {
		m.Wo[i] = 0
	}
	for k, q := range p {
		m.Bo[k] = math.Log(q)
	}
	return m
}

// TestEnsembleClassifyMajority checks the ensemble's decision: a fault only where more than half
// of the members name one, the fault of highest mean probability, whatever the mean of the
// probabilities says.
func TestEnsembleClassifyMajority(t *testing.T) {
	unsure := constant(0.40, 0.35, 0.25)  // normal, just
	leaning := constant(0.40, 0.45, 0.15) // fault 1, just
	for _, tc := range []struct {
		name          string
		members       []*Model
		want, meanArg int
	}{
		// One confident member outweighs three unsure ones in the mean, not in the vote.
		{"one confident of four", []*Model{unsure, unsure, unsure, constant(0.01, 0.01, 0.98)}, 0, 2},
		// Three members leaning to a fault outvote one sure of normal, whose probability wins the mean.
		{"three of four", []*Model{leaning, leaning, leaning, constant(0.98, 0.01, 0.01)}, 1, 0},
		// Half is not a majority.
		{"two of four", []*Model{leaning, leaning, constant(0.98, 0.01, 0.01), unsure}, 0, 0},
		// The fault named is the one of highest mean probability among the faults, not the one
		// most members name.
		{"kind by mean", []*Model{constant(0.025, 0.025, 0.95), constant(0.2, 0.5, 0.3), constant(0.2, 0.5, 0.3)}, 2, 2},
	} {
		e, err := NewEnsemble(tc.members)
		if err != nil {
			t.Fatal(err)
		}
		g := ringGraph(6, 5, 3)
		probs, kinds := e.Classify(&g)
		for v := range kinds {
			if kinds[v] != tc.want {
				t.Fatalf("%s: node %d classified %d, want %d", tc.name, v, kinds[v], tc.want)
			}
			if got := mostProbable(probs[v], 0); got != tc.meanArg {
				t.Fatalf("%s: node %d: the mean's most probable class is %d, want %d (the case tests nothing)", tc.name, v, got, tc.meanArg)
			}
		}
	}
	// A single model's decision is its most probable class.
	m := constant(0.3, 0.3, 0.4)
	g := ringGraph(4, 5, 3)
	_, single := m.Classify(&g)
	for v, k := range single {
		if k != 2 {
			t.Fatalf("single model: node %d classified %d, want 2", v, k)
		}
	}
}
