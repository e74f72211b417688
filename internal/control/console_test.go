package control

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
)

// TestConsoleSession: the console's login sets a HttpOnly, Secure, SameSite=Strict cookie that
// authenticates like a session token; state changes with it need the CSRF token and this origin;
// the login is rate-limited like the API's.
func TestConsoleSession(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.RateLimits.Auth = auth.LimitConfig{Rate: 0.001, Burst: 3} })
	r := h.do("POST", "/api/v1/console/login", "", api.LoginRequest{Username: testAdmin, Password: testPassword})
	if r.status != 200 {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	var sess api.ConsoleSession
	if err := json.Unmarshal(r.body, &sess); err != nil || sess.CSRFToken == "" || sess.Role != "admin" {
		t.Fatalf("session %s (%v)", r.body, err)
	}
	if strings.Contains(string(r.body), "x6s_") {
		t.Fatal("the session token is in the answer")
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("cookie %+v", cookie)
	}
	ck := "Cookie"
	cv := sessionCookie + "=" + cookie.Value
	var again api.ConsoleSession
	if r := h.do("GET", "/api/v1/console/session", "", nil, ck, cv); r.status != 200 || json.Unmarshal(r.body, &again) != nil || again.CSRFToken != sess.CSRFToken {
		t.Fatalf("session by cookie: %d %s", r.status, r.body)
	}
	key := api.CreateAPIKeyRequest{Name: "from the console"}
	if r := h.do("POST", "/api/v1/keys", "", key, ck, cv); r.status != 403 || r.errCode() != "csrf" {
		t.Fatalf("POST without CSRF token: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/api/v1/keys", "", key, ck, cv, csrfHeader, strings.Repeat("0", 64)); r.status != 403 {
		t.Fatalf("POST with a wrong CSRF token: %d", r.status)
	}
	if r := h.do("POST", "/api/v1/keys", "", key, ck, cv, csrfHeader, sess.CSRFToken, "Origin", "https://evil.example"); r.status != 403 {
		t.Fatalf("POST from another origin: %d", r.status)
	}
	if r := h.do("POST", "/api/v1/keys", "", key, ck, cv, csrfHeader, sess.CSRFToken, "Origin", h.url); r.status != 201 {
		t.Fatalf("POST with the CSRF token: %d %s", r.status, r.body)
	}
	// A bearer credential needs no CSRF token: it is not sent by the browser on its own.
	if r := h.do("POST", "/api/v1/keys", h.adminKey, key); r.status != 201 {
		t.Fatalf("POST with an API key: %d", r.status)
	}
	// Logging out ends the session and clears the cookie.
	if r := h.do("POST", "/api/v1/users/logout", "", nil, ck, cv, csrfHeader, sess.CSRFToken); r.status != 204 || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if r := h.do("GET", "/api/v1/console/session", "", nil, ck, cv); r.status != 401 {
		t.Fatalf("session after logout: %d", r.status)
	}
	// The login shares the auth bucket (burst 3: one used above).
	codes := []int{}
	for range 3 {
		codes = append(codes, h.do("POST", "/api/v1/console/login", "", api.LoginRequest{Username: testAdmin, Password: "wrong password here"}).status)
	}
	if codes[0] != 401 || codes[2] != 429 {
		t.Fatalf("login attempts: %v", codes)
	}
}

// TestConsoleFiles: the console is served from the binary with a strict CSP and no inline script.
func TestConsoleFiles(t *testing.T) {
	h := sqliteHarness(t, nil)
	r := h.do("GET", "/ui/", "", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `<script type="module" src="app.js"></script>`) {
		t.Fatalf("/ui/: %d %.300s", r.status, r.body)
	}
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	// Every script element names a file: nothing inline.
	if strings.Count(string(r.body), "<script") != strings.Count(string(r.body), `<script type="module" src=`) {
		t.Fatal("inline script in index.html")
	}
	if r := h.do("GET", "/ui/app.js", "", nil); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/javascript") || len(r.body) < 1000 {
		t.Fatalf("app.js: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if r := h.do("GET", "/ui/nothing.js", "", nil); r.status != 404 {
		t.Fatalf("missing file: %d", r.status)
	}
	if r := h.do("POST", "/ui/", "", "{}"); r.status != 405 {
		t.Fatalf("POST /ui/: %d", r.status)
	}
}

// TestConsoleEvents: the event stream sends the topology at once, and a node's report reaches it
// within 2 s; the node then turns stale on the stream when its reports stop.
func TestConsoleEvents(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.Mesh.StaleAfter = time.Second })
	admin := h.apiClient(h.adminKey)
	n := h.enrollNode(t, admin, "alpha")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.url+"/api/v1/console/events", nil)
	req.Header.Set("Authorization", "Bearer "+h.adminKey)
	res, err := h.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// Each event's state of alpha, and the event's kind: a snapshot first, then diffs.
	type event struct{ kind, alpha string }
	events := make(chan event, 16)
	go func() {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		kind := ""
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				kind = k
			}
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var doc struct{ Nodes [][]any }
				if json.Unmarshal([]byte(data), &doc) != nil {
					t.Errorf("event %s: not JSON: %s", kind, data)
					break
				}
				ev := event{kind: kind}
				for _, n := range doc.Nodes {
					if n[0] == "alpha" {
						ev.alpha, _ = n[1].(string)
					}
				}
				events <- ev
			}
		}
		close(events)
	}()
	status := func(ev event) string { return ev.alpha }
	next := func(within time.Duration) event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(within):
			t.Fatalf("no event within %v", within)
		}
		return event{}
	}
	if ev := next(5 * time.Second); ev.kind != "snapshot" || status(ev) != "silent" {
		t.Fatalf("first event: %+v", ev)
	}
	sent := time.Now()
	if _, err := n.c.Report(t.Context(), &api.MeshReport{Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	for top := next(2 * time.Second); status(top) != "online"; top = next(2*time.Second - time.Since(sent)) {
	}
	t.Logf("report on the stream after %v", time.Since(sent).Round(time.Millisecond))
	for top := next(3 * time.Second); status(top) != "stale"; top = next(3 * time.Second) {
	}
	t.Logf("stale on the stream %v after the report (stale_after 1 s)", time.Since(sent).Round(time.Millisecond))
}
