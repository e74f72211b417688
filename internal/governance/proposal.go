package governance

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

const (
	proposalMagic  = "X6GP"
	proposalFormat = 1
	proposalLabel  = "x0tta6bl4 governance proposal v1"
	// MaxProposalSize bounds a proposal, so that a certificate with MaxMembers ballots fits one link
	// frame (MaxCertificateSize).
	MaxProposalSize = 8 << 10

	minVoting   = time.Minute
	maxVoting   = 30 * 24 * time.Hour
	maxTimelock = 30 * 24 * time.Hour
)

// Weighting turns a member's weight into votes.
type Weighting uint8

const (
	Linear    Weighting = 0 // votes = weight
	Quadratic Weighting = 1 // votes = isqrt(weight)
)

func (w Weighting) weight(v uint32) uint64 {
	if w == Quadratic {
		return isqrt(v)
	}
	return uint64(v)
}

// isqrt is the integer square root: the largest r with r*r <= v. A uint32 argument keeps every
// intermediate of the iteration far from overflowing uint64.
func isqrt(v32 uint32) uint64 {
	v := uint64(v32)
	if v < 2 {
		return v
	}
	// Newton's iteration from above converges monotonically for integers.
	x := v
	y := (x + 1) / 2
	for y < x {
		x = y
		y = (x + v/x) / 2
	}
	return x
}

// ID identifies a proposal: the labelled hash of its canonical encoding.
type ID [32]byte

func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// ParseID reads an ID from its hex form.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, errors.New("proposal id: want 64 hex digits")
	}
	copy(id[:], b)
	return id, nil
}

// Proposal is one action put to the members of a frozen roster.
type Proposal struct {
	TrustDomain  string
	Roster       [32]byte // hash of the roster frozen at creation
	Title        string
	Start, End   time.Time // the voting window [Start, End), whole seconds
	Timelock     time.Duration
	QuorumBPS    uint16 // of the frozen total weight, basis points
	ThresholdBPS uint16 // yes among yes + no, basis points
	Weighting    Weighting
	Action       Action

	raw []byte
	id  ID
}

// NewProposal validates and encodes a proposal.
func NewProposal(p Proposal) (*Proposal, error) {
	p.raw, p.id = nil, ID{}
	if err := p.validate(); err != nil {
		return nil, err
	}
	p.raw = p.encode()
	if len(p.raw) > MaxProposalSize {
		return nil, fmt.Errorf("proposal: %d bytes, at most %d allowed", len(p.raw), MaxProposalSize)
	}
	p.id = labelledHash(proposalLabel, p.raw)
	return &p, nil
}

func (p *Proposal) validate() error {
	if err := identity.ValidateTrustDomain(p.TrustDomain); err != nil {
		return fmt.Errorf("proposal: %w", err)
	}
	if err := validText(p.Title); err != nil || p.Title == "" {
		return fmt.Errorf("proposal title: %v", err)
	}
	if p.Start.Unix() <= 0 || !p.Start.Equal(time.Unix(p.Start.Unix(), 0)) || !p.End.Equal(time.Unix(p.End.Unix(), 0)) {
		return errors.New("proposal: start and end must be whole seconds after 1970")
	}
	if d := p.End.Sub(p.Start); d < minVoting || d > maxVoting {
		return fmt.Errorf("proposal: voting window %s, %s to %s allowed", d, minVoting, maxVoting)
	}
	if p.Timelock < 0 || p.Timelock > maxTimelock || p.Timelock%time.Second != 0 {
		return fmt.Errorf("proposal: timelock %s, whole seconds up to %s allowed", p.Timelock, maxTimelock)
	}
	if p.QuorumBPS < 1 || p.QuorumBPS > 10_000 {
		return fmt.Errorf("proposal: quorum %d basis points, 1 to 10000 allowed", p.QuorumBPS)
	}
	if p.ThresholdBPS < 5_001 || p.ThresholdBPS > 10_000 {
		return fmt.Errorf("proposal: threshold %d basis points, 5001 to 10000 allowed", p.ThresholdBPS)
	}
	if p.Weighting > Quadratic {
		return fmt.Errorf("proposal: unknown weighting %d", p.Weighting)
	}
	if p.Action == nil {
		return errors.New("proposal: no action")
	}
	if err := p.Action.validate(); err != nil {
		return fmt.Errorf("proposal: %w", err)
	}
	if n := len(p.Action.appendBody(nil)); n > MaxActionSize {
		return fmt.Errorf("proposal: action of %d bytes, at most %d allowed", n, MaxActionSize)
	}
	return nil
}

func (p *Proposal) encode() []byte {
	b := make([]byte, 0, 256)
	b = append(b, proposalMagic...)
	b = append(b, proposalFormat)
	b = wire.AppendStr8(b, p.TrustDomain)
	b = append(b, p.Roster[:]...)
	b = wire.AppendStr8(b, p.Title)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Start.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(p.End.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(p.Timelock/time.Second))
	b = binary.BigEndian.AppendUint16(b, p.QuorumBPS)
	b = binary.BigEndian.AppendUint16(b, p.ThresholdBPS)
	b = append(b, byte(p.Weighting), byte(p.Action.Type()))
	return wire.AppendBytes16(b, p.Action.appendBody(nil))
}

// Bytes returns the canonical encoding.
func (p *Proposal) Bytes() []byte { return p.raw }

// ID returns the proposal's id.
func (p *Proposal) ID() ID { return p.id }

// ExecutableAt is when a passed proposal may be applied: the end of voting plus the timelock.
func (p *Proposal) ExecutableAt() time.Time { return p.End.Add(p.Timelock) }

// ParseProposal decodes a canonical proposal encoding.
func ParseProposal(data []byte) (*Proposal, error) {
	if len(data) > MaxProposalSize {
		return nil, fmt.Errorf("proposal: %d bytes, at most %d allowed", len(data), MaxProposalSize)
	}
	r := wire.NewReader(data)
	r.Magic(proposalMagic, proposalFormat)
	p := &Proposal{TrustDomain: r.Str8(), Roster: r.Hash(), Title: r.Str8()}
	start, end := r.U64(), r.U64()
	p.Timelock = time.Duration(r.U32()) * time.Second
	p.QuorumBPS, p.ThresholdBPS = r.U16(), r.U16()
	p.Weighting = Weighting(r.U8())
	t := ActionType(r.U8())
	body := r.Bytes16()
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("proposal: %w", err)
	}
	if start > 1<<40 || end > 1<<40 {
		return nil, errors.New("proposal: time out of range")
	}
	p.Start, p.End = time.Unix(int64(start), 0), time.Unix(int64(end), 0)
	a, err := parseAction(t, body)
	if err != nil {
		return nil, fmt.Errorf("proposal: %w", err)
	}
	p.Action = a
	if err := p.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(p.encode(), data) {
		return nil, errors.New("proposal: not the canonical encoding")
	}
	p.raw = slices.Clone(data)
	p.id = labelledHash(proposalLabel, p.raw)
	return p, nil
}
