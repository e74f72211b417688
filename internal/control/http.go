package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/ratelimit"
)

// access says who may call a route.
type access int

const (
	accessPublic     access = iota // anyone
	accessOptional                 // anyone; credentials, if sent, must be valid and are used
	accessUser                     // a session or API key with at least route.role
	accessNode                     // a node authenticated by its X.509-SVID (mutual TLS)
	accessNodeOrUser               // a node (mutual TLS, without credentials), or a user as accessUser
)

// route is one operation of the API: how it is reached, who may call it, its documentation and
// its handler. The OpenAPI document and /docs are generated from the same table.
type route struct {
	method  string
	path    string   // canonical path, under /api/v1 unless it is a protocol path
	aliases []string // the seed API's paths, kept with the same meaning
	access  access
	role    auth.Role
	// authLimited routes (login, registration, enrollment) also draw from the per-IP auth limiter.
	authLimited bool
	maxBody     int64 // request body limit; 0: limits.max_body_bytes
	doc         opDoc
	h           func(w http.ResponseWriter, r *http.Request, rc *reqCtx)
}

// reqCtx is what the middleware learned about a request.
type reqCtx struct {
	ip       string // the client's address, as logged and audited
	limitKey string // the client's key in the per-address limiters (clientKey)
	route    *route
	user     *principal
	node     *nodePeer
}

// principal is an authenticated operator.
type principal struct {
	user      *store.User
	role      auth.Role // effective role: the lower of the account's and the API key's
	method    string    // "session" or "api_key"
	sessionID int64
	apiKeyID  int64
	prefix    string
	// cookie: the session came in the console's cookie, so state changes need the CSRF token.
	cookie  bool
	csrf    string
	expires time.Time // the session's expiry
}

func (p *principal) actor() string {
	if p.method == "api_key" {
		return "user:" + p.user.Username + " (api key " + p.prefix + ")"
	}
	return "user:" + p.user.Username
}

func (rc *reqCtx) actor() string {
	switch {
	case rc.user != nil:
		return rc.user.actor()
	case rc.node != nil:
		return "node:" + rc.node.name
	}
	return "anonymous"
}

// statusWriter records the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (MaxBytesReader, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) buildHandler() http.Handler {
	byPath := map[string]map[string]*route{}
	var paths []string
	for _, rt := range s.routes {
		for _, p := range append([]string{rt.path}, rt.aliases...) {
			if byPath[p] == nil {
				byPath[p] = map[string]*route{}
				paths = append(paths, p)
			}
			if byPath[p][rt.method] != nil {
				panic("control: duplicate route " + rt.method + " " + p)
			}
			byPath[p][rt.method] = rt
		}
	}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.Handle(p, s.pathHandler(p, byPath[p]))
	}
	ui := s.consoleHandler()
	mux.Handle("/ui", ui)
	mux.Handle("/ui/", ui)
	mux.Handle("/", s.pathHandler("unmatched", nil))
	return mux
}

func (s *Server) pathHandler(label string, byMethod map[string]*route) http.Handler {
	methods := make([]string, 0, len(byMethod))
	for m := range byMethod {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		s.m.inflight.Inc()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, "internal", "internal error")
				}
			}
			s.m.inflight.Dec()
			s.m.observe(label, r.Method, sw.status, time.Since(start))
		}()
		h := sw.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		ip := clientIP(r)
		key := clientKey(ip)
		if ok, wait := s.ipLim.Allow(key, s.now()); !ok {
			s.tooMany(sw, "per_ip", wait)
			return
		}
		if byMethod == nil {
			writeError(sw, http.StatusNotFound, "not_found", "no such endpoint; see /docs")
			return
		}
		rt := byMethod[r.Method]
		if rt == nil {
			h.Set("Allow", allow)
			writeError(sw, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" not allowed; allowed: "+allow)
			return
		}
		rc := &reqCtx{ip: ip, limitKey: key, route: rt}
		if rt.authLimited {
			if ok, wait := s.authLim.Allow(key, s.now()); !ok {
				s.tooMany(sw, "auth", wait)
				return
			}
		}
		if !s.checkAccess(sw, r, rc) {
			return
		}
		limit := rt.maxBody
		if limit == 0 {
			limit = s.cfg.Limits.MaxBodyBytes
		}
		r.Body = http.MaxBytesReader(sw, r.Body, limit)
		rt.h(sw, r, rc)
	})
}

