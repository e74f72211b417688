package governance

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/wire"
)

// ActionType names what a proposal does.
type ActionType uint8

const (
	ActionPolicy ActionType = iota + 1 // replace the mesh access policy
	ActionRevoke                       // revoke a node's key
	ActionAdmit                        // admit a member
	ActionRetire                       // retire a member
	ActionHeal                         // change the self-healing thresholds
	ActionModel                        // roll out a detector model by content hash
	ActionPrices                       // change plan prices
)

var actionNames = [...]string{ActionPolicy: "policy", ActionRevoke: "revoke", ActionAdmit: "admit",
	ActionRetire: "retire", ActionHeal: "heal", ActionModel: "model", ActionPrices: "prices"}

func (t ActionType) String() string {
	if t >= ActionPolicy && int(t) < len(actionNames) {
		return actionNames[t]
	}
	return fmt.Sprintf("action(%d)", uint8(t))
}

// ParseActionType reads an action type's name, as node configuration writes it.
func ParseActionType(s string) (ActionType, error) {
	for t := ActionPolicy; int(t) < len(actionNames); t++ {
		if actionNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown governance action %q (known: %v)", s, actionNames[1:])
}

// Action is one typed, validated change a proposal carries.
type Action interface {
	Type() ActionType
	appendBody(b []byte) []byte
	validate() error
}

// MaxActionSize bounds an action body, so that a proposal stays within MaxProposalSize.
const MaxActionSize = MaxProposalSize - 512

// PolicyAction replaces the access policy with a CA-signed one (meshca.Policy). Nodes still check
// the CA signature and that the version is newer than the one in force.
type PolicyAction struct{ Policy *meshca.Policy }

// RevokeNode revokes every certificate of the node key whose ML-DSA key ID is Key.
type RevokeNode struct {
	Name string
	Key  identity.KeyID
}

// AdmitMember adds a member; its fields are a Member's.
type AdmitMember struct {
	Name   string
	Weight uint32
	Key    *identity.VerifyKey
}

// RetireMember removes the member with this key ID.
type RetireMember struct{ Key identity.KeyID }

// HealThresholds are the self-healing parameters (docs/node.md, "Self-healing") a node runs with.
type HealThresholds struct {
	ProbeInterval, ProbeTimeout, Hold, MaxHold, Grace time.Duration // whole milliseconds
	ConfidencePPM                                     uint32        // parts per million
	Consecutive                                       uint8
}

// DetectorModel pins the anomaly-detector model by the SHA-256 of its file.
type DetectorModel struct {
	SHA256 [32]byte
	Name   string
}

// PlanPrice is one plan's price: micro-USDT per period of days.
type PlanPrice struct {
	Plan       string
	MicroUSDT  uint64
	PeriodDays uint16
}

// PlanPrices replaces the price of each plan it names.
type PlanPrices struct{ Plans []PlanPrice }

func (PolicyAction) Type() ActionType   { return ActionPolicy }
func (RevokeNode) Type() ActionType     { return ActionRevoke }
func (AdmitMember) Type() ActionType    { return ActionAdmit }
func (RetireMember) Type() ActionType   { return ActionRetire }
func (HealThresholds) Type() ActionType { return ActionHeal }
func (DetectorModel) Type() ActionType  { return ActionModel }
func (PlanPrices) Type() ActionType     { return ActionPrices }

func (a PolicyAction) appendBody(b []byte) []byte { return append(b, a.Policy.Bytes()...) }
func (a RevokeNode) appendBody(b []byte) []byte {
	return append(wire.AppendStr8(b, a.Name), a.Key[:]...)
}
func (a AdmitMember) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(wire.AppendStr8(b, a.Name), a.Weight)
	return wire.AppendBytes16(b, a.Key.Bytes())
}
func (a RetireMember) appendBody(b []byte) []byte { return append(b, a.Key[:]...) }
func (a HealThresholds) appendBody(b []byte) []byte {
	for _, d := range []time.Duration{a.ProbeInterval, a.ProbeTimeout, a.Hold, a.MaxHold, a.Grace} {
		b = binary.BigEndian.AppendUint32(b, uint32(d/time.Millisecond))
	}
	return append(binary.BigEndian.AppendUint32(b, a.ConfidencePPM), a.Consecutive)
}
func (a DetectorModel) appendBody(b []byte) []byte {
	return wire.AppendStr8(append(b, a.SHA256[:]...), a.Name)
}
func (a PlanPrices) appendBody(b []byte) []byte {
	b = append(b, byte(len(a.Plans)))
	for _, p := range a.Plans {
		b = binary.BigEndian.AppendUint64(wire.AppendStr8(b, p.Plan), p.MicroUSDT)
		b = binary.BigEndian.AppendUint16(b, p.PeriodDays)
	}
	return b
}

func (a PolicyAction) validate() error {
	if a.Policy == nil || len(a.Policy.Bytes()) == 0 {
		return errors.New("policy action without a signed policy")
	}
	return nil
}

func (a RevokeNode) validate() error {
	if err := identity.ValidateNodeName(a.Name); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if a.Key == (identity.KeyID{}) {
		return errors.New("revoke: no key ID")
	}
	return nil
}

func (a AdmitMember) validate() error {
	if a.Key == nil {
		return errors.New("admit: no key")
	}
	if err := identity.ValidateNodeName(a.Name); err != nil {
		return fmt.Errorf("admit: %w", err)
	}
	if a.Weight == 0 || a.Weight > MaxWeight {
		return fmt.Errorf("admit: weight %d, 1 to %d allowed", a.Weight, MaxWeight)
	}
	return nil
}

