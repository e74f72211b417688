package control

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
)

// streamMirror rebuilds the map from a snapshot and the diffs after it, as the console does.
type streamMirror struct {
	nodes map[string][]any
	links map[[2]string][]any
}

func (m *streamMirror) snapshot(t *testing.T, doc []byte) {
	t.Helper()
	var s struct {
		At    time.Time
		Nodes [][]any
		Links [][]any
	}
	if err := json.Unmarshal(doc, &s); err != nil || s.At.IsZero() {
		t.Fatalf("snapshot %s: %v", doc, err)
	}
	m.nodes, m.links = map[string][]any{}, map[[2]string][]any{}
	for _, n := range s.Nodes {
		m.nodes[n[0].(string)] = n
	}
	for _, l := range s.Links {
		a, b := s.Nodes[int(l[0].(float64))][0].(string), s.Nodes[int(l[1].(float64))][0].(string)
		m.links[[2]string{a, b}] = []any{a, b, l[2], l[3], l[4]}
	}
}

func (m *streamMirror) diff(t *testing.T, doc []byte) {
	t.Helper()
	var d struct {
		At    time.Time
		Nodes [][]any
		Gone  []string
		Links [][]any
		Cut   [][2]string
	}
	if err := json.Unmarshal(doc, &d); err != nil || d.At.IsZero() {
		t.Fatalf("diff %s: %v", doc, err)
	}
	for _, n := range d.Nodes {
		m.nodes[n[0].(string)] = n
	}
	for _, name := range d.Gone {
		delete(m.nodes, name)
	}
	for _, l := range d.Links {
		m.links[[2]string{l[0].(string), l[1].(string)}] = l
	}
	for _, c := range d.Cut {
		delete(m.links, c)
	}
}

// equals reports whether the mirror shows top, with the stream's rounding.
func (m *streamMirror) equals(top *api.Topology) error {
	if len(m.nodes) != len(top.Nodes) || len(m.links) != len(top.Links) {
		return fmt.Errorf("mirror has %d nodes, %d links; topology %d, %d", len(m.nodes), len(m.links), len(top.Nodes), len(top.Links))
	}
	for _, n := range top.Nodes {
		got := m.nodes[n.Name]
		if got == nil || got[1] != n.Status || (got[3] == 1.0) != n.Anomalous || (got[2] == nil) != (n.Score == nil) ||
			(n.Score != nil && math.Abs(got[2].(float64)-*n.Score) > 0.0005) {
			return fmt.Errorf("node %s: mirror %v, topology %+v", n.Name, got, n)
		}
	}
	for _, l := range top.Links {
		got := m.links[[2]string{l.A, l.B}]
		if got == nil || math.Abs(got[2].(float64)-l.RTTMillis) > 0.05 || math.Abs(got[3].(float64)-l.LossRatio) > 0.00005 ||
			(got[4] == 1.0) != l.Confirmed {
			return fmt.Errorf("link %s-%s: mirror %v, topology %+v", l.A, l.B, got, l)
		}
	}
	return nil
}

func randomTopology(r *rand.Rand, at time.Time) *api.Topology {
	top := &api.Topology{GeneratedAt: at, StaleAfterSeconds: 30}
	var names []string
	for i := range 40 {
		if r.IntN(4) == 0 {
			continue // this node is not enrolled at this moment
		}
		name := fmt.Sprintf("n%02d", i)
		names = append(names, name)
		n := api.TopologyNode{Name: name, Status: []string{"online", "stale", "silent", "revoked"}[r.IntN(4)]}
		if r.IntN(2) == 0 {
			sc := r.Float64()
			n.Score, n.Anomalous = &sc, sc > 0.8
		}
		top.Nodes = append(top.Nodes, n)
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			if r.IntN(8) == 0 {
				top.Links = append(top.Links, api.TopologyLink{A: a, B: b, RTTMillis: r.Float64() * 300, LossRatio: r.Float64() / 10, Confirmed: r.IntN(2) == 0})
			}
		}
	}
	return top
}

// TestMapStream: a snapshot and then diffs rebuild every topology of a changing mesh, an unchanged
// mesh makes an empty diff, and changes below the map's resolution make none.
func TestMapStream(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	at := time.Date(2026, 12, 6, 23, 0, 0, 0, time.UTC)
	ms, mirror := newMapStream(), &streamMirror{}
	top := randomTopology(r, at)
	full := ms.snapshot(top)
	mirror.snapshot(t, full)
	if err := mirror.equals(top); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		top = randomTopology(r, at.Add(time.Duration(i)*time.Second))
		doc, changed := ms.diff(top)
		if !changed {
			t.Fatalf("step %d: a new random mesh made no diff", i)
		}
		mirror.diff(t, doc)
		if err := mirror.equals(top); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if doc, changed := ms.diff(top); changed || len(doc) > 40 {
		t.Fatalf("unchanged mesh: changed %v, %s", changed, doc)
	}
	for i := range top.Links {
		top.Links[i].RTTMillis += 0.001
	}
	if doc, changed := ms.diff(top); changed {
		t.Fatalf("RTT moved by 1 µs: %s", doc)
	}
	// A snapshot starts afresh: the next diff is against it.
	mirror.snapshot(t, ms.snapshot(top))
	if _, changed := ms.diff(top); changed {
		t.Fatal("diff right after a snapshot of the same mesh")
	}
}

// BenchmarkMapStream: encoding the map of 1,000 nodes and ~2,000 links, whole and as a diff.
func BenchmarkMapStream(b *testing.B) {
	top := &api.Topology{GeneratedAt: time.Now()}
	for i := range 1000 {
		sc := float64(i%100) / 100
		top.Nodes = append(top.Nodes, api.TopologyNode{Name: fmt.Sprintf("node-%04d", i), Status: "online", Score: &sc})
		for _, d := range []int{1, 37} {
			top.Links = append(top.Links, api.TopologyLink{A: fmt.Sprintf("node-%04d", i), B: fmt.Sprintf("node-%04d", (i+d)%1000),
				RTTMillis: float64(i%120) + 0.5, LossRatio: float64(i%50) / 1000, Confirmed: true})
		}
	}
	verbose, _ := json.Marshal(top)
	b.Run("snapshot", func(b *testing.B) {
		var n int
		for b.Loop() {
			n = len(newMapStream().snapshot(top))
		}
		b.ReportMetric(float64(n), "bytes")
		b.ReportMetric(float64(len(verbose)), "verbose-bytes")
	})
	b.Run("diff-one-node", func(b *testing.B) {
		ms := newMapStream()
		ms.snapshot(top)
		var n int
		for i := 0; b.Loop(); i++ {
			top.Nodes[0].Status = []string{"online", "stale"}[i%2]
			doc, _ := ms.diff(top)
			n = len(doc)
		}
		b.ReportMetric(float64(n), "bytes")
	})
}
