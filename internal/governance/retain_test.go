package governance

import (
	"bytes"
	"testing"
)

// TestParsedCertificateOwnsItsMemory parses a quorum certificate carrying an access policy from a
// buffer, overwrites the buffer (a node parses decision frames in the socket reader's buffer, which
// the next datagram overwrites) and checks that the decision, its ballots and the policy it installs
// are unchanged and still verify.
func TestParsedCertificateOwnsItsMemory(t *testing.T) {
	tm := newMembers(t, 1, 1)
	pol := testPolicy(t, 3)
	p := tm.propose(t, PolicyAction{Policy: pol}, nil)
	c, err := NewCertificate(p, []*Ballot{tm.vote(t, 0, p, Yes, 1), tm.vote(t, 1, p, Yes, 1)})
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(c.Bytes())
	parsed, err := ParseCertificate(buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0xa5
	}
	if !bytes.Equal(parsed.Bytes(), c.Bytes()) || parsed.Proposal.ID() != p.ID() {
		t.Fatal("the parsed decision changed with its input buffer")
	}
	for i, b := range parsed.Ballots {
		if !bytes.Equal(b.Signature, c.Ballots[i].Signature) {
			t.Fatalf("ballot %d's signature changed with the input buffer", i)
		}
	}
	if _, err := parsed.Verify(tm.roster, p.ExecutableAt()); err != nil {
		t.Fatalf("the decision after its input was overwritten: %v", err)
	}
	got := parsed.Proposal.Action.(PolicyAction).Policy
	if !bytes.Equal(got.Bytes(), pol.Bytes()) || !bytes.Equal(got.Signature, pol.Signature) {
		t.Fatal("the decision's policy changed with the input buffer")
	}
}
