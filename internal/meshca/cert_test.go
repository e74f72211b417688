package meshca

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

func keyBytes(k interface{ Bytes() []byte }) []byte {
	switch k := k.(type) {
	case *identity.KEMPublicKey:
		if k == nil {
			return nil
		}
	case *identity.VerifyKey:
		if k == nil {
			return nil
		}
	}
	return k.Bytes()
}

func assertSameCertificate(t *testing.T, want, got *Certificate) {
	t.Helper()
	switch {
	case got.Kind != want.Kind:
		t.Errorf("Kind = %v, want %v", got.Kind, want.Kind)
	case got.Serial != want.Serial:
		t.Errorf("Serial = %s, want %s", got.Serial, want.Serial)
	case !got.NotBefore.Equal(want.NotBefore):
		t.Errorf("NotBefore = %s, want %s", got.NotBefore, want.NotBefore)
	case !got.NotAfter.Equal(want.NotAfter):
		t.Errorf("NotAfter = %s, want %s", got.NotAfter, want.NotAfter)
	case got.Issuer != want.Issuer:
		t.Errorf("Issuer = %s, want %s", got.Issuer, want.Issuer)
	case got.TrustDomain != want.TrustDomain:
		t.Errorf("TrustDomain = %q, want %q", got.TrustDomain, want.TrustDomain)
	case got.Name != want.Name:
		t.Errorf("Name = %q, want %q", got.Name, want.Name)
	case !slices.Equal(got.Groups, want.Groups):
		t.Errorf("Groups = %q, want %q", got.Groups, want.Groups)
	case got.Overlay != want.Overlay:
		t.Errorf("Overlay = %s, want %s", got.Overlay, want.Overlay)
	case (got.KEMPublicKey == nil) != (want.KEMPublicKey == nil):
		t.Errorf("KEMPublicKey presence = %v, want %v", got.KEMPublicKey != nil, want.KEMPublicKey != nil)
	case !bytes.Equal(keyBytes(got.KEMPublicKey), keyBytes(want.KEMPublicKey)):
		t.Errorf("KEMPublicKey differs")
	case !bytes.Equal(keyBytes(got.SignPublicKey), keyBytes(want.SignPublicKey)):
		t.Errorf("SignPublicKey differs")
	case !bytes.Equal(got.Signature, want.Signature):
		t.Errorf("Signature differs")
	case !bytes.Equal(got.Bytes(), want.Bytes()):
		t.Errorf("encoding differs")
	}
}

