package control

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
)

// FuzzRequestBodies sends arbitrary bytes as the body of every route that takes one, as an admin,
// and requires an answer that is not a server error: bad input must get a 4xx, never a 500 or a panic.
func FuzzRequestBodies(f *testing.F) {
	cfg := testConfig(f, store.Config{Driver: store.SQLite, Path: filepath.Join(f.TempDir(), "f.db")})
	ctx := context.Background()
	res, err := Init(ctx, cfg, InitOptions{TrustDomain: testTD, CAGroups: []string{"ops"}, Admin: testAdmin}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(ctx, cfg, Options{Logger: logger(f), Version: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	var targets []*route
	for _, rt := range srv.routes {
		if rt.method == http.MethodPost || rt.method == http.MethodPatch || rt.method == http.MethodPut {
			targets = append(targets, rt)
		}
	}
	for i := range targets {
		f.Add(uint8(i), []byte(`{}`))
		f.Add(uint8(i), []byte(`{"node_name":"a","groups":["ops"],"username":"x","password":"y","name":"n","public_key":"-----BEGIN X0TTA6BL4 NODE PUBLIC KEY-----\nAA==\n-----END X0TTA6BL4 NODE PUBLIC KEY-----\n"}`))
	}
	f.Add(uint8(0), []byte(`{"a":`))
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		rt := targets[int(which)%len(targets)]
		path := strings.NewReplacer("{id}", "1", "{name}", "node-a", "{node_id}", "node-a").Replace(rt.path)
		req := httptest.NewRequest(rt.method, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+res.AdminAPIKey)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusNotImplemented && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with %q: status %d: %s", rt.method, path, body, w.Code, w.Body.Bytes())
		}
	})
}
