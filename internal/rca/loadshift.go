package rca

import (
	"math"

	"x0tta6bl4/internal/telemetry"
)

// LoadShiftRanking names the ranking that reads the network's own cause-and-effect: in a routed
// mesh a topology change (a link or a node lost) moves flows, and a relay that receives more
// traffic than it can carry then looks faulty — often more faulty than the failure itself. A node
// whose anomaly comes with a rise of the traffic handed to it, while another flagged node lost a link
// or stopped reporting, is taken as a symptom of that change: its score is multiplied by
// symptomDiscount before ranking by score.
const LoadShiftRanking = "load-shift"

// Load-shift parameters (fixed, not fitted: docs/intelligence.md).
const (
	// loadRise is the rise of a node's relayed traffic over its own history that marks a load
	// shift: 1.5 times, on the log1p scale nodes export.
	loadRise = 0.405 // ln 1.5
	// symptomDiscount multiplies the score of a node taken as a symptom.
	symptomDiscount = 0.5
	// incidentSize: the incident's nodes are those over the threshold and at least this many of the
	// highest-scoring, as for PageRank.
	incidentSize = 5
)

// topologyEvent reports whether node v, since the incident opened, stopped reporting or lost a link
// to a neighbour that still reported (the neighbour's own failure is the neighbour's event).
func (w *Window) topologyEvent(v int) bool {
	for t := min(w.Open, len(w.Metrics)-1); t < len(w.Metrics); t++ {
		if w.Metrics[t][v][telemetry.FMissing] == 1 {
			return true
		}
		if w.LinkUp == nil || w.Open == 0 {
			continue
		}
		for i, u := range w.Adj[v] {
			if !w.LinkUp[t][v][i] && w.LinkUp[w.Open-1][v][i] && w.Metrics[t][u][telemetry.FMissing] == 0 {
				return true
			}
		}
	}
	return false
}

// loadShifted reports whether node v's relayed traffic since the incident opened rose by loadRise
// or more over its median before.
func (w *Window) loadShifted(v int) bool {
	if w.Open == 0 {
		return false
	}
	hist := make([]float64, w.Open)
	for t := range hist {
		hist[t] = w.Metrics[t][v][telemetry.FTransitIn]
	}
	base := median(hist)
	var peak float64
	for t := w.Open; t < len(w.Metrics); t++ {
		if w.Metrics[t][v][telemetry.FMissing] == 0 {
			peak = math.Max(peak, w.Metrics[t][v][telemetry.FTransitIn])
		}
	}
	return peak-base >= loadRise
}

// rankByLoadShift discounts the scores of nodes whose anomaly a load shift explains, when another
// node of the incident had a topology event, and ranks by the result.
func rankByLoadShift(w *Window) []int {
	s := w.meanScores()
	order := ByScore(s)
	event := make([]bool, len(s))
	anyEvent := false
	for i, v := range order {
		if i < incidentSize || s[v] >= w.Threshold {
			event[v] = w.topologyEvent(v)
			anyEvent = anyEvent || event[v]
		}
	}
	if !anyEvent {
		return order
	}
	adj := make([]float64, len(s))
	for i, v := range order {
		adj[v] = s[v]
		if (i < incidentSize || s[v] >= w.Threshold) && !event[v] && w.loadShifted(v) {
			adj[v] *= symptomDiscount
		}
	}
	return ByScore(adj)
}
