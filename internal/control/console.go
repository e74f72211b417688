package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"x0tta6bl4/internal/console"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/detector"
)

// The web console (docs/console.md): static files embedded in the binary under /ui/, a session in
// an HttpOnly cookie, a CSRF token for every state change made with that cookie, the mesh map as
// one document (GET /api/v1/console/topology) and its changes as server-sent events.

const (
	// sessionCookie carries a console session token. The __Host- prefix makes browsers insist on
	// Secure, Path=/ and no Domain.
	sessionCookie = "__Host-x6_session"
	csrfHeader    = "X-CSRF-Token"
	// consoleCSP allows only this origin's own scripts, styles and connections: no inline script,
	// no eval, no framing.
	consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
	// Event streams: at most maxEventStreams open at once, one event at most every
	// eventMinInterval, a comment every eventHeartbeat so proxies keep the stream.
	maxEventStreams  = 256
	eventMinInterval = 500 * time.Millisecond
	eventHeartbeat   = 15 * time.Second
	// scoreMaxAge bounds how often the map's anomaly scores are recomputed (one forward pass over
	// the whole mesh).
	scoreMaxAge = 10 * time.Second
)

// csrfToken derives the console's CSRF token from the session token: only a holder of the cookie
// (whose value scripts cannot read) learns it, from the login answer or GET /api/v1/console/session.
// The label keeps it distinct from the stored hash of the same secret.
func csrfToken(sessionToken string) string {
	h := sha256.Sum256([]byte("x0tta6bl4 console csrf v1\x00" + sessionToken))
	return hex.EncodeToString(h[:])
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkCSRF refuses a state change authenticated by the session cookie unless it carries the
// session's CSRF token and, when the browser names one, comes from this origin.
func (s *Server) checkCSRF(w http.ResponseWriter, r *http.Request, p *principal) bool {
	if !p.cookie || safeMethod(r.Method) {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		scheme := "https://"
		if r.TLS == nil {
			scheme = "http://"
		}
		if o != scheme+r.Host {
			writeError(w, http.StatusForbidden, "csrf", "cross-origin request refused")
			return false
		}
	}
	got := r.Header.Get(csrfHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf)) != 1 {
		writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+csrfHeader+" header")
		return false
	}
	return true
}

func (s *Server) setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func (s *Server) handleConsoleLogin(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	res, ok := s.login(w, r, rc)
	if !ok {
		return
	}
	s.setSessionCookie(w, res.Token, res.ExpiresAt)
	writeJSON(w, http.StatusOK, api.ConsoleSession{User: res.User, Role: res.User.Role, CSRFToken: csrfToken(res.Token), ExpiresAt: res.ExpiresAt})
}

func (s *Server) handleConsoleSession(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	writeJSON(w, http.StatusOK, api.ConsoleSession{User: toAPIUser(rc.user.user), Role: string(rc.user.role), CSRFToken: rc.user.csrf,
		ExpiresAt: rc.user.expires})
}

func (s *Server) handleConsoleTopology(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	start := time.Now()
	t, err := s.topology(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	built := time.Now()
	b, err := json.Marshal(t)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Where the server's share of the console's first paint goes; the browser exposes it to the
	// page (PerformanceResourceTiming.serverTiming), and the browser test reports it.
	w.Header().Set("Server-Timing", fmt.Sprintf("build;dur=%.1f, encode;dur=%.1f",
		float64(built.Sub(start).Microseconds())/1000, float64(time.Since(built).Microseconds())/1000))
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// handleConsoleEvents streams the map as server-sent events: a compact snapshot at once, then
// what changed (a report, an enrolment, a revocation, a node turning stale), at most every
// eventMinInterval, and an empty diff every eventHeartbeat (console_stream.go).
func (s *Server) handleConsoleEvents(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	select {
	case s.eventStreams <- struct{}{}:
		defer func() { <-s.eventStreams }()
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "busy", "too many open event streams")
		return
	}
	ctl := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	sent := newMapStream()
	lastWrite := time.Time{}
	for {
		_, changed := s.viewEvents.wait()
		t, err := s.topology(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("console events: topology", "err", err)
			}
			return
		}
		now := time.Now()
		var event string
		var doc []byte
		if lastWrite.IsZero() {
			event, doc = "snapshot", sent.snapshot(t)
		} else if d, moved := sent.diff(t); moved || now.Sub(lastWrite) >= eventHeartbeat {
			event, doc = "diff", d
		}
		if doc != nil {
			ctl.SetWriteDeadline(now.Add(30 * time.Second))
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, doc); err != nil {
				return
			}
			if err := ctl.Flush(); err != nil {
				return
			}
			lastWrite = now
		}
		// Staleness comes with time, not with a report: wake when the next online node's report
		// grows older than stale_after, or for the heartbeat.
		wait := eventHeartbeat
		for _, n := range t.Nodes {
			if n.Status == string(api.NodeOnline) && n.LastReport != nil {
				wait = min(wait, max(0, n.LastReport.Add(s.cfg.Mesh.StaleAfter).Sub(s.now()))+10*time.Millisecond)
			}
		}
		if !s.streamWait(ctx, changed, wait) {
			return
		}
		// Coalesce bursts of reports into one event.
		if !s.streamWait(ctx, nil, eventMinInterval) {
			return
		}
	}
}

