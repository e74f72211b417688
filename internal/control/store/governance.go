package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"time"
)

// GovEntry is one entry of the governance log (internal/governance.Entry), stored as its canonical
// encoding with the fields the queries need beside it.
type GovEntry struct {
	Seq   uint64
	Hash  string // hex of the entry hash
	Kind  int
	At    time.Time
	Entry []byte // canonical encoding
}

// GovProposal indexes a proposal of the log.
type GovProposal struct {
	ID            string // hex
	LogSeq        uint64 // the entry that holds the proposal
	CreatedBy     string
	PolicyVersion uint64 // the version a policy action's policy was signed with; 0 for other actions
	EnactedSeq    uint64 // the enactment entry; 0 while not enacted
}

// GovBallot indexes the counted ballot of one voter on one proposal.
type GovBallot struct {
	Proposal string // hex id
	Voter    string // hex key ID
	Sequence uint32
	LogSeq   uint64 // the entry that holds the ballot
}

func scanGovEntry(sc interface{ Scan(...any) error }) (*GovEntry, error) {
	var (
		e       GovEntry
		seq, at int64
		b64     string
	)
	if err := sc.Scan(&seq, &e.Hash, &e.Kind, &at, &b64); err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("governance log entry %d: %w", seq, err)
	}
	e.Seq, e.At, e.Entry = uint64(seq), fromMS(at), raw
	return &e, nil
}

const govEntryCols = "seq, hash, kind, at, entry"

// GovHead returns the newest log entry, or ErrNotFound when the log is empty.
func (o Ops) GovHead(ctx context.Context) (*GovEntry, error) {
	e, err := scanGovEntry(o.queryRow(ctx, "SELECT "+govEntryCols+" FROM gov_log ORDER BY seq DESC LIMIT 1"))
	if err != nil {
		return nil, fmt.Errorf("store: governance log head: %w", mapErr(err))
	}
	return e, nil
}

// GovEntryAt returns the log entry with sequence seq.
func (o Ops) GovEntryAt(ctx context.Context, seq uint64) (*GovEntry, error) {
	e, err := scanGovEntry(o.queryRow(ctx, "SELECT "+govEntryCols+" FROM gov_log WHERE seq = ?", int64(seq)))
	if err != nil {
		return nil, fmt.Errorf("store: governance log entry %d: %w", seq, mapErr(err))
	}
	return e, nil
}

// AppendGov stores the next log entry; a sequence already taken (another writer appended first) is
// ErrConflict.
func (o Ops) AppendGov(ctx context.Context, e *GovEntry) error {
	if e.Seq == 0 || e.Seq > math.MaxInt64 {
		return fmt.Errorf("store: governance log sequence %d out of range", e.Seq)
	}
	if _, err := o.exec(ctx, "INSERT INTO gov_log ("+govEntryCols+") VALUES (?, ?, ?, ?, ?)",
		int64(e.Seq), e.Hash, e.Kind, ms(e.At), base64.StdEncoding.EncodeToString(e.Entry)); err != nil {
		return fmt.Errorf("store: append governance log entry %d: %w", e.Seq, mapErr(err))
	}
	return nil
}