// checkAccess authenticates and authorizes; it writes the error response and returns false when
// the request may not go on.
func (s *Server) checkAccess(w http.ResponseWriter, r *http.Request, rc *reqCtx) bool {
	rt := rc.route
	switch rt.access {
	case accessPublic:
		return true
	case accessNode:
		return s.checkNode(w, r, rc)
	case accessNodeOrUser:
		if !hasCredentials(r) && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			return s.checkNode(w, r, rc)
		}
	}
	if rt.access == accessOptional && !hasCredentials(r) {
		return true
	}
	p, err := s.authenticate(r.Context(), r)
	if err != nil {
		var ae *authError
		if !errors.As(err, &ae) {
			s.internal(w, r, fmt.Errorf("authentication: %w", err))
			return false
		}
		s.m.authFailures.WithLabelValues(ae.reason).Inc()
		// Failed credentials draw from the per-IP auth limiter, so guessing is throttled like logins.
		if ae.reason != "missing" {
			if ok, wait := s.authLim.Allow(rc.limitKey, s.now()); !ok {
				s.tooMany(w, "auth", wait)
				return false
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="x0tta6bl4"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", ae.msg)
		return false
	}
	rc.user = p
	if !s.checkCSRF(w, r, p) {
		return false
	}
	key := "session:" + p.prefix
	if p.method == "api_key" {
		key = "key:" + p.prefix
	}
	if ok, wait := s.keyLim.Allow(key, s.now()); !ok {
		s.tooMany(w, "per_key", wait)
		return false
	}
	if (rt.access == accessUser || rt.access == accessNodeOrUser) && !p.role.AtLeast(rt.role) {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s role; you have %s", rt.role, p.role))
		return false
	}
	return true
}

// checkNode authenticates a node by its X.509-SVID; it writes the error response and returns false
// when the request may not go on.
func (s *Server) checkNode(w http.ResponseWriter, r *http.Request, rc *reqCtx) bool {
	n, status, msg := s.authenticateNode(r)
	if n == nil {
		s.m.authFailures.WithLabelValues("node").Inc()
		writeError(w, status, http.StatusText(status), msg)
		return false
	}
	rc.node = n
	if ok, wait := s.keyLim.Allow("node:"+n.name, s.now()); !ok {
		s.tooMany(w, "per_key", wait)
		return false
	}
	return true
}

type authError struct{ reason, msg string }

func (e *authError) Error() string { return e.msg }

var (
	errNoCredentials  = &authError{"missing", "authentication required: send Authorization: Bearer <session token or API key>"}
	errBadCredentials = &authError{"invalid", "invalid, expired or revoked credentials"}
)

func hasCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
		return true
	}
	_, err := cookieToken(r)
	return err == nil
}

func bearerToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		return strings.TrimSpace(tok), true
	}
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k, true
	}
	return "", false
}

// authenticate resolves a session token or API key. Secrets are compared in constant time against
// their stored SHA-256; what differs (unknown prefix, wrong secret, expired, revoked, disabled user)
// is not told apart in the answer.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*principal, error) {
	tok, ok := bearerToken(r)
	viaCookie := false
	if !ok {
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
			return nil, errBadCredentials
		}
		var err error
		if tok, err = cookieToken(r); err != nil {
			return nil, errNoCredentials
		}
		viaCookie = true
	}
	now := s.now()
	kind := auth.KindOf(tok)
	prefix, secret, err := auth.ParseToken(kind, tok)
	if err != nil || (kind != auth.KindSession && kind != auth.KindAPIKey) {
		return nil, errBadCredentials
	}
	if kind == auth.KindSession {
		sess, u, err := s.st.SessionByPrefix(ctx, prefix)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errBadCredentials
		}
		if err != nil {
			return nil, err
		}
		if !auth.CheckSecret(kind, secret, sess.Hash) || !sess.RevokedAt.IsZero() || !now.Before(sess.ExpiresAt) || u.Disabled {
			return nil, errBadCredentials
		}
		return &principal{user: u, role: auth.Role(u.Role), method: "session", sessionID: sess.ID, prefix: prefix,
			cookie: viaCookie, csrf: csrfToken(tok), expires: sess.ExpiresAt}, nil
	}
	k, u, err := s.st.APIKeyByPrefix(ctx, prefix)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if !auth.CheckSecret(kind, secret, k.Hash) || !k.RevokedAt.IsZero() || (!k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)) || u.Disabled {
		return nil, errBadCredentials
	}
	return &principal{user: u, role: auth.Min(auth.Role(k.Role), auth.Role(u.Role)), method: "api_key", apiKeyID: k.ID, prefix: prefix}, nil
}

