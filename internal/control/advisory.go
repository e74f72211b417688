package control

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/meshca"
)

// Cost advisories (docs/control.md, "Cost advisories"): with ai.advisories enabled, the control
// plane runs its detector over the nodes' latest reports every interval. A node judged a relay
// fault — by the model (blackhole or grey hole: the score at or above the model's threshold, that
// class the most likely, with at least min_confidence) or by flow conservation (the deficit its
// neighbours' counters show that nothing else explains at or above deficit_threshold,
// detector.UnexplainedDeficits) — in `consecutive` distinct fresh reports in a row is named in a
// CA-signed list that every node receives with the answer to its next report
// (api.ReportAccepted.Advisories). It is held (advisory_hold.go): withdrawn when its hold ends and
// its latest judgement is not faulty, or earlier, unless the hold is suppressed, after `clear_after`
// clean judgements backed by traffic (a relay handed too little to relay is unknown, not clean);
// and when it is revoked or sends no fresh report for a list lifetime. The list is re-signed when it
// changes and at half its lifetime while it names anyone. Nodes weigh it alongside their own probes
// (internal/node/heal_advisory.go).

// AdvisoryConfig is the ai.advisories section.
type AdvisoryConfig struct {
	Enabled       bool          `yaml:"enabled"`        // default false: see docs/control.md, "Cost advisories"
	Interval      time.Duration `yaml:"interval"`       // 2 s: how often the detector is run over the reports
	MinConfidence float64       `yaml:"min_confidence"` // 0.5: the class's probability at least this
	Consecutive   int           `yaml:"consecutive"`    // 3 distinct fresh reports judged faulty in a row
	ClearAfter    int           `yaml:"clear_after"`    // 3 distinct fresh reports judged otherwise in a row
	Lifetime      time.Duration `yaml:"lifetime"`       // 2 min: expires-at − issued-at of each list
	Multiplier    int           `yaml:"multiplier"`     // 8: the link-cost multiplier named (2 to 16)
	// FlowConservation (default true) judges relays by flow conservation beside the model, with
	// DeficitThreshold (default detector.DefaultDeficitThreshold, chosen on validation runs by
	// `x0tta6bl4 ai advisor`): docs/intelligence.md, "The advisor's flow-conservation judgement".
	FlowConservation *bool   `yaml:"flow_conservation"`
	DeficitThreshold float64 `yaml:"deficit_threshold"`
	// DeficitConsecutive (default detector.DeficitConsecutive: the telemetry window plus one) is
	// how many distinct fresh reports in a row flow conservation must judge a relay faulty: a
	// re-route leaves a deficit in the windowed counters for up to a window, which this outlasts.
	DeficitConsecutive int `yaml:"deficit_consecutive"`
	// A judgement of a relay by flow conservation, either way, needs the relay to have been handed
	// at least MinRelayed packets a second to relay (window mean, by its neighbours' counters):
	// below it the deficit is a few probes' worth, noise that convicts as easily as it clears. The
	// default is twice what the self-healing probes alone hand a relay on a ring (7.7–10.1 packets
	// a second measured). Once named, clean evidence also needs at least EvidenceFraction of what
	// it was handed when named; otherwise a judgement is unknown.
	MinRelayed       float64         `yaml:"min_relayed"`       // 20
	EvidenceFraction float64         `yaml:"evidence_fraction"` // 0.5
	Damping          AdvisoryDamping `yaml:"damping"`
}

func (c *AdvisoryConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = 2 * time.Second
	}
	if c.MinConfidence == 0 {
		c.MinConfidence = 0.5
	}
	if c.Consecutive == 0 {
		c.Consecutive = 3
	}
	if c.ClearAfter == 0 {
		c.ClearAfter = 3
	}
	if c.Lifetime == 0 {
		c.Lifetime = 2 * time.Minute
	}
	if c.Multiplier == 0 {
		c.Multiplier = 8
	}
	if c.FlowConservation == nil {
		on := true
		c.FlowConservation = &on
	}
	if c.DeficitThreshold == 0 {
		c.DeficitThreshold = detector.DefaultDeficitThreshold
	}
	if c.DeficitConsecutive == 0 {
		c.DeficitConsecutive = detector.DeficitConsecutive
	}
	if c.MinRelayed == 0 {
		c.MinRelayed = 20
	}
	if c.EvidenceFraction == 0 {
		c.EvidenceFraction = 0.5
	}
	c.Damping.setDefaults()
}

