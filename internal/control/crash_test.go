package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/secfile"
)

const crashChildEnv = "X0TTA6BL4_CONTROL_CRASH_CHILD"

// TestCrashChild is the control-plane process TestCrashRecovery starts and kills; on its own it
// does nothing.
func TestCrashChild(t *testing.T) {
	cfgPath := os.Getenv(crashChildEnv)
	if cfgPath == "" {
		t.Skip("helper process of TestCrashRecovery")
	}
	serveChild(t, cfgPath, filepath.Join(filepath.Dir(cfgPath), "addr"), Options{Version: "crash-child"})
}

// serveChild is the body of a control-plane process a test starts (and may kill): it serves the
// configuration at cfgPath on a fresh loopback port, which it writes to addrFile.
func serveChild(t *testing.T, cfgPath, addrFile string, opts Options) {
	// Bounded even if the parent never kills it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := secfile.Write(addrFile, []byte(ln.Addr().String()), 0o600, true); err != nil {
		t.Fatal(err)
	}
	srv.Serve(ctx, ln)
}

// TestCrashRecovery runs the control plane as a separate process, fires concurrent writes at it,
// kills it with SIGKILL in the middle of the burst, restarts it, and checks that every write it
// had acknowledged is there and works.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { crashRecovery(t, b.Config(t)) })
	}
}

func crashRecovery(t *testing.T, db store.Config) {
	dir := t.TempDir()
	cfg := testConfig(t, db)
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.InsecureDev = true
	cfg.Database.Synchronous = "full"
	cfg.Auth.MaxKeysPerUser = 100_000
	res, err := Init(t.Context(), cfg, InitOptions{TrustDomain: testTD, Admin: testAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`data_dir: %q
listen: "127.0.0.1:0"
insecure_dev: true
database: {driver: %q, path: %q, dsn: %q, synchronous: full}
auth: {argon2: {time: 1, memory_kib: 64, threads: 1}, max_api_keys_per_user: 100000}
rate_limits: {per_ip: {rate: 100000, burst: 100000}, per_key: {rate: 100000, burst: 100000}}
`, cfg.DataDir, cfg.Database.Driver, cfg.Database.Path, cfg.Database.DSN)
	cfgPath := filepath.Join(dir, "control.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, string) {
		os.Remove(filepath.Join(dir, "addr"))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+cfgPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(30 * time.Second)
		for {
			if a, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil && len(a) > 0 {
				return cmd, "http://" + string(a)
			}
			if time.Now().After(deadline) {
				t.Fatalf("control process did not start:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	post := func(url, name string) (bool, error) {
		body, _ := json.Marshal(api.CreateAPIKeyRequest{Name: name})
		req, _ := http.NewRequest("POST", url+"/api/v1/keys", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+res.AdminAPIKey)
		req.Header.Set("Content-Type", "application/json")
		r, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		defer r.Body.Close()
		var k api.APIKeyCreated
		if r.StatusCode != 201 || json.NewDecoder(r.Body).Decode(&k) != nil || k.Name != name {
			return false, fmt.Errorf("status %d", r.StatusCode)
		}
		return true, nil
	}

	cmd, url := start()
	var (
		mu    sync.Mutex
		acked []string
		n     atomic.Int64
		wg    sync.WaitGroup
	)
	killAt := int64(120)
	killed := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				ok, err := post(url, name)
				if err != nil {
					select {
					case <-killed:
						return // the process is gone: writes in flight were not acknowledged
					default:
						t.Errorf("write %s before the kill: %v", name, err)
						return
					}
				}
				if ok {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
					if n.Add(1) == killAt {
						// SIGKILL while the other workers' requests are in flight.
						close(killed)
						cmd.Process.Kill()
					}
				}
			}
		}()
	}
	wg.Wait()
	cmd.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("the burst ended before the kill")
	}
	hc.CloseIdleConnections()
	t.Logf("%d writes acknowledged before SIGKILL", len(acked))

	_, url = start()
	req, _ := http.NewRequest("GET", url+"/api/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+res.AdminAPIKey)
	r, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list api.APIKeyList
	err = json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("list after restart: %d %v", r.StatusCode, err)
	}
	have := map[string]bool{}
	for _, k := range list.Keys {
		have[k.Name] = true
	}
	for _, name := range acked {
		if !have[name] {
			t.Errorf("acknowledged write %s lost in the crash", name)
		}
	}
	// The restarted server takes writes again, and the audit log has an entry per stored key.
	if ok, err := post(url, "after-restart"); !ok || err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	st := storetest.Open(t, db)
	entries, err := st.ListAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]bool{}
	for _, e := range entries {
		if e.Action == "apikey.create" {
			audited[e.Target] = true
		}
	}
	for _, k := range list.Keys {
		if !audited[k.Prefix] {
			t.Errorf("key %s stored without its audit entry", k.Name)
		}
	}
}
