package rca

import (
	"math"
	"slices"
	"testing"

	"x0tta6bl4/internal/telemetry"
)

// cascadeWindow is a line 0–1–2–3–4 with a spur 1–5–3: the link 1–2 fails at interval 6 and its
// traffic moves onto relay 5, which saturates. The detector scores the congested relay (0.95) above
// the failed link's ends (0.7 and 0.6); the ends report the link down, the relay a tripled load.
func cascadeWindow() *Window {
	adj := [][]int{{1}, {0, 2, 5}, {1, 3}, {2, 4, 5}, {3}, {1, 3}}
	const n, open, end = 6, 6, 12
	w := &Window{Adj: adj, Threshold: 0.5, Open: open}
	for t := range end {
		x := make([][]float64, n)
		up := make([][]bool, n)
		sc := make([]float64, n)
		for v := range n {
			x[v] = make([]float64, telemetry.NumNode)
			x[v][telemetry.FDegree] = float64(len(adj[v]))
			x[v][telemetry.FTransitIn] = math.Log1p(100)
			x[v][telemetry.FCPU] = 0.3 + 0.01*float64((t+v)%3)
			up[v] = make([]bool, len(adj[v]))
			for i := range up[v] {
				up[v][i] = true
			}
			sc[v] = 0.05
		}
		if t >= open {
			for _, e := range [][2]int{{1, 2}, {2, 1}} {
				up[e[0]][slices.Index(adj[e[0]], e[1])] = false
				x[e[0]][telemetry.FDegree]--
			}
			x[5][telemetry.FTransitIn] = math.Log1p(300)
			x[5][telemetry.FCPU] = 1
			x[5][telemetry.FDropped] = math.Log1p(120)
			sc[1], sc[2], sc[5] = 0.7, 0.6, 0.95
		}
		w.Metrics, w.LinkUp, w.Scores = append(w.Metrics, x), append(w.LinkUp, up), append(w.Scores, sc)
	}
	return w
}

func rankingNamed(t *testing.T, name string) Ranking {
	i := slices.IndexFunc(Rankings(), func(r Ranking) bool { return r.Name == name })
	if i < 0 {
		t.Fatalf("no ranking %s", name)
	}
	return Rankings()[i]
}

// TestLoadShiftIsNotArgmax: on a cascade whose symptom scores higher than its cause, ranking by
// score names the symptom; the load-shift ranking names an end of the failed link. The test fails
// if load shift is just the argmax of the score.
func TestLoadShiftIsNotArgmax(t *testing.T) {
	w := cascadeWindow()
	roots := [][]int{{1, 2}}
	if order := rankingNamed(t, ScoreRanking).Rank(w); order[0] != 5 || Hit(order, roots, 1) {
		t.Fatalf("score order %v: the symptom should lead", order)
	}
	if order := rankingNamed(t, LoadShiftRanking).Rank(w); !Hit(order, roots, 1) {
		t.Fatalf("load-shift order %v: want 1 or 2 first", order)
	}
	// Without the topology event (the link stays up) nothing explains the relay's load: it leads.
	for t2 := range w.LinkUp {
		for v := range w.LinkUp[t2] {
			for i := range w.LinkUp[t2][v] {
				w.LinkUp[t2][v][i] = true
			}
		}
	}
	if order := rankingNamed(t, LoadShiftRanking).Rank(w); order[0] != 5 {
		t.Fatalf("no topology event: order %v", order)
	}
}

// TestChangeProb: BOCPD puts the change of a step series at the step and sees none in noise.
func TestChangeProb(t *testing.T) {
	var step, flat [][]float64
	for i := range 14 {
		wob := 0.1 * float64(i%3-1)
		v := wob
		if i >= 8 {
			v = 6 + wob
		}
		step, flat = append(step, []float64{v, wob}), append(flat, []float64{wob, -wob})
	}
	cp, ok := firstChange(changeProb(step, changeLag, defaultBOCPD))
	if !ok || cp != 8 {
		t.Fatalf("change at %d (found %v), want 8", cp, ok)
	}
	if _, ok := firstChange(changeProb(flat, changeLag, defaultBOCPD)); ok {
		t.Fatalf("change found in a flat series: %v", changeProb(flat, changeLag, defaultBOCPD))
	}
}

// TestBARO: the global change point is the incident's start, and the node whose metrics moved the
// most (the relay, from CPU 0.3 to 1 and a tripled load) ranks first: BARO, like the score, cannot
// tell the symptom from the cause by magnitude.
func TestBARO(t *testing.T) {
	w := cascadeWindow()
	if cp := w.globalChange(); cp != w.Open {
		t.Fatalf("change point %d, want %d", cp, w.Open)
	}
	if order := rankingNamed(t, BARORanking).Rank(w); order[0] != 5 {
		t.Fatalf("baro order %v", order)
	}
	if order := rankingNamed(t, OnsetRanking).Rank(w); !slices.Contains(order[:3], 5) || !slices.Contains(order[:3], 1) {
		t.Fatalf("onset order %v", order)
	}
}

// TestHit: two roots count at top-1 only when both are within the first two.
func TestHit(t *testing.T) {
	order := []int{4, 7, 1, 9}
	if !Hit(order, [][]int{{7, 8}, {4}}, 1) || Hit(order, [][]int{{1}, {4}}, 1) || !Hit(order, [][]int{{1}, {4}}, 3) {
		t.Fatal("hit")
	}
	if Hit(order, [][]int{{3}}, 3) || !Hit(order, [][]int{{9}}, 4) {
		t.Fatal("single hit")
	}
	// A link's second end takes no place: the link and the next root are the first two answers.
	if !Hit([]int{4, 7, 1}, [][]int{{4, 7}, {1}}, 1) || Hit([]int{4, 2, 7, 1}, [][]int{{4, 7}, {1}}, 1) {
		t.Fatal("link hit")
	}
}

// TestDefaultFirst: the default ranking is listed first.
func TestDefaultFirst(t *testing.T) {
	if Rankings()[0].Name != DefaultRanking {
		t.Fatal(Rankings()[0].Name)
	}
}

// TestEmptyWindow: a window without intervals gets an answer, not a panic.
func TestEmptyWindow(t *testing.T) {
	w := &Window{Adj: [][]int{{1}, {0}}, Threshold: 0.5}
	for _, r := range Rankings() {
		if order := r.Rank(w); len(order) != 2 {
			t.Fatalf("%s: %v", r.Name, order)
		}
	}
}