func (c *AdvisoryConfig) validate() error {
	switch {
	case c.Interval < 100*time.Millisecond || c.Interval > 10*time.Minute:
		return fmt.Errorf("config: ai.advisories.interval %s: want 100ms to 10m", c.Interval)
	case !(c.MinConfidence > 0 && c.MinConfidence <= 1):
		return fmt.Errorf("config: ai.advisories.min_confidence %v: want more than 0, at most 1", c.MinConfidence)
	case c.Consecutive < 1 || c.Consecutive > 100 || c.ClearAfter < 1 || c.ClearAfter > 100 || c.DeficitConsecutive < 1 || c.DeficitConsecutive > 100:
		return fmt.Errorf("config: ai.advisories.consecutive %d, deficit_consecutive %d and clear_after %d: want 1 to 100", c.Consecutive, c.DeficitConsecutive, c.ClearAfter)
	case c.Lifetime < 10*time.Second || c.Lifetime > meshca.MaxAdvisoryLifetime:
		return fmt.Errorf("config: ai.advisories.lifetime %s: want 10s to %s", c.Lifetime, meshca.MaxAdvisoryLifetime)
	case !(c.DeficitThreshold > 0 && c.DeficitThreshold <= 1):
		return fmt.Errorf("config: ai.advisories.deficit_threshold %v: want more than 0, at most 1", c.DeficitThreshold)
	case c.Multiplier < meshca.MinAdvisoryMultiplier || c.Multiplier > meshca.MaxAdvisoryMultiplier:
		return fmt.Errorf("config: ai.advisories.multiplier %d: want %d to %d", c.Multiplier, meshca.MinAdvisoryMultiplier, meshca.MaxAdvisoryMultiplier)
	case !(c.MinRelayed > 0 && c.MinRelayed <= 1e6):
		return fmt.Errorf("config: ai.advisories.min_relayed %v: want more than 0, at most 1e6 packets a second", c.MinRelayed)
	case !(c.EvidenceFraction > 0 && c.EvidenceFraction <= 1):
		return fmt.Errorf("config: ai.advisories.evidence_fraction %v: want more than 0, at most 1", c.EvidenceFraction)
	}
	return c.Damping.validate()
}

// advisor is the control plane's advisory state. Suspects are per node name.
type advisor struct {
	mu       sync.Mutex
	suspects map[string]*suspect
	operator map[string]operatorAdvisory // set by an admin (PUT /api/v1/advisories/{node}), in memory
	cur      *meshca.Advisories
	encoded  string // cur's encoding, base64, for report answers
}

// operatorAdvisory is an advisory an admin set by hand.
type operatorAdvisory struct {
	multiplier int
	reason     string
	expires    time.Time
	by         string
}

type suspect struct {
	lastReport time.Time // the report last judged: only a newer one counts again
	lastFresh  time.Time // when a fresh report was last judged
	faulty     int       // distinct reports in a row judged faulty (by the model or flow conservation)
	clean      int       // distinct reports judged clean on enough traffic since the last judged faulty
	byModel    int       // distinct reports in a row the model judged faulty
	byDeficit  int       // distinct reports in a row flow conservation judged faulty
	handed     float64   // packets a second handed to it to relay, window mean, in the last report judged
	enough     bool      // and that was enough traffic for the judgement to be evidence
	named      bool      // in the list
	class      string
	confidence float64

	// While named: what it was handed when named, until when the naming holds, and whether the
	// hold is absolute (suppressed). record is its damping state, kept while it is not named.
	handedAtNaming float64
	heldUntil      time.Time
	suppressed     bool
	record         namingRecord
}

// currentAdvisories is the signed list to hand a node with a report answer, or "".
func (s *Server) currentAdvisories() string {
	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	if s.adv.cur == nil || !s.now().Before(s.adv.cur.ExpiresAt) {
		return ""
	}
	return s.adv.encoded
}

// advisoryLoop judges the mesh every interval until ctx ends.
func (s *Server) advisoryLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.AI.Advisories.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.advise(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("cost advisories", "err", err)
			}
		}
	}
}

