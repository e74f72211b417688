package node

// Member governance on a node (docs/governance.md, "Nodes"): the node follows the roster from the
// genesis roster its operator pinned, applies a decision (a quorum certificate) only after verifying
// it itself, whoever delivered it, and refuses the action types its operator made governed when they
// come any other way (an admin's policy push, a CA-signed revocation list).

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/secfile"
)

// GovernanceOptions turn governance on for a node.
type GovernanceOptions struct {
	// Genesis is the genesis roster, as the operator received it with the CA certificate; every later
	// roster the node derives itself from the decisions it applies.
	Genesis *governance.Roster
	// Governed lists the action types only a quorum certificate may apply; the same changes from the
	// control plane or a neighbour without one are refused with governance.ErrGoverned.
	Governed []governance.ActionType
	// File keeps every decision applied, in order, so that a restart re-verifies and re-applies them;
	// empty: not kept.
	File string
}

// maxDecisionsFile bounds the decisions file read at start: every decision needs the members' votes,
// so the file grows only as fast as they decide.
const maxDecisionsFile = 64 << 20

// govState is the node's governance: nil when governance is off.
type govState struct {
	mu       sync.Mutex // serializes decisions; never taken while n.mu is held
	state    *governance.State
	governed map[governance.ActionType]bool
	file     string

	offered map[*tunnel]bool // links the applied decisions went to since they came up; guarded by n.mu
	list    [][]byte         // frames of the applied decisions, in order; guarded by n.mu
}

// GovernanceStatus is what a node's governance state says now.
type GovernanceStatus struct {
	RosterHash  [32]byte
	RosterEpoch uint64
	Members     int
	Decisions   int
	Governed    []governance.ActionType
	Model       *governance.DetectorModel
	Heal        *governance.HealThresholds
	Prices      *governance.PlanPrices
}

// Governs reports whether an action type may be applied only with a quorum certificate.
func (n *Node) Governs(t governance.ActionType) bool { return n.governs(t) }

func (n *Node) governs(t governance.ActionType) bool {
	return n.gov != nil && n.gov.governed[t]
}

// initGovernance starts from the genesis roster and re-applies the decisions kept in the file. A
// decision that no longer verifies stops the replay there, with an error: what follows it may rest on
// it (a roster change).
func (n *Node) initGovernance(now time.Time) error {
	o := n.opts.Governance
	if o == nil {
		return nil
	}
	if o.Genesis == nil {
		return errors.New("node: governance without a genesis roster")
	}
	if o.Genesis.TrustDomain != n.self.TrustDomain {
		return fmt.Errorf("node: genesis roster of trust domain %q, the node is in %q", o.Genesis.TrustDomain, n.self.TrustDomain)
	}
	st, err := governance.NewState(o.Genesis)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	g := &govState{state: st, governed: make(map[governance.ActionType]bool), file: o.File, offered: make(map[*tunnel]bool)}
	for _, t := range o.Governed {
		g.governed[t] = true
	}
	n.gov = g
	if g.file == "" {
		return nil
	}
	data, err := secfile.Read(g.file, maxDecisionsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: governance decisions: %w", err)
	}
	certs, err := governance.ParseCertificatesPEM(data)
	if err != nil {
		return fmt.Errorf("node: governance decisions %s: %w", g.file, err)
	}
	for _, c := range certs {
		if _, err := n.applyDecision(now, c, nil, false); err != nil {
			return fmt.Errorf("node: kept governance decision %s: %w", c.Proposal.ID(), err)
		}
	}
	n.log.Info("governance decisions re-applied", "decisions", len(certs), "roster_epoch", st.Roster().Epoch)
	return nil
}