func TestCertificateFieldsOfIssuedAndRoot(t *testing.T) {
	f := getFixture(t)
	caID := f.caKey.PublicKey().ID()

	n := f.node
	if n.Kind != KindNode || n.Name != "alpha" || n.TrustDomain != testTrustDomain || n.Issuer != caID {
		t.Fatalf("node certificate: kind %v name %q domain %q issuer %s", n.Kind, n.Name, n.TrustDomain, n.Issuer)
	}
	if !slices.Equal(n.Groups, []string{"ops", "web"}) {
		t.Errorf("groups %q, want [ops web] (sorted)", n.Groups)
	}
	if !n.InGroup("ops") || !n.InGroup("web") || n.InGroup("db") || n.InGroup("") {
		t.Errorf("InGroup wrong for %q", n.Groups)
	}
	if want := f.nodeKey.Public().OverlayAddress(); n.Overlay != want || !overlayInPrefix(n) {
		t.Errorf("overlay %s, want %s", n.Overlay, want)
	}
	if !n.NotBefore.Equal(f.now.Add(-Backdate)) || !n.NotAfter.Equal(f.now.Add(24*time.Hour)) {
		t.Errorf("validity %s..%s, want %s..%s", n.NotBefore, n.NotAfter, f.now.Add(-Backdate), f.now.Add(24*time.Hour))
	}
	if got := n.SPIFFEID().String(); got != "spiffe://mesh.test/node/alpha" {
		t.Errorf("node SPIFFE ID %s", got)
	}
	np := n.NodePublicKey()
	if np == nil || !bytes.Equal(np.KEM.Bytes(), f.nodeKey.KEM.PublicKey().Bytes()) || !bytes.Equal(np.Sign.Bytes(), f.nodeKey.Sign.PublicKey().Bytes()) {
		t.Errorf("NodePublicKey does not return the issued keys")
	}

	r := f.ca.Certificate()
	if r.Kind != KindCA || r.Issuer != caID || r.SignPublicKey.ID() != caID || r.KEMPublicKey != nil || r.Overlay.IsValid() {
		t.Fatalf("root certificate fields wrong: %+v", r)
	}
	if got := r.SPIFFEID().String(); got != "spiffe://mesh.test" {
		t.Errorf("CA SPIFFE ID %s", got)
	}
	if r.NodePublicKey() != nil {
		t.Errorf("CA NodePublicKey is not nil")
	}
	if err := r.CheckSignature(r.SignPublicKey); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if err := n.CheckSignature(f.caKey.PublicKey()); err != nil {
		t.Errorf("node CheckSignature: %v", err)
	}
	if err := n.CheckSignature(f.otherKey.PublicKey()); err == nil {
		t.Errorf("node CheckSignature accepted another CA's key")
	}
	if g := f.groupCA.Certificate().Groups; !slices.Equal(g, []string{"ops", "web"}) {
		t.Errorf("constrained CA groups %q, want normalised [ops web]", g)
	}
	if (&Certificate{}).CheckSignature(f.caKey.PublicKey()) == nil {
		t.Errorf("CheckSignature of an unsigned certificate succeeded")
	}
}

func overlayInPrefix(c *Certificate) bool { return identity.OverlayPrefix.Contains(c.Overlay) }

func TestCertificateRoundTrip(t *testing.T) {
	f := getFixture(t)
	for _, orig := range []*Certificate{f.node, f.node2, f.ca.Certificate(), f.groupCA.Certificate()} {
		t.Run(orig.Kind.String()+"-"+orig.Name, func(t *testing.T) {
			enc := orig.Bytes()
			if len(enc) == 0 || len(enc) > MaxCertificateSize {
				t.Fatalf("encoding is %d bytes", len(enc))
			}
			in := bytes.Clone(enc)
			c, err := ParseCertificate(in)
			if err != nil {
				t.Fatalf("ParseCertificate: %v", err)
			}
			assertSameCertificate(t, orig, c)
			if !bytes.Equal(c.Bytes(), enc) {
				t.Fatal("re-encoding differs from the input")
			}
			if !bytes.Equal(unsignedEncoding(c, c.Signature), enc) {
				t.Fatal("tbs || signature of the parsed certificate differs from the input")
			}
			if c.Fingerprint() != orig.Fingerprint() {
				t.Fatal("fingerprint changed in the round trip")
			}
			if c.NotBefore.Location() != time.UTC || c.NotAfter.Location() != time.UTC {
				t.Error("parsed times are not UTC")
			}
			// The parsed certificate must own its encoding.
			in[len(in)-1] ^= 0xff
			if !bytes.Equal(c.Bytes(), enc) {
				t.Fatal("parsed certificate aliases the caller's buffer")
			}

			p := EncodeCertificatePEM(orig)
			if !bytes.HasPrefix(p, []byte("-----BEGIN X0TTA6BL4 CERTIFICATE-----\n")) {
				t.Fatalf("PEM starts with %q", p[:40])
			}
			c2, err := DecodeCertificatePEM(p)
			if err != nil {
				t.Fatalf("DecodeCertificatePEM: %v", err)
			}
			assertSameCertificate(t, orig, c2)
		})
	}
}

