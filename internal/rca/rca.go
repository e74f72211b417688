// Package rca ranks the likely root cause of an incident — several anomalous nodes at once — over
// the known mesh topology. Rankings (rankings.go) read a window of the nodes' telemetry, link states
// and anomaly scores: by score alone, personalised PageRank (below), BARO-style change points, time
// ordering, and the default, load shift, which takes a node whose relayed traffic rose while another
// node lost a link as a symptom of that loss. EvaluateIncidents compares them on simulated
// incidents (docs/intelligence.md, "Root-cause analysis").
//
// The rankings are pure computation: no clock, no randomness, no simulator; only the evaluation
// runs the simulator.
package rca

import (
	"slices"
)

// Config tunes Rank. Zero values take the defaults shown.
type Config struct {
	Restart    float64 // 0.15: probability of jumping back to the personalisation vector
	Iterations int     // 100
	Floor      float64 // 0.01: score added to every node so the walk can cross normal nodes
}

// Rank is personalised PageRank: a random walk that restarts at the anomalous nodes (in proportion
// to their anomaly scores) and moves to a neighbour in proportion to that neighbour's score, so it
// concentrates on the anomalous node that anomalous neighbours surround.
// It returns node indices from most to least likely root cause (by PageRank mass × own score), and
// the PageRank mass of each node.
// scores are per-node anomaly scores in [0, 1]; anomalous marks the incident's nodes (the
// personalisation); adj is the topology.
func Rank(adj [][]int, scores []float64, anomalous []bool, cfg Config) ([]int, []float64) {
	if cfg.Restart <= 0 {
		cfg.Restart = 0.15
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = 100
	}
	if cfg.Floor <= 0 {
		cfg.Floor = 0.01
	}
	n := len(adj)
	pers := make([]float64, n)
	var ps float64
	for v := range n {
		if anomalous[v] {
			pers[v] = scores[v] + cfg.Floor
			ps += pers[v]
		}
	}
	if ps == 0 {
		for v := range pers {
			pers[v] = 1
		}
		ps = float64(n)
	}
	for v := range pers {
		pers[v] /= ps
	}
	// Outgoing weights: u → v in proportion to score[v] + floor.
	out := make([]float64, n)
	for u := range n {
		for _, v := range adj[u] {
			out[u] += scores[v] + cfg.Floor
		}
	}
	r := slices.Clone(pers)
	next := make([]float64, n)
	for range cfg.Iterations {
		for v := range next {
			next[v] = cfg.Restart * pers[v]
		}
		var dangling float64
		for u := range n {
			if out[u] == 0 {
				dangling += r[u]
				continue
			}
			f := (1 - cfg.Restart) * r[u] / out[u]
			for _, v := range adj[u] {
				next[v] += f * (scores[v] + cfg.Floor)
			}
		}
		for v := range next {
			next[v] += (1 - cfg.Restart) * dangling * pers[v]
		}
		r, next = next, r
	}
	// Rank by the walk's mass times the node's own score (+floor): mass alone favours a normal node
	// that many anomalous nodes surround (e.g. the neighbour shared by a crashed node's neighbours).
	rank := make([]float64, n)
	for v := range rank {
		rank[v] = r[v] * (scores[v] + cfg.Floor)
	}
	return ByScore(rank), r
}

// ByScore ranks nodes by anomaly score alone (the baseline).
func ByScore(scores []float64) []int {
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return a - b
	})
	return order
}
