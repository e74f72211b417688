package control

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
)

// concrete fills a route pattern's wildcards.
func concrete(p string) string {
	r := strings.NewReplacer("{id}", "999999", "{name}", "alpha", "{node_id}", "alpha")
	return r.Replace(p)
}

// TestEveryRouteAuth walks the route table: every protected endpoint, under every path it is
// served at, refuses a request without credentials and one with invalid credentials (401), and one
// with too low a role (403); every endpoint with a JSON body refuses malformed JSON, unknown
// fields, a wrong content type (400/415) and an oversized body (413).
func TestEveryRouteAuth(t *testing.T) {
	h := sqliteHarness(t, nil)
	viewer := h.user("vera", auth.Viewer)
	operator := h.user("otto", auth.Operator)
	fake, _ := auth.NewToken(auth.KindAPIKey)
	keyFor := map[auth.Role]string{auth.Viewer: viewer, auth.Operator: operator, auth.Admin: h.adminKey}
	below := map[auth.Role]string{auth.Operator: viewer, auth.Admin: operator}
	for _, rt := range h.srv.routes {
		for _, p := range append([]string{rt.path}, rt.aliases...) {
			path := concrete(p)
			name := rt.method + " " + p
			switch rt.access {
			case accessUser, accessNodeOrUser: // the harness presents no client certificate
				r := h.do(rt.method, path, "", nil)
				if r.status != 401 || r.header.Get("WWW-Authenticate") == "" || r.errCode() != "unauthorized" {
					t.Errorf("%s without credentials: %d %s %q", name, r.status, r.body, r.header.Get("WWW-Authenticate"))
				}
				for _, bad := range []string{fake.String(), "x6s_" + fake.String()[4:], "garbage", h.adminKey + "0", strings.ToUpper(h.adminKey)} {
					if r := h.do(rt.method, path, bad, nil); r.status != 401 {
						t.Errorf("%s with invalid credential %.12s…: %d %s", name, bad, r.status, r.body)
					}
				}
				if r := h.do(rt.method, path, "", nil, "Authorization", "Basic cm9vdDpyb290"); r.status != 401 {
					t.Errorf("%s with Basic auth: %d", name, r.status)
				}
				if low, ok := below[rt.role]; ok {
					if r := h.do(rt.method, path, low, nil); r.status != 403 || r.errCode() != "forbidden" {
						t.Errorf("%s with a role below %s: %d %s", name, rt.role, r.status, r.body)
					}
				}
				if rt.doc.contentType == "text/event-stream" {
					continue // an open stream: TestConsoleEvents reads it
				}
				if r := h.do(rt.method, path, keyFor[rt.role], nil); r.status == 401 || r.status == 403 {
					t.Errorf("%s with role %s: %d %s", name, rt.role, r.status, r.body)
				}
				// X-API-Key works like Authorization: Bearer.
				if r := h.do(rt.method, path, "", nil, "X-API-Key", keyFor[rt.role]); r.status == 401 || r.status == 403 {
					t.Errorf("%s with X-API-Key: %d %s", name, r.status, r.body)
				}
			case accessNode:
				if r := h.do(rt.method, path, h.adminKey, "{}"); r.status != 401 {
					t.Errorf("%s without a client certificate: %d %s", name, r.status, r.body)
				}
			case accessOptional:
				if r := h.do(rt.method, path, fake.String(), nil); r.status != 401 {
					t.Errorf("%s with invalid credentials: %d %s", name, r.status, r.body)
				}
			}
			if rt.doc.req == nil || rt.access == accessNode {
				continue
			}
			tok := keyFor[auth.Admin]
			if rt.access == accessPublic {
				tok = ""
			}
			for _, bad := range []string{"", "{", `{"username": 5}`, `{"no_such_field": 1}`, `{} {}`, `[]`, `{"a":"b"} trailing`} {
				if r := h.do(rt.method, path, tok, bad); r.status != 400 || r.errCode() != "bad_json" {
					t.Errorf("%s with body %q: %d %s", name, bad, r.status, r.body)
				}
			}
			limit := h.cfg.Limits.MaxBodyBytes
			if rt.maxBody > 0 {
				limit = rt.maxBody
			}
			big := `{"name":"` + strings.Repeat("a", int(limit)) + `"}`
			if r := h.do(rt.method, path, tok, big); r.status != 413 || r.errCode() != "body_too_large" {
				t.Errorf("%s with an oversized body: %d %.200s", name, r.status, r.body)
			}
			if r := h.do(rt.method, path, tok, "{}", "Content-Type", "text/plain"); r.status != 415 {
				t.Errorf("%s with text/plain: %d", name, r.status)
			}
		}
	}
	if r := h.do("GET", "/no/such/thing", "", nil); r.status != 404 || r.errCode() != "not_found" {
		t.Errorf("unknown path: %d %s", r.status, r.body)
	}
	if r := h.do("DELETE", "/health", "", nil); r.status != 405 || r.header.Get("Allow") != "GET" {
		t.Errorf("wrong method: %d %q", r.status, r.header.Get("Allow"))
	}
}

