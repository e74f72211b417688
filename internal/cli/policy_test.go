package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/policy"
)

const cliPolicy = `# who may reach whom
grants:
  - src: [group:ops]
    dst: [group:web]
    ports: [tcp:22, icmp]
  - src: ["*"]
    dst: [spiffe://mesh.example.org/node/dns-1]
    ports: [udp:53]
tests:
  - src: {name: o1, groups: [ops]}
    dst: {name: w1, groups: [web]}
    accept: [tcp:22, icmp]
    deny: [tcp:80]
`

// TestCtlPolicy: 'ctl policy set' sends a YAML source whose tests the control plane runs; 'ctl
// policy get' prints it back as YAML that 'set' takes again, with the next version.
func TestCtlPolicy(t *testing.T) {
	dir := t.TempDir()
	cp, _ := initCLIControl(t, dir, time.Now)
	cp.serve(t, time.Now)
	if out := mustCall(t, runCtl, "policy", "get"); !strings.Contains(out, "no access policy set") {
		t.Fatalf("policy get before any set:\n%s", out)
	}

	file := filepath.Join(dir, "policy.yaml")
	os.WriteFile(file, []byte(cliPolicy), 0o644)
	if out := mustCall(t, runCtl, "policy", "set", "--file", file); !strings.Contains(out, "version 1 set: 2 grants, 1 tests passed") {
		t.Fatalf("policy set:\n%s", out)
	}
	got := mustCall(t, runCtl, "policy", "get")
	if !strings.HasPrefix(got, "# access policy version 1 of mesh.example.org") || !strings.Contains(got, "tcp:22") {
		t.Fatalf("policy get:\n%s", got)
	}
	src, err := policy.ParseSource([]byte(got))
	if err != nil || len(src.Grants) != 2 || len(src.Tests) != 1 {
		t.Fatalf("policy get output does not read back as a source: %v\n%s", err, got)
	}
	os.WriteFile(file, []byte(got), 0o644)
	if out := mustCall(t, runCtl, "policy", "set", "--file", file); !strings.Contains(out, "version 2 set") {
		t.Fatalf("policy set of get's output:\n%s", out)
	}

	failing := strings.Replace(cliPolicy, "deny: [tcp:80]", "deny: [tcp:22]", 1)
	os.WriteFile(file, []byte(failing), 0o644)
	if _, err := call(t, context.Background(), runCtl, "policy", "set", "--file", file); err == nil || !strings.Contains(err.Error(), "1 policy test cases failed") {
		t.Fatalf("a policy failing its test: %v", err)
	}
	os.WriteFile(file, []byte("grants: [{src: [ops], dst: ['*'], ports: ['*']}]"), 0o644)
	if _, err := call(t, context.Background(), runCtl, "policy", "set", "--file", file); err == nil || !strings.Contains(err.Error(), `selector \"ops\"`) && !strings.Contains(err.Error(), `selector "ops"`) {
		t.Fatalf("a bad selector: %v", err)
	}
	if out := mustCall(t, runCtl, "policy", "get", "--json"); !strings.Contains(out, `"version": 2`) {
		t.Fatalf("policy get --json:\n%s", out)
	}
}
