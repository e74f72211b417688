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