func TestUsersKeysAudit(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		// The admin from `control init` logs in.
		var login api.LoginResponse
		h.must(200, "POST", "/api/v1/users/login", "", api.LoginRequest{Username: testAdmin, Password: testPassword}, &login)
		if !strings.HasPrefix(login.Token, "x6s_") || login.User.Role != "admin" || login.ExpiresAt.Before(time.Now().Add(11*time.Hour)) {
			t.Fatalf("login: %+v", login)
		}
		for _, bad := range []api.LoginRequest{{Username: testAdmin, Password: "wrong password!"}, {Username: "nobody", Password: testPassword}} {
			if r := h.do("POST", "/api/v1/users/login", "", bad); r.status != 401 || strings.Contains(string(r.body), "nobody") {
				t.Fatalf("bad login %+v: %d %s", bad, r.status, r.body)
			}
		}
		var me api.Me
		h.must(200, "GET", "/api/v1/users/me", login.Token, nil, &me)
		if me.User.Username != testAdmin || me.AuthMethod != "session" || me.EffectiveRole != "admin" || !me.User.HasPassword {
			t.Fatalf("me: %+v", me)
		}
		// Registration: admins only by default.
		if r := h.do("POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "eve", Password: testPassword}); r.status != 401 {
			t.Fatalf("anonymous registration: %d", r.status)
		}
		var u api.User
		h.must(201, "POST", "/api/v1/users/register", login.Token, api.RegisterRequest{Username: "olga", Password: testPassword, Role: "operator"}, &u)
		if u.Role != "operator" || u.ID == 0 {
			t.Fatalf("registered %+v", u)
		}
		if r := h.do("POST", "/api/v1/users/register", login.Token, api.RegisterRequest{Username: "olga", Password: testPassword}); r.status != 409 {
			t.Fatalf("duplicate: %d", r.status)
		}
		for _, bad := range []api.RegisterRequest{
			{Username: "", Password: testPassword}, {Username: " padded", Password: testPassword}, {Username: "tab\there", Password: testPassword},
			{Username: strings.Repeat("x", 65), Password: testPassword}, {Username: "shortpw", Password: "short"}, {Username: "r", Password: testPassword, Role: "root"},
		} {
			if r := h.do("POST", "/api/v1/users/register", h.adminKey, bad); r.status != 400 {
				t.Errorf("register %+v: %d %s", bad, r.status, r.body)
			}
		}
		// An operator may not register accounts.
		var ol api.LoginResponse
		h.must(200, "POST", "/api/v1/users/login", "", api.LoginRequest{Username: "olga", Password: testPassword}, &ol)
		if r := h.do("POST", "/api/v1/users/register", ol.Token, api.RegisterRequest{Username: "x", Password: testPassword}); r.status != 403 {
			t.Fatalf("operator registering: %d", r.status)
		}
		// API keys: shown once, role capped at the owner's, listed without secrets, revocable.
		var k api.APIKeyCreated
		h.must(201, "POST", "/api/v1/keys", ol.Token, api.CreateAPIKeyRequest{Name: "ci", Role: "viewer", ExpiresInSeconds: 3600}, &k)
		if !strings.HasPrefix(k.Key, "x6k_"+k.Prefix+"_") || k.Role != "viewer" || k.ExpiresAt == nil {
			t.Fatalf("key %+v", k)
		}
		if r := h.do("POST", "/api/v1/keys", ol.Token, api.CreateAPIKeyRequest{Name: "up", Role: "admin"}); r.status != 403 {
			t.Fatalf("key above own role: %d", r.status)
		}
		h.must(200, "GET", "/api/v1/users/me", k.Key, nil, &me)
		if me.AuthMethod != "api_key" || me.EffectiveRole != "viewer" || me.User.Username != "olga" || me.APIKeyID != k.ID {
			t.Fatalf("me with key: %+v", me)
		}
		var keys api.APIKeyList
		r := h.must(200, "GET", "/api/v1/keys", ol.Token, nil, &keys)
		if len(keys.Keys) != 1 || keys.Keys[0].Prefix != k.Prefix || strings.Contains(string(r.body), k.Key[len(k.Key)-64:]) {
			t.Fatalf("key list %s", r.body)
		}
		if r := h.do("GET", "/api/v1/keys?all=true", ol.Token, nil); r.status != 403 {
			t.Fatalf("operator listing all keys: %d", r.status)
		}
		h.must(200, "GET", "/api/v1/keys?all=true", h.adminKey, nil, &keys)
		if len(keys.Keys) != 2 {
			t.Fatalf("all keys: %d", len(keys.Keys))
		}
		// Someone else's key is not found to a non-admin.
		adminKeyID := keys.Keys[1].ID
		if r := h.do("DELETE", "/api/v1/keys/"+strconv.FormatInt(adminKeyID, 10), ol.Token, nil); r.status != 404 {
			t.Fatalf("revoking another's key: %d", r.status)
		}
		h.must(204, "DELETE", "/api/v1/keys/"+strconv.FormatInt(k.ID, 10), ol.Token, nil, nil)
		if r := h.do("GET", "/api/v1/users/me", k.Key, nil); r.status != 401 {
			t.Fatalf("revoked key still works: %d", r.status)
		}
		if r := h.do("DELETE", "/api/v1/keys/"+strconv.FormatInt(k.ID, 10), ol.Token, nil); r.status != 404 {
			t.Fatalf("second revoke: %d", r.status)
		}
		if r := h.do("DELETE", "/api/v1/keys/abc", ol.Token, nil); r.status != 400 {
			t.Fatalf("bad key id: %d", r.status)
		}
		// Admin changes a role and disables an account; the account's sessions end.
		var users api.UserList
		h.must(200, "GET", "/api/v1/users", h.adminKey, nil, &users)
		if len(users.Users) != 2 {
			t.Fatalf("users %+v", users)
		}
		role := "viewer"
		h.must(200, "PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), h.adminKey, api.UpdateUserRequest{Role: &role}, &u)
		if u.Role != "viewer" {
			t.Fatalf("role not changed: %+v", u)
		}
		h.must(200, "GET", "/api/v1/users/me", ol.Token, nil, &me)
		if me.EffectiveRole != "viewer" {
			t.Fatalf("session keeps the old role: %+v", me)
		}
		yes := true
		h.must(200, "PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), h.adminKey, api.UpdateUserRequest{Disabled: &yes}, nil)
		if r := h.do("GET", "/api/v1/users/me", ol.Token, nil); r.status != 401 {
			t.Fatalf("disabled user's session: %d", r.status)
		}
		if r := h.do("POST", "/api/v1/users/login", "", api.LoginRequest{Username: "olga", Password: testPassword}); r.status != 401 {
			t.Fatalf("disabled user logs in: %d", r.status)
		}
		h.must(200, "GET", "/api/v1/users/me", h.adminKey, nil, &me)
		if r := h.do("PATCH", fmt.Sprintf("/api/v1/users/%d", me.User.ID), h.adminKey, api.UpdateUserRequest{Disabled: &yes}); r.status != 400 {
			t.Fatalf("admin disabling itself: %d", r.status)
		}
		if r := h.do("PATCH", "/api/v1/users/999999", h.adminKey, api.UpdateUserRequest{Role: &role}); r.status != 404 {
			t.Fatalf("patch missing user: %d", r.status)
		}
		// Logout ends the session.
		h.must(204, "POST", "/api/v1/users/logout", login.Token, nil, nil)
		if r := h.do("GET", "/api/v1/users/me", login.Token, nil); r.status != 401 {
			t.Fatalf("session after logout: %d", r.status)
		}
		if r := h.do("POST", "/api/v1/users/logout", h.adminKey, nil); r.status != 400 {
			t.Fatalf("logout with an API key: %d", r.status)
		}
		// Every change is in the audit log, newest first.
		var audit api.AuditList
		h.must(200, "GET", "/api/v1/audit", h.adminKey, nil, &audit)
		var actions []string
		for _, e := range audit.Entries {
			actions = append(actions, e.Action)
			if e.At.IsZero() || e.Actor == "" {
				t.Fatalf("audit entry %+v", e)
			}
		}
		want := []string{"session.revoke", "user.update", "user.update", "apikey.revoke", "apikey.create", "session.create", "user.register", "session.create", "apikey.create", "user.register"}
		if got := strings.Join(actions, ","); !strings.HasPrefix(got, strings.Join(want, ",")) {
			t.Fatalf("audit actions\n got %s\nwant %s…", got, strings.Join(want, ","))
		}
		var page api.AuditList
		h.must(200, "GET", fmt.Sprintf("/api/v1/audit?limit=2&before_id=%d", audit.Entries[0].ID), h.adminKey, nil, &page)
		if len(page.Entries) != 2 || page.Entries[0].ID != audit.Entries[1].ID {
			t.Fatalf("audit paging %+v", page)
		}
		if r := h.do("GET", "/api/v1/audit?limit=-1", h.adminKey, nil); r.status != 400 {
			t.Fatalf("bad limit: %d", r.status)
		}
		// Nothing secret is stored in plaintext.
		st := h.srv.Store()
		dbUser, _ := st.UserByName(t.Context(), testAdmin)
		if !strings.HasPrefix(dbUser.PasswordHash, "$argon2id$") || strings.Contains(dbUser.PasswordHash, testPassword) {
			t.Fatalf("stored password %q", dbUser.PasswordHash)
		}
		_, secret, _ := auth.ParseToken(auth.KindAPIKey, h.adminKey)
		allKeys, _ := st.ListAPIKeys(t.Context(), 0, 0)
		for _, k := range allKeys {
			if strings.Contains(k.Hash, secret) || len(k.Hash) != 64 {
				t.Fatalf("stored key hash %q", k.Hash)
			}
		}
	})
}

