// Command control-load measures the control plane's throughput and latency: a fixed number of
// keep-alive connections send requests back to back for a bounded time, and it reports requests
// per second and latency percentiles (p50, p90, p99, max).
//
// Without --url it starts a control plane in this process on 127.0.0.1 (TLS 1.3 with
// X25519MLKEM768 and an ML-DSA-65 certificate, or plain HTTP with --plain), with a throw-away
// SQLite database and an admin API key, and measures GET /health and the authenticated GET
// /api/v1/users/me. It only ever sends to loopback addresses and stops by itself.
//
// It must never target anything but a loopback address, and never run longer than --duration
// (at most 60 s) per endpoint.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/control"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "control-load:", err)
		os.Exit(1)
	}
}

func run() error {
	target := flag.String("url", "", "control plane to load (loopback only); empty: start one in this process")
	plain := flag.Bool("plain", false, "in-process server: plain HTTP (--insecure-dev) instead of TLS")
	pin := flag.String("ca-pin", os.Getenv("X0TTA6BL4_CA_PIN"), "CA pin of --url's control plane (TLS)")
	key := flag.String("api-key", os.Getenv("X0TTA6BL4_API_KEY"), "API key for the authenticated endpoint (with --url)")
	conns := flag.Int("conns", 32, "concurrent keep-alive connections")
	dur := flag.Duration("duration", 10*time.Second, "measurement time per endpoint (at most 60s)")
	warm := flag.Duration("warmup", time.Second, "unmeasured warm-up per endpoint")
	flag.Parse()
	if *dur <= 0 || *dur > time.Minute || *conns < 1 || *conns > 1024 {
		return errors.New("--duration must be in (0, 60s] and --conns in [1, 1024]")
	}
	ctx := context.Background()
	base, caPin, apiKey := *target, *pin, *key
	if base == "" {
		var stop func()
		var err error
		base, caPin, apiKey, stop, err = startServer(ctx, *plain)
		if err != nil {
			return err
		}
		defer stop()
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing to load %s: only loopback addresses", u.Host)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, IdleConnTimeout: time.Minute,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}} // HTTP/1.1: one request per connection at a time, like wrk
	if u.Scheme == "https" {
		if tr.TLSClientConfig, err = (client.Trust{CAPin: caPin}).TLSConfig(); err != nil {
			return err
		}
	}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	fmt.Printf("control-load: %s, %d connections, %s per endpoint, GOMAXPROCS=%d\n", base, *conns, *dur, runtime.GOMAXPROCS(0))
	for _, ep := range []struct{ name, path, token string }{
		{"GET /health", "/health", ""},
		{"GET /api/v1/users/me (API key)", "/api/v1/users/me", apiKey},
	} {
		if ep.token == "" && ep.path != "/health" {
			fmt.Printf("%-34s skipped: no API key\n", ep.name)
			continue
		}
		load(hc, base+ep.path, ep.token, *conns, *warm) // warm-up: connections, TLS handshakes
		r := load(hc, base+ep.path, ep.token, *conns, *dur)
		fmt.Printf("%-34s %9.0f req/s  p50 %7s  p90 %7s  p99 %7s  max %7s  (%d ok, %d errors)\n", ep.name,
			float64(r.ok)/r.elapsed.Seconds(), pct(r.lat, 50), pct(r.lat, 90), pct(r.lat, 99), pct(r.lat, 100), r.ok, r.errs)
		if r.firstErr != nil {
			fmt.Printf("%-34s first error: %v\n", "", r.firstErr)
		}
	}
	return nil
}

type result struct {
	ok, errs int64
	lat      []time.Duration
	elapsed  time.Duration
	firstErr error
}

// load runs conns workers for d, each sending requests one after another.
func load(hc *http.Client, target, token string, conns int, d time.Duration) result {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      result
		ok, errs atomic.Int64
	)
	// Latency samples are bounded: at most maxSamples per worker (a 60 s run at 100k req/s fits).
	const maxSamples = 1 << 20
	deadline := time.Now().Add(d)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("GET", target, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				el := time.Since(t0)
				if err != nil {
					errs.Add(1)
					mu.Lock()
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
				if len(lat) < maxSamples {
					lat = append(lat, el)
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok, res.errs = ok.Load(), errs.Load()
	slices.Sort(res.lat)
	return res
}

func pct(sorted []time.Duration, p int) string {
	if len(sorted) == 0 {
		return "-"
	}
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i].Round(time.Microsecond).String()
}

// startServer runs a control plane on 127.0.0.1 with a temporary data directory. Rate limits are
// set far above what the test can send, so their code runs but never refuses.
func startServer(ctx context.Context, plain bool) (base, pin, key string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "control-load-")
	if err != nil {
		return "", "", "", nil, err
	}
	cfg := control.Defaults()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.InsecureDev = plain
	cfg.Database = control.DatabaseConfig{Driver: store.SQLite, Path: filepath.Join(dir, "control.db"), Synchronous: "full", MaxOpenConns: 16}
	high := auth.LimitConfig{Rate: 1e9, Burst: 1e9}
	cfg.RateLimits.PerIP, cfg.RateLimits.PerKey, cfg.RateLimits.Auth = high, high, high
	res, err := control.Init(ctx, cfg, control.InitOptions{TrustDomain: "bench.local", Admin: "bench"}, time.Now())
	if err != nil {
		os.RemoveAll(dir)
		return "", "", "", nil, err
	}
	srv, err := control.New(ctx, cfg, control.Options{Logger: slog.New(slog.DiscardHandler), Version: "bench"})
	if err != nil {
		os.RemoveAll(dir)
		return "", "", "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		os.RemoveAll(dir)
		return "", "", "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { srv.Serve(sctx, ln); close(done) }()
	scheme := "https"
	if plain {
		scheme = "http"
	}
	return scheme + "://" + ln.Addr().String(), res.CAPin, res.AdminAPIKey, func() {
		cancel()
		<-done
		srv.Close()
		os.RemoveAll(dir)
	}, nil
}
