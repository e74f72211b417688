package control

// Member governance (docs/governance.md, "Control plane"): the control plane relays proposals and
// ballots into the hash-chained log, tallies them, and publishes each passed proposal, once its
// timelock ends, as a quorum certificate. It never holds a member key, so it cannot vote; nodes
// verify every certificate themselves, so it cannot decide either.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

const (
	// govRetries bounds the retries of a governance write that lost the race for the log's next
	// sequence to another control-plane process.
	govRetries = 16
	// govPage is the most log entries or decisions one answer carries.
	govPage = 256
	// maxGovBody bounds a proposal or vote request (a policy source is the largest part).
	maxGovBody = 2 << 20
)

// govState is the control plane's view of the governance log, rebuilt from the store and brought up
// to date before every decision, since another process may have appended.
type govState struct {
	mu  sync.Mutex
	sum *governance.LogSummary // nil: no genesis roster yet (governance off)
}

var errNoGovernance = errors.New("governance is not set up: control init --dao-member creates the genesis roster")

// InitGovernance writes the genesis roster as the first entry of an empty governance log. A log
// that already has a genesis roster is left alone (ErrConflict when it is another roster).
func InitGovernance(ctx context.Context, st *store.Store, genesis *governance.Roster, now time.Time) error {
	head, err := st.GovEntryAt(ctx, 1)
	if err == nil {
		e, err := governance.ParseEntry(head.Entry)
		if err != nil {
			return err
		}
		r, err := governance.ParseRoster(e.Payload)
		if err == nil && r.Hash() == genesis.Hash() {
			return nil
		}
		return fmt.Errorf("%w: the governance log already starts with another genesis roster", store.ErrConflict)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	e, err := governance.NewEntry(nil, now, governance.EntryGenesis, genesis.Bytes())
	if err != nil {
		return err
	}
	return st.AppendGov(ctx, &store.GovEntry{Seq: e.Seq, Hash: hexHash(e.Hash()), Kind: int(e.Kind), At: e.Time, Entry: e.Bytes()})
}

// govCatchUp applies the log entries other writers committed since the summary's head. The caller
// holds s.gov.mu.
func (s *Server) govCatchUp(ctx context.Context, o store.Ops) error {
	g := &s.gov
	for {
		var after uint64
		if g.sum != nil {
			after = g.sum.HeadSeq
		}
		rows, err := o.GovLog(ctx, after, govPage)
		if err != nil {
			return err
		}
		for _, row := range rows {
			e, err := governance.ParseEntry(row.Entry)
			if err != nil {
				return fmt.Errorf("governance log entry %d: %w", row.Seq, err)
			}
			if g.sum == nil {
				g.sum = governance.NewLogSummary()
			}
			if err := g.sum.Append(e); err != nil {
				return fmt.Errorf("the stored governance log is inconsistent: %w", err)
			}
		}
		if len(rows) < govPage {
			return nil
		}
	}
}

// govAppend appends one entry after the summary's head inside tx; the store answers ErrConflict
// when another process took that sequence first.
func (s *Server) govAppend(ctx context.Context, tx *store.Tx, kind governance.EntryKind, payload []byte) (*governance.Entry, error) {
	sum := s.gov.sum
	at := s.now()
	if at.Before(sum.HeadTime) {
		at = sum.HeadTime // the log's times never go backwards, even across processes' clocks
	}
	prev, err := tx.GovEntryAt(ctx, sum.HeadSeq)
	if err != nil {
		return nil, err
	}
	pe, err := governance.ParseEntry(prev.Entry)
	if err != nil {
		return nil, err
	}
	e, err := governance.NewEntry(pe, at, kind, payload)
	if err != nil {
		return nil, err
	}
	return e, tx.AppendGov(ctx, &store.GovEntry{Seq: e.Seq, Hash: hexHash(e.Hash()), Kind: int(kind), At: e.Time, Entry: e.Bytes()})
}

// govTx runs fn in a transaction after bringing the summary up to date, retrying when another
// process appended first; after a commit the summary takes in what was written.
func (s *Server) govTx(ctx context.Context, fn func(tx *store.Tx) error) error {
	g := &s.gov
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	for range govRetries {
		err = s.st.InTx(ctx, func(tx *store.Tx) error {
			if err := s.govCatchUp(ctx, tx.Ops); err != nil {
				return err
			}
			if g.sum == nil || g.sum.State == nil {
				return errNoGovernance
			}
			return fn(tx)
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	if cerr := s.govCatchUp(ctx, s.st.Ops); err == nil {
		err = cerr
	}
	return err
}

// govRead brings the summary up to date and calls fn with it, enacting what is due first.
func (s *Server) govRead(ctx context.Context, fn func(sum *governance.LogSummary)) error {
	if err := s.govEnactDue(ctx); err != nil && !errors.Is(err, errNoGovernance) {
		s.log.Error("governance: enacting due proposals", "err", err)
	}
	g := &s.gov
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := s.govCatchUp(ctx, s.st.Ops); err != nil {
		return err
	}
	if g.sum == nil || g.sum.State == nil {
		return errNoGovernance
	}
	fn(g.sum)
	return nil
}

// proposalState names where a proposal stands at now (OpenZeppelin Governor's states).
func proposalState(sum *governance.LogSummary, lp *governance.LogProposal, now time.Time) string {
	p := lp.Proposal
	switch {
	case lp.Enacted:
		return "executed"
	case now.Before(p.Start):
		return "pending"
	case now.Before(p.End):
		return "active"
	case !lp.Tally.Passes(p):
		return "defeated"
	case lp.Roster.Hash() != sum.State.Roster().Hash():
		return "stale"
	case now.Before(p.ExecutableAt()):
		return "succeeded"
	}
	return "queued"
}

// govEnactDue publishes every passed proposal whose timelock has ended: its quorum certificate
// (the proposal and the counted ballots) becomes an enactment entry, and a policy action's policy
// becomes the one GET /api/v1/policy serves.
func (s *Server) govEnactDue(ctx context.Context) error {
	var enacted []*governance.Certificate
	err := s.govTx(ctx, func(tx *store.Tx) error {
		enacted = enacted[:0]
		sum := s.gov.sum
		now := s.now()
		for _, id := range sum.Order {
			lp := sum.Proposals[id]
			if proposalState(sum, lp, now) != "queued" {
				continue
			}
			ballots := make([]*governance.Ballot, 0, len(lp.Ballots))
			for _, b := range lp.Ballots {
				ballots = append(ballots, b)
			}
			c, err := governance.NewCertificate(lp.Proposal, ballots)
			if err != nil {
				return err
			}
			if _, err := sum.State.Check(c, now); err != nil {
				return fmt.Errorf("proposal %s: %w", id, err)
			}
			e, err := s.govAppend(ctx, tx, governance.EntryEnactment, c.Bytes())
			if err != nil {
				return err
			}
			if err := tx.SetGovEnacted(ctx, id.String(), e.Seq); err != nil {
				return err
			}
			// A policy an admin set meanwhile may have taken the version (where policy is not governed
			// on the nodes): the decision is still logged, and the nodes that govern policy apply it.
			latest, err := tx.LatestPolicy(ctx)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if pa, ok := c.Proposal.Action.(governance.PolicyAction); ok && (latest == nil || latest.Version < pa.Policy.Version) {
				err := tx.InsertPolicy(ctx, &store.Policy{Version: pa.Policy.Version, IssuedAt: pa.Policy.IssuedAt,
					IssuedBy: "governance " + id.String(), Signed: pa.Policy.Bytes(), Source: "{}"})
				if err != nil {
					return err
				}
			}
			if err := tx.AddAudit(ctx, &store.AuditEntry{At: now, Actor: "governance", Action: "dao.enact",
				Target: id.String(), Detail: fmt.Sprintf("%s %q, log entry %d", c.Proposal.Action.Type(), c.Proposal.Title, e.Seq)}); err != nil {
				return err
			}
			enacted = append(enacted, c)
			// One at a time: the next one is appended after this entry, by the next pass.
			return nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range enacted {
		s.log.Warn("governance decision enacted", "proposal", c.Proposal.ID(), "action", c.Proposal.Action.Type(), "title", c.Proposal.Title)
		if ap := s.appliers[c.Proposal.Action.Type()]; ap != nil {
			if err := ap.Apply(c.Proposal.Action); err != nil {
				s.log.Error("governance: applying an enacted action", "proposal", c.Proposal.ID(), "action", c.Proposal.Action.Type(), "err", err)
			}
		}
		switch a := c.Proposal.Action.(type) {
		case governance.PolicyAction:
			if rec, err := s.st.LatestPolicy(ctx); err == nil && rec.Version == a.Policy.Version {
				s.installPolicy(a.Policy, rec)
			}
		case governance.RevokeNode:
			// The control plane follows the decision too: the node's calls to it are refused, and
			// nodes that do not govern revocation get the CA's list as before.
			if err := s.enactRevocation(ctx, c.Proposal.ID(), a); err != nil {
				s.log.Error("governance: revoking the node on the control plane", "node", a.Name, "err", err)
			}
		}
	}
	if len(enacted) > 0 {
		return s.govEnactDue(ctx)
	}
	return nil
}

// enactRevocation revokes, in the CA and the database, the node an enacted revocation names, if it
// is still enrolled with that key.
func (s *Server) enactRevocation(ctx context.Context, id governance.ID, a governance.RevokeNode) error {
	n, err := s.st.NodeByName(ctx, a.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Revoked() || n.KeyID != a.Key.String() {
		return nil
	}
	_, _, err = s.revokeNode(ctx, n, func(tx *store.Tx, crl *meshca.RevocationList, serials int) error {
		return tx.AddAudit(ctx, &store.AuditEntry{At: s.now(), Actor: "governance", Action: "node.revoke", Target: n.Name,
			Detail: fmt.Sprintf("decision %s; revocation list %d: %d serials, key %s", id, crl.Number, serials, n.KeyID)})
	})
	return err
}

// handlePropose answers POST /api/v1/dao/proposals.
func (s *Server) handlePropose(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.ProposalRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	ctx := r.Context()
	var out *governance.Proposal
	var policyVersion uint64
	err := s.govTx(ctx, func(tx *store.Tx) error {
		sum := s.gov.sum
		action, pv, err := s.proposalAction(ctx, tx, req.Action)
		if err != nil {
			return err
		}
		start := s.now().Truncate(time.Second)
		p := governance.Proposal{TrustDomain: s.td, Roster: sum.State.Roster().Hash(), Title: req.Title,
			Start: start, End: start.Add(time.Duration(req.VotingSeconds) * time.Second),
			Timelock: time.Duration(req.TimelockSeconds) * time.Second, QuorumBPS: req.QuorumBPS, ThresholdBPS: req.ThresholdBPS,
			Action: action}
		if req.Quadratic {
			p.Weighting = governance.Quadratic
		}
		if out, err = governance.NewProposal(p); err != nil {
			return badInput{err}
		}
		e, err := s.govAppend(ctx, tx, governance.EntryProposal, out.Bytes())
		if err != nil {
			return err
		}
		policyVersion = pv
		if err := tx.InsertGovProposal(ctx, &store.GovProposal{ID: out.ID().String(), LogSeq: e.Seq, CreatedBy: rc.actor(), PolicyVersion: pv}); err != nil {
			return err
		}
		return s.audit(ctx, tx.Ops, rc, "dao.propose", out.ID().String(), fmt.Sprintf("%s %q", action.Type(), req.Title))
	})
	if s.govError(w, r, err) {
		return
	}
	s.log.Info("governance proposal", "id", out.ID(), "action", out.Action.Type(), "policy_version", policyVersion, "by", rc.actor())
	var doc api.Proposal
	if err := s.govRead(ctx, func(sum *governance.LogSummary) { doc = s.proposalDoc(ctx, sum, sum.Proposals[out.ID()]) }); err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, doc)
}

// govError answers err, if any, and reports whether it did.
func (s *Server) govError(w http.ResponseWriter, r *http.Request, err error) bool {
	var bad badInput
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNoGovernance):
		writeError(w, http.StatusConflict, "no_governance", err.Error())
	case errors.As(err, &bad):
		badRequest(w, err.Error())
	case errors.Is(err, governance.ErrBadSignature), errors.Is(err, governance.ErrNotMember),
		errors.Is(err, governance.ErrWrongProposal), errors.Is(err, governance.ErrOutsideWindow),
		errors.Is(err, governance.ErrStaleBallot), errors.Is(err, governance.ErrWrongRoster):
		writeError(w, http.StatusConflict, "refused", err.Error())
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "other control-plane processes kept winning the race for the governance log; send it again")
	default:
		s.internal(w, r, err)
	}
	return true
}

// proposalAction turns a request's action into a governance action; a policy is compiled and
// signed with the next policy version nobody holds or reserved, which it returns.
func (s *Server) proposalAction(ctx context.Context, tx *store.Tx, a api.ProposalAction) (governance.Action, uint64, error) {
	t, err := governance.ParseActionType(a.Type)
	if err != nil {
		return nil, 0, badInput{err}
	}
	switch t {
	case governance.ActionPolicy:
		if a.Policy == nil {
			return nil, 0, badInput{errors.New("policy action without a policy")}
		}
		grants, err := a.Policy.Compile(s.td)
		if err != nil {
			return nil, 0, badInput{fmt.Errorf("policy: %w", err)}
		}
		version, _ := s.policy.gen.wait()
		if latest, err := tx.LatestPolicy(ctx); err == nil {
			version = max(version, latest.Version)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, 0, err
		}
		reserved, err := tx.MaxGovPolicyVersion(ctx)
		if err != nil {
			return nil, 0, err
		}
		p, err := s.ca.CA().SignPolicy(max(version, reserved)+1, grants, s.now())
		if err != nil {
			return nil, 0, badInput{err}
		}
		return governance.PolicyAction{Policy: p}, p.Version, nil
	case governance.ActionRevoke:
		n, err := tx.NodeByName(ctx, a.Node)
		if err != nil {
			return nil, 0, badInput{fmt.Errorf("revoke: node %q: %w", a.Node, err)}
		}
		key, err := parseKeyID(n.KeyID)
		if err != nil {
			return nil, 0, err
		}
		return governance.RevokeNode{Name: n.Name, Key: key}, 0, nil
	case governance.ActionAdmit, governance.ActionRetire:
		if a.Member == nil {
			return nil, 0, badInput{errors.New("member action without a member")}
		}
		if t == governance.ActionRetire {
			key, err := parseKeyID(a.Member.KeyID)
			if err != nil {
				return nil, 0, badInput{fmt.Errorf("retire: key ID: %w", err)}
			}
			return governance.RetireMember{Key: key}, 0, nil
		}
		k, err := identity.ParseVerifyKey(a.Member.PublicKey)
		if err != nil {
			return nil, 0, badInput{fmt.Errorf("admit: %w", err)}
		}
		return governance.AdmitMember{Name: a.Member.Name, Weight: a.Member.Weight, Key: k}, 0, nil
	case governance.ActionHeal:
		h := a.Heal
		if h == nil {
			return nil, 0, badInput{errors.New("heal action without thresholds")}
		}
		ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
		return governance.HealThresholds{ProbeInterval: ms(h.ProbeIntervalMS), ProbeTimeout: ms(h.ProbeTimeoutMS), Hold: ms(h.HoldMS),
			MaxHold: ms(h.MaxHoldMS), Grace: ms(h.GraceMS), ConfidencePPM: h.ConfidencePPM, Consecutive: h.Consecutive}, 0, nil
	case governance.ActionModel:
		if a.Model == nil {
			return nil, 0, badInput{errors.New("model action without a model")}
		}
		var m governance.DetectorModel
		if b, err := hex.DecodeString(a.Model.SHA256); err != nil || len(b) != len(m.SHA256) {
			return nil, 0, badInput{errors.New("model: sha256 must be 64 hex digits")}
		} else {
			copy(m.SHA256[:], b)
		}
		m.Name = a.Model.Name
		return m, 0, nil
	case governance.ActionPrices:
		var pp governance.PlanPrices
		for _, p := range a.Prices {
			pp.Plans = append(pp.Plans, governance.PlanPrice{Plan: p.Plan, MicroUSDT: p.MicroUSDT, PeriodDays: p.PeriodDays})
		}
		pp.Sort()
		if err := checkPlanPrices(ctx, tx.Ops, pp); err != nil {
			return nil, 0, badInput{err}
		}
		return pp, 0, nil
	}
	return nil, 0, badInput{fmt.Errorf("action %s", t)}
}

// handleVote answers POST /api/v1/dao/vote: a member's signed ballot, counted under the
// changed-vote rule inside the window by this process's clock, logged, and answered with a receipt.
func (s *Server) handleVote(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.VoteRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	b, err := governance.ParseBallot(req.Ballot)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	ctx := r.Context()
	var receipt api.VoteReceipt
	err = s.govTx(ctx, func(tx *store.Tx) error {
		sum := s.gov.sum
		lp := sum.Proposals[b.Proposal]
		if lp == nil {
			return fmt.Errorf("%w: no proposal %s", store.ErrNotFound, b.Proposal)
		}
		p := lp.Proposal
		if now := s.now(); now.Before(p.Start) || !now.Before(p.End) || lp.Enacted {
			return fmt.Errorf("%w: voting on %s is open from %s to %s", governance.ErrOutsideWindow, p.ID(),
				p.Start.UTC().Format(time.RFC3339), p.End.UTC().Format(time.RFC3339))
		}
		m, err := b.Check(p, lp.Roster)
		if err != nil {
			return err
		}
		held := lp.Ballots[b.Voter]
		ok, err := governance.Supersedes(held, b)
		if err != nil {
			return err
		}
		receipt = api.VoteReceipt{Proposal: p.ID().String(), Voter: m.Name, Choice: b.Choice.String(), Sequence: b.Sequence}
		row := &store.GovBallot{Proposal: p.ID().String(), Voter: b.Voter.String(), Sequence: b.Sequence}
		if !ok { // a retry of the counted ballot: the same receipt
			rows, err := tx.GovBallots(ctx, row.Proposal)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r.Voter == row.Voter {
					receipt.LogSeq = r.LogSeq
				}
			}
		} else {
			e, err := s.govAppend(ctx, tx, governance.EntryBallot, b.Bytes())
			if err != nil {
				return err
			}
			row.LogSeq, receipt.LogSeq = e.Seq, e.Seq
			if err := tx.PutGovBallot(ctx, row, held != nil); err != nil {
				return err
			}
			if err := s.audit(ctx, tx.Ops, rc, "dao.vote", p.ID().String(), fmt.Sprintf("member %s, sequence %d, log entry %d", m.Name, b.Sequence, e.Seq)); err != nil {
				return err
			}
		}
		entry, err := tx.GovEntryAt(ctx, receipt.LogSeq)
		if err != nil {
			return err
		}
		receipt.EntryHash = entry.Hash
		return nil
	})
	if s.govError(w, r, err) {
		return
	}
	if err := s.govRead(ctx, func(sum *governance.LogSummary) {
		receipt.Tally = apiTally(sum.Proposals[b.Proposal].Tally)
	}); err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, receipt)
}

func apiTally(t governance.Tally) api.Tally {
	return api.Tally{Yes: t.Yes, No: t.No, Abstain: t.Abstain, Total: t.Total}
}

func (s *Server) proposalDoc(ctx context.Context, sum *governance.LogSummary, lp *governance.LogProposal) api.Proposal {
	p := lp.Proposal
	doc := api.Proposal{ID: p.ID().String(), Title: p.Title, Action: p.Action.Type().String(), State: proposalState(sum, lp, s.now()),
		Start: p.Start.UTC(), End: p.End.UTC(), ExecutableAt: p.ExecutableAt().UTC(), QuorumBPS: p.QuorumBPS, ThresholdBPS: p.ThresholdBPS,
		Quadratic: p.Weighting == governance.Quadratic, RosterHash: hexHash(lp.Roster.Hash()),
		Tally: apiTally(lp.Tally), Ballots: len(lp.Ballots), Encoded: p.Bytes()}
	if pa, ok := p.Action.(governance.PolicyAction); ok {
		doc.PolicyVersion = pa.Policy.Version
	}
	if row, err := s.st.GovProposalByID(ctx, doc.ID); err == nil {
		doc.CreatedBy, doc.LogSeq, doc.EnactedSeq = row.CreatedBy, row.LogSeq, row.EnactedSeq
	}
	return doc
}

// handleProposals answers GET /api/v1/dao/proposals: newest first.
func (s *Server) handleProposals(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var out api.Proposals
	err := s.govRead(r.Context(), func(sum *governance.LogSummary) {
		for i := len(sum.Order) - 1; i >= 0 && len(out.Proposals) < govPage; i-- {
			out.Proposals = append(out.Proposals, s.proposalDoc(r.Context(), sum, sum.Proposals[sum.Order[i]]))
		}
	})
	if s.govError(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleProposal answers GET /api/v1/dao/proposals/{id}.
func (s *Server) handleProposal(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, err := governance.ParseID(r.PathValue("id"))
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	var doc *api.Proposal
	err = s.govRead(r.Context(), func(sum *governance.LogSummary) {
		if lp := sum.Proposals[id]; lp != nil {
			d := s.proposalDoc(r.Context(), sum, lp)
			doc = &d
		}
	})
	if s.govError(w, r, err) {
		return
	}
	if doc == nil {
		writeError(w, http.StatusNotFound, "not_found", "no proposal "+id.String())
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

// govLogQuery reads ?after=N (default 0), answering 400 when it is not a number, and enacts what is
// due first, so that a reader of the log sees every decision whose timelock has ended.
func (s *Server) govLogQuery(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		var err error
		if after, err = strconv.ParseUint(v, 10, 63); err != nil {
			badRequest(w, "after: "+err.Error())
			return 0, false
		}
	}
	if err := s.govEnactDue(r.Context()); err != nil && !errors.Is(err, errNoGovernance) {
		s.log.Error("governance: enacting due proposals", "err", err)
	}
	return after, true
}

// handleGovLog answers GET /api/v1/dao/log?after=N: the log entries after N, a page at a time.
func (s *Server) handleGovLog(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	after, ok := s.govLogQuery(w, r)
	if !ok {
		return
	}
	rows, err := s.st.GovLog(r.Context(), after, govPage)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.GovernanceLog{Entries: [][]byte{}, More: len(rows) == govPage}
	for _, row := range rows {
		out.Entries = append(out.Entries, row.Entry)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleDecisions answers GET /api/v1/dao/decisions?after=N: the quorum certificates of the
// proposals enacted after log entry N, in order.
func (s *Server) handleDecisions(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	after, ok := s.govLogQuery(w, r)
	if !ok {
		return
	}
	rows, err := s.st.GovEnactments(r.Context(), after, int(governance.EntryEnactment), govPage)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.Decisions{Decisions: []api.Decision{}}
	for _, row := range rows {
		e, err := governance.ParseEntry(row.Entry)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		c, err := governance.ParseCertificate(e.Payload)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		out.Decisions = append(out.Decisions, api.Decision{LogSeq: row.Seq, Proposal: c.Proposal.ID().String(),
			Action: c.Proposal.Action.Type().String(), Certificate: c.Bytes()})
	}
	writeJSON(w, http.StatusOK, out)
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }
