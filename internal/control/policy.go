package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/policy"
)

// The mesh access policy (docs/control.md, "Policy"): an admin sets it as source; the control
// plane compiles and tests it, gives it the next version number, signs it with the CA key, stores
// it with its audit entry, and hands it to long-polling nodes, which verify it themselves.

// policyState is the control plane's part in the access policy.
type policyState struct {
	mu      sync.Mutex // one PUT at a time, so that versions are signed in order
	cur     atomic.Pointer[api.Policy]
	signed  atomic.Pointer[meshca.Policy] // nil: none set (or none this CA signed)
	gen     *generation                   // the version long polls wait on
	waiters chan struct{}
	version prometheus.Gauge
}

func (s *Server) initPolicy(ctx context.Context) error {
	ps := &s.policy
	ps.waiters = make(chan struct{}, s.cfg.Limits.MaxCRLWaiters)
	ps.version = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "x0tta6bl4_control_policy_version", Help: "Version of the current mesh access policy (0: none set).",
	})
	s.m.reg.MustRegister(ps.version)
	ps.cur.Store(&api.Policy{TrustDomain: s.td})
	ps.gen = newGeneration(0)
	rec, err := s.st.LatestPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	p, err := meshca.ParsePolicy(rec.Signed)
	if err == nil {
		err = p.CheckSignature(s.caCert.SignPublicKey)
	}
	if err != nil || p.Version != rec.Version {
		// A policy from another CA (the CA was replaced) or a damaged row: nodes could not use it.
		// The next one set is numbered after it (handlePutPolicy reads the store's latest), so it
		// still supersedes it on every node.
		s.log.Error("the stored access policy does not verify with this CA; serving none until one is set",
			"version", rec.Version, "err", err)
		return nil
	}
	s.installPolicy(p, rec)
	return nil
}

// refreshPolicy serves the database's newest policy if it is newer than the one served: another
// instance on the same database set it.
func (s *Server) refreshPolicy(ctx context.Context) error {
	ps := &s.policy
	ps.mu.Lock()
	defer ps.mu.Unlock()
	rec, err := s.st.LatestPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur, _ := ps.gen.wait(); rec.Version <= cur {
		return nil
	}
	p, err := meshca.ParsePolicy(rec.Signed)
	if err == nil {
		err = p.CheckSignature(s.caCert.SignPublicKey)
	}
	if err != nil || p.Version != rec.Version {
		return fmt.Errorf("stored access policy %d does not verify with this CA: %w", rec.Version, err)
	}
	s.installPolicy(p, rec)
	return nil
}

// installPolicy makes p (stored as rec) the policy served and wakes the long polls.
func (s *Server) installPolicy(p *meshca.Policy, rec *store.Policy) {
	doc := &api.Policy{Version: p.Version, TrustDomain: p.TrustDomain, IssuedAt: timePtr(p.IssuedAt),
		Issuer: p.Issuer.String(), Signed: p.Bytes()}
	var src policy.Source
	if json.Unmarshal([]byte(rec.Source), &src) == nil {
		doc.Source = &src
	} else {
		fromSigned := policy.FromPolicy(p)
		doc.Source = &fromSigned
	}
	s.policy.signed.Store(p)
	s.policy.cur.Store(doc)
	s.policy.gen.set(p.Version)
	s.policy.version.Set(float64(p.Version))
}

// handleGetPolicy answers GET /api/v1/policy. With ?after=N and ?wait=S it waits until a policy
// with a version above N exists (long poll), as GET /api/v1/crl does.
func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	after, hasAfter, wait, err := longPollQuery(r, s.cfg.Limits.MaxCRLWait)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if cur, changed := s.policy.gen.wait(); hasAfter && after >= cur {
		longPoll(r, s.policy.waiters, changed, wait)
	}
	doc := s.policy.cur.Load()
	w.Header().Set("X-Policy-Version", strconv.FormatUint(doc.Version, 10))
	writeJSON(w, http.StatusOK, doc)
}

// handlePutPolicy answers PUT /api/v1/policy: compile, test, number, sign, store, audit, serve.
func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var src policy.Source
	if !decodeJSON(w, r, &src) {
		return
	}
	grants, err := src.Compile(s.td)
	if err != nil {
		badRequest(w, "policy: "+err.Error())
		return
	}
	source, err := json.Marshal(src)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ps := &s.policy
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ctx := r.Context()
	// The next version follows the store's latest: another process may have set one, and the
	// latest may be one this process does not serve (signed by an earlier CA).
	version, _ := ps.gen.wait()
	latest, err := s.st.LatestPolicy(ctx)
	switch {
	case err == nil:
		version = max(version, latest.Version)
	case !errors.Is(err, store.ErrNotFound):
		s.internal(w, r, err)
		return
	}
	now := s.now()
	p, err := s.ca.CA().SignPolicy(version+1, grants, now)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	rec := &store.Policy{Version: p.Version, IssuedAt: p.IssuedAt, IssuedBy: rc.actor(), Signed: p.Bytes(), Source: string(source)}
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.InsertPolicy(ctx, rec); err != nil {
			return err
		}
		if err := tx.NotifyPolicy(ctx); err != nil {
			return err
		}
		return tx.AddAudit(ctx, &store.AuditEntry{At: now, Actor: rc.actor(), Action: "policy.set",
			Target: "version " + strconv.FormatUint(p.Version, 10),
			Detail: fmt.Sprintf("grants=%d tests=%d", len(src.Grants), len(src.Tests)), Remote: rc.ip})
	})
	if errors.Is(err, store.ErrConflict) {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("policy version %d was set by another control plane process at the same time; send it again", p.Version))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.installPolicy(p, rec)
	s.log.Info("access policy set", "version", p.Version, "grants", len(p.Grants), "by", rc.actor())
	writeJSON(w, http.StatusOK, s.policy.cur.Load())
}

// policyAllows reports whether the current access policy lets the node named from, in groups
// fromGroups, open flows to the node named to, in toGroups (both of this trust domain). Without a
// policy every node may reach every other, as nodes without one apply their local rules alone.
func (s *Server) policyAllows(from string, fromGroups []string, to string, toGroups []string) bool {
	p := s.policy.signed.Load()
	if p == nil {
		return true
	}
	return p.Allows(
		&meshca.Certificate{Kind: meshca.KindNode, TrustDomain: s.td, Name: from, Groups: meshca.NormalizeGroups(fromGroups)},
		&meshca.Certificate{Kind: meshca.KindNode, TrustDomain: s.td, Name: to, Groups: meshca.NormalizeGroups(toGroups)})
}
