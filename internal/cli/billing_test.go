package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBillingCommands drives billing through the CLI against a control plane whose TronGrid is an
// in-process server answering with the documented bodies in internal/billing/testdata. The
// testdata payment was made before the invoice the test creates (wall clock), so it is recorded
// as early and credits nothing; a transfer of a token that only calls itself USDT is refused.
func TestBillingCommands(t *testing.T) {
	const (
		good = "7c2d4e6f80a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b"
		fake = "1111111111111111111111111111111111111111111111111111111111111111"
	)
	chain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Value string }
		json.NewDecoder(r.Body).Decode(&req)
		name := map[string]string{good: "info_success.json", fake: "info_fake_token.json"}[req.Value]
		if r.URL.Path != "/walletsolidity/gettransactioninfobyid" || name == "" {
			w.Write([]byte("{}"))
			return
		}
		b, _ := os.ReadFile(filepath.Join("..", "billing", "testdata", "tron", name))
		if req.Value == fake {
			b = []byte(strings.ReplaceAll(string(b), good, fake))
		}
		w.Write(b)
	}))
	defer chain.Close()

	dir := t.TempDir()
	addr := freePort(t)
	cfg := filepath.Join(dir, "control.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: %q
data_dir: data
insecure_dev: true
auth: {argon2: {time: 1, memory_kib: 64, threads: 1}}
billing:
  enabled: true
  poll_interval: 1h
  tron: {address: TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW, base_url: %q}
`, addr, chain.URL)), 0o600)
	out := mustCall(t, runControl, "init", "--config", cfg, "--trust-domain", "mesh.example.org", "--admin", "root")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := lines[len(lines)-1]
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { _, err := call(t, ctx, runControl, "--config", cfg); served <- err }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("control: %v", err)
		}
	}()
	t.Setenv("X0TTA6BL4_CONTROL_URL", "http://"+addr)
	t.Setenv("X0TTA6BL4_API_KEY", key)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := call(t, context.Background(), runCtl, "billing", "plans", "--insecure-dev"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("control plane did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctl := func(args ...string) string { return mustCall(t, runCtl, append(args, "--insecure-dev")...) }
	if out := ctl("billing", "plan", "create", "--name", "basic", "--price-usdt", "10001233", "--node-quota", "2", "--duration", "720h"); !strings.Contains(out, `plan 1 "basic" created`) {
		t.Fatalf("plan create:\n%s", out)
	}
	if out := ctl("billing", "plans"); !strings.Contains(out, "basic") || !strings.Contains(out, "10.001233") {
		t.Fatalf("plans:\n%s", out)
	}
	out = ctl("billing", "invoice", "create", "--account", "acme", "--plan", "1", "--network", "tron-usdt")
	if !strings.Contains(out, "Send exactly 10.001234 USDT (TRC-20) to TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW") {
		t.Fatalf("invoice create:\n%s", out)
	}
	for range 2 { // the second check finds the first record and changes nothing
		out = ctl("billing", "verify", "--network", "tron-usdt", "--tx", good)
		if !strings.Contains(out, "status    recorded") || !strings.Contains(out, "early") {
			t.Fatalf("verify:\n%s", out)
		}
	}
	if out := mustCall(t, runCtl, "billing", "invoice", "show", "--insecure-dev", "1"); !strings.Contains(out, "status     open") || !strings.Contains(out, "early") {
		t.Fatalf("invoice show:\n%s", out)
	}
	out, err := call(t, context.Background(), runCtl, "billing", "verify", "--network", "tron-usdt", "--tx", fake, "--insecure-dev")
	if err == nil || !strings.Contains(out, "fake_token") {
		t.Fatalf("fake token: %v\n%s", err, out)
	}
	if _, err := call(t, context.Background(), runCtl, "billing", "subscription", "--insecure-dev", "acme"); err == nil || !strings.Contains(err.Error(), "no subscription") {
		t.Fatalf("subscription: %v", err)
	}
}
