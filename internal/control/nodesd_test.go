package control

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

func TestNodeSDDocument(t *testing.T) {
	nodes := []store.Node{
		{Name: "a", Overlay: "fd74::1", SPIFFEID: "spiffe://m/node/a", Groups: []string{"web", "db"}},
		{Name: "b", Overlay: "fd74::2", SPIFFEID: "spiffe://m/node/b", RevokedAt: time.Unix(1, 0)},
		{Name: "c", Overlay: "fd74::3", SPIFFEID: "spiffe://m/node/c"},
	}
	b, err := nodeSD(nodes, 9474)
	if err != nil {
		t.Fatal(err)
	}
	var got []sdTargetGroup
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Targets[0] != "[fd74::1]:9474" || got[0].Labels["node"] != "a" || got[0].Labels["groups"] != "web,db" ||
		got[1].Labels["node"] != "c" || got[1].Labels["spiffe_id"] != "spiffe://m/node/c" {
		t.Fatalf("file_sd document: %s", b)
	}
	if b, _ := nodeSD(nil, 1); string(b) != "[]\n" {
		t.Fatalf("no nodes: %q, want an empty list (Prometheus drops the targets)", b)
	}
}

// sdNodes waits until the discovery file lists exactly want (by node label), failing after 20 s.
func sdNodes(t *testing.T, path string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var names []string
	for time.Now().Before(deadline) {
		names = names[:0]
		if b, err := os.ReadFile(path); err == nil {
			var groups []sdTargetGroup
			if err := json.Unmarshal(b, &groups); err != nil {
				t.Fatalf("%s is not a whole file_sd document (a torn write?): %v", path, err)
			}
			for _, g := range groups {
				names = append(names, g.Labels["node"])
			}
			if slices.Equal(names, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("discovery file lists %v, want %v", names, want)
}

// TestNodeSDFollowsEnrolmentAndRevocation: the file appears at start (empty), gains nodes as they
// enrol and loses one when it is revoked.
func TestNodeSDFollowsEnrolmentAndRevocation(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "nodes.json")
			h := newHarness(t, b.Config(t), func(c *Config) { c.Metrics.NodeSD = NodeSDConfig{File: file} })
			testNodeSD(t, h, file)
		})
	}
}

func testNodeSD(t *testing.T, h *harness, file string) {
	admin := h.apiClient(h.adminKey)
	sdNodes(t, file)
	h.enrollNode(t, admin, "alpha", "web")
	h.enrollNode(t, admin, "beta")
	sdNodes(t, file, "alpha", "beta")
	if _, err := admin.Revoke(t.Context(), "alpha"); err != nil {
		t.Fatal(err)
	}
	sdNodes(t, file, "beta")
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("file mode %v %v", info.Mode(), err)
	}
}