// advise runs the detector over the latest reports once (when ai.advisories is enabled and a
// detector is loaded), drops lapsed operator advisories, and signs a new list when the named set
// changes or the held list is past half its lifetime.
func (s *Server) advise(ctx context.Context) error {
	changed := false
	if s.cfg.AI.Advisories.Enabled && s.detector != nil {
		var err error
		if changed, err = s.judgeRelays(ctx); err != nil {
			return err
		}
	}
	now := s.now()
	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	for name, o := range s.adv.operator {
		if !now.Before(o.expires) {
			delete(s.adv.operator, name)
			changed = true
			s.log.Info("operator cost advisory lapsed", "node", name, "set_by", o.by)
		}
	}
	cur := s.adv.cur
	renew := cur != nil && len(cur.Entries) > 0 && now.After(cur.IssuedAt.Add(s.cfg.AI.Advisories.Lifetime/2))
	if !changed && !renew {
		return nil
	}
	return s.signAdvisoriesLocked(now)
}

// judgeRelays runs the detector once and updates the suspects; it reports whether the set of
// relays the detector names changed.
func (s *Server) judgeRelays(ctx context.Context) (bool, error) {
	m := s.detector
	if refusal, err := s.governedModelRefusal(ctx); err != nil || refusal != "" {
		return false, err // a model the members did not enact judges nothing
	}
	mg, err := s.buildMeshGraph(ctx)
	if err != nil {
		return false, err
	}
	in := detector.Robust(&mg.Graph)
	if err := m.CheckGraph(&in); err != nil {
		return false, fmt.Errorf("detector graph: %w", err)
	}
	probs := m.Predict(&in)
	handed := detector.HandedToRelay(&mg.Graph)
	cfg := s.cfg.AI.Advisories
	now := s.now()

	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	if s.adv.suspects == nil {
		s.adv.suspects = map[string]*suspect{}
	}
	var deficits []float64
	if cfg.FlowConservation != nil && *cfg.FlowConservation {
		// Explaining away over time: the neighbours of a relay named now are not judged by flow
		// conservation, nor do their deficits clear it (detector.UnexplainedDeficits).
		nextToNamed := make([]bool, len(mg.Names))
		for v, name := range mg.Names {
			if sp := s.adv.suspects[name]; sp != nil && sp.named {
				for _, u := range in.Adj[v] {
					if !(s.adv.suspects[mg.Names[u]] != nil && s.adv.suspects[mg.Names[u]].named) {
						nextToNamed[u] = true
					}
				}
			}
		}
		deficits = detector.UnexplainedDeficits(&in, nextToNamed)
	}
	for v, name := range mg.Names {
		rep := mg.reported[v]
		if rep == nil {
			continue
		}
		sp := s.adv.suspects[name]
		if sp == nil {
			if len(s.adv.suspects) >= maxSuspects {
				continue
			}
			sp = &suspect{}
			s.adv.suspects[name] = sp
		}
		if !rep.ReportedAt.After(sp.lastReport) {
			continue // the same report judged again is no new evidence
		}
		sp.lastReport, sp.lastFresh, sp.handed = rep.ReportedAt, now, handed[v]
		sp.enough = handed[v] >= cfg.MinRelayed && handed[v] >= cfg.EvidenceFraction*sp.handedAtNaming
		class, p, byModel := detector.ModelRelayFault(probs[v], m.DetectionThreshold(), cfg.MinConfidence)
		byDeficit := deficits != nil && deficits[v] >= cfg.DeficitThreshold && handed[v] >= cfg.MinRelayed
		sp.byModel, sp.byDeficit = countRun(sp.byModel, byModel), countRun(sp.byDeficit, byDeficit)
		switch {
		case byModel:
			sp.faulty, sp.clean = sp.faulty+1, 0
			sp.class, sp.confidence = class, p
		case byDeficit:
			// The confidence of a flow-conservation entry is the unexplained deficit: the
			// fraction of what the relay was handed that it did not relay.
			sp.faulty, sp.clean = sp.faulty+1, 0
			sp.class, sp.confidence = FlowConservationReason, min(1, deficits[v])
		default:
			// Not judged faulty is clean only on enough traffic, judged by every method on: too
			// little is unknown, which neither counts nor breaks the run.
			sp.faulty = 0
			if sp.enough && (deficits == nil || deficits[v] != detector.NotJudged) {
				sp.clean++
			}
		}
	}
	changed := false
	for name, sp := range s.adv.suspects {
		_, enrolled := mg.Index[name]
		switch {
		case !sp.named && (sp.byModel >= cfg.Consecutive || sp.byDeficit >= cfg.DeficitConsecutive) && enrolled:
			penalty, hold := sp.record.named(&cfg.Damping, now)
			sp.named, sp.clean, sp.handedAtNaming, changed = true, 0, sp.handed, true
			sp.heldUntil, sp.suppressed = now.Add(hold), penalty >= cfg.Damping.Suppress
			s.log.Warn("cost advisory: the detector judges a relay faulty", "node", name, "class", sp.class,
				"confidence", sp.confidence, "reports", sp.faulty, "multiplier", cfg.Multiplier,
				"handed_pps", sp.handed, "penalty", penalty, "hold", hold, "suppressed", sp.suppressed)
		case sp.named:
			why := ""
			switch {
			case !enrolled:
				why = "not enrolled"
			case now.Sub(sp.lastFresh) > cfg.Lifetime:
				why = "no fresh report for a list lifetime"
			case !sp.suppressed && sp.clean >= cfg.ClearAfter:
				why = "judged clean on enough traffic"
			case !now.Before(sp.heldUntil) && !(sp.faulty > 0 && sp.enough):
				// A faulty judgement holds it past its hold only on enough traffic: on the
				// probes that still cross a relay the mesh has left, a deficit is noise.
				why = "hold ended"
			}
			if why != "" {
				// Naming it again takes a new run of judgements: those made while it was held
				// were on what traffic was left to it.
				sp.named, sp.faulty, sp.byModel, sp.byDeficit, changed = false, 0, 0, 0, true
				sp.record.released(now)
				s.log.Info("cost advisory withdrawn", "node", name, "why", why, "clean_reports", sp.clean,
					"handed_pps", sp.handed, "handed_pps_when_named", sp.handedAtNaming, "last_fresh_report", sp.lastFresh)
			}
		default:
			sp.record.forgetIfDecayed(&cfg.Damping, now)
		}
		if !sp.named && !enrolled {
			delete(s.adv.suspects, name)
		}
	}
	return changed, nil
}

