package control

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/control/api"
)

const deployDir = "../../deploy"

// TestDeployFiles checks that the shipped configurations load, the YAML files parse, and every
// metric the Grafana dashboard queries is one the server really exports once nodes report.
func TestDeployFiles(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(deployDir, "control.yaml")); err != nil {
		t.Errorf("deploy/control.yaml: %v", err)
	}
	t.Setenv("X0TTA6BL4_CONTROL_DSN", "postgres://u:p@postgres:5432/x0tta6bl4?sslmode=disable")
	if _, err := LoadConfig(filepath.Join(deployDir, "compose", "control.yaml")); err != nil {
		t.Errorf("deploy/compose/control.yaml: %v", err)
	}
	for _, f := range []string{"docker-compose.yml", "prometheus/prometheus.yml", "grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/x0tta6bl4.yml"} {
		data, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(data, &v); err != nil || len(v) == 0 {
			t.Errorf("deploy/%s: %v", f, err)
		}
	}

	dash := readDashboard(t, "x0tta6bl4-control.json")

	h := sqliteHarness(t, nil)
	admin := h.apiClient(h.adminKey)
	a, b := h.enrollNode(t, admin, "alpha"), h.enrollNode(t, admin, "beta")
	for _, n := range []*testNode{a, b} {
		other := "beta"
		if n == b {
			other = "alpha"
		}
		if _, err := n.c.Report(t.Context(), &api.MeshReport{Sequence: 1, Peers: []api.PeerReport{{Name: other, State: api.PeerUp, RTTMillis: 2}},
			Routes: []api.RouteReport{{Destination: other, NextHop: other, Cost: 2, Hops: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.Revoke(t.Context(), "beta"); err != nil {
		t.Fatal(err)
	}
	h.enrollNode(t, admin, "gamma")
	h.do("POST", "/api/v1/enroll", "", api.EnrollRequest{}) // a refused enrollment
	h.do("GET", "/api/v1/users/me", "x6k_bad", nil)         // an auth failure
	if _, err := a.c.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	metrics := string(h.must(200, "GET", "/metrics", h.adminKey, nil, nil).body)
	exported := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		exported[name] = true
	}
	re := regexp.MustCompile(`\b(x0tta6bl4_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)`)
	used := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				used++
				if !exported[m] {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not export", p.Title, m)
				}
			}
		}
	}
	if used < 15 {
		t.Fatalf("dashboard queries only %d metrics", used)
	}
}

// TestMeshDashboardMetrics: every metric the mesh dashboard queries is exported, by the control
// plane (x0tta6bl4_mesh_*, checked against a live /metrics in TestDeployFiles' way) or declared by
// the node (a prometheus.NewDesc name in internal/node), so a renamed metric fails here.
func TestMeshDashboardMetrics(t *testing.T) {
	dash := readDashboard(t, "x0tta6bl4-mesh.json")
	declared := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join("..", "node", "*.go"))
	desc := regexp.MustCompile(`prometheus\.NewDesc\("(x0tta6bl4_[a-z0-9_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range desc.FindAllStringSubmatch(string(src), -1) {
			declared[m[1]] = true
		}
	}
	if len(declared) < 20 {
		t.Fatalf("found only %d node metrics in internal/node", len(declared))
	}
	h := sqliteHarness(t, nil)
	admin := h.apiClient(h.adminKey)
	a, b := h.enrollNode(t, admin, "alpha"), h.enrollNode(t, admin, "beta")
	for _, n := range []*testNode{a, b} { // per-link series exist once nodes report links
		other := map[*testNode]string{a: "beta", b: "alpha"}[n]
		if _, err := n.c.Report(t.Context(), &api.MeshReport{Sequence: 1, Peers: []api.PeerReport{{Name: other, State: api.PeerUp, RTTMillis: 2}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(string(h.must(200, "GET", "/metrics", h.adminKey, nil, nil).body), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			declared[strings.Fields(line)[2]] = true
		}
	}
	re := regexp.MustCompile(`\bx0tta6bl4_[a-z0-9_]+`)
	used := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				used++
				if !declared[m] {
					t.Errorf("mesh dashboard panel %q queries %s, which neither the node nor the control plane exports", p.Title, m)
				}
			}
		}
	}
	if used < 15 {
		t.Fatalf("mesh dashboard queries only %d metrics", used)
	}
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", name))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard %s: %v", name, err)
	}
	return d
}
