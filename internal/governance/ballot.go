package governance

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

const (
	ballotMagic   = "X6GB"
	ballotFormat  = 1
	ballotContext = "x0tta6bl4 governance ballot v1"
	ballotTBSSize = 4 + 1 + 32 + 32 + 1 + 4 + 8
	// BallotSize is the size of every ballot.
	BallotSize = ballotTBSSize + 2 + identity.SignatureSize
)

// Choice is a member's vote.
type Choice uint8

const (
	Yes     Choice = 1
	No      Choice = 2
	Abstain Choice = 3
)

var choiceNames = [...]string{Yes: "yes", No: "no", Abstain: "abstain"}

func (c Choice) String() string {
	if c >= Yes && c <= Abstain {
		return choiceNames[c]
	}
	return fmt.Sprintf("choice(%d)", uint8(c))
}

// ParseChoice reads "yes", "no" or "abstain".
func ParseChoice(s string) (Choice, error) {
	for c := Yes; c <= Abstain; c++ {
		if choiceNames[c] == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("choice %q: want yes, no or abstain", s)
}

// Errors a ballot or certificate check returns; test with errors.Is.
var (
	ErrBadSignature  = errors.New("governance: signature does not verify")
	ErrNotMember     = errors.New("governance: voter is not a member of the proposal's roster")
	ErrWrongProposal = errors.New("governance: ballot is for another proposal")
	ErrOutsideWindow = errors.New("governance: ballot is outside the voting window")
	ErrStaleBallot   = errors.New("governance: a ballot with this or a higher sequence is already counted")
	ErrWrongRoster   = errors.New("governance: proposal was frozen on another roster")
	ErrNotPassed     = errors.New("governance: the ballots do not pass the proposal")
	ErrTimelock      = errors.New("governance: the timelock has not ended")
	ErrGoverned      = errors.New("governance: this action type is governed: it needs a quorum certificate")
)

// Ballot is one member's signed vote on one proposal. A higher Sequence replaces an earlier ballot
// of the same voter inside the window.
type Ballot struct {
	Proposal  ID
	Voter     identity.KeyID
	Choice    Choice
	Sequence  uint32
	Time      time.Time // the voter's signed time, whole seconds
	Signature []byte

	raw []byte
}

func (b *Ballot) tbs() []byte {
	out := make([]byte, 0, BallotSize)
	out = append(out, ballotMagic...)
	out = append(out, ballotFormat)
	out = append(out, b.Proposal[:]...)
	out = append(out, b.Voter[:]...)
	out = append(out, byte(b.Choice))
	out = binary.BigEndian.AppendUint32(out, b.Sequence)
	return binary.BigEndian.AppendUint64(out, uint64(b.Time.Unix()))
}

// SignBallot makes a member's ballot; the key never leaves the caller.
func SignBallot(key *identity.SigningKey, proposal ID, c Choice, sequence uint32, at time.Time) (*Ballot, error) {
	b := &Ballot{Proposal: proposal, Voter: key.PublicKey().ID(), Choice: c, Sequence: sequence, Time: at.Truncate(time.Second)}
	if err := b.validate(); err != nil {
		return nil, err
	}
	tbs := b.tbs()
	sig, err := key.Sign(ballotContext, tbs)
	if err != nil {
		return nil, err
	}
	b.Signature, b.raw = sig, wire.AppendBytes16(tbs, sig)
	return b, nil
}

func (b *Ballot) validate() error {
	if b.Choice < Yes || b.Choice > Abstain {
		return fmt.Errorf("ballot: unknown choice %d", b.Choice)
	}
	if b.Sequence == 0 {
		return errors.New("ballot: sequence starts at 1")
	}
	if b.Time.Unix() <= 0 || b.Time.Unix() > 1<<40 {
		return errors.New("ballot: time out of range")
	}
	return nil
}

// Bytes returns the canonical signed encoding.
func (b *Ballot) Bytes() []byte { return b.raw }

// ParseBallot decodes a ballot without checking its signature (Check does).
func ParseBallot(data []byte) (*Ballot, error) {
	if len(data) != BallotSize {
		return nil, fmt.Errorf("ballot: %d bytes, want %d", len(data), BallotSize)
	}
	r := wire.NewReader(data)
	r.Magic(ballotMagic, ballotFormat)
	b := &Ballot{Proposal: r.Hash(), Voter: r.Hash(), Choice: Choice(r.U8()), Sequence: r.U32()}
	at := r.U64()
	b.Signature = r.Bytes16()
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("ballot: %w", err)
	}
	if at > 1<<40 {
		return nil, errors.New("ballot: time out of range")
	}
	b.Time = time.Unix(int64(at), 0)
	if err := b.validate(); err != nil {
		return nil, err
	}
	if len(b.Signature) != identity.SignatureSize {
		return nil, fmt.Errorf("ballot: signature of %d bytes", len(b.Signature))
	}
	b.raw = slices.Clone(data)
	if !bytes.Equal(wire.AppendBytes16(b.tbs(), b.Signature), data) {
		return nil, errors.New("ballot: not the canonical encoding")
	}
	b.Signature = b.raw[ballotTBSSize+2:]
	return b, nil
}

// Check verifies that the ballot is a valid vote on p by a member of roster, cast inside the window.
// It returns the voter.
func (b *Ballot) Check(p *Proposal, roster *Roster) (Member, error) {
	if b.Proposal != p.ID() {
		return Member{}, ErrWrongProposal
	}
	if roster.Hash() != p.Roster {
		return Member{}, ErrWrongRoster
	}
	m, ok := roster.Member(b.Voter)
	if !ok {
		return Member{}, fmt.Errorf("%w (key %s)", ErrNotMember, b.Voter)
	}
	if b.Time.Before(p.Start) || !b.Time.Before(p.End) {
		return Member{}, fmt.Errorf("%w: cast %s, window %s to %s", ErrOutsideWindow,
			b.Time.UTC().Format(time.RFC3339), p.Start.UTC().Format(time.RFC3339), p.End.UTC().Format(time.RFC3339))
	}
	if err := m.Key.Verify(ballotContext, b.raw[:ballotTBSSize], b.Signature); err != nil {
		return Member{}, fmt.Errorf("%w: ballot of %q", ErrBadSignature, m.Name)
	}
	return m, nil
}

// Supersedes applies the changed-vote rule: next replaces held when its sequence is higher; the same
// sequence is a retry only when byte-identical (ok false, no error); anything else is refused.
func Supersedes(held, next *Ballot) (bool, error) {
	if held == nil {
		return true, nil
	}
	switch {
	case next.Sequence > held.Sequence:
		return true, nil
	case next.Sequence == held.Sequence && bytes.Equal(next.raw, held.raw):
		return false, nil
	}
	return false, fmt.Errorf("%w: sequence %d offered, %d held", ErrStaleBallot, next.Sequence, held.Sequence)
}
