package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

func writeIdentity(t *testing.T, dir string) {
	t.Helper()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "cfg.test", Name: "root", Duration: 2 * time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(meshca.IssueRequest{Name: "n1", PublicKey: k.Public(), Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.crt": meshca.EncodeCertificatePEM(ca.Certificate()), "n1.crt": meshca.EncodeCertificatePEM(c)} {
		if err := secfile.Write(filepath.Join(dir, name), data, 0o644, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := identity.WriteNodeKeyFile(filepath.Join(dir, "n1.key"), k, false); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	writeIdentity(t, dir)
	good := `key: n1.key
cert: n1.crt
ca: [ca.crt]
listen: "127.0.0.1:7946"
device: {mode: none}
peers:
  - {address: "127.0.0.1:7947", cert: n1.crt}
link: {probe_interval: 100ms, dead_after: 500ms}
firewall:
  inbound: [{proto: icmp, any: true}]
`
	path := filepath.Join(dir, "node.yaml")
	os.WriteFile(path, []byte(good), 0o644)
	o, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	if o.Listen.Port() != 7946 || len(o.Peers) != 1 || o.ProbeInterval != 100*time.Millisecond || len(o.Firewall.Inbound) != 1 || o.RoutingArea != 0 {
		t.Errorf("loaded %+v", o)
	}
	os.WriteFile(path, []byte(good+"routing_area: 7\n"), 0o644)
	if o, err := LoadConfig(path); err != nil || o.RoutingArea != 7 {
		t.Errorf("routing_area 7: %v, area %d", err, o.RoutingArea)
	}
	// Whether the file names an area at all, 0 included, is what enrolment goes by (ctl join --config).
	for _, c := range []struct {
		yaml string
		set  bool
		area uint32
	}{{good, false, 0}, {good + "routing_area: 0\n", true, 0}, {good + "routing_area: 7\n", true, 7}} {
		os.WriteFile(path, []byte(c.yaml), 0o644)
		if f, err := ReadFile(path); err != nil || f.RoutingAreaSet != c.set || f.RoutingArea != c.area {
			t.Errorf("ReadFile of %q: set %v area %d, %v; want set %v area %d", c.yaml[len(good):], f.RoutingAreaSet, f.RoutingArea, err, c.set, c.area)
		}
	}
	os.WriteFile(path, []byte(good+"routing_area: 7\nrouting_gateway: true\n"), 0o644)
	if o, err := LoadConfig(path); err != nil || !o.RoutingGateway {
		t.Errorf("routing_gateway: %v, gateway %v", err, o.RoutingGateway)
	}

	tests := []struct{ name, yaml, want string }{
		{"unknown key", good + "bogus: 1\n", "bogus"},
		{"heal probe interval", good + "heal: {probe_interval: 1ns}\n", "heal.probe_interval 1ns: want 50ms to 1m0s"},
		{"heal confidence", good + "heal: {confidence: 2}\n", "heal.confidence 2: want 0.5 to 1"},
		{"heal negative hold", good + "heal: {hold: -1s}\n", "heal.hold -1s: want 1s to 1h0m0s"},
		{"heal max hold below hold", good + "heal: {hold: 1m, max_hold: 30s}\n", "heal.max_hold 30s: want at least heal.hold 1m0s"},
		{"bad yaml", "key: [\n", "yaml"},
		{"missing identity", "listen: \"127.0.0.1:1\"\n", "key, cert and ca are required"},
		{"missing key file", strings.Replace(good, "n1.key", "nope.key", 1), "no such file"},
		{"bad listen", strings.Replace(good, `"127.0.0.1:7946"`, `"localhost"`, 1), "want ip:port"},
		{"bad peer address", strings.Replace(good, `"127.0.0.1:7947"`, `"x"`, 1), "peer 0 address"},
		{"bad firewall rule", strings.Replace(good, "proto: icmp", "proto: sctp", 1), "sctp"},
		{"bad log level", good + "log_level: loud\n", "log_level"},
		{"gateway without area", good + "routing_gateway: true\n", "routing_gateway needs a routing_area"},
		{"gateway not relaying", good + "routing_area: 3\nrouting_gateway: true\nrelay: false\n", "cannot have relay: false"},
	}
	for _, tt := range tests {
		os.WriteFile(path, []byte(tt.yaml), 0o644)
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	// A loose private key is refused.
	os.WriteFile(path, []byte(good), 0o644)
	os.Chmod(filepath.Join(dir, "n1.key"), 0o644)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("loose key: %v", err)
	}
}

func TestOptionsCheck(t *testing.T) {
	dir := t.TempDir()
	writeIdentity(t, dir)
	os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("key: n1.key\ncert: n1.crt\nca: [ca.crt]\nlisten: \"127.0.0.1:0\"\n"), 0o644)
	o, err := LoadConfig(filepath.Join(dir, "node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := o
	bad.Device = "floppy"
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "device mode") {
		t.Errorf("bad device: %v", err)
	}
	bad = o
	bad.ProbeInterval = time.Nanosecond
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "link.probe_interval 1ns: want 10ms to 1m0s") {
		t.Errorf("1 ns link probes: %v", err)
	}
	bad = o
	bad.Heal.Confidence = 2
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "heal.confidence 2: want 0.5 to 1") {
		t.Errorf("confidence 2: %v", err)
	}
	bad = o
	bad.ProbeInterval, bad.DeadAfter = time.Second, time.Second
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "dead-after") {
		t.Errorf("dead-after below two probes: %v", err)
	}
	other, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	bad = o
	bad.Key = other
	if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("key of another node: %v", err)
	}
}

