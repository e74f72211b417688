package control

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxScoreSeries caps the per-node anomaly score series one scrape exports: the highest scores
// first, the rest counted in x0tta6bl4_mesh_anomaly_scores_omitted. Node names come only from
// enrolment (an operator's act), so the label set is bounded by the mesh; the cap keeps a large
// mesh from multiplying Prometheus' series by its size for a figure whose alerts are about the
// top of the ranking.
const maxScoreSeries = 256

// anomalyCollector exports the detector's per-node scores (the mesh map's, cached for
// scoreMaxAge, so a scrape costs at most one forward pass every 10 s) and its threshold. It
// exports nothing when no model is loaded (ai.model: none).
type anomalyCollector struct {
	s                         *Server
	score, threshold, omitted *prometheus.Desc
}

func newAnomalyCollector(s *Server) *anomalyCollector {
	return &anomalyCollector{s: s,
		score: prometheus.NewDesc("x0tta6bl4_mesh_node_anomaly_score",
			"The anomaly detector's score of a live node, 1 - P(normal) (0-1); at most 256 nodes, highest first.", []string{"node"}, nil),
		threshold: prometheus.NewDesc("x0tta6bl4_mesh_anomaly_threshold", "The detector's alert threshold: a score above it is an anomaly.", nil, nil),
		omitted: prometheus.NewDesc("x0tta6bl4_mesh_anomaly_scores_omitted",
			"Scored nodes left out of x0tta6bl4_mesh_node_anomaly_score by its cap of 256 series (the lowest scores).", nil, nil),
	}
}

func (c *anomalyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.score
	ch <- c.threshold
	ch <- c.omitted
}

func (c *anomalyCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.detector == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap := c.s.scores.get(ctx, c.s)
	if snap.score == nil {
		return // no scores yet (the mesh view failed to build): nothing rather than zeros
	}
	top, omitted := topScores(snap.score, maxScoreSeries)
	for _, n := range top {
		ch <- prometheus.MustNewConstMetric(c.score, prometheus.GaugeValue, n.score, n.name)
	}
	ch <- prometheus.MustNewConstMetric(c.threshold, prometheus.GaugeValue, snap.threshold)
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))
}

type nodeScore struct {
	name  string
	score float64
}

// topScores returns the max highest scores (ties by name, so a scrape is deterministic) and how
// many were left out.
func topScores(score map[string]float64, max int) ([]nodeScore, int) {
	all := make([]nodeScore, 0, len(score))
	for name, v := range score {
		all = append(all, nodeScore{name, v})
	}
	slices.SortFunc(all, func(a, b nodeScore) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	if len(all) <= max {
		return all, 0
	}
	return all[:max], len(all) - max
}
