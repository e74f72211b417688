package meshca

import (
	"bytes"
	"testing"
)

// scribble overwrites b, as a socket reader overwrites its receive buffer with the next datagram.
func scribble(b []byte) {
	for i := range b {
		b[i] = 0xa5
	}
}

// TestParsedValuesOwnTheirMemory parses each signed object from a buffer, overwrites the buffer and
// checks that the parsed value did not change: nodes keep certificates, revocation lists, policies
// and advisories that arrived in a receive buffer the next datagram overwrites, and check their
// signatures again later.
func TestParsedValuesOwnTheirMemory(t *testing.T) {
	f, pol := getPolicy(t)
	adv, err := f.ca.SignAdvisories(3, []Advisory{{Subject: "n2", Multiplier: 8, Confidence: 0.9, Reason: "greyhole"}}, f.now, 60e9)
	if err != nil {
		t.Fatal(err)
	}
	caKey := f.caKey.PublicKey()
	t.Run("certificate", func(t *testing.T) {
		buf := bytes.Clone(f.node.Bytes())
		c, err := ParseCertificate(buf)
		if err != nil {
			t.Fatal(err)
		}
		scribble(buf)
		if !bytes.Equal(c.Bytes(), f.node.Bytes()) || !bytes.Equal(c.Signature, f.node.Signature) {
			t.Fatal("the parsed certificate changed with its input buffer")
		}
		if !bytes.Equal(c.SignPublicKey.Bytes(), f.node.SignPublicKey.Bytes()) ||
			!bytes.Equal(c.KEMPublicKey.Bytes(), f.node.KEMPublicKey.Bytes()) {
			t.Fatal("the parsed certificate's keys changed with its input buffer")
		}
		if err := c.CheckSignature(caKey); err != nil {
			t.Fatalf("signature after the input was overwritten: %v", err)
		}
	})
	t.Run("revocation list", func(t *testing.T) {
		buf := bytes.Clone(f.crl.Bytes())
		l, err := ParseRevocationList(buf)
		if err != nil {
			t.Fatal(err)
		}
		scribble(buf)
		if !bytes.Equal(l.Bytes(), f.crl.Bytes()) || !bytes.Equal(l.Signature, f.crl.Signature) {
			t.Fatal("the parsed list changed with its input buffer")
		}
		if err := l.CheckSignature(caKey); err != nil {
			t.Fatalf("signature after the input was overwritten: %v", err)
		}
	})
	t.Run("policy", func(t *testing.T) {
		buf := bytes.Clone(pol.Bytes())
		p, err := ParsePolicy(buf)
		if err != nil {
			t.Fatal(err)
		}
		scribble(buf)
		if !bytes.Equal(p.Bytes(), pol.Bytes()) || !bytes.Equal(p.Signature, pol.Signature) {
			t.Fatal("the parsed policy changed with its input buffer")
		}
		if err := p.CheckSignature(caKey); err != nil {
			t.Fatalf("signature after the input was overwritten: %v", err)
		}
	})
	t.Run("advisories", func(t *testing.T) {
		buf := bytes.Clone(adv.Bytes())
		a, err := ParseAdvisories(buf)
		if err != nil {
			t.Fatal(err)
		}
		scribble(buf)
		if !bytes.Equal(a.Bytes(), adv.Bytes()) || !bytes.Equal(a.Signature, adv.Signature) {
			t.Fatal("the parsed advisories changed with their input buffer")
		}
	})
}

// parseScribbled parses a copy of data and overwrites the copy before returning, so that a fuzz
// target's checks of the result against data fail if the result kept a reference to its input.
func parseScribbled[T any](data []byte, parse func([]byte) (T, error)) (T, error) {
	buf := bytes.Clone(data)
	v, err := parse(buf)
	scribble(buf)
	return v, err
}
