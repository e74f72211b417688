package detector

import (
	"math"
	"slices"
	"testing"

	"x0tta6bl4/internal/telemetry"
)

// rawLine is a line a – b – c of raw telemetry: b relays `relay` frames a second from a towards
// c and passes on `out` of them; every count is multiplied by scale.
func rawLine(scale, relay, out float64) Graph {
	node := func(transit, dropped float64) []float64 {
		x := make([]float64, telemetry.NumNode)
		x[telemetry.FDegree], x[telemetry.FRTT], x[telemetry.FDelivery], x[telemetry.FWorstHop] = 1, 4, 1, 1
		x[telemetry.FTransitIn], x[telemetry.FForwarded] = math.Log1p(transit), math.Log1p(transit-dropped)
		x[telemetry.FDropped], x[telemetry.FCPU] = math.Log1p(dropped), 0.1
		return x
	}
	link := func(tx, rx float64) []float64 {
		e := make([]float64, telemetry.NumEdge)
		e[telemetry.ETxTransit], e[telemetry.ERxTransit] = tx, rx
		e[telemetry.ETxTransitW], e[telemetry.ERxTransitW] = tx, rx
		e[telemetry.EProbeRTT], e[telemetry.EUp] = 4, 1
		return e
	}
	return Graph{
		X:   [][]float64{node(0, 0), node(scale*relay, scale*(relay-out)), node(0, 0)},
		Adj: [][]int{{1}, {0, 2}, {1}},
		E:   [][][]float64{{link(scale*relay, 0)}, {link(0, 0), link(0, 0)}, {link(0, scale*out)}},
	}
}

// TestRobustVolumeInvariant: ten times or a tenth of the traffic leaves every derived feature
// that compares counts unchanged.
func TestRobustVolumeInvariant(t *testing.T) {
	base := rawLine(1, 100, 70)
	g := Robust(&base)
	if d := g.X[1][RDeficit]; math.Abs(d-0.3) > 1e-9 {
		t.Fatalf("deficit %v, want 0.3", d)
	}
	if d := g.X[1][RDropRatio]; math.Abs(d-0.3) > 1e-9 {
		t.Fatalf("drop ratio %v, want 0.3", d)
	}
	for _, scale := range []float64{10, 0.1} {
		raw := rawLine(scale, 100, 70)
		h := Robust(&raw)
		for v := range h.X {
			for _, j := range []int{RDeficit, RDeficitW, RDropRatio, RNbrLossMin, RNbrUp, RReported} {
				if math.Abs(h.X[v][j]-g.X[v][j]) > 1e-9 {
					t.Fatalf("×%v: node %d %s %v, at ×1 %v", scale, v, RobustNames[j], h.X[v][j], g.X[v][j])
				}
			}
		}
	}
}

// TestRobustMissingIsUnknown: a node without a report has all its own features 0 and reported 0,
// its links' vectors 0, and its neighbours' view of it still computed from their reports.
func TestRobustMissingIsUnknown(t *testing.T) {
	raw := rawLine(1, 100, 0)
	raw.X[1] = make([]float64, telemetry.NumNode)
	raw.X[1][telemetry.FMissing] = 1
	g := Robust(&raw)
	for j := range RNbrReported {
		if g.X[1][j] != 0 {
			t.Fatalf("missing node's own %s = %v", RobustNames[j], g.X[1][j])
		}
	}
	for _, e := range g.E[1] {
		for j, a := range e {
			if a != 0 {
				t.Fatalf("missing node's link %s = %v", RobustEdgeNames[j], a)
			}
		}
	}
	if g.X[1][RNbrReported] != 1 || g.X[1][RDeficit] != 1 || g.X[0][RReported] != 1 {
		t.Fatalf("neighbours' view of the silent node: %v", g.X[1])
	}
}

