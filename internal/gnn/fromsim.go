package gnn

import "x0tta6bl4/internal/sim"

// FromSim turns a simulator run into one labelled graph per telemetry interval, over the known
// topology (the configured links, whether up or not).
func FromSim(r *sim.Result) []Graph {
	gs := make([]Graph, 0, len(r.Intervals))
	for _, iv := range r.Intervals {
		g := Graph{Adj: r.Adj, X: make([][]float64, len(iv.X)), Y: make([]int, len(iv.X))}
		for v, x := range iv.X {
			row := make([]float64, len(x))
			for j, f := range x {
				row[j] = float64(f)
			}
			g.X[v] = row
			g.Y[v] = int(iv.Labels[v])
		}
		gs = append(gs, g)
	}
	return gs
}
