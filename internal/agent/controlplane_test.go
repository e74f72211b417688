package agent

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/control"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
)

// startControlPlane runs an initialised control plane on 127.0.0.1 (SQLite, cheap password hashing)
// until ctx ends, adjusted by mod before Init, and returns it with its URL and an admin client. Both
// are closed when the test ends.
func startControlPlane(tb testing.TB, ctx context.Context, trustDomain string, mod func(*control.Config)) (*control.Server, string, *client.API) {
	tb.Helper()
	cfg := control.Defaults()
	cfg.DataDir = tb.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.Argon2 = control.Argon2Config{Time: 1, MemoryKiB: 64, Threads: 1}
	cfg.Database = control.DatabaseConfig{Driver: store.SQLite, Path: filepath.Join(tb.TempDir(), "c.db"), Synchronous: "normal", MaxOpenConns: 4}
	if mod != nil {
		mod(&cfg)
	}
	res, err := control.Init(ctx, cfg, control.InitOptions{TrustDomain: trustDomain, Admin: "root"}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := control.New(ctx, cfg, control.Options{Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ctx, ln)
	url := "https://" + ln.Addr().String()
	admin, err := client.NewAPI(url, res.AdminAPIKey, client.Trust{CAPin: res.CAPin})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(admin.Close)
	return srv, url, admin
}
