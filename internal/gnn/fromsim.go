package gnn

import "x0tta6bl4/internal/sim"

// FromSim turns a simulator run into one labelled graph per telemetry interval, over the known
// topology (the configured links, whether up or not), with node and edge features.
func FromSim(r *sim.Result) []Graph {
	gs := make([]Graph, 0, len(r.Intervals))
	for i := range r.Intervals {
		g := FromInterval(r.Adj, &r.Intervals[i])
		g.Y = make([]int, len(g.X))
		for v, k := range r.Intervals[i].Labels {
			g.Y[v] = int(k)
		}
		gs = append(gs, g)
	}
	return gs
}

// FromInterval turns one interval's telemetry into an unlabelled graph.
func FromInterval(adj [][]int, iv *sim.Interval) Graph {
	g := Graph{Adj: adj, X: make([][]float64, len(iv.X)), E: make([][][]float64, len(iv.X))}
	for v, x := range iv.X {
		row := make([]float64, len(x))
		for j, f := range x {
			row[j] = float64(f)
		}
		g.X[v] = row
		links := make([][]float64, len(iv.E[v]))
		for i, e := range iv.E[v] {
			l := make([]float64, len(e))
			for j, f := range e {
				l[j] = float64(f)
			}
			links[i] = l
		}
		g.E[v] = links
	}
	return g
}
