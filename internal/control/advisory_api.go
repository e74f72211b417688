package control

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Operator cost advisories: an admin names a relay by hand, beside what the detector names. They
// live in this process's memory (a restart forgets them; nodes keep the last list until it expires).

const (
	maxOperatorAdvisories = 256
	maxOperatorReason     = meshca.MaxAdvisoryReason - len("operator: ")
	defaultOperatorTTL    = time.Hour
	minOperatorTTL        = time.Minute
	maxOperatorTTL        = 24 * time.Hour
)

func (s *Server) handleListAdvisories(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	out := api.AdvisoryList{Entries: []api.Advisory{}}
	if a := s.adv.cur; a != nil {
		issued, expires := a.IssuedAt, a.ExpiresAt
		out.Sequence, out.IssuedAt, out.ExpiresAt, out.Signed = a.Sequence, &issued, &expires, s.adv.encoded
		for _, e := range a.Entries {
			ad := api.Advisory{Node: e.Subject, Multiplier: int(e.Multiplier), Confidence: e.Confidence, Reason: e.Reason, Source: "detector"}
			if sp := s.adv.suspects[e.Subject]; sp != nil && sp.named {
				held := sp.heldUntil
				ad.HeldUntil, ad.Penalty, ad.Suppressed = &held, sp.record.penalty, sp.suppressed
			}
			if o, ok := s.adv.operator[e.Subject]; ok {
				until := o.expires
				ad.Source, ad.SetBy, ad.Until = "operator", o.by, &until
			}
			out.Entries = append(out.Entries, ad)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSetAdvisory(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	name := r.PathValue("node_id")
	if err := identity.ValidateNodeName(name); err != nil {
		badRequest(w, "node_id: "+err.Error())
		return
	}
	var req api.SetAdvisoryRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Multiplier == 0 {
		req.Multiplier = s.cfg.AI.Advisories.Multiplier
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if req.TTLSeconds == 0 {
		ttl = defaultOperatorTTL
	}
	switch {
	case req.Multiplier < meshca.MinAdvisoryMultiplier || req.Multiplier > meshca.MaxAdvisoryMultiplier:
		badRequest(w, fmt.Sprintf("multiplier %d: want %d to %d", req.Multiplier, meshca.MinAdvisoryMultiplier, meshca.MaxAdvisoryMultiplier))
		return
	case req.Reason == "" || len(req.Reason) > maxOperatorReason || strings.IndexFunc(req.Reason, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0:
		badRequest(w, fmt.Sprintf("reason: want 1 to %d printable ASCII characters", maxOperatorReason))
		return
	case ttl < minOperatorTTL || ttl > maxOperatorTTL:
		badRequest(w, fmt.Sprintf("ttl_seconds %d: want %d to %d", req.TTLSeconds, int(minOperatorTTL.Seconds()), int(maxOperatorTTL.Seconds())))
		return
	}
	n, err := s.st.NodeByName(r.Context(), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no enrolled node %q", name))
		return
	case err != nil:
		s.internal(w, r, err)
		return
	case n.Revoked():
		writeError(w, http.StatusConflict, "revoked", fmt.Sprintf("node %q is revoked", name))
		return
	}
	if err := s.audit(r.Context(), s.st.Ops, rc, "advisory.set", name,
		fmt.Sprintf("multiplier=%d ttl=%s reason=%q", req.Multiplier, ttl, req.Reason)); err != nil {
		s.internal(w, r, err)
		return
	}
	now := s.now()
	s.adv.mu.Lock()
	if _, held := s.adv.operator[name]; !held && len(s.adv.operator) >= maxOperatorAdvisories {
		s.adv.mu.Unlock()
		writeError(w, http.StatusConflict, "limit", fmt.Sprintf("%d operator advisories in force, the most allowed", maxOperatorAdvisories))
		return
	}
	if s.adv.operator == nil {
		s.adv.operator = map[string]operatorAdvisory{}
	}
	s.adv.operator[name] = operatorAdvisory{multiplier: req.Multiplier, reason: req.Reason, expires: now.Add(ttl), by: rc.actor()}
	err = s.signAdvisoriesLocked(now)
	s.adv.mu.Unlock()
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.log.Warn("operator cost advisory set", "node", name, "multiplier", req.Multiplier, "ttl", ttl, "reason", req.Reason, "by", rc.actor())
	s.handleListAdvisories(w, r, rc)
}

// handleClearAdvisory withdraws what names a node: an operator's advisory, and the detector's with
// its hold. The detector's record of the node is forgotten too (the admin vouches for it): faulty
// judgements must build a new run to name it again, and that naming is a first one.
func (s *Server) handleClearAdvisory(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	name := r.PathValue("node_id")
	s.adv.mu.Lock()
	_, byOperator := s.adv.operator[name]
	sp := s.adv.suspects[name]
	byDetector := sp != nil && sp.named
	s.adv.mu.Unlock()
	if !byOperator && !byDetector {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no advisory names %q", name))
		return
	}
	if err := s.audit(r.Context(), s.st.Ops, rc, "advisory.clear", name, fmt.Sprintf("operator=%v detector=%v", byOperator, byDetector)); err != nil {
		s.internal(w, r, err)
		return
	}
	s.adv.mu.Lock()
	delete(s.adv.operator, name)
	if sp := s.adv.suspects[name]; sp != nil {
		*sp = suspect{lastReport: sp.lastReport, lastFresh: sp.lastFresh}
	}
	err := s.signAdvisoriesLocked(s.now())
	s.adv.mu.Unlock()
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.log.Info("cost advisory cleared by an admin", "node", name, "operator", byOperator, "detector", byDetector, "by", rc.actor())
	s.handleListAdvisories(w, r, rc)
}
