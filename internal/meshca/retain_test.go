package meshca

import (
	"bytes"
	"errors"
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
	// parsed is what a case checks after its input was overwritten: the encoding, the signature and
	// whatever else the value keeps, and the signature check when the value has one of its own.
	type parsed struct {
		enc, sig []byte
		check    func() error
	}
	cases := []struct {
		name     string
		enc, sig []byte
		parse    func([]byte) (parsed, error)
	}{
		{"certificate", f.node.Bytes(), f.node.Signature, func(b []byte) (parsed, error) {
			c, err := ParseCertificate(b)
			if err != nil {
				return parsed{}, err
			}
			return parsed{c.Bytes(), c.Signature, func() error {
				if !bytes.Equal(c.SignPublicKey.Bytes(), f.node.SignPublicKey.Bytes()) ||
					!bytes.Equal(c.KEMPublicKey.Bytes(), f.node.KEMPublicKey.Bytes()) {
					return errors.New("keys changed")
				}
				return c.CheckSignature(caKey)
			}}, nil
		}},
		{"revocation list", f.crl.Bytes(), f.crl.Signature, func(b []byte) (parsed, error) {
			l, err := ParseRevocationList(b)
			if err != nil {
				return parsed{}, err
			}
			return parsed{l.Bytes(), l.Signature, func() error { return l.CheckSignature(caKey) }}, nil
		}},
		{"policy", pol.Bytes(), pol.Signature, func(b []byte) (parsed, error) {
			p, err := ParsePolicy(b)
			if err != nil {
				return parsed{}, err
			}
			return parsed{p.Bytes(), p.Signature, func() error { return p.CheckSignature(caKey) }}, nil
		}},
		{"advisories", adv.Bytes(), adv.Signature, func(b []byte) (parsed, error) {
			a, err := ParseAdvisories(b)
			if err != nil {
				return parsed{}, err
			}
			return parsed{a.Bytes(), a.Signature, func() error { return nil }}, nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := bytes.Clone(c.enc)
			got, err := c.parse(buf)
			if err != nil {
				t.Fatal(err)
			}
			scribble(buf)
			if !bytes.Equal(got.enc, c.enc) || !bytes.Equal(got.sig, c.sig) {
				t.Fatal("the parsed value changed with its input buffer")
			}
			if err := got.check(); err != nil {
				t.Fatalf("after the input was overwritten: %v", err)
			}
		})
	}
}

// parseScribbled parses a copy of data and overwrites the copy before returning, so that a fuzz
// target's checks of the result against data fail if the result kept a reference to its input.
func parseScribbled[T any](data []byte, parse func([]byte) (T, error)) (T, error) {
	buf := bytes.Clone(data)
	v, err := parse(buf)
	scribble(buf)
	return v, err
}
