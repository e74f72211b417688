package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadConfigFederated: the federated section takes its defaults, resolves its paths against the
// file, and a value outside its range is refused with the field and the range.
func TestLoadConfigFederated(t *testing.T) {
	dir := t.TempDir()
	writeIdentity(t, dir)
	base := "key: n1.key\ncert: n1.crt\nca: [ca.crt]\nlisten: \"127.0.0.1:7946\"\ndevice: {mode: none}\n"
	path := filepath.Join(dir, "node.yaml")
	os.WriteFile(path, []byte(base+"federated: {enabled: true, coordinator: coord.crt, model_out: fl.x6m}\n"), 0o644)
	if _, err := LoadConfig(path); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fl := f.Federated
	fl.Defaults()
	if fl.Role != "participant" || fl.Coordinator != filepath.Join(dir, "coord.crt") || fl.ModelOut != filepath.Join(dir, "fl.x6m") ||
		fl.Port != FederatedDefaultPort || fl.Window != 10*time.Minute || fl.MaxSamples != 300 || fl.Rule != "trimmed" || fl.Trim != 0.2 {
		t.Fatalf("federated section with defaults: %+v", fl)
	}
	for _, c := range []struct{ section, want string }{
		{"{enabled: true}", "federated.coordinator: a participant needs the coordinator's certificate file"},
		{"{enabled: true, role: leader}", "federated.role leader: want participant or coordinator"},
		{"{enabled: true, role: coordinator, port: 70000}", "federated.port 70000: want 1-65535"},
		{"{enabled: true, role: coordinator, window: 1s}", "federated.window 1s: want 10s to 24h"},
		{"{enabled: true, role: coordinator, max_samples: -1}", "federated.max_samples -1: want 1 to 100000"},
		{"{enabled: true, role: coordinator, participants: 300}", "federated.participants 300: want 1 to 256"},
		{"{enabled: true, role: coordinator, lr: 2}", "federated.lr 2: want above 0, at most 1"},
		{"{enabled: true, role: coordinator, trim: 0.5}", "federated.trim 0.5: want 0 to below 0.5"},
		{"{enabled: true, role: coordinator, participants: 4, krum: 1}", "federated.krum 1: want 0, or at most (participants − 3) / 2 = 0"},
		{"{enabled: true, role: coordinator, rule: mean}", "federated.rule mean: want fedavg, trimmed or median"},
		{"{enabled: true, role: coordinator, round_timeout: 10ms}", "federated.round_timeout 10ms: want 1s to 1h"},
		{"{enabled: false, role: leader}", ""}, // a section that is off is not checked
	} {
		os.WriteFile(path, []byte(base+"federated: "+c.section+"\n"), 0o644)
		_, err := LoadConfig(path)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.section, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.section, err, c.want)
		}
	}
}