// streamWait waits for wake (nil: never), d, the client leaving or the server closing; it returns
// false when the stream must end.
func (s *Server) streamWait(ctx context.Context, wake <-chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
	return true
}

// topology builds the map from the mesh view (cached for a second) and the detector's scores.
func (s *Server) topology(ctx context.Context) (*api.Topology, error) {
	v, err := s.meshView(ctx)
	if err != nil {
		return nil, err
	}
	scores := s.scores.get(ctx, s)
	t := &api.Topology{GeneratedAt: v.at.UTC(), StaleAfterSeconds: int64(s.cfg.Mesh.StaleAfter / time.Second),
		Detector: s.detector != nil, Nodes: make([]api.TopologyNode, 0, len(v.nodes)), Links: []api.TopologyLink{}}
	for _, n := range v.nodes {
		tn := api.TopologyNode{Name: n.Name, Status: string(n.Status), PeersUp: n.PeersUp, LastReport: n.LastReport}
		if sc, ok := scores.score[n.Name]; ok && n.Status != api.NodeRevoked {
			tn.Score, tn.Anomalous = &sc, sc >= scores.threshold
		}
		t.Nodes = append(t.Nodes, tn)
	}
	index := map[[2]string]int{}
	for _, l := range v.links { // sorted by (from, to), so the order is stable
		if l.State != api.PeerUp || l.Stale {
			continue
		}
		key := [2]string{min(l.From, l.To), max(l.From, l.To)}
		i, ok := index[key]
		if !ok {
			index[key] = len(t.Links)
			t.Links = append(t.Links, api.TopologyLink{A: key[0], B: key[1], RTTMillis: l.RTTMillis, LossRatio: l.LossRatio, Confirmed: l.Confirmed})
			continue
		}
		tl := &t.Links[i]
		tl.RTTMillis, tl.LossRatio = max(tl.RTTMillis, l.RTTMillis), max(tl.LossRatio, l.LossRatio)
		tl.Confirmed = tl.Confirmed || l.Confirmed
	}
	return t, nil
}

// scoreCache holds the detector's scores of every live node, recomputed at most every scoreMaxAge.
type scoreCache struct {
	mu        sync.Mutex
	at        time.Time
	score     map[string]float64
	threshold float64
}

type scoreSnapshot struct {
	score     map[string]float64
	threshold float64
}

func (c *scoreCache) get(ctx context.Context, s *Server) scoreSnapshot {
	m := s.detector
	if m == nil {
		return scoreSnapshot{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.score != nil && time.Since(c.at) < scoreMaxAge {
		return scoreSnapshot{c.score, c.threshold}
	}
	mg, err := s.buildMeshGraph(ctx)
	var in detector.Graph
	if err == nil {
		in = detector.Robust(&mg.Graph) // what the model reads, as in GET /ai/predict
		err = m.CheckGraph(&in)
	}
	if err != nil {
		s.log.Error("console: anomaly scores", "err", err)
		return scoreSnapshot{c.score, c.threshold}
	}
	score := make(map[string]float64, len(mg.Names))
	for i, p := range m.Predict(&in) {
		score[mg.Names[i]] = 1 - p[0]
	}
	c.score, c.threshold, c.at = score, m.DetectionThreshold(), time.Now()
	return scoreSnapshot{c.score, c.threshold}
}

// consoleHandler serves the embedded console under /ui/ with its security headers.
func (s *Server) consoleHandler() http.Handler {
	files, err := fs.Sub(console.Files, "dist")
	if err != nil {
		panic("control: console files: " + err.Error()) // the embed pattern guarantees dist
	}
	fileServer := http.StripPrefix("/ui/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.m.observe("/ui/", r.Method, sw.status, time.Since(start)) }()
		h := sw.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if ok, wait := s.ipLim.Allow(clientKey(clientIP(r)), s.now()); !ok {
			s.tooMany(sw, "per_ip", wait)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			writeError(sw, http.StatusMethodNotAllowed, "method_not_allowed", "the console is static files")
			return
		}
		if r.URL.Path == "/ui" {
			http.Redirect(sw, r, "/ui/", http.StatusMovedPermanently)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != "/ui/" {
			writeError(sw, http.StatusNotFound, "not_found", "no such file")
			return
		}
		fileServer.ServeHTTP(sw, r)
	})
}

var errNoSessionCookie = errors.New("no session cookie")

// cookieToken is the session token in the console's cookie.
func cookieToken(r *http.Request) (string, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", errNoSessionCookie
	}
	return c.Value, nil
}
