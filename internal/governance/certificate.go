package governance

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"
	"x0tta6bl4/internal/wire"
)

const (
	certificateMagic  = "X6GQ"
	certificateFormat = 1
	// MaxCertificateSize bounds a quorum certificate: one link frame.
	MaxCertificateSize = 63 << 10
	// PEMCertificate is the PEM type of a quorum certificate on disk.
	PEMCertificate = "X0TTA6BL4 QUORUM CERTIFICATE"
)

// Certificate is a quorum certificate: a proposal and the ballots that pass it, one per voter,
// sorted by voter key ID. Anyone holding the proposal's roster can verify it.
type Certificate struct {
	Proposal *Proposal
	Ballots  []*Ballot

	raw []byte
}

// NewCertificate sorts the ballots and encodes the certificate; it does not verify it.
func NewCertificate(p *Proposal, ballots []*Ballot) (*Certificate, error) {
	c := &Certificate{Proposal: p, Ballots: slices.Clone(ballots)}
	slices.SortFunc(c.Ballots, func(a, b *Ballot) int { return bytes.Compare(a.Voter[:], b.Voter[:]) })
	for i := 1; i < len(c.Ballots); i++ {
		if c.Ballots[i-1].Voter == c.Ballots[i].Voter {
			return nil, errors.New("quorum certificate: two ballots of one voter")
		}
	}
	if len(c.Ballots) > MaxMembers {
		return nil, fmt.Errorf("quorum certificate: %d ballots, at most %d", len(c.Ballots), MaxMembers)
	}
	c.raw = c.encode()
	if len(c.raw) > MaxCertificateSize {
		return nil, fmt.Errorf("quorum certificate: %d bytes, at most %d allowed", len(c.raw), MaxCertificateSize)
	}
	return c, nil
}

func (c *Certificate) encode() []byte {
	b := make([]byte, 0, 16+len(c.Proposal.Bytes())+len(c.Ballots)*(BallotSize+2))
	b = append(b, certificateMagic...)
	b = append(b, certificateFormat)
	b = wire.AppendBytes32(b, c.Proposal.Bytes())
	b = append(b, byte(len(c.Ballots)))
	for _, bl := range c.Ballots {
		b = wire.AppendBytes16(b, bl.Bytes())
	}
	return b
}

// Bytes returns the canonical encoding.
func (c *Certificate) Bytes() []byte { return c.raw }

// ParseCertificate decodes a canonical quorum certificate without verifying it.
func ParseCertificate(data []byte) (*Certificate, error) {
	if len(data) > MaxCertificateSize {
		return nil, fmt.Errorf("quorum certificate: %d bytes, at most %d allowed", len(data), MaxCertificateSize)
	}
	r := wire.NewReader(data)
	r.Magic(certificateMagic, certificateFormat)
	pb := r.Bytes32(MaxProposalSize)
	n := int(r.U8())
	if r.Err() == nil && n > MaxMembers {
		return nil, fmt.Errorf("quorum certificate: %d ballots, at most %d", n, MaxMembers)
	}
	var raws [][]byte
	for i := 0; i < n && r.Err() == nil; i++ {
		raws = append(raws, r.Bytes16())
	}
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("quorum certificate: %w", err)
	}
	p, err := ParseProposal(pb)
	if err != nil {
		return nil, fmt.Errorf("quorum certificate: %w", err)
	}
	c := &Certificate{Proposal: p}
	for i, raw := range raws {
		b, err := ParseBallot(raw)
		if err != nil {
			return nil, fmt.Errorf("quorum certificate: ballot %d: %w", i, err)
		}
		if i > 0 && bytes.Compare(c.Ballots[i-1].Voter[:], b.Voter[:]) >= 0 {
			return nil, errors.New("quorum certificate: ballots not sorted by voter, or two of one voter")
		}
		c.Ballots = append(c.Ballots, b)
	}
	c.raw = slices.Clone(data)
	return c, nil
}

// Verify checks the certificate against the roster the verifier follows, at time now: the proposal
// was frozen on that roster, every ballot is a valid vote on it by a member inside the window, the
// tally passes, and the timelock has ended. It returns the tally.
func (c *Certificate) Verify(roster *Roster, now time.Time) (Tally, error) {
	p := c.Proposal
	if p.Roster != roster.Hash() {
		return Tally{}, fmt.Errorf("%w: proposal %s", ErrWrongRoster, p.ID())
	}
	if p.TrustDomain != roster.TrustDomain {
		return Tally{}, fmt.Errorf("%w: trust domain %q", ErrWrongRoster, p.TrustDomain)
	}
	voters := make([]Member, 0, len(c.Ballots))
	choices := make([]Choice, 0, len(c.Ballots))
	for _, b := range c.Ballots {
		m, err := b.Check(p, roster)
		if err != nil {
			return Tally{}, err
		}
		voters, choices = append(voters, m), append(choices, b.Choice)
	}
	t := Count(p, roster, voters, choices)
	if !t.Passes(p) {
		return t, fmt.Errorf("%w: yes %d, no %d, abstain %d of %d (quorum %d, threshold %d basis points)",
			ErrNotPassed, t.Yes, t.No, t.Abstain, t.Total, p.QuorumBPS, p.ThresholdBPS)
	}
	if now.Before(p.ExecutableAt()) {
		return t, fmt.Errorf("%w: executable at %s", ErrTimelock, p.ExecutableAt().UTC().Format(time.RFC3339))
	}
	return t, nil
}

// EncodePEM returns the certificate as a PEM block, the form nodes keep on disk.
func (c *Certificate) EncodePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMCertificate, Bytes: c.raw})
}

// ParseCertificatesPEM decodes a sequence of PEM quorum certificates, in order.
func ParseCertificatesPEM(data []byte) ([]*Certificate, error) {
	var out []*Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != PEMCertificate {
			return nil, fmt.Errorf("PEM block %q, want %q", b.Type, PEMCertificate)
		}
		c, err := ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("trailing data after the last quorum certificate")
	}
	return out, nil
}