func TestCertificatePEMRejects(t *testing.T) {
	f := getFixture(t)
	good := EncodeCertificatePEM(f.node)
	crlPEM := EncodeRevocationListPEM(f.crl)
	withHeader := bytes.Replace(good, []byte("CERTIFICATE-----\n"), []byte("CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n\n"), 1)
	cases := map[string][]byte{
		"empty":          nil,
		"no PEM":         f.node.Bytes(),
		"wrong type":     crlPEM,
		"headers":        withHeader,
		"two blocks":     append(bytes.Clone(good), good...),
		"trailing junk":  append(bytes.Clone(good), "junk"...),
		"X.509 type":     bytes.ReplaceAll(good, []byte("X0TTA6BL4 CERTIFICATE"), []byte("CERTIFICATE")),
		"damaged base64": bytes.Replace(good, []byte("\n"), []byte("\n!!!!\n"), 2),
	}
	for name, data := range cases {
		if _, err := DecodeCertificatePEM(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Trailing whitespace is harmless.
	if _, err := DecodeCertificatePEM(append(bytes.Clone(good), "\n\n  \n"...)); err != nil {
		t.Errorf("trailing whitespace refused: %v", err)
	}
	if _, err := DecodeRevocationListPEM(good); err == nil {
		t.Error("certificate PEM accepted as revocation list")
	}
}

// certLayout returns the offsets of the fields of an encoded certificate.
type certLayout struct {
	serial, issuer, kemKey, signKey, signature [2]int // [start, end) of the field's bytes
}

func layoutOf(c *Certificate) certLayout {
	var l certLayout
	off := 4 + 1 + 1
	l.serial = [2]int{off, off + serialSize}
	off += serialSize + 16
	l.issuer = [2]int{off, off + 32}
	off += 32 + 1 + len(c.TrustDomain) + 1 + len(c.Name) + 1
	for _, g := range c.Groups {
		off += 1 + len(g)
	}
	off += 16 + 2
	l.kemKey = [2]int{off, off + identity.KEMPublicKeySize}
	off += identity.KEMPublicKeySize + 2
	l.signKey = [2]int{off, off + identity.SigningPublicKeySize}
	off += identity.SigningPublicKeySize + 2
	l.signature = [2]int{off, off + identity.SignatureSize}
	return l
}

func in(i int, r [2]int) bool { return i >= r[0] && i < r[1] }

// TestTamperCertificateEveryByte flips one bit of every byte of an issued certificate: the result must
// fail to parse or fail verification, never be accepted. The verifier has the genuine certificate in
// its signature cache throughout, which must not hide a change.
func TestTamperCertificateEveryByte(t *testing.T) {
	f := getFixture(t)
	orig := f.node
	enc := orig.Bytes()
	lay := layoutOf(orig)
	if lay.signature[1] != len(enc) {
		t.Fatalf("layout computed %d bytes, encoding has %d", lay.signature[1], len(enc))
	}
	v := newTestVerifier(t, f.ca.Certificate())
	if err := v.Verify(orig, f.now); err != nil {
		t.Fatalf("genuine certificate: %v", err)
	}
	origFP := orig.Fingerprint()
	if _, ok := v.verified[origFP]; !ok || len(v.verified) != 1 {
		t.Fatalf("genuine certificate not cached (cache has %d entries)", len(v.verified))
	}

	buf := make([]byte, len(enc))
	var parseFailed, verifyFailed int
	for i := range enc {
		copy(buf, enc)
		bit := byte(1) << (i % 8)
		buf[i] ^= bit
		c, err := ParseCertificate(buf)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("byte %d: parse error does not wrap ErrMalformed: %v", i, err)
			}
			if in(i, lay.serial) || in(i, lay.issuer) || in(i, lay.signature) {
				t.Fatalf("byte %d: a flip in a free-form field should still parse: %v", i, err)
			}
			parseFailed++
			continue
		}
		if c.Fingerprint() == origFP {
			t.Fatalf("byte %d: tampered certificate has the genuine fingerprint", i)
		}
		err = v.Verify(c, f.now)
		if err == nil {
			t.Fatalf("byte %d bit %#02x: tampered certificate ACCEPTED", i, bit)
		}
		switch {
		case in(i, lay.issuer):
			if !errors.Is(err, ErrUnknownIssuer) {
				t.Fatalf("byte %d (issuer): %v, want ErrUnknownIssuer", i, err)
			}
		case in(i, lay.serial), in(i, lay.signature):
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("byte %d: %v, want ErrBadSignature", i, err)
			}
		}
		verifyFailed++
	}
	if len(v.verified) != 1 {
		t.Fatalf("cache holds %d entries after tampering, want only the genuine certificate", len(v.verified))
	}
	if err := v.Verify(orig, f.now); err != nil {
		t.Fatalf("genuine certificate after the run: %v", err)
	}
	// The key fields are covered by the overlay address check at parse time; the signature and serial
	// by the signature check. Both paths must have been taken many times.
	if verifyFailed < identity.SignatureSize || parseFailed < identity.KEMPublicKeySize {
		t.Fatalf("only %d verify failures and %d parse failures; the test did not exercise both paths", verifyFailed, parseFailed)
	}
	t.Logf("%d bytes: %d refused at parse, %d refused by Verify", len(enc), parseFailed, verifyFailed)
}