// TestInjectionShapedInputVerbatim stores SQL-injection-shaped strings through the API and reads
// them back unchanged, with the tables intact.
func TestInjectionShapedInputVerbatim(t *testing.T) {
	nasty := []string{
		`robert'); DROP TABLE users;--`,
		`" OR "1"="1`,
		`admin'--`,
		`x'; UPDATE users SET role='admin' WHERE '1'='1`,
		`1; DELETE FROM api_keys`,
		`%' UNION SELECT hash FROM api_keys --`,
	}
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		for _, s := range nasty {
			var u api.User
			h.must(201, "POST", "/api/v1/users/register", h.adminKey, api.RegisterRequest{Username: s, Password: testPassword}, &u)
			if u.Username != s || u.Role != "viewer" {
				t.Fatalf("register %q: %+v", s, u)
			}
			var login api.LoginResponse
			h.must(200, "POST", "/api/v1/users/login", "", api.LoginRequest{Username: s, Password: testPassword}, &login)
			var me api.Me
			h.must(200, "GET", "/api/v1/users/me", login.Token, nil, &me)
			if me.User.Username != s || me.EffectiveRole != "viewer" {
				t.Fatalf("me for %q: %+v", s, me)
			}
			var k api.APIKeyCreated
			h.must(201, "POST", "/api/v1/keys", login.Token, api.CreateAPIKeyRequest{Name: s}, &k)
			var keys api.APIKeyList
			h.must(200, "GET", "/api/v1/keys", k.Key, nil, &keys)
			if len(keys.Keys) != 1 || keys.Keys[0].Name != s || keys.Keys[0].Owner != s {
				t.Fatalf("keys for %q: %+v", s, keys)
			}
			var jt api.JoinTokenCreated
			h.must(201, "POST", "/api/v1/enroll/tokens", h.adminKey, api.CreateJoinTokenRequest{Description: s}, &jt)
			if jt.Description != s {
				t.Fatalf("token description %q", jt.Description)
			}
		}
		// Logging in with an injection as the password does not get in.
		if r := h.do("POST", "/api/v1/users/login", "", api.LoginRequest{Username: testAdmin, Password: `' OR '1'='1`}); r.status != 401 {
			t.Fatalf("injection as password: %d", r.status)
		}
		var users api.UserList
		h.must(200, "GET", "/api/v1/users", h.adminKey, nil, &users)
		if len(users.Users) != len(nasty)+1 {
			t.Fatalf("%d users, want %d", len(users.Users), len(nasty)+1)
		}
		for _, u := range users.Users[1:] {
			if u.Role != "viewer" {
				t.Fatalf("an injection changed a role: %+v", u)
			}
		}
		var toks api.JoinTokenList
		h.must(200, "GET", "/api/v1/enroll/tokens", h.adminKey, nil, &toks)
		for i, tk := range toks.Tokens {
			if tk.Description != nasty[len(nasty)-1-i] {
				t.Fatalf("token %d description %q", i, tk.Description)
			}
		}
		var audit api.AuditList
		h.must(200, "GET", "/api/v1/audit", h.adminKey, nil, &audit)
		found := false
		for _, e := range audit.Entries {
			if e.Action == "user.register" && e.Target == nasty[0] {
				found = true
			}
		}
		if !found {
			t.Fatal("audit entry with the injection-shaped name not found verbatim")
		}
	})
}

