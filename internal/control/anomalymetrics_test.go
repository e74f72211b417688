package control

import (
	"regexp"
	"strconv"
	"testing"

	"x0tta6bl4/internal/control/api"
)

// TestAnomalyScoreMetrics: /metrics carries the detector's score of every live node (the shipped
// model's), in [0, 1], and its threshold; a revoked node has no series.
func TestAnomalyScoreMetrics(t *testing.T) {
	h := sqliteHarness(t, nil)
	admin := h.apiClient(h.adminKey)
	a, b := h.enrollNode(t, admin, "alpha"), h.enrollNode(t, admin, "beta")
	h.enrollNode(t, admin, "gamma")
	for _, n := range []*testNode{a, b} {
		other := map[*testNode]string{a: "beta", b: "alpha"}[n]
		if _, err := n.c.Report(t.Context(), &api.MeshReport{Sequence: 1, Peers: []api.PeerReport{{Name: other, State: api.PeerUp, RTTMillis: 2}}}); err != nil {
			t.Fatal(err)
		}
	}
	h.must(200, "POST", "/api/v1/nodes/gamma/revoke", h.adminKey, nil, nil)
	body := string(h.must(200, "GET", "/metrics", h.adminKey, nil, nil).body)
	re := regexp.MustCompile(`(?m)^x0tta6bl4_mesh_node_anomaly_score\{node="([a-z]+)"\} (\S+)$`)
	got := map[string]float64{}
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || v < 0 || v > 1 {
			t.Errorf("score of %s: %q, want a number in [0, 1]", m[1], m[2])
		}
		got[m[1]] = v
	}
	if len(got) != 2 || !has(got, "alpha") || !has(got, "beta") {
		t.Errorf("scores exported for %v, want alpha and beta (gamma is revoked)", got)
	}
	if !regexp.MustCompile(`(?m)^x0tta6bl4_mesh_anomaly_threshold 0\.\d+`).MatchString(body) ||
		!regexp.MustCompile(`(?m)^x0tta6bl4_mesh_anomaly_scores_omitted 0$`).MatchString(body) {
		t.Error("no threshold, or a nonzero omitted count, in /metrics")
	}
}

func has(m map[string]float64, k string) bool { _, ok := m[k]; return ok }

// The series are capped: the highest scores are kept (ties by name), the rest counted.
func TestTopScoresCap(t *testing.T) {
	top, omitted := topScores(map[string]float64{"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.5, "e": 0}, 3)
	if omitted != 2 || len(top) != 3 || top[0] != (nodeScore{"b", 0.9}) || top[1] != (nodeScore{"c", 0.5}) || top[2] != (nodeScore{"d", 0.5}) {
		t.Fatalf("top %v, omitted %d", top, omitted)
	}
	if top, omitted := topScores(map[string]float64{"a": 1}, 3); len(top) != 1 || omitted != 0 {
		t.Fatalf("under the cap: %v %d", top, omitted)
	}
}