// signAdvisoriesLocked signs the list of what the detector and the operators name now (an operator's
// entry wins for its subject). s.adv.mu is held.
func (s *Server) signAdvisoriesLocked(now time.Time) error {
	cfg := s.cfg.AI.Advisories
	byName := map[string]meshca.Advisory{}
	for name, sp := range s.adv.suspects {
		if sp.named {
			byName[name] = meshca.Advisory{Subject: name, Multiplier: uint8(cfg.Multiplier), Confidence: sp.confidence, Reason: sp.class}
		}
	}
	for name, o := range s.adv.operator {
		byName[name] = meshca.Advisory{Subject: name, Multiplier: uint8(o.multiplier), Confidence: 1, Reason: "operator: " + o.reason}
	}
	entries := make([]meshca.Advisory, 0, len(byName))
	for _, e := range byName {
		if len(entries) < meshca.MaxAdvisories {
			entries = append(entries, e)
		}
	}
	// The sequence follows the clock (milliseconds), so that it keeps rising across restarts
	// without being stored; within a run it rises by at least one.
	seq := uint64(max(now.UnixMilli(), 1))
	if cur := s.adv.cur; cur != nil {
		seq = max(seq, cur.Sequence+1)
	}
	a, err := s.ca.CA().SignAdvisories(seq, entries, now, cfg.Lifetime)
	if err != nil {
		return err
	}
	s.adv.cur, s.adv.encoded = a, base64.StdEncoding.EncodeToString(a.Bytes())
	s.log.Info("cost advisories signed", "sequence", a.Sequence, "entries", len(a.Entries), "expires", a.ExpiresAt)
	return nil
}

// countRun extends a run of consecutive judgements, or ends it.
func countRun(run int, judged bool) int {
	if judged {
		return run + 1
	}
	return 0
}

// FlowConservationReason is the reason (and the nodes' journal class) of an advisory that flow
// conservation, not the model, judged in the last report.
const FlowConservationReason = "flow-conservation"

// maxSuspects bounds the nodes the advisor tracks (each enrolled node at most once).
const maxSuspects = 1 << 16