func TestOpenRegistration(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.Auth.Registration = "open"; c.Auth.MaxUsers = 3 })
	var u api.User
	h.must(201, "POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "self", Password: testPassword}, &u)
	if u.Role != "viewer" {
		t.Fatalf("self-registered role %q", u.Role)
	}
	if r := h.do("POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "greedy", Password: testPassword, Role: "admin"}); r.status != 403 {
		t.Fatalf("self-registering as admin: %d", r.status)
	}
	if r := h.do("POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "nopw"}); r.status != 400 {
		t.Fatalf("self-registering without a password: %d", r.status)
	}
	h.must(201, "POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "second", Password: testPassword}, nil)
	if r := h.do("POST", "/api/v1/users/register", "", api.RegisterRequest{Username: "third", Password: testPassword}); r.status != 409 || r.errCode() != "limit" {
		t.Fatalf("past max_users: %d %s", r.status, r.body)
	}
}

func TestRateLimits(t *testing.T) {
	t.Run("per_ip", func(t *testing.T) {
		h := sqliteHarness(t, func(c *Config) { c.RateLimits.PerIP = auth.LimitConfig{Rate: 0.5, Burst: 3} })
		for i := range 3 {
			h.must(200, "GET", "/health", "", nil, nil)
			_ = i
		}
		r := h.do("GET", "/health", "", nil)
		if r.status != http.StatusTooManyRequests || r.errCode() != "rate_limited" {
			t.Fatalf("4th request: %d %s", r.status, r.body)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	})
	t.Run("per_key", func(t *testing.T) {
		h := sqliteHarness(t, func(c *Config) { c.RateLimits.PerKey = auth.LimitConfig{Rate: 0.1, Burst: 2} })
		h.must(200, "GET", "/api/v1/users/me", h.adminKey, nil, nil)
		h.must(200, "GET", "/api/v1/users/me", h.adminKey, nil, nil)
		r := h.do("GET", "/api/v1/users/me", h.adminKey, nil)
		if r.status != 429 || r.header.Get("Retry-After") == "" {
			t.Fatalf("3rd request with one key: %d", r.status)
		}
		// Another credential has its own bucket.
		var login api.LoginResponse
		h.must(200, "POST", "/api/v1/users/login", "", api.LoginRequest{Username: testAdmin, Password: testPassword}, &login)
		h.must(200, "GET", "/api/v1/users/me", login.Token, nil, nil)
	})
	t.Run("auth", func(t *testing.T) {
		h := sqliteHarness(t, func(c *Config) { c.RateLimits.Auth = auth.LimitConfig{Rate: 0.01, Burst: 3} })
		for range 3 {
			if r := h.do("POST", "/api/v1/users/login", "", api.LoginRequest{Username: testAdmin, Password: "wrong password"}); r.status != 401 {
				t.Fatalf("login: %d", r.status)
			}
		}
		r := h.do("POST", "/api/v1/users/login", "", api.LoginRequest{Username: testAdmin, Password: testPassword})
		if r.status != 429 {
			t.Fatalf("login past the auth limit: %d", r.status)
		}
		// Guessing tokens draws from the same bucket.
		if r := h.do("GET", "/api/v1/users/me", "x6k_0000000000000000_"+strings.Repeat("0", 64), nil); r.status != 429 {
			t.Fatalf("token guess past the auth limit: %d", r.status)
		}
		if r := h.do("POST", "/api/v1/enroll", "", api.EnrollRequest{}); r.status != 429 {
			t.Fatalf("enroll past the auth limit: %d", r.status)
		}
		// The valid key is unaffected.
		h.must(200, "GET", "/api/v1/users/me", h.adminKey, nil, nil)
	})
	t.Run("ipv6 /64", func(t *testing.T) {
		// A host that sends from many addresses of its /64 shares one bucket and takes one slot of
		// the table, so another /64 still gets a bucket of its own.
		h := sqliteHarness(t, func(c *Config) {
			c.RateLimits.PerIP = auth.LimitConfig{Rate: 0.01, Burst: 2}
			c.RateLimits.MaxTracked = 2
		})
		get := func(remote string) int {
			req := httptest.NewRequest("GET", "/health", nil)
			req.RemoteAddr = remote
			w := httptest.NewRecorder()
			h.srv.Handler().ServeHTTP(w, req)
			return w.Code
		}
		for i, remote := range []string{"[2001:db8:1:1::1]:1000", "[2001:db8:1:1::2]:1000", "[2001:db8:1:1:ffff::9]:1000"} {
			want := 200
			if i == 2 {
				want = 429
			}
			if code := get(remote); code != want {
				t.Fatalf("request %d from the first /64 (%s): %d, want %d", i, remote, code, want)
			}
		}
		if code := get("[2001:db8:1:2::1]:1000"); code != 200 {
			t.Fatalf("another /64: %d", code)
		}
		if code := get("192.0.2.1:1000"); code != 200 {
			t.Fatalf("an IPv4 client: %d", code)
		}
	})
}

func TestServiceEndpoints(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.AI.Model = "none" })
	var hl api.Health
	r := h.must(200, "GET", "/health", "", nil, &hl)
	if hl.Status != "ok" || !hl.DatabaseOK || hl.Database != "sqlite" || hl.TrustDomain != testTD || hl.CRLNumber != 1 || hl.Version != "test" {
		t.Fatalf("health %+v", hl)
	}
	if r.header.Get("Strict-Transport-Security") == "" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("security headers %v", r.header)
	}
	h.must(200, "GET", "/api/v1/health", "", nil, &hl)

	r = h.must(200, "GET", "/docs", "", nil, nil)
	if !strings.Contains(string(r.body), "/api/v1/enroll") || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("docs page")
	}
	for _, rt := range h.srv.routes {
		if !strings.Contains(string(r.body), rt.path) {
			t.Errorf("docs do not mention %s", rt.path)
		}
	}

	viewer := h.user("vic", auth.Viewer)
	operator := h.user("opal", auth.Operator)
	for _, p := range []string{"/ai/predict/alpha", "/api/v1/ai/predict/alpha"} {
		if r := h.do("GET", p, viewer, nil); r.status != 503 || r.errCode() != "unavailable" || !strings.Contains(string(r.body), "ai.model") {
			t.Fatalf("%s without a model: %d %s", p, r.status, r.body)
		}
	}
	// Without a genesis roster there is no governance: a well-formed ballot is refused as such.
	for _, p := range []string{"/dao/vote", "/api/v1/dao/vote"} {
		if r := h.do("POST", p, operator, `{"proposal":1}`); r.status != 400 {
			t.Fatalf("%s with an unknown field: %d", p, r.status)
		}
	}

	// Metrics: Prometheus text with API and mesh series, behind a viewer credential.
	h.must(200, "GET", "/mesh/status", viewer, nil, nil)
	r = h.must(200, "GET", "/metrics", viewer, nil, nil)
	for _, want := range []string{
		`x0tta6bl4_control_http_requests_total{code="200",method="GET",route="/mesh/status"} 1`,
		`x0tta6bl4_control_http_requests_total{code="503",method="GET",route="/ai/predict/{node_id}"} 1`,
		"x0tta6bl4_control_http_request_duration_seconds_bucket",
		`x0tta6bl4_mesh_nodes{status="online"} 0`,
		"x0tta6bl4_control_crl_number 1",
		`x0tta6bl4_mesh_view_error 0`,
		"go_goroutines",
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if r := h.do("GET", "/metrics", "", nil); r.status != 401 {
		t.Fatalf("metrics without credentials: %d", r.status)
	}
	pub := sqliteHarness(t, func(c *Config) { c.Metrics.Public = true })
	pub.must(200, "GET", "/metrics", "", nil, nil)

	// The optional plain-HTTP metrics listener serves /metrics and nothing else.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close()
	sqliteHarness(t, func(c *Config) { c.Metrics.Listen = maddr })
	var mr *http.Response
	for range 200 {
		if mr, err = http.Get("http://" + maddr + "/metrics"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mr.Body)
	mr.Body.Close()
	if mr.StatusCode != 200 || !strings.Contains(string(body), "x0tta6bl4_mesh_nodes") {
		t.Fatalf("metrics listener: %d", mr.StatusCode)
	}
	if r, err := http.Get("http://" + maddr + "/api/v1/users"); err != nil || r.StatusCode != 404 {
		t.Fatalf("metrics listener serves more than /metrics: %v", err)
	} else {
		r.Body.Close()
	}
}

// TestOpenAPIDocument checks /openapi.json: OpenAPI 3.1, every route under every path, every
// reference resolvable, and real responses conform to the documented schemas.
func TestOpenAPIDocument(t *testing.T) {
	h := sqliteHarness(t, nil)
	var doc map[string]any
	h.must(200, "GET", "/openapi.json", "", nil, &doc)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi %v", doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	n := 0
	for _, rt := range h.srv.routes {
		for _, p := range append([]string{rt.path}, rt.aliases...) {
			item, ok := paths[p].(map[string]any)
			if !ok || item[strings.ToLower(rt.method)] == nil {
				t.Errorf("%s %s missing from the document", rt.method, p)
			}
			n++
		}
	}
	count := 0
	for _, item := range paths {
		count += len(item.(map[string]any))
	}
	if count != n {
		t.Errorf("document has %d operations, the server %d", count, n)
	}
	// The seed API's handshake name is deprecated under both its paths, and nothing else is.
	for p, item := range paths {
		for method, op := range item.(map[string]any) {
			dep, _ := op.(map[string]any)["deprecated"].(bool)
			if want := strings.HasSuffix(p, "/security/handshake"); dep != want {
				t.Errorf("%s %s: deprecated %v, want %v", method, p, dep, want)
			}
		}
	}
	ids := map[string]bool{}
	for _, item := range paths {
		for _, op := range item.(map[string]any) {
			id := op.(map[string]any)["operationId"].(string)
			if ids[id] {
				t.Errorf("duplicate operationId %s", id)
			}
			ids[id] = true
		}
	}
	raw, _ := json.Marshal(doc)
	for _, part := range strings.Split(string(raw), `"$ref":"#/components/schemas/`)[1:] {
		name := part[:strings.IndexByte(part, '"')]
		if schemas[name] == nil {
			t.Errorf("unresolved $ref %s", name)
		}
	}
	check := func(schemaName string, body []byte) {
		t.Helper()
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		if err := conforms(schemas, map[string]any{"$ref": "#/components/schemas/" + schemaName}, v, schemaName); err != nil {
			t.Errorf("response does not match schema %s: %v\n%s", schemaName, err, body)
		}
	}
	check("Health", h.do("GET", "/health", "", nil).body)
	check("Me", h.do("GET", "/api/v1/users/me", h.adminKey, nil).body)
	check("UserList", h.do("GET", "/api/v1/users", h.adminKey, nil).body)
	check("APIKeyList", h.do("GET", "/api/v1/keys", h.adminKey, nil).body)
	check("JoinTokenCreated", h.do("POST", "/api/v1/enroll/tokens", h.adminKey, api.CreateJoinTokenRequest{Groups: []string{"web"}}).body)
	check("JoinTokenList", h.do("GET", "/api/v1/enroll/tokens", h.adminKey, nil).body)
	check("CABundle", h.do("GET", "/api/v1/ca", "", nil).body)
	check("MeshStatus", h.do("GET", "/mesh/status", h.adminKey, nil).body)
	check("MeshPeers", h.do("GET", "/mesh/peers", h.adminKey, nil).body)
	check("MeshRoutes", h.do("GET", "/mesh/routes", h.adminKey, nil).body)
	check("AuditList", h.do("GET", "/api/v1/audit", h.adminKey, nil).body)
	check("Error", h.do("GET", "/api/v1/audit", "", nil).body)
}

// conforms is a small JSON Schema checker for the subset the generator emits.
func conforms(schemas map[string]any, s map[string]any, v any, at string) error {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		return conforms(schemas, schemas[name].(map[string]any), v, at)
	}
	if alts, ok := s["oneOf"].([]any); ok {
		for _, a := range alts {
			if conforms(schemas, a.(map[string]any), v, at) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: matches no alternative", at)
	}
	switch s["type"] {
	case "null":
		if v != nil {
			return fmt.Errorf("%s: want null", at)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want string, got %T", at, v)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return fmt.Errorf("%s: %v", at, err)
			}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want boolean", at)
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok || (s["type"] == "integer" && f != float64(int64(f))) {
			return fmt.Errorf("%s: want %s, got %v", at, s["type"], v)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want array, got %T", at, v)
		}
		for i, e := range arr {
			if err := conforms(schemas, s["items"].(map[string]any), e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want object, got %T", at, v)
		}
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %s missing", at, r)
			}
		}
		for k, val := range obj {
			ps, ok := props[k]
			if !ok {
				if s["additionalProperties"] == false {
					return fmt.Errorf("%s: undocumented property %s", at, k)
				}
				continue
			}
			if err := conforms(schemas, ps.(map[string]any), val, at+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := dir + "/c.yaml"
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg, err := LoadConfig(write("data_dir: data\nlisten: 127.0.0.1:9443\nauth:\n  session_ttl: 2h\nrate_limits:\n  per_ip: {rate: 5, burst: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != dir+"/data" || cfg.Auth.SessionTTL != 2*time.Hour || cfg.RateLimits.PerIP.Rate != 5 || cfg.Database.Path != dir+"/data/control.db" ||
		cfg.CADir != dir+"/data/ca" || cfg.Auth.Argon2.MemoryKiB != 19*1024 {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range []string{
		"data_dir: d\nlisten_addr: x\n",                                       // unknown key
		"listen: 127.0.0.1:1\n",                                               // no data_dir
		"data_dir: d\ninsecure_dev: true\nlisten: 0.0.0.0:8080\n",             // plain HTTP off loopback
		"data_dir: d\ndatabase: {driver: mysql}\n",                            // unknown driver
		"data_dir: d\ndatabase: {driver: postgres}\n",                         // no DSN
		"data_dir: d\nauth: {argon2: {time: 0, memory_kib: 1, threads: 1}}\n", // bad argon2
		"data_dir: d\nauth: {registration: maybe}\n",
		"data_dir: d\nauth: {session_ttl: -1h}\n",
		"data_dir: d\nrate_limits: {per_ip: {rate: -1, burst: 1}}\n",
		"data_dir: d\nlimits: {max_body_bytes: 10}\n",
		"data_dir: [\n",
	} {
		if _, err := LoadConfig(write(bad)); err == nil {
			t.Errorf("config accepted:\n%s", bad)
		}
	}
	if _, err := LoadConfig(dir + "/missing.yaml"); err == nil {
		t.Error("missing config accepted")
	}
	// New refuses a data directory that was never initialised.
	c := testConfig(t, store.Config{Driver: store.SQLite, Path: dir + "/x.db"})
	if _, err := New(t.Context(), c, Options{}); err == nil || !strings.Contains(err.Error(), "control init") {
		t.Fatalf("New without init: %v", err)
	}
}