// authenticateNode identifies a node by the X.509-SVID it presented in the TLS handshake (already
// chain-checked there) and re-checks revocation, since a keep-alive connection can outlive it.
func (s *Server) authenticateNode(r *http.Request) (*nodePeer, int, string) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, http.StatusUnauthorized, "this endpoint needs mutual TLS with the node's X.509-SVID"
	}
	n, err := s.verifyNodeChain(r.TLS.PeerCertificates)
	if err != nil {
		return nil, http.StatusForbidden, "node certificate refused: " + err.Error()
	}
	return n, 0, ""
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// clientKey is the per-address limiters' key for a client address: its /24 for IPv4, its /64
// for IPv6 (ratelimit.AddrKey), so that one IPv6 subscriber cannot fill the tables.
func clientKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return ratelimit.AddrKey(a).String()
}

func (s *Server) tooMany(w http.ResponseWriter, limiter string, wait time.Duration) {
	s.m.rateLimited.WithLabelValues(limiter).Inc()
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("rate limit (%s) exceeded; retry after %d s", limiter, secs))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	code = strings.ToLower(strings.ReplaceAll(code, " ", "_"))
	b, _ := json.Marshal(api.Error{Error: code, Message: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// decodeJSON reads exactly one JSON object into v: 415 for another content type, 413 past the
// body limit, 400 for malformed JSON, unknown fields, wrong types or trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
			return false
		}
	}
	// encoding/json would turn invalid UTF-8 into U+FFFD without a word, so a name sent in another
	// encoding would be stored mangled; JSON is UTF-8 (RFC 8259 §8.1), and the body is refused.
	body, err := io.ReadAll(r.Body)
	if err == nil && !utf8.Valid(body) {
		writeError(w, http.StatusBadRequest, "bad_json", "request body is not valid UTF-8")
		return false
	}
	var dec *json.Decoder
	if err == nil {
		dec = json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err == nil {
		if err2 := dec.Decode(&json.RawMessage{}); err2 != io.EOF {
			err = errors.New("trailing data after the JSON object")
			if err2 != nil {
				err = err2
			}
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "bad_json", "request body is empty; send a JSON object")
	case errors.As(err, &syn):
		writeError(w, http.StatusBadRequest, "bad_json", fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, err))
	case errors.As(err, &typ):
		writeError(w, http.StatusBadRequest, "bad_json", fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value))
	default:
		writeError(w, http.StatusBadRequest, "bad_json", err.Error())
	}
	return false
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "bad_request", msg)
}

// A database that did not answer in time or could not be reached (store.ErrUnavailable, which
// every store call reports under its deadline) is 503 with Retry-After instead: the client should
// come back, and a load balancer should try another instance. Handlers therefore need nothing of
// their own to get this right; they pass store errors here.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		s.log.Warn("request failed: database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		s.m.dbUnavailable.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(unavailableRetryAfter/time.Second)))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the database is not answering; retry later")
		return
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error")
}

// unavailableRetryAfter is what a 503 for an unavailable database asks clients to wait: about
// one health check period, after which the database may be back.
const unavailableRetryAfter = 5 * time.Second

// queryInt reads an optional non-negative integer query parameter.
// pageQuery reads a list page's cursor (the named parameter) and limit.
func pageQuery(r *http.Request, cursor string) (cur, limit int64, err error) {
	if cur, err = queryInt(r, cursor, 1<<62); err != nil {
		return 0, 0, err
	}
	limit, err = queryInt(r, "limit", store.MaxList)
	return cur, limit, err
}

func queryInt(r *http.Request, name string, max int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("query parameter %s=%q: want an integer 0-%d", name, v, max)
	}
	return n, nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
