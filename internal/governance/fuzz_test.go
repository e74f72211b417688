package governance

import (
	"bytes"
	"testing"

	"x0tta6bl4/internal/identity"
)

func fuzzSeeds(f *testing.F) (*testMembers, *Certificate) {
	tm := newMembers(f, 1, 2)
	p := tm.propose(f, RevokeNode{Name: "n1", Key: identity.KeyID{1}}, nil)
	c, err := NewCertificate(p, []*Ballot{tm.vote(f, 0, p, Yes, 1), tm.vote(f, 1, p, No, 1)})
	if err != nil {
		f.Fatal(err)
	}
	return tm, c
}

func FuzzParseRoster(f *testing.F) {
	tm, _ := fuzzSeeds(f)
	f.Add(tm.roster.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRoster(data)
		if err == nil && !bytes.Equal(r.Bytes(), data) {
			t.Fatal("accepted a non-canonical roster")
		}
	})
}

func FuzzParseProposal(f *testing.F) {
	_, c := fuzzSeeds(f)
	f.Add(c.Proposal.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProposal(data)
		if err != nil {
			return
		}
		again, err := NewProposal(*p)
		if err != nil || again.ID() != p.ID() {
			t.Fatalf("parsed proposal does not re-encode: %v", err)
		}
	})
}

func FuzzParseBallot(f *testing.F) {
	tm, c := fuzzSeeds(f)
	f.Add(c.Ballots[0].Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBallot(data)
		if err != nil {
			return
		}
		if !bytes.Equal(b.Bytes(), data) {
			t.Fatal("accepted a non-canonical ballot")
		}
		// Anything but the seed itself must fail the signature or membership check.
		if _, err := b.Check(c.Proposal, tm.roster); err == nil && !bytes.Equal(data, c.Ballots[0].Bytes()) && !bytes.Equal(data, c.Ballots[1].Bytes()) {
			t.Fatal("a mutated ballot verified")
		}
	})
}

func FuzzParseCertificate(f *testing.F) {
	tm, c := fuzzSeeds(f)
	f.Add(c.Bytes())
	p := tm.propose(f, PolicyAction{Policy: testPolicy(f, 2)}, nil)
	withPolicy, err := NewCertificate(p, []*Ballot{tm.vote(f, 0, p, Yes, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withPolicy.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		// Parse a copy and overwrite it, as a node's receive buffer is: what was parsed must not change.
		buf := bytes.Clone(data)
		qc, err := ParseCertificate(buf)
		for i := range buf {
			buf[i] = 0xa5
		}
		if err != nil {
			return
		}
		if !bytes.Equal(qc.Bytes(), data) {
			t.Fatal("the decision changed with its input buffer")
		}
		for _, b := range qc.Ballots {
			if !bytes.Contains(data, b.Bytes()) || !bytes.HasSuffix(b.Bytes(), b.Signature) {
				t.Fatal("a ballot changed with its input buffer")
			}
		}
		if a, ok := qc.Proposal.Action.(PolicyAction); ok &&
			(!bytes.Contains(data, a.Policy.Bytes()) || !bytes.HasSuffix(a.Policy.Bytes(), a.Policy.Signature)) {
			t.Fatal("the decision's policy changed with its input buffer")
		}
		_, _ = qc.Verify(tm.roster, qc.Proposal.ExecutableAt())
	})
}

func FuzzParseLogEntry(f *testing.F) {
	tm, _ := fuzzSeeds(f)
	e, err := NewEntry(nil, t0, EntryGenesis, tm.roster.Bytes())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEntry(data)
		if err != nil {
			return
		}
		if !bytes.Equal(e.encode(), data) {
			t.Fatal("accepted a non-canonical log entry")
		}
		_, _ = VerifyLog([]*Entry{e})
	})
}
