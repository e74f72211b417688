package governance

import (
	"testing"

	"x0tta6bl4/internal/identity"
)

// BenchmarkVerifyCertificate: what a node spends on a new decision of three members, two of whom
// voted: parse the frame's certificate and verify it against the roster.
func BenchmarkVerifyCertificate(b *testing.B) {
	tm, p, raw := benchDecision(b)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		qc, err := ParseCertificate(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := qc.Verify(tm.roster, p.ExecutableAt()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseKnownCertificate: what a copy of a decision the node already applied costs before
// it is dropped (parse and hash; no signature check).
func BenchmarkParseKnownCertificate(b *testing.B) {
	_, _, raw := benchDecision(b)
	for b.Loop() {
		if _, err := ParseCertificate(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// benchDecision is a revocation decided by two yes votes of three members.
func benchDecision(b *testing.B) (*testMembers, *Proposal, []byte) {
	tm := newMembers(b, 1, 1, 1)
	p := tm.propose(b, RevokeNode{Name: "n1", Key: identity.KeyID{1}}, nil)
	c, err := NewCertificate(p, []*Ballot{tm.vote(b, 0, p, Yes, 1), tm.vote(b, 1, p, Yes, 1)})
	if err != nil {
		b.Fatal(err)
	}
	return tm, p, c.Bytes()
}

// TestCertificateSize is the size figure of docs/governance.md ("Cost"): a revocation decided by
// two ballots of three members, and what each further ballot adds. ML-DSA-65 signatures are
// 3,309 bytes, so the ballots dominate; a change in the encoding shows here first.
//
//	go test -run TestCertificateSize -v ./internal/governance/
func TestCertificateSize(t *testing.T) {
	tm := newMembers(t, 1, 1, 1)
	p := tm.propose(t, RevokeNode{Name: "n1", Key: identity.KeyID{1}}, nil)
	ballots := []*Ballot{tm.vote(t, 0, p, Yes, 1), tm.vote(t, 1, p, Yes, 1), tm.vote(t, 2, p, Yes, 1)}
	two, err := NewCertificate(p, ballots[:2])
	if err != nil {
		t.Fatal(err)
	}
	three, err := NewCertificate(p, ballots)
	if err != nil {
		t.Fatal(err)
	}
	perBallot := len(three.Bytes()) - len(two.Bytes())
	t.Logf("revocation certificate with two ballots: %d bytes (proposal %d, ballots %d and %d); each further ballot adds %d",
		len(two.Bytes()), len(p.Bytes()), len(ballots[0].Bytes()), len(ballots[1].Bytes()), perBallot)
	if len(two.Bytes()) != 6915 || len(p.Bytes()) != 115 || len(ballots[0].Bytes()) != 3393 || perBallot != 3395 {
		t.Errorf("sizes changed: update docs/governance.md (6 915 bytes, a 115-byte proposal, 3 393-byte ballots, 3 395 per further ballot)")
	}
}
