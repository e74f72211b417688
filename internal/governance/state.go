package governance

import (
	"fmt"
	"time"
)

// State is what following the enacted decisions from a genesis roster yields: the roster in force,
// the decisions applied, and the latest value of each recorded action. Nodes and the log verifier
// keep one; it is not safe for concurrent use.
type State struct {
	roster  *Roster
	applied map[ID]bool
	order   []*Certificate

	// The latest enacted values of the actions that only set a value.
	Model  *DetectorModel
	Heal   *HealThresholds
	Prices *PlanPrices
}

// NewState starts from the genesis roster.
func NewState(genesis *Roster) (*State, error) {
	if genesis.Epoch != 0 {
		return nil, fmt.Errorf("governance: roster of epoch %d is not a genesis roster", genesis.Epoch)
	}
	return &State{roster: genesis, applied: make(map[ID]bool)}, nil
}

// Roster returns the roster in force.
func (s *State) Roster() *Roster { return s.roster }

// Applied reports whether a decision was already applied.
func (s *State) Applied(id ID) bool { return s.applied[id] }

// Decisions returns the applied certificates in the order they were applied.
func (s *State) Decisions() []*Certificate { return s.order }

// Check verifies a certificate against the roster in force at time now. It does not change s.
func (s *State) Check(c *Certificate, now time.Time) (Tally, error) {
	if s.applied[c.Proposal.ID()] {
		return Tally{}, fmt.Errorf("governance: decision %s already applied", c.Proposal.ID())
	}
	return c.Verify(s.roster, now)
}

// Commit records a checked certificate as applied: a roster action makes the next roster, a value
// action becomes the value in force. The caller applies the action's effect outside (Check, apply,
// Commit), so a failed effect leaves the decision unapplied.
func (s *State) Commit(c *Certificate) error {
	switch a := c.Proposal.Action.(type) {
	case AdmitMember, RetireMember:
		next, err := s.roster.Next(a)
		if err != nil {
			return err
		}
		s.roster = next
	case DetectorModel:
		s.Model = &a
	case HealThresholds:
		s.Heal = &a
	case PlanPrices:
		s.Prices = &a
	}
	s.applied[c.Proposal.ID()] = true
	s.order = append(s.order, c)
	return nil
}

// Applier carries out one type of enacted action outside governance: billing takes new plan
// prices, the detector a model hash. The control plane calls it once per enactment, after the
// decision is logged; an error is logged and does not undo the decision.
type Applier interface {
	Apply(Action) error
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(Action) error

// Apply calls f.
func (f ApplierFunc) Apply(a Action) error { return f(a) }