// flowGraph builds raw telemetry from per-link reports: links[v][u] = {tx, rx} is what v reports
// about its link to u (handed u to relay, received that u relayed), the same for the window.
func flowGraph(n int, links map[int]map[int][2]float64, silent ...int) Graph {
	g := Graph{X: make([][]float64, n), Adj: make([][]int, n), E: make([][][]float64, n)}
	for v := range n {
		x := make([]float64, telemetry.NumNode)
		x[telemetry.FDelivery], x[telemetry.FWorstHop] = 1, 1
		g.X[v] = x
	}
	for v, ls := range links {
		for u := range ls {
			if !slices.Contains(g.Adj[v], u) {
				g.Adj[v] = append(g.Adj[v], u)
				g.Adj[u] = append(g.Adj[u], v)
			}
		}
	}
	for v := range n {
		slices.Sort(g.Adj[v])
		for _, u := range g.Adj[v] {
			e := make([]float64, telemetry.NumEdge)
			c := links[v][u]
			e[telemetry.ETxTransit], e[telemetry.ERxTransit] = c[0], c[1]
			e[telemetry.ETxTransitW], e[telemetry.ERxTransitW] = c[0], c[1]
			e[telemetry.EUp] = 1
			g.E[v] = append(g.E[v], e)
		}
	}
	for _, v := range silent {
		g.X[v] = make([]float64, telemetry.NumNode)
		g.X[v][telemetry.FMissing] = 1
		for i := range g.E[v] {
			g.E[v][i] = make([]float64, telemetry.NumEdge)
		}
	}
	return g
}

// TestConservationLyingRelays: a relay that drops half of what it is handed and lies about it
// must keep its deficit of 0.5 while its honest neighbour's stays 0.
//
//   - downstream: relay b (1) drops half of what a (0) hands it and reports handing v (2) all of
//     it; v also relays e's (5) 100 to c (3) and on to d (4). By b's testimony v would have
//     dropped a quarter.
//   - upstream: relay g (2) drops half of the 100 u (1) hands it and reports receiving only 50
//     from u; u passes another 100 to f (5). By g's testimony u would have dropped a quarter.
//
// In both, the liar is the more suspect end, so the honest node's own account of their link
// stands in for the liar's testimony.
func TestConservationLyingRelays(t *testing.T) {
	for _, c := range []struct {
		name         string
		n, liar, nbr int
		links        map[int]map[int][2]float64
	}{
		{"downstream framed", 6, 1, 2, map[int]map[int][2]float64{
			0: {1: {100, 0}},
			1: {0: {0, 0}, 2: {100, 0}}, // the lie: 50 handed on
			2: {1: {0, 50}, 3: {150, 0}, 5: {0, 100}},
			3: {2: {0, 150}, 4: {0, 0}},
			4: {3: {0, 150}},
			5: {2: {100, 0}},
		}},
		{"upstream framed", 7, 2, 1, map[int]map[int][2]float64{
			0: {1: {200, 0}},
			1: {0: {0, 0}, 2: {100, 0}, 5: {100, 0}},
			2: {1: {0, 50}, 3: {100, 0}}, // the lies: 50 received, 100 handed on
			3: {2: {0, 50}, 4: {0, 0}},
			4: {3: {0, 50}},
			5: {1: {0, 100}, 6: {0, 0}},
			6: {5: {0, 100}},
		}},
	} {
		raw := flowGraph(c.n, c.links)
		g := Robust(&raw)
		if d := g.X[c.liar][RDeficitW]; math.Abs(d-0.5) > 1e-9 {
			t.Errorf("%s: lying relay's deficit %v, want 0.5", c.name, d)
		}
		if d := g.X[c.nbr][RDeficitW]; math.Abs(d) > 1e-9 {
			t.Errorf("%s: its honest neighbour's deficit %v, want 0", c.name, d)
		}
	}
}

// TestConservationSilentNeighbour: v (1) relays a's (0) 100 to c (2), which is silent. Without
// c's testimony, v's own account of the link to c stands in, so v does not read as dropping
// everything; a blackhole next to a silent neighbour still reads as one by its other links.
func TestConservationSilentNeighbour(t *testing.T) {
	links := map[int]map[int][2]float64{
		0: {1: {100, 0}},
		1: {0: {0, 0}, 2: {100, 0}},
		2: {1: {0, 100}, 3: {0, 0}},
		3: {2: {0, 100}},
	}
	raw := flowGraph(4, links, 2)
	g := Robust(&raw)
	if d := g.X[1][RDeficitW]; math.Abs(d) > 1e-9 {
		t.Errorf("relay beside a silent neighbour: deficit %v, want 0", d)
	}
	if g.X[1][RNbrReported] != 0.5 {
		t.Errorf("nbr_reported %v, want 0.5", g.X[1][RNbrReported])
	}
	// The same relay dropping all and reporting so; its upstream's testimony still convicts it.
	links[1][2] = [2]float64{0, 0}
	raw = flowGraph(4, links, 2)
	g = Robust(&raw)
	if d := g.X[1][RDeficitW]; d != 1 {
		t.Errorf("blackhole beside a silent neighbour: deficit %v, want 1", d)
	}
}