// GovLog returns up to limit log entries after sequence after, oldest first.
func (o Ops) GovLog(ctx context.Context, after uint64, limit int) ([]*GovEntry, error) {
	rows, err := o.query(ctx, "SELECT "+govEntryCols+" FROM gov_log WHERE seq > ? ORDER BY seq LIMIT ?", int64(min(after, math.MaxInt64)), limit)
	if err != nil {
		return nil, fmt.Errorf("store: governance log: %w", err)
	}
	defer rows.Close()
	var out []*GovEntry
	for rows.Next() {
		e, err := scanGovEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("store: governance log: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GovEnactments returns up to limit enactment entries after sequence after, oldest first.
func (o Ops) GovEnactments(ctx context.Context, after uint64, kind, limit int) ([]*GovEntry, error) {
	rows, err := o.query(ctx, "SELECT "+govEntryCols+" FROM gov_log WHERE seq > ? AND kind = ? ORDER BY seq LIMIT ?", int64(min(after, math.MaxInt64)), kind, limit)
	if err != nil {
		return nil, fmt.Errorf("store: governance decisions: %w", err)
	}
	defer rows.Close()
	var out []*GovEntry
	for rows.Next() {
		e, err := scanGovEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("store: governance decisions: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

const govProposalCols = "id, log_seq, created_by, policy_version, enacted_seq"

func scanGovProposal(sc interface{ Scan(...any) error }) (*GovProposal, error) {
	var (
		p                GovProposal
		seq, pv, enacted int64
	)
	if err := sc.Scan(&p.ID, &seq, &p.CreatedBy, &pv, &enacted); err != nil {
		return nil, err
	}
	p.LogSeq, p.PolicyVersion, p.EnactedSeq = uint64(seq), uint64(pv), uint64(enacted)
	return &p, nil
}

// InsertGovProposal indexes a proposal; the same id twice is ErrConflict.
func (o Ops) InsertGovProposal(ctx context.Context, p *GovProposal) error {
	if _, err := o.exec(ctx, "INSERT INTO gov_proposals ("+govProposalCols+") VALUES (?, ?, ?, ?, 0)",
		p.ID, int64(p.LogSeq), p.CreatedBy, int64(min(p.PolicyVersion, math.MaxInt64))); err != nil {
		return fmt.Errorf("store: insert proposal: %w", mapErr(err))
	}
	return nil
}

// GovProposalByID returns one proposal, or ErrNotFound.
func (o Ops) GovProposalByID(ctx context.Context, id string) (*GovProposal, error) {
	p, err := scanGovProposal(o.queryRow(ctx, "SELECT "+govProposalCols+" FROM gov_proposals WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("store: proposal: %w", mapErr(err))
	}
	return p, nil
}

// GovProposals returns every proposal, newest first, at most limit.
func (o Ops) GovProposals(ctx context.Context, limit int) ([]*GovProposal, error) {
	rows, err := o.query(ctx, "SELECT "+govProposalCols+" FROM gov_proposals ORDER BY log_seq DESC LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("store: proposals: %w", err)
	}
	defer rows.Close()
	var out []*GovProposal
	for rows.Next() {
		p, err := scanGovProposal(rows)
		if err != nil {
			return nil, fmt.Errorf("store: proposals: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// MaxGovPolicyVersion returns the highest policy version a proposal reserved, or 0.
func (o Ops) MaxGovPolicyVersion(ctx context.Context) (uint64, error) {
	var v int64
	if err := o.queryRow(ctx, "SELECT COALESCE(MAX(policy_version), 0) FROM gov_proposals").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: reserved policy versions: %w", err)
	}
	return uint64(v), nil
}

// SetGovEnacted marks a proposal enacted by the entry seq; a proposal already enacted is
// ErrConflict.
func (o Ops) SetGovEnacted(ctx context.Context, id string, seq uint64) error {
	res, err := o.exec(ctx, "UPDATE gov_proposals SET enacted_seq = ? WHERE id = ? AND enacted_seq = 0", int64(seq), id)
	if err != nil {
		return fmt.Errorf("store: enact proposal: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("store: enact proposal %s: %w", id, ErrConflict)
	}
	return nil
}

// GovBallots returns the counted ballot of each voter on a proposal.
func (o Ops) GovBallots(ctx context.Context, proposal string) ([]*GovBallot, error) {
	rows, err := o.query(ctx, "SELECT proposal, voter, sequence, log_seq FROM gov_ballots WHERE proposal = ? ORDER BY voter", proposal)
	if err != nil {
		return nil, fmt.Errorf("store: ballots: %w", err)
	}
	defer rows.Close()
	var out []*GovBallot
	for rows.Next() {
		var (
			b        GovBallot
			seq, log int64
		)
		if err := rows.Scan(&b.Proposal, &b.Voter, &seq, &log); err != nil {
			return nil, fmt.Errorf("store: ballots: %w", err)
		}
		b.Sequence, b.LogSeq = uint32(seq), uint64(log)
		out = append(out, &b)
	}
	return out, rows.Err()
}

// PutGovBallot records the counted ballot of a voter: an insert for the first, an update of the
// row for a later one.
func (o Ops) PutGovBallot(ctx context.Context, b *GovBallot, replace bool) error {
	var err error
	if replace {
		_, err = o.exec(ctx, "UPDATE gov_ballots SET sequence = ?, log_seq = ? WHERE proposal = ? AND voter = ?",
			int64(b.Sequence), int64(b.LogSeq), b.Proposal, b.Voter)
	} else {
		_, err = o.exec(ctx, "INSERT INTO gov_ballots (proposal, voter, sequence, log_seq) VALUES (?, ?, ?, ?)",
			b.Proposal, b.Voter, int64(b.Sequence), int64(b.LogSeq))
	}
	if err != nil {
		return fmt.Errorf("store: ballot: %w", mapErr(err))
	}
	return nil
}
