package experiment

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// Temporary diagnostic (not committed): counterfactual substitution on false alarms.
func TestZZDiag(t *testing.T) {
	scen := os.Getenv("DIAG_SCEN")
	if scen == "" {
		t.Skip()
	}
	m, err := detector.Load("../defaultmodel/detector.x6m")
	if err != nil {
		t.Fatal(err)
	}
	var sc Scenario
	for _, s := range ShiftSuite() {
		if s.Name == scen {
			sc = s
		}
	}
	base := DataConfig{Seeds: []uint64{901, 902, 903}, Nodes: 100, Duration: 60 * time.Second, Faults: DefaultFaults}
	shifted := base
	shifted.Sim, shifted.Perturb = sc.Sim, sc.Perturb
	nom, err := Generate(base)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := Generate(shifted)
	if err != nil {
		t.Fatal(err)
	}
	flags := persist(decide(Classifier(m), gs), 60, 3)
	type key struct{ run, v, kind int }
	seen := map[key]bool{}
	counts := map[string]int{}
	total := 0
	for ti := range gs {
		g := &gs[ti]
		for v := range g.X {
			if g.Y[v] != 0 || !flags[ti][v][0] {
				continue
			}
			kind := slices.Index(flags[ti][v][1:], true) + 1
			k := key{ti / 60, v, kind}
			// first interval of each stretch only
			if ti%60 > 0 && flags[ti-1][v][kind] {
				continue
			}
			seen[k] = true
			total++
			silentNbr := 0
			for _, u := range g.Adj[v] {
				if g.X[u][detector.RReported] == 0 {
					silentNbr++
				}
			}
			cls := func(h *detector.Graph) int { return argmax(m.Predict(h)[v]) }
			try := func(name string, mod func(h *detector.Graph)) {
				h := cloneGraph(g)
				mod(&h)
				if cls(&h) == 0 {
					counts[name]++
				}
			}
			n := &nom[ti]
			try("own node row", func(h *detector.Graph) { h.X[v] = slices.Clone(n.X[v]) })
			for j := range detector.NumRobust {
				try("own "+detector.RobustNames[j], func(h *detector.Graph) { h.X[v][j] = n.X[v][j] })
			}
			try("own deficits", func(h *detector.Graph) {
				for _, j := range []int{detector.RDeficit, detector.RDeficitW, detector.RLogDeficitW} {
					h.X[v][j] = n.X[v][j]
				}
			})
			try("own nbr view", func(h *detector.Graph) {
				for j := detector.RNbrReported; j <= detector.RNbrRTTExcess; j++ {
					h.X[v][j] = n.X[v][j]
				}
			})
			try("silent nbrs rows", func(h *detector.Graph) {
				for _, u := range g.Adj[v] {
					if g.X[u][detector.RReported] == 0 {
						h.X[u] = slices.Clone(n.X[u])
					}
				}
			})
			try("silent nbrs edges", func(h *detector.Graph) {
				for _, u := range g.Adj[v] {
					if g.X[u][detector.RReported] == 0 {
						h.E[u] = cloneRows(n.E[u])
					}
				}
			})
			try("silent nbrs rows+edges", func(h *detector.Graph) {
				for _, u := range g.Adj[v] {
					if g.X[u][detector.RReported] == 0 {
						h.X[u] = slices.Clone(n.X[u])
						h.E[u] = cloneRows(n.E[u])
					}
				}
			})
			try("own edges", func(h *detector.Graph) { h.E[v] = cloneRows(n.E[v]) })
			try("all nbr rows", func(h *detector.Graph) {
				for _, u := range g.Adj[v] {
					h.X[u] = slices.Clone(n.X[u])
				}
			})
			zeroRel := func(h *detector.Graph, all bool) {
				for w := range h.E {
					if !all && w != v && !slices.Contains(g.Adj[v], w) {
						continue
					}
					for _, e := range h.E[w] {
						e[detector.RETxRel], e[detector.RERxRel] = 0, 0
					}
				}
			}
			try("tx/rx_rel=0 around v", func(h *detector.Graph) { zeroRel(h, false) })
			try("tx/rx_rel=0 everywhere", func(h *detector.Graph) { zeroRel(h, true) })
			try("own route_chg=0", func(h *detector.Graph) { h.X[v][detector.RRouteChg] = 0 })
			try("own deficits=0", func(h *detector.Graph) {
				for _, j := range []int{detector.RDeficit, detector.RDeficitW, detector.RLogDeficitW} {
					h.X[v][j] = 0
				}
			})
			try("nbr deficits=0", func(h *detector.Graph) {
				for _, u := range g.Adj[v] {
					for _, j := range []int{detector.RDeficit, detector.RDeficitW, detector.RLogDeficitW} {
						h.X[u][j] = 0
					}
				}
			})
			try("own row + silent rows+edges", func(h *detector.Graph) {
				h.X[v] = slices.Clone(n.X[v])
				for _, u := range g.Adj[v] {
					if g.X[u][detector.RReported] == 0 {
						h.X[u] = slices.Clone(n.X[u])
						h.E[u] = cloneRows(n.E[u])
					}
				}
			})
			fmt.Printf("FA run %d t %d v %d as %s: self reported %.0f, deg %d, silent nbrs %d, deficit_w %.3f (nominal %.3f) nbr_loss_mean %.3f nbr_up %.3f cpu %.2f route %.3f txrel %v deliv %.3f/%.3f (nom %.3f/%.3f)\n",
				ti/60, ti%60, v, sim.Kind(kind), g.X[v][0], len(g.Adj[v]), silentNbr, g.X[v][detector.RDeficitW], n.X[v][detector.RDeficitW],
				g.X[v][detector.RNbrLossMean], g.X[v][detector.RNbrUp], g.X[v][detector.RCPU], g.X[v][detector.RRouteChg], relOf(g, v), g.X[v][detector.RDelivery], g.X[v][detector.RWorstHop], n.X[v][detector.RDelivery], n.X[v][detector.RWorstHop])
		}
	}
	fmt.Printf("false-alarm stretches %d; counterfactual that clears the flag at its first interval:\n", total)
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return counts[b] - counts[a] })
	for _, k := range names {
		fmt.Printf("  %-30s %d\n", k, counts[k])
	}
}

func cloneGraph(g *detector.Graph) detector.Graph {
	h := *g
	h.X = cloneRows(g.X)
	h.E = make([][][]float64, len(g.E))
	for v := range g.E {
		h.E[v] = cloneRows(g.E[v])
	}
	return h
}

func relOf(g *detector.Graph, v int) string {
	out := ""
	for _, e := range g.E[v] {
		out += fmt.Sprintf("%.1f/%.1f ", e[detector.RETxRel], e[detector.RERxRel])
	}
	return out
}