// TestLoadConfigGovernance: the governance section loads the genesis roster, checks its pinned hash
// and the action type names, and keeps decisions in the control state directory by default.
func TestLoadConfigGovernance(t *testing.T) {
	dir := t.TempDir()
	writeIdentity(t, dir)
	k, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := governance.Genesis("cfg.test", []governance.Member{{Name: "alice", Weight: 1, Key: k.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "genesis.pem"), r.EncodePEM(), 0o644)
	h := r.Hash()
	base := "key: n1.key\ncert: n1.crt\nca: [ca.crt]\ndevice: {mode: none}\ncontrol: {state: st}\n"
	path := filepath.Join(dir, "node.yaml")
	os.WriteFile(path, []byte(base+fmt.Sprintf("governance: {genesis: genesis.pem, genesis_sha256: %x, governed: [policy, revoke]}\n", h[:])), 0o644)
	o, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	g := o.Governance
	if g == nil || g.Genesis.Hash() != h || len(g.Governed) != 2 || g.File != filepath.Join(dir, "st", "governance.pem") {
		t.Fatalf("governance options %+v", g)
	}
	for name, section := range map[string]string{
		"pinned hash mismatch": fmt.Sprintf("{genesis: genesis.pem, genesis_sha256: %064x}", 1),
		"unknown action type":  "{genesis: genesis.pem, governed: [everything]}",
		"missing roster":       "{genesis: nope.pem}",
	} {
		os.WriteFile(path, []byte(base+"governance: "+section+"\n"), 0o644)
		if _, err := LoadConfig(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// A relative control.state names one directory, inside the configuration file's directory, for
// enrolment (which reads the file with ReadFile) and for the keys LoadConfig derives from it, even
// when the configuration itself is named by a relative path from another working directory.
func TestRelativeStateResolvedOnce(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	if err := os.MkdirAll(filepath.Join("t1", "n1"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join("t1", "n1", "node.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\ncontrol:\n  state: st\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantState := filepath.Join(root, "t1", "n1", "st")
	if f.Control.State != wantState {
		t.Fatalf("control.state %q; want %q", f.Control.State, wantState)
	}
	if want := filepath.Join(wantState, StateKeyFile); f.Key != want {
		t.Fatalf("key %q; want %q (inside the state directory enrolment writes)", f.Key, want)
	}
	if want := filepath.Join(wantState, stateCAFile); len(f.CA) != 1 || f.CA[0] != want {
		t.Fatalf("ca %q; want [%q]", f.CA, want)
	}
}
