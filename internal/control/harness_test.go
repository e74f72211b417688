package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

const (
	testTD       = "mesh.test"
	testAdmin    = "root"
	testPassword = "correct horse battery staple"
)

// harness is a control plane serving real TLS (or plain HTTP) on 127.0.0.1.
type harness struct {
	t        *testing.T
	srv      *Server
	cfg      Config
	url      string
	hc       *http.Client
	adminKey string
	pin      string
}

// testConfig is a configuration for tests: cheap argon2id, generous rate limits, a temporary
// data directory, the given database.
func testConfig(t testing.TB, db store.Config) Config {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.Argon2 = Argon2Config{Time: 1, MemoryKiB: 64, Threads: 1}
	cfg.RateLimits.PerIP = auth.LimitConfig{Rate: 100000, Burst: 100000}
	cfg.RateLimits.PerKey = auth.LimitConfig{Rate: 100000, Burst: 100000}
	cfg.RateLimits.Auth = auth.LimitConfig{Rate: 100000, Burst: 100000}
	cfg.Database = DatabaseConfig{Driver: db.Driver, Path: db.Path, DSN: db.DSN, Synchronous: "normal", MaxOpenConns: 8}
	return cfg
}

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newHarness(t *testing.T, db store.Config, mutate func(*Config)) *harness {
	t.Helper()
	return newHarnessAt(t, db, mutate, nil)
}

// newHarnessAt is newHarness with the server's clock (nil: time.Now).
func newHarnessAt(t *testing.T, db store.Config, mutate func(*Config), now func() time.Time) *harness {
	t.Helper()
	return newHarnessWith(t, db, mutate, Options{Logger: logger(t), Version: "test", Now: now})
}

// newHarnessWith is newHarness with the server's options (a clock, governance appliers).
func newHarnessWith(t *testing.T, db store.Config, mutate func(*Config), opts Options) *harness {
	t.Helper()
	cfg := testConfig(t, db)
	if mutate != nil {
		mutate(&cfg)
	}
	ctx := context.Background()
	initAt := time.Now()
	if opts.Now != nil {
		initAt = opts.Now()
	}
	res, err := Init(ctx, cfg, InitOptions{TrustDomain: testTD, CAGroups: []string{"ops", "web"}, Admin: testAdmin, AdminPassword: testPassword}, initAt)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	srv, err := New(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	h := &harness{t: t, srv: srv, cfg: cfg, adminKey: res.AdminAPIKey, pin: res.CAPin}
	if cfg.InsecureDev {
		h.url = "http://" + ln.Addr().String()
		h.hc = &http.Client{Timeout: 30 * time.Second}
	} else {
		h.url = "https://" + ln.Addr().String()
		tlsCfg, err := client.Trust{CAPin: res.CAPin}.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		h.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		h.hc.CloseIdleConnections()
		srv.Close()
	})
	return h
}

// backends runs fn against a harness on each store backend.
func eachBackend(t *testing.T, mutate func(*Config), fn func(t *testing.T, h *harness)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newHarness(t, b.Config(t), mutate))
		})
	}
}

func sqliteHarness(t *testing.T, mutate func(*Config)) *harness {
	return newHarness(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "c.db")}, mutate)
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) errCode() string {
	var e api.Error
	json.Unmarshal(r.body, &e)
	return e.Error
}

// do sends a request; body is marshalled unless it is a string or []byte (sent as is).
func (h *harness) do(method, path, token string, body any, hdr ...string) resp {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

// must sends a request, checks the status and decodes the JSON answer into out.
func (h *harness) must(want int, method, path, token string, body, out any) resp {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.status != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// user creates an account with a role and returns an API key of that role.
func (h *harness) user(name string, role auth.Role) string {
	h.t.Helper()
	h.must(201, "POST", "/api/v1/users/register", h.adminKey, api.RegisterRequest{Username: name, Password: testPassword, Role: string(role)}, nil)
	var login api.LoginResponse
	h.must(200, "POST", "/api/v1/users/login", "", api.LoginRequest{Username: name, Password: testPassword}, &login)
	var k api.APIKeyCreated
	h.must(201, "POST", "/api/v1/keys", login.Token, api.CreateAPIKeyRequest{Name: name + "-key"}, &k)
	return k.Key
}

func (h *harness) apiClient(token string) *client.API {
	h.t.Helper()
	a, err := client.NewAPI(h.url, token, client.Trust{CAPin: h.pin, AllowHTTP: h.cfg.InsecureDev})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(a.Close)
	return a
}

func isStatus(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}
