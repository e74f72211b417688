package governance

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
	"x0tta6bl4/internal/wire"
)

const (
	logMagic  = "X6GL"
	logFormat = 1
	logLabel  = "x0tta6bl4 governance log v1"
	// MaxLogPayload bounds one entry's payload (a quorum certificate is the largest).
	MaxLogPayload = 64 << 10
	maxLogEntry   = 4 + 1 + 8 + 32 + 8 + 1 + 4 + MaxLogPayload
)

// EntryKind says what a log entry holds.
type EntryKind uint8

const (
	EntryGenesis   EntryKind = 1 // the genesis roster
	EntryProposal  EntryKind = 2 // a proposal
	EntryBallot    EntryKind = 3 // a ballot that was counted (it replaced the voter's earlier one)
	EntryEnactment EntryKind = 4 // the quorum certificate of a decision published for execution
)

// Entry is one record of the append-only governance log. Each names the hash of the one before it.
type Entry struct {
	Seq     uint64
	Prev    [32]byte
	Time    time.Time
	Kind    EntryKind
	Payload []byte

	raw  []byte
	hash [32]byte
}

// NewEntry encodes the entry that follows prev (nil for the first).
func NewEntry(prev *Entry, at time.Time, kind EntryKind, payload []byte) (*Entry, error) {
	e := &Entry{Seq: 1, Time: at.Truncate(time.Second), Kind: kind, Payload: slices.Clone(payload)}
	if prev != nil {
		e.Seq, e.Prev = prev.Seq+1, prev.hash
	}
	if len(payload) > MaxLogPayload {
		return nil, fmt.Errorf("log entry: payload of %d bytes, at most %d", len(payload), MaxLogPayload)
	}
	if kind < EntryGenesis || kind > EntryEnactment {
		return nil, fmt.Errorf("log entry: unknown kind %d", kind)
	}
	e.raw = e.encode()
	e.hash = labelledHash(logLabel, e.raw)
	return e, nil
}

func (e *Entry) encode() []byte {
	b := make([]byte, 0, 64+len(e.Payload))
	b = append(b, logMagic...)
	b = append(b, logFormat)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = append(b, e.Prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.Unix()))
	b = append(b, byte(e.Kind))
	return wire.AppendBytes32(b, e.Payload)
}

// Bytes returns the canonical encoding.
func (e *Entry) Bytes() []byte { return e.raw }

// Hash is what the next entry names as Prev.
func (e *Entry) Hash() [32]byte { return e.hash }

// ParseEntry decodes one canonical log entry.
func ParseEntry(data []byte) (*Entry, error) {
	if len(data) > maxLogEntry {
		return nil, fmt.Errorf("log entry: %d bytes, at most %d", len(data), maxLogEntry)
	}
	r := wire.NewReader(data)
	r.Magic(logMagic, logFormat)
	e := &Entry{Seq: r.U64(), Prev: r.Hash()}
	at := r.U64()
	e.Kind = EntryKind(r.U8())
	e.Payload = r.Bytes32(MaxLogPayload)
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("log entry: %w", err)
	}
	if at > 1<<40 {
		return nil, errors.New("log entry: time out of range")
	}
	if e.Kind < EntryGenesis || e.Kind > EntryEnactment {
		return nil, fmt.Errorf("log entry: unknown kind %d", e.Kind)
	}
	e.Time = time.Unix(int64(at), 0)
	e.Payload = slices.Clone(e.Payload)
	e.raw = slices.Clone(data)
	e.hash = labelledHash(logLabel, e.raw)
	return e, nil
}

// LogError names the first entry of a log that fails verification.
type LogError struct {
	Seq uint64
	Err error
}

func (e *LogError) Error() string { return fmt.Sprintf("governance log entry %d: %v", e.Seq, e.Err) }
func (e *LogError) Unwrap() error { return e.Err }

// LogProposal is what VerifyLog recomputed for one proposal.
type LogProposal struct {
	Proposal *Proposal
	Roster   *Roster
	Ballots  map[[32]byte]*Ballot // the counted ballot of each voter
	Tally    Tally
	Enacted  bool
}

// LogSummary is the state a verified log leads to.
type LogSummary struct {
	State     *State
	Proposals map[ID]*LogProposal
	Order     []ID
	Head      [32]byte // hash of the last entry; zero for an empty log
	HeadSeq   uint64
	HeadTime  time.Time
}

// VerifyLog replays a governance log from its genesis entry: the hash chain and sequence, every
// payload, every ballot against its proposal's frozen roster and window (by the entry's time) and the
// changed-vote rule, and every enactment against the ballots logged for its proposal, recomputing
// each tally. It returns the first inconsistency as a *LogError.
func VerifyLog(entries []*Entry) (*LogSummary, error) {
	sum := NewLogSummary()
	for _, e := range entries {
		if err := sum.Append(e); err != nil {
			return sum, err
		}
	}
	if sum.State == nil {
		return sum, errors.New("governance log: empty")
	}
	return sum, nil
}