func (a RetireMember) validate() error {
	if a.Key == (identity.KeyID{}) {
		return errors.New("retire: no key ID")
	}
	return nil
}

func (a HealThresholds) validate() error {
	for _, d := range []time.Duration{a.ProbeInterval, a.ProbeTimeout, a.Hold, a.MaxHold, a.Grace} {
		if d%time.Millisecond != 0 || d < 0 {
			return fmt.Errorf("heal: %s is not a whole number of milliseconds", d)
		}
	}
	switch {
	case a.ProbeInterval < 50*time.Millisecond || a.ProbeInterval > 10*time.Second:
		return fmt.Errorf("heal: probe interval %s, 50ms to 10s allowed", a.ProbeInterval)
	case a.ProbeTimeout < 100*time.Millisecond || a.ProbeTimeout > time.Minute:
		return fmt.Errorf("heal: probe timeout %s, 100ms to 1m allowed", a.ProbeTimeout)
	case a.Hold < time.Second || a.Hold > a.MaxHold || a.MaxHold > time.Hour:
		return fmt.Errorf("heal: hold %s and max hold %s: 1s <= hold <= max hold <= 1h", a.Hold, a.MaxHold)
	case a.Grace != 0 && a.Grace < time.Second || a.Grace > 10*time.Minute:
		return fmt.Errorf("heal: grace %s, 0 (the node's default) or 1s to 10m allowed", a.Grace)
	case a.ConfidencePPM < 500_000 || a.ConfidencePPM >= 1_000_000:
		return fmt.Errorf("heal: confidence %d ppm, 500000 to 999999 allowed", a.ConfidencePPM)
	case a.Consecutive < 1 || a.Consecutive > 20:
		return fmt.Errorf("heal: %d consecutive intervals, 1 to 20 allowed", a.Consecutive)
	}
	return nil
}

func (a DetectorModel) validate() error {
	if a.SHA256 == ([32]byte{}) {
		return errors.New("model: no hash")
	}
	if err := validText(a.Name); err != nil || a.Name == "" {
		return fmt.Errorf("model: name: %v", err)
	}
	return nil
}

func (a PlanPrices) validate() error {
	if len(a.Plans) == 0 || len(a.Plans) > 32 {
		return fmt.Errorf("prices: %d plans, 1 to 32 allowed", len(a.Plans))
	}
	for i, p := range a.Plans {
		if err := validPlanName(p.Plan); err != nil {
			return fmt.Errorf("prices: plan %q: %w", p.Plan, err)
		}
		if i > 0 && a.Plans[i-1].Plan >= p.Plan {
			return errors.New("prices: plans must be sorted by name and unique")
		}
		if p.PeriodDays < 1 || p.PeriodDays > 366 {
			return fmt.Errorf("prices: plan %q period %d days, 1 to 366 allowed", p.Plan, p.PeriodDays)
		}
	}
	return nil
}

func validPlanName(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("1 to 64 bytes")
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return errors.New("only a-z, 0-9 and -")
		}
	}
	return nil
}

// parseAction decodes an action body of the given type, canonically.
func parseAction(t ActionType, body []byte) (Action, error) {
	if len(body) > MaxActionSize {
		return nil, fmt.Errorf("action of %d bytes, at most %d allowed", len(body), MaxActionSize)
	}
	if t == ActionPolicy {
		p, err := meshca.ParsePolicy(body)
		if err != nil {
			return nil, fmt.Errorf("policy action: %w", err)
		}
		return PolicyAction{Policy: p}, nil // meshca.ParsePolicy accepts only the canonical encoding
	}
	r := wire.NewReader(body)
	var a Action
	switch t {
	case ActionRevoke:
		a = RevokeNode{Name: r.Str8(), Key: r.Hash()}
	case ActionAdmit:
		name, weight, kb := r.Str8(), r.U32(), r.Bytes16()
		if r.Err() != nil {
			return nil, r.Err()
		}
		k, err := identity.ParseVerifyKey(kb)
		if err != nil {
			return nil, fmt.Errorf("admit: %w", err)
		}
		a = AdmitMember{Name: name, Weight: weight, Key: k}
	case ActionRetire:
		a = RetireMember{Key: r.Hash()}
	case ActionHeal:
		var d [5]time.Duration
		for i := range d {
			d[i] = time.Duration(r.U32()) * time.Millisecond
		}
		a = HealThresholds{ProbeInterval: d[0], ProbeTimeout: d[1], Hold: d[2], MaxHold: d[3], Grace: d[4],
			ConfidencePPM: r.U32(), Consecutive: r.U8()}
	case ActionModel:
		a = DetectorModel{SHA256: r.Hash(), Name: r.Str8()}
	case ActionPrices:
		n := int(r.U8())
		if r.Err() == nil && n*11 > len(body) {
			return nil, fmt.Errorf("prices: %d plans in %d bytes", n, len(body))
		}
		var pp PlanPrices
		for i := 0; i < n && r.Err() == nil; i++ {
			pp.Plans = append(pp.Plans, PlanPrice{Plan: r.Str8(), MicroUSDT: r.U64(), PeriodDays: r.U16()})
		}
		a = pp
	default:
		return nil, fmt.Errorf("unknown action type %d", uint8(t))
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("%s action: %w", t, err)
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(a.appendBody(nil), body) {
		return nil, fmt.Errorf("%s action: not the canonical encoding", t)
	}
	return a, nil
}

// Sort orders the plans by name, as the encoding requires.
func (a *PlanPrices) Sort() {
	slices.SortFunc(a.Plans, func(x, y PlanPrice) int { return strings.Compare(x.Plan, y.Plan) })
}
