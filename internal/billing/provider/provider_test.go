package provider

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/billing"
)

func serve(t *testing.T, h http.HandlerFunc) *TronGrid {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tg, err := NewTronGrid(Config{BaseURL: srv.URL, APIKey: "k", Timeout: 30 * time.Second, HTTP: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestTronGridRequests(t *testing.T) {
	list, _ := os.ReadFile("../testdata/tron/trc20_list.json")
	tg := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("TRON-PRO-API-KEY") != "k" {
			t.Errorf("api key header missing")
		}
		q := r.URL.Query()
		if r.URL.Path != "/v1/accounts/TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW/transactions/trc20" || q.Get("only_confirmed") != "true" ||
			q.Get("only_to") != "true" || q.Get("contract_address") != billing.USDTTron || q.Get("min_timestamp") != "5" {
			t.Errorf("request %s", r.URL)
		}
		w.Write(list)
	})
	p, err := tg.ListTRC20(context.Background(), "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW", billing.USDTTron, 5)
	if err != nil || len(p.Items) != 1 {
		t.Fatalf("%v %v", p, err)
	}
}

// The provider misbehaves: each failure is a clear error, 429 carries its Retry-After.
func TestProviderFailures(t *testing.T) {
	release := make(chan struct{})
	cases := map[string]struct {
		h    http.HandlerFunc
		want string
	}{
		"429": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			w.Write([]byte(`{"Error":"request rate exceeded"}`))
		}, "rate limited"},
		"500":  {func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, "answered 500"},
		"html": {func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<!DOCTYPE html><html>oops</html>")) }, "not a JSON object"},
		"huge": {func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"id":"`))
			w.Write([]byte(strings.Repeat("a", billing.MaxBody+10)))
		}, "larger than"},
		"slow": {func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}, "deadline exceeded"},
		"redirect": {func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://198.51.100.1/x", http.StatusFound)
		}, "redirected"},
		"other tx": {func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"id":"` + strings.Repeat("b", 64) + `","receipt":{"result":"SUCCESS"}}`))
		}, "answered"},
	}
	for name, c := range cases {
		tg := serve(t, c.h)
		t.Cleanup(func() { // before the server's Close, which waits for its handlers
			select {
			case <-release:
			default:
				close(release)
			}
		})
		if name == "slow" {
			tg.c.timeout = 300 * time.Millisecond
		}
		_, err := tg.SolidifiedInfo(context.Background(), strings.Repeat("a", 64))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
		if name == "429" {
			if d, ok := RateLimited(err); !ok || d != 7*time.Second {
				t.Errorf("429: RateLimited = %v %v", d, ok)
			}
		} else if _, ok := RateLimited(err); ok {
			t.Errorf("%s counted as rate limiting", name)
		}
		if name == "slow" && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("timeout not a deadline: %v", err)
		}
	}
}