// Governance returns the node's governance state; ok is false when governance is off.
func (n *Node) Governance() (GovernanceStatus, bool) {
	g := n.gov
	if g == nil {
		return GovernanceStatus{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.state.Roster()
	s := GovernanceStatus{RosterHash: r.Hash(), RosterEpoch: r.Epoch, Members: len(r.Members),
		Decisions: len(g.state.Decisions()), Model: g.state.Model, Heal: g.state.Heal, Prices: g.state.Prices}
	for t := range g.governed {
		s.Governed = append(s.Governed, t)
	}
	return s, true
}

// ApplyDecision verifies a quorum certificate against the roster the node follows and, if it
// passes, applies its action, keeps it and sends it to every neighbour. It reports whether the
// decision was new. Who delivered it does not matter.
func (n *Node) ApplyDecision(raw []byte) (bool, error) {
	if n.gov == nil {
		return false, errors.New("node: governance is off")
	}
	c, err := governance.ParseCertificate(raw)
	if err != nil {
		return false, err
	}
	return n.applyDecision(n.now(), c, nil, true)
}

// handleDecisionFrame takes a quorum certificate from a neighbour. A known decision costs one parse
// and one hash; only a new one has its ballots checked.
func (n *Node) handleDecisionFrame(now time.Time, from *tunnel, raw []byte) {
	if n.gov == nil {
		return
	}
	c, err := governance.ParseCertificate(raw)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	if _, err := n.applyDecision(now, c, from, true); err != nil {
		n.log.Debug("governance decision refused", "from", from.peer().Name, "proposal", c.Proposal.ID(), "err", err)
	}
}

func (n *Node) applyDecision(now time.Time, c *governance.Certificate, from *tunnel, keep bool) (bool, error) {
	g := n.gov
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Applied(c.Proposal.ID()) {
		return false, nil
	}
	if _, err := g.state.Check(c, now); err != nil {
		return false, err
	}
	switch a := c.Proposal.Action.(type) {
	case governance.PolicyAction:
		if _, err := n.installPolicy(now, a.Policy, from); err != nil {
			return false, err
		}
	case governance.RevokeNode:
		n.verifier.RevokeKey(a.Key)
		n.mu.Lock()
		n.enforceCertificatesLocked(now)
		n.mu.Unlock()
	case governance.HealThresholds:
		cfg := governedHealConfig(a)
		if err := cfg.Validate(); err != nil {
			return false, fmt.Errorf("node: governed heal thresholds: %w", err)
		}
		n.heal.setThresholds(cfg)
	}
	if err := g.state.Commit(c); err != nil {
		return false, err
	}
	n.log.Info("governance decision applied", "proposal", c.Proposal.ID(), "action", c.Proposal.Action.Type(),
		"title", c.Proposal.Title, "roster_epoch", g.state.Roster().Epoch)
	if keep && g.file != "" {
		var all bytes.Buffer
		for _, d := range g.state.Decisions() {
			all.Write(d.EncodePEM())
		}
		if err := secfile.Write(g.file, all.Bytes(), 0o644, true); err != nil {
			n.log.Error("keep governance decisions", "file", g.file, "err", err)
		}
	}
	frame := append([]byte{byte(overlay.TypeDecision)}, c.Bytes()...)
	n.mu.Lock()
	g.list = append(g.list, frame)
	for _, t := range n.links {
		if t != from && t.up {
			n.sendFrame(now, t, frame)
		}
	}
	n.mu.Unlock()
	return true, nil
}

// tickGovernanceLocked offers every applied decision, in order, to each neighbour whose link came
// up since the last tick, so a node that was away catches up on what it missed, roster changes
// first.
func (n *Node) tickGovernanceLocked(now time.Time) {
	g := n.gov
	if g == nil {
		return
	}
	for t := range g.offered {
		if n.links[t.id] != t || !t.up {
			delete(g.offered, t)
		}
	}
	for _, t := range n.links {
		if !t.up || g.offered[t] {
			continue
		}
		sent := true
		for _, f := range g.list {
			sent = n.sendFrame(now, t, f) && sent
		}
		if sent {
			g.offered[t] = true
		}
	}
}

// governedHealConfig is the healer configuration an enacted HealThresholds decision sets. It
// replaces every threshold of the node's own heal section (docs/governance.md, "Nodes"); whether
// the loop runs at all stays the operator's choice.
func governedHealConfig(a governance.HealThresholds) HealConfig {
	return HealConfig{ProbeInterval: a.ProbeInterval, ProbeTimeout: a.ProbeTimeout, Hold: a.Hold, MaxHold: a.MaxHold,
		Grace: a.Grace, Confidence: float64(a.ConfidencePPM) / 1e6, Consecutive: int(a.Consecutive)}
}
