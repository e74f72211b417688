package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
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

// BenchmarkReportWrite: what recording adds to a report: storing it as the node's latest (every
// report) against that plus recording its detector part (ai.record with every: 0), on SQLite with
// synchronous=FULL, one report of 8 peers and 64 routes.
//
//	go test -run '^$' -bench ReportWrite ./internal/control/
func BenchmarkReportWrite(b *testing.B) {
	for _, record := range []bool{false, true} {
		b.Run(map[bool]string{false: "latest", true: "latest+record"}[record], func(b *testing.B) {
			cfg := testConfig(b, store.Config{Driver: store.SQLite, Path: filepath.Join(b.TempDir(), "c.db")})
			cfg.AI.Record.Enabled, cfg.AI.Record.Every = record, 0
			if _, err := Init(b.Context(), cfg, InitOptions{TrustDomain: testTD}, time.Now()); err != nil {
				b.Fatal(err)
			}
			srv, err := New(b.Context(), cfg, Options{Version: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			n := &store.Node{Name: "alpha", KeyID: "k", Overlay: "fd74::1", SPIFFEID: "spiffe://x/node/alpha", PublicKeyPEM: "p",
				Serial: "s", CertPEM: "c", SVIDPEM: "v", NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), CertTTL: time.Hour, EnrolledAt: time.Now()}
			if err := srv.st.InsertNode(b.Context(), n); err != nil {
				b.Fatal(err)
			}
			rep := &api.MeshReport{Sequence: 1, Features: nodeFeatures(1)}
			for i := range 8 {
				rep.Peers = append(rep.Peers, api.PeerReport{Name: fmt.Sprintf("p%d", i), State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(40, 3)})
			}
			for i := range 64 {
				rep.Routes = append(rep.Routes, api.RouteReport{Destination: fmt.Sprintf("d%d", i), NextHop: "p0", Cost: 2, Hops: 2})
			}
			body, err := json.Marshal(rep)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				at := time.Now()
				if err := srv.st.PutReport(b.Context(), &store.Report{NodeID: n.ID, ReportedAt: at, Sequence: 1, Body: string(body)}); err != nil {
					b.Fatal(err)
				}
				srv.recordReport(b.Context(), n.ID, at, rep)
			}
		})
	}
}
