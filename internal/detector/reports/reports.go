// Package reports turns node reports — the latest ones the control plane holds, or the ones it
// recorded (ai.record_reports) — into the detector's graphs, and recorded reports with labelled
// incidents into training samples. GET /ai/predict and `ai train --from-records` both build their
// graphs here, so a model trained on recorded reports reads exactly what it is later asked about.
//
// It must never compute a feature from a label: incidents only set the graphs' Y, after the
// features are built (TestNoFeatureFromLabels). It opens no file or socket and reads no clock.
package reports

import (
	"slices"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/telemetry"
)

// Mesh is the detector's raw graph of a mesh as its nodes' reports describe it.
type Mesh struct {
	Graph  detector.Graph       // raw telemetry vectors; the model reads detector.Robust of it
	Names  []string             // node names, in graph order
	Index  map[string]int       // name -> graph index
	Fresh  []bool               // per node: its features came from a fresh report (false: missing)
	Kernel []map[string]float64 // per node: the kernel features of its fresh report, or nil
}

// Build makes the graph of nodes names: latest[v] is node v's latest report (nil: none) and
// fresh[v] whether it is recent enough to be believed. The links are every pair any report lists
// (stale ones too: a link does not vanish because one end went quiet); a node's features are
// those of its fresh report, or "missing" (unknown, as for a dead node) without one; a link's
// features are what its reporting end counted.
func Build(names []string, latest []*api.MeshReport, fresh []bool) *Mesh {
	count := len(names)
	mg := &Mesh{Names: names, Index: make(map[string]int, count), Fresh: make([]bool, count), Kernel: make([]map[string]float64, count)}
	for v, name := range names {
		mg.Index[name] = v
	}
	for v := range count {
		mg.Fresh[v] = latest[v] != nil && fresh[v] && len(latest[v].Features) > 0
		if mg.Fresh[v] {
			mg.Kernel[v] = latest[v].KernelFeatures
		}
	}
	adj := make([][]int, count)
	link := func(a, b int) {
		if !slices.Contains(adj[a], b) {
			adj[a] = append(adj[a], b)
		}
	}
	for v, rep := range latest {
		if rep == nil {
			continue
		}
		for _, p := range rep.Peers {
			if u, ok := mg.Index[p.Name]; ok && u != v {
				link(v, u)
				link(u, v)
			}
		}
	}
	g := detector.Graph{X: make([][]float64, count), Adj: adj, E: make([][][]float64, count)}
	for v := range count {
		x := make([]float64, telemetry.NumNode)
		if mg.Fresh[v] {
			for i, name := range telemetry.NodeNames {
				x[i] = latest[v].Features[name]
			}
			x[telemetry.FMissing] = 0
		} else {
			x[telemetry.FMissing] = 1
		}
		g.X[v] = x
		g.E[v] = make([][]float64, len(adj[v]))
		for i, u := range adj[v] {
			e := make([]float64, telemetry.NumEdge)
			if mg.Fresh[v] {
				for _, p := range latest[v].Peers {
					if p.Name == names[u] {
						for k, name := range telemetry.EdgeNames {
							e[k] = p.Features[name]
						}
					}
				}
			}
			g.E[v][i] = e
		}
	}
	mg.Graph = g
	return mg
}

// Without returns the graph with node u cut off from its neighbours (its edge rows dropped too).
func (mg *Mesh) Without(u int) detector.Graph {
	g := detector.Graph{X: mg.Graph.X, Adj: make([][]int, len(mg.Graph.Adj))}
	if mg.Graph.E != nil {
		g.E = make([][][]float64, len(mg.Graph.E))
	}
	for v, nbrs := range mg.Graph.Adj {
		if v == u {
			continue
		}
		for i, w := range nbrs {
			if w == u {
				continue
			}
			g.Adj[v] = append(g.Adj[v], w)
			if g.E != nil {
				g.E[v] = append(g.E[v], mg.Graph.E[v][i])
			}
		}
	}
	return g
}

// Trim keeps of a report what the detector reads — features, kernel features, and each peer's
// name, state and features — and the healing journal it carries (the labels JournalIncidents
// derives), which is what the control plane records.
func Trim(r *api.MeshReport) api.MeshReport {
	out := api.MeshReport{Sequence: r.Sequence, Features: r.Features, KernelFeatures: r.KernelFeatures, Healing: r.Healing,
		Peers: make([]api.PeerReport, 0, len(r.Peers))}
	for _, p := range r.Peers {
		out.Peers = append(out.Peers, api.PeerReport{Name: p.Name, State: p.State, Features: p.Features})
	}
	return out
}
