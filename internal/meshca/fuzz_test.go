package meshca

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"x0tta6bl4/internal/wire"
)

// FuzzParseCertificate checks that the decoder never panics and accepts only canonical encodings: a
// certificate that parses re-encodes to exactly the input.
func FuzzParseCertificate(f *testing.F) {
	fx := getFixture(f)
	for _, c := range []*Certificate{fx.node, fx.node2, fx.ca.Certificate(), fx.groupCA.Certificate()} {
		enc := c.Bytes()
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
		f.Add(enc[:len(enc)/2])
		f.Add(enc[:100])
		f.Add(append(bytes.Clone(enc), 0))
	}
	f.Add([]byte(certMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseScribbled(data, ParseCertificate)
		if err != nil {
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if !bytes.Equal(c.Bytes(), data) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if !bytes.Equal(wire.AppendBytes16(c.tbs(), c.Signature), data) {
			t.Fatal("fields do not re-encode to the input")
		}
		if c.Fingerprint() != sha256.Sum256(data) {
			t.Fatal("fingerprint is not the hash of the encoding")
		}
		if err := c.validate(); err != nil {
			t.Fatalf("parsed certificate is invalid: %v", err)
		}
		c2, err := ParseCertificate(c.Bytes())
		if err != nil || !bytes.Equal(c2.Bytes(), data) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

// FuzzParseRevocationList is the same property for revocation lists.
func FuzzParseRevocationList(f *testing.F) {
	fx := getFixture(f)
	enc := fx.crl.Bytes()
	f.Add(enc)
	f.Add(enc[:len(enc)-1])
	f.Add(enc[:len(enc)/2])
	f.Add(enc[:60])
	f.Add(append(bytes.Clone(enc), 0))
	serialOff, keyOff := crlCountOffsets(fx.crl)
	for _, off := range []int{serialOff, keyOff} {
		b := bytes.Clone(enc)
		binary.BigEndian.PutUint32(b[off:], 0xffffffff)
		f.Add(b)
	}
	f.Add([]byte(crlMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseScribbled(data, ParseRevocationList)
		if err != nil {
			if l != nil {
				t.Fatal("list returned with an error")
			}
			return
		}
		if !bytes.Equal(l.Bytes(), data) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if !bytes.Equal(wire.AppendBytes16(l.tbs(), l.Signature), data) {
			t.Fatal("fields do not re-encode to the input")
		}
		if err := l.validate(); err != nil {
			t.Fatalf("parsed list is invalid: %v", err)
		}
		for _, s := range l.Serials {
			if !l.RevokesSerial(s) {
				t.Fatal("listed serial not found")
			}
		}
		for _, k := range l.Keys {
			if !l.RevokesKey(k) {
				t.Fatal("listed key not found")
			}
		}
	})
}