// NewLogSummary is the summary of an empty log, to Append entries to one by one.
func NewLogSummary() *LogSummary {
	return &LogSummary{Proposals: make(map[ID]*LogProposal)}
}

// Append checks the next entry of the log against everything before it and applies it; an entry
// that fails leaves the summary as it was before it only for the chain checks, so a caller stops at
// the first error.
func (sum *LogSummary) Append(e *Entry) error {
	fail := func(err error) error { return &LogError{Seq: e.Seq, Err: err} }
	if e.Seq != sum.HeadSeq+1 {
		return fail(fmt.Errorf("sequence %d, want %d", e.Seq, sum.HeadSeq+1))
	}
	if e.Prev != sum.Head {
		return fail(errors.New("does not name the previous entry's hash: the chain is broken"))
	}
	if !bytes.Equal(e.encode(), e.raw) || labelledHash(logLabel, e.raw) != e.hash {
		return fail(errors.New("fields differ from the encoding"))
	}
	if e.Time.Before(sum.HeadTime) {
		return fail(errors.New("time goes backwards"))
	}
	if err := sum.apply(e); err != nil {
		return fail(err)
	}
	sum.HeadSeq, sum.Head, sum.HeadTime = e.Seq, e.hash, e.Time
	return nil
}

func (sum *LogSummary) apply(e *Entry) error {
	if (e.Kind == EntryGenesis) != (sum.State == nil) {
		return errors.New("the genesis roster is the first entry, and only it")
	}
	switch e.Kind {
	case EntryGenesis:
		r, err := ParseRoster(e.Payload)
		if err != nil {
			return err
		}
		s, err := NewState(r)
		if err != nil {
			return err
		}
		sum.State = s
	case EntryProposal:
		p, err := ParseProposal(e.Payload)
		if err != nil {
			return err
		}
		if sum.Proposals[p.ID()] != nil {
			return fmt.Errorf("proposal %s logged twice", p.ID())
		}
		if p.Roster != sum.State.Roster().Hash() {
			return fmt.Errorf("%w: proposal %s is not frozen on the roster in force", ErrWrongRoster, p.ID())
		}
		sum.Proposals[p.ID()] = &LogProposal{Proposal: p, Roster: sum.State.Roster(), Ballots: make(map[[32]byte]*Ballot),
			Tally: Tally{Total: sum.State.Roster().Total(p.Weighting)}}
		sum.Order = append(sum.Order, p.ID())
	case EntryBallot:
		b, err := ParseBallot(e.Payload)
		if err != nil {
			return err
		}
		lp := sum.Proposals[b.Proposal]
		if lp == nil {
			return fmt.Errorf("ballot for unknown proposal %s", b.Proposal)
		}
		if lp.Enacted {
			return fmt.Errorf("ballot for proposal %s after its enactment", b.Proposal)
		}
		if _, err := b.Check(lp.Proposal, lp.Roster); err != nil {
			return err
		}
		if e.Time.Before(lp.Proposal.Start) || !e.Time.Before(lp.Proposal.End) {
			return fmt.Errorf("%w: logged at %s", ErrOutsideWindow, e.Time.UTC().Format(time.RFC3339))
		}
		if ok, err := Supersedes(lp.Ballots[b.Voter], b); !ok {
			if err == nil {
				err = errors.New("the same ballot logged twice")
			}
			return err
		}
		lp.Ballots[b.Voter] = b
		lp.Tally = lp.tally()
	case EntryEnactment:
		c, err := ParseCertificate(e.Payload)
		if err != nil {
			return err
		}
		lp := sum.Proposals[c.Proposal.ID()]
		if lp == nil {
			return fmt.Errorf("enactment of unknown proposal %s", c.Proposal.ID())
		}
		if len(c.Ballots) != len(lp.Ballots) {
			return fmt.Errorf("enactment of %s carries %d ballots, the log counted %d", c.Proposal.ID(), len(c.Ballots), len(lp.Ballots))
		}
		for _, b := range c.Ballots {
			if held := lp.Ballots[b.Voter]; held == nil || !bytes.Equal(held.raw, b.raw) {
				return fmt.Errorf("enactment of %s carries a ballot of %s that is not the one the log counted", c.Proposal.ID(), b.Voter)
			}
		}
		if _, err := sum.State.Check(c, e.Time); err != nil {
			return err
		}
		if err := sum.State.Commit(c); err != nil {
			return err
		}
		lp.Enacted = true
	}
	return nil
}

func (lp *LogProposal) tally() Tally {
	voters := make([]Member, 0, len(lp.Ballots))
	choices := make([]Choice, 0, len(lp.Ballots))
	for _, b := range lp.Ballots {
		m, _ := lp.Roster.Member(b.Voter)
		voters, choices = append(voters, m), append(choices, b.Choice)
	}
	return Count(lp.Proposal, lp.Roster, voters, choices)
}
