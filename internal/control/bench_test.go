package control

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
)

// The handler's own cost per request (routing, rate limits, authentication, metrics, JSON),
// without the network. bench/control-load.sh measures the server end to end over loopback.

func BenchmarkHandlerHealth(b *testing.B) { benchServe(b, "/health", false) }

func BenchmarkHandlerAuthenticated(b *testing.B) { benchServe(b, "/api/v1/users/me", true) }

func benchServe(b *testing.B, path string, authed bool) {
	cfg := testConfig(b, store.Config{Driver: store.SQLite, Path: filepath.Join(b.TempDir(), "c.db")})
	high := auth.LimitConfig{Rate: 1e9, Burst: 1e9}
	cfg.RateLimits.PerIP, cfg.RateLimits.PerKey = high, high
	cfg.InsecureDev = true
	res, err := Init(b.Context(), cfg, InitOptions{TrustDomain: testTD, Admin: testAdmin}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(b.Context(), cfg, Options{Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", path, nil)
			req.RemoteAddr = "127.0.0.1:40000"
			if authed {
				req.Header.Set("Authorization", "Bearer "+res.AdminAPIKey)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