func TestParseCertificateTruncatedAtEveryLength(t *testing.T) {
	f := getFixture(t)
	for _, c := range []*Certificate{f.node, f.ca.Certificate()} {
		enc := c.Bytes()
		for n := range len(enc) {
			if _, err := ParseCertificate(enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s truncated to %d of %d bytes: err = %v", c.Name, n, len(enc), err)
			}
		}
		if _, err := ParseCertificate(enc); err != nil {
			t.Fatalf("%s full length: %v", c.Name, err)
		}
	}
}

func TestParseCertificateNonCanonical(t *testing.T) {
	f := getFixture(t)
	sig := f.node.Signature
	variant := func(mutate func(c *Certificate)) []byte {
		c := *f.node
		c.Groups = slices.Clone(c.Groups)
		mutate(&c)
		return unsignedEncoding(&c, sig)
	}
	// Control: the unmodified variant is exactly the genuine encoding, so each case below differs
	// from an accepted encoding only in what it names.
	if !bytes.Equal(variant(func(*Certificate) {}), f.node.Bytes()) {
		t.Fatal("control variant differs from the genuine encoding")
	}
	enc := f.node.Bytes()
	set := func(off int, v byte) []byte { b := bytes.Clone(enc); b[off] = v; return b }
	manyGroups := make([]string, MaxGroups+1)
	for i := range manyGroups {
		manyGroups[i] = fmt.Sprintf("g%02d", i)
	}

	cases := []struct {
		name string
		data []byte
		want string // substring of the error
	}{
		{"wrong magic", append([]byte("X6CU"), enc[4:]...), "magic"},
		{"X.509 DER", []byte{0x30, 0x82, 0x01, 0x00}, "magic"},
		{"version 0", set(4, 0), "version"},
		{"version 2", set(4, 2), "version"},
		{"kind 0", set(5, 0), "kind"},
		{"kind 3", set(5, 3), "kind"},
		{"kind CA with node keys", set(5, byte(KindCA)), "CA certificate must not carry"},
		{"trailing byte", append(bytes.Clone(enc), 0), "trailing"},
		{"trailing signature", append(bytes.Clone(enc), wire.AppendBytes16(nil, sig)...), "trailing"},
		{"unsorted groups", variant(func(c *Certificate) { c.Groups = []string{"web", "ops"} }), "sorted"},
		{"duplicate groups", variant(func(c *Certificate) { c.Groups = []string{"ops", "ops"} }), "sorted"},
		{"empty group", variant(func(c *Certificate) { c.Groups = []string{"", "ops"} }), "group"},
		{"group with slash", variant(func(c *Certificate) { c.Groups = []string{"a/b"} }), "group"},
		{"too many groups", variant(func(c *Certificate) { c.Groups = manyGroups }), "groups"},
		{"uppercase name", variant(func(c *Certificate) { c.Name = "Alpha" }), "node name"},
		{"empty name", variant(func(c *Certificate) { c.Name = "" }), "node name"},
		{"bad trust domain", variant(func(c *Certificate) { c.TrustDomain = "Mesh.Test" }), "trust domain"},
		{"overlay of other keys", variant(func(c *Certificate) { c.Overlay = f.node2.Overlay }), "overlay"},
		{"zero overlay", variant(func(c *Certificate) { c.Overlay = netip.Addr{} }), "overlay"},
		{"node without KEM key", variant(func(c *Certificate) { c.KEMPublicKey = nil }), "KEM"},
		{"empty validity", variant(func(c *Certificate) { c.NotAfter = c.NotBefore }), "validity"},
		{"inverted validity", variant(func(c *Certificate) { c.NotAfter = c.NotBefore.Add(-time.Second) }), "validity"},
		{"short signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), sig[1:]), "signature"},
		{"long signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), append(bytes.Clone(sig), 0)), "signature"},
		{"empty", nil, "magic"},
		{"header only", enc[:6], "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCertificate(tc.data)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseCertificateCAWithOverlayOrKEM(t *testing.T) {
	f := getFixture(t)
	root := f.ca.Certificate()
	pub := f.nodeKey.Public()
	for name, mutate := range map[string]func(c *Certificate){
		"overlay": func(c *Certificate) { c.Overlay = pub.OverlayAddress() },
		"KEM key": func(c *Certificate) { c.KEMPublicKey = pub.KEM },
	} {
		c := *root
		mutate(&c)
		if _, err := ParseCertificate(unsignedEncoding(&c, root.Signature)); !errors.Is(err, ErrMalformed) {
			t.Errorf("CA with %s: err = %v", name, err)
		}
		if err := c.sign(f.caKey); err == nil {
			t.Errorf("sign accepted a CA certificate with %s", name)
		}
	}
}

func TestSignRefusesInvalidCertificates(t *testing.T) {
	f := getFixture(t)
	for name, mutate := range map[string]func(c *Certificate){
		"unsorted groups":  func(c *Certificate) { c.Groups = []string{"web", "ops"} },
		"duplicate groups": func(c *Certificate) { c.Groups = []string{"ops", "ops"} },
		"wrong overlay":    func(c *Certificate) { c.Overlay = f.node2.Overlay },
		"no sign key":      func(c *Certificate) { c.SignPublicKey = nil },
		"kind 7":           func(c *Certificate) { c.Kind = 7 },
	} {
		c := *f.node
		mutate(&c)
		if err := c.sign(f.caKey); err == nil {
			t.Errorf("%s: sign succeeded", name)
		}
	}
}

func TestParseCertificateOversized(t *testing.T) {
	f := getFixture(t)
	enc := f.node.Bytes()
	big := make([]byte, MaxCertificateSize+1)
	copy(big, enc)
	_, err := ParseCertificate(big)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized: err = %v", err)
	}
	// At the limit the size check passes and the trailing bytes are what is refused.
	_, err = ParseCertificate(big[:MaxCertificateSize])
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
		t.Fatalf("at limit: err = %v", err)
	}
}

func TestParseSerial(t *testing.T) {
	f := getFixture(t)
	s, err := ParseSerial(f.node.Serial.String())
	if err != nil || s != f.node.Serial {
		t.Fatalf("ParseSerial round trip: %v %v", s, err)
	}
	for _, bad := range []string{"", "00", f.node.Serial.String() + "00", f.node.Serial.String()[:31] + "g", "zz" + f.node.Serial.String()[2:]} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
	if f.node.Serial == f.node2.Serial {
		t.Error("two issued certificates share a serial")
	}
}

func TestKindString(t *testing.T) {
	if KindCA.String() != "ca" || KindNode.String() != "node" || Kind(9).String() != "kind(9)" {
		t.Fatalf("Kind.String: %s %s %s", KindCA, KindNode, Kind(9))
	}
}

func TestNormalizeGroups(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, []string{}},
		{[]string{"", "  "}, []string{}},
		{[]string{"web", " ops", "web ", "ops", ""}, []string{"ops", "web"}},
		{[]string{"b", "a", "c", "a"}, []string{"a", "b", "c"}},
	} {
		if got := NormalizeGroups(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("NormalizeGroups(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
