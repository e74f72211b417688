package meshca

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
)

func TestVerifyAcceptsIssued(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	for _, c := range []*Certificate{f.node, f.node2} {
		if err := v.Verify(c, f.now); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if _, ok := v.verified[c.Fingerprint()]; !ok {
			t.Fatalf("%s: signature not cached after a successful Verify", c.Name)
		}
		// Cached path.
		if err := v.Verify(c, f.now); err != nil {
			t.Fatalf("%s (cached): %v", c.Name, err)
		}
	}
	// A parsed copy is a different object with the same fingerprint: it hits the cache.
	p, err := ParseCertificate(f.node.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(p, f.now); err != nil {
		t.Fatalf("parsed copy: %v", err)
	}
	if len(v.verified) != 2 {
		t.Fatalf("cache has %d entries, want 2", len(v.verified))
	}
}

func TestVerifyValidityWindow(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	c := f.node
	for _, tc := range []struct {
		name string
		at   time.Time
		want error
	}{
		{"at not-before", c.NotBefore, nil},
		{"one second before not-after", c.NotAfter.Add(-time.Second), nil},
		{"one second before not-before", c.NotBefore.Add(-time.Second), ErrNotYetValid},
		{"long before", c.NotBefore.Add(-400 * 24 * time.Hour), ErrNotYetValid},
		{"at not-after", c.NotAfter, ErrExpired},
		{"after not-after", c.NotAfter.Add(time.Hour), ErrExpired},
		{"after the CA expired", f.ca.Certificate().NotAfter.Add(time.Hour), ErrExpired},
	} {
		// Twice: once with an empty cache entry, once cached; the window is checked every time.
		for range 2 {
			err := v.Verify(c, tc.at)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		}
	}
}

func TestVerifyCAWindow(t *testing.T) {
	f := getFixture(t)
	root := f.ca.Certificate()
	v := newTestVerifier(t, root)
	// A certificate that outlives its CA on both ends; Issue would refuse it, so craft it.
	c := f.craftNode(t, f.caKey, func(c *Certificate) {
		c.NotBefore = root.NotBefore.Add(-48 * time.Hour)
		c.NotAfter = root.NotAfter.Add(48 * time.Hour)
	})
	if err := v.Verify(c, f.now); err != nil {
		t.Fatalf("inside both windows: %v", err)
	}
	err := v.Verify(c, root.NotAfter.Add(time.Hour))
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), `CA "root"`) {
		t.Errorf("CA expired: err = %v, want ErrExpired naming the CA", err)
	}
	err = v.Verify(c, root.NotAfter)
	if !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), "CA") {
		t.Errorf("at CA not-after: err = %v", err)
	}
	err = v.Verify(c, root.NotBefore.Add(-time.Second))
	if !errors.Is(err, ErrNotYetValid) || !strings.Contains(err.Error(), `CA "root"`) {
		t.Errorf("CA not yet valid: err = %v", err)
	}
}

func TestVerifyUnknownIssuer(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	foreign, err := f.otherCA.Issue(IssueRequest{Name: "alpha", Groups: []string{"ops"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(foreign, f.now); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("certificate of another CA: err = %v, want ErrUnknownIssuer", err)
	}
	// Trusting both CAs accepts both.
	both := newTestVerifier(t, f.ca.Certificate(), f.otherCA.Certificate())
	for _, c := range []*Certificate{foreign, f.node} {
		if err := both.Verify(c, f.now); err != nil {
			t.Fatalf("two roots, %s: %v", c.Name, err)
		}
	}
}

func TestVerifyForgedIssuer(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	// Names the trusted CA as issuer but is signed with another key.
	forged := f.craftNode(t, f.otherKey, nil)
	err := v.Verify(forged, f.now)
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged issuer: err = %v, want ErrBadSignature", err)
	}
	if _, ok := v.verified[forged.Fingerprint()]; ok || len(v.verified) != 0 {
		t.Fatal("a failed signature was cached")
	}
	// The same fields signed by the right key pass, so only the signature was at fault.
	if err := v.Verify(f.craftNode(t, f.caKey, nil), f.now); err != nil {
		t.Fatalf("genuine crafted certificate: %v", err)
	}
	// Still refused after the genuine one is cached.
	if err := v.Verify(forged, f.now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged issuer, second try: err = %v", err)
	}
}

func TestVerifyGroupConstraint(t *testing.T) {
	f := getFixture(t)
	gca := f.groupCA
	v := newTestVerifier(t, gca.Certificate())

	_, err := gca.Issue(IssueRequest{Name: "db1", Groups: []string{"ops", "db"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if !errors.Is(err, ErrGroupNotAllowed) || !strings.Contains(err.Error(), `"db"`) {
		t.Fatalf("Issue with group db: err = %v, want ErrGroupNotAllowed naming db", err)
	}
	ok, err := gca.Issue(IssueRequest{Name: "web1", Groups: []string{"web"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatalf("Issue within the constraint: %v", err)
	}
	if err := v.Verify(ok, f.now); err != nil {
		t.Fatalf("Verify within the constraint: %v", err)
	}
	none, err := gca.Issue(IssueRequest{Name: "web2", PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatalf("Issue with no groups: %v", err)
	}
	if err := v.Verify(none, f.now); err != nil {
		t.Fatalf("Verify with no groups: %v", err)
	}

	// A certificate the constrained CA signed anyway (bypassing Issue) must still be refused.
	gkey := gca.key
	crafted := f.craftNode(t, gkey, func(c *Certificate) {
		c.Issuer = gca.Certificate().SignPublicKey.ID()
		c.Groups = []string{"db", "ops"}
	})
	if err := crafted.CheckSignature(gca.Certificate().SignPublicKey); err != nil {
		t.Fatalf("crafted certificate is not validly signed: %v", err)
	}
	if err := v.Verify(crafted, f.now); !errors.Is(err, ErrGroupNotAllowed) {
		t.Fatalf("crafted group db: err = %v, want ErrGroupNotAllowed", err)
	}
}

func TestVerifyTrustDomainMismatch(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	c := f.craftNode(t, f.caKey, func(c *Certificate) { c.TrustDomain = "evil.test" })
	if err := v.Verify(c, f.now); !errors.Is(err, ErrWrongDomain) {
		t.Fatalf("err = %v, want ErrWrongDomain", err)
	}
}

func TestVerifyNotNode(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	for _, c := range []*Certificate{f.ca.Certificate(), f.otherCA.Certificate(), {Kind: 0}, {Kind: 3}} {
		if err := v.Verify(c, f.now); !errors.Is(err, ErrNotNode) {
			t.Errorf("kind %v: err = %v, want ErrNotNode", c.Kind, err)
		}
	}
}

func TestNewVerifierRejects(t *testing.T) {
	f := getFixture(t)
	if _, err := NewVerifier(); err == nil {
		t.Error("no roots accepted")
	}
	if _, err := NewVerifier(f.node); err == nil {
		t.Error("node certificate accepted as root")
	}
	// A CA certificate signed by another CA is not a root.
	sub := &Certificate{
		Kind: KindCA, Serial: Serial{1}, NotBefore: f.now, NotAfter: f.now.Add(time.Hour),
		Issuer: f.caKey.PublicKey().ID(), TrustDomain: testTrustDomain, Name: "sub",
		SignPublicKey: f.otherKey.PublicKey(),
	}
	if err := sub.sign(f.caKey); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(sub); err == nil || !strings.Contains(err.Error(), "self-signed") {
		t.Errorf("intermediate accepted as root: %v", err)
	}
	// A root whose self-signature is broken.
	enc := f.ca.Certificate().Bytes()
	bad := append([]byte(nil), enc...)
	bad[len(bad)-100] ^= 1
	broken, err := ParseCertificate(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(broken); err == nil {
		t.Error("root with a broken signature accepted")
	}
	// One bad root spoils the set.
	if _, err := NewVerifier(f.ca.Certificate(), broken); err == nil {
		t.Error("set with a broken root accepted")
	}
}

func TestVerifyCacheBounded(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	for i := range maxCachedSignatures {
		var fp Fingerprint
		fp[0], fp[1], fp[31] = byte(i), byte(i>>8), 0xaa
		v.verified[fp] = struct{}{}
	}
	if err := v.Verify(f.node, f.now); err != nil {
		t.Fatal(err)
	}
	if len(v.verified) != 1 {
		t.Fatalf("full cache not emptied: %d entries", len(v.verified))
	}
}

// --- revocation ---

func TestRevocationListRoundTrip(t *testing.T) {
	f := getFixture(t)
	l := f.crl
	if l.Number != 1 || l.Issuer != f.caKey.PublicKey().ID() || l.TrustDomain != testTrustDomain || !l.IssuedAt.Equal(f.now) {
		t.Fatalf("list fields: number %d issuer %s domain %q at %s", l.Number, l.Issuer, l.TrustDomain, l.IssuedAt)
	}
	if len(l.Serials) != 2 || l.Serials[0][0] != 0x11 || l.Serials[1][0] != 0xee {
		t.Fatalf("serials not sorted and de-duplicated: %v", l.Serials)
	}
	if len(l.Keys) != 2 || l.Keys[0][0] != 0x22 || l.Keys[1][0] != 0x55 {
		t.Fatalf("keys not sorted: %v", l.Keys)
	}
	p, err := ParseRevocationList(l.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if p.Number != l.Number || p.Issuer != l.Issuer || p.TrustDomain != l.TrustDomain || !p.IssuedAt.Equal(l.IssuedAt) ||
		len(p.Serials) != 2 || p.Serials[0] != l.Serials[0] || p.Serials[1] != l.Serials[1] ||
		len(p.Keys) != 2 || p.Keys[0] != l.Keys[0] || p.Keys[1] != l.Keys[1] || string(p.Signature) != string(l.Signature) {
		t.Fatal("parsed list differs")
	}
	if string(p.Bytes()) != string(l.Bytes()) {
		t.Fatal("re-encoding differs")
	}
	if err := p.CheckSignature(f.caKey.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckSignature(f.otherKey.PublicKey()); err == nil {
		t.Fatal("list verified with another CA's key")
	}
	q, err := DecodeRevocationListPEM(EncodeRevocationListPEM(l))
	if err != nil || string(q.Bytes()) != string(l.Bytes()) {
		t.Fatalf("PEM round trip: %v", err)
	}
	if !p.RevokesSerial(Serial{0xee}) || p.RevokesSerial(Serial{0xef}) || !p.RevokesKey(identity.KeyID{0x22}) || p.RevokesKey(identity.KeyID{0x23}) {
		t.Fatal("Revokes* lookups wrong")
	}
	var nilList *RevocationList
	if nilList.Revokes(f.node) {
		t.Fatal("nil list revokes")
	}
	if (&RevocationList{}).CheckSignature(f.caKey.PublicKey()) == nil {
		t.Fatal("unsigned list passed CheckSignature")
	}
}

func TestSignRevocationListSuccession(t *testing.T) {
	f := getFixture(t)
	var s3 Serial
	s3[0] = 0x33
	l2, err := f.ca.SignRevocationList(f.crl, []Serial{s3, f.crl.Serials[0]}, []identity.KeyID{f.crl.Keys[0]}, f.now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if l2.Number != 2 || len(l2.Serials) != 3 || len(l2.Keys) != 2 || !l2.RevokesSerial(s3) || !l2.RevokesSerial(f.crl.Serials[1]) {
		t.Fatalf("successor: number %d, %d serials, %d keys", l2.Number, len(l2.Serials), len(l2.Keys))
	}
	if len(f.crl.Serials) != 2 {
		t.Fatal("SignRevocationList modified its predecessor")
	}
	if _, err := f.otherCA.SignRevocationList(f.crl, nil, nil, f.now); err == nil {
		t.Fatal("successor of another CA's list signed")
	}
}

func TestVerifyRevoked(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	bySerial, err := f.ca.SignRevocationList(nil, []Serial{f.node.Serial}, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := v.UpdateCRL(bySerial); !changed || err != nil {
		t.Fatalf("UpdateCRL: %v %v", changed, err)
	}
	if v.CRL(f.caKey.PublicKey().ID()) != bySerial {
		t.Fatal("CRL() does not return the installed list")
	}
	if err := v.Verify(f.node, f.now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked serial: err = %v", err)
	}
	if err := v.Verify(f.node2, f.now); err != nil {
		t.Fatalf("unrevoked certificate: %v", err)
	}

	// Revoking node2's key revokes every certificate for that key, including a new one.
	byKey, err := f.ca.SignRevocationList(bySerial, nil, []identity.KeyID{f.nodeKey2.Sign.PublicKey().ID()}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateCRL(byKey); err != nil {
		t.Fatal(err)
	}
	reissued, err := f.ca.Issue(IssueRequest{Name: "beta", PublicKey: f.nodeKey2.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Certificate{f.node, f.node2, reissued} {
		if err := v.Verify(c, f.now); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s %s: err = %v, want ErrRevoked", c.Name, c.Serial, err)
		}
	}

	// A list applies only to its own CA's certificates: the other CA's certificate for the
	// revoked key, with the revoked serial, is fine.
	both := newTestVerifier(t, f.ca.Certificate(), f.otherCA.Certificate())
	if _, err := both.UpdateCRL(byKey); err != nil {
		t.Fatal(err)
	}
	foreign := f.craftNode(t, f.otherKey, func(c *Certificate) {
		c.Issuer = f.otherKey.PublicKey().ID()
		c.Serial = f.node.Serial
		pub := f.nodeKey2.Public()
		c.KEMPublicKey, c.SignPublicKey, c.Overlay = pub.KEM, pub.Sign, pub.OverlayAddress()
	})
	if err := both.Verify(foreign, f.now); err != nil {
		t.Fatalf("other CA's certificate affected by this CA's list: %v", err)
	}
}

func TestUpdateCRLRefusesForeignLists(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	foreign, err := f.otherCA.SignRevocationList(nil, []Serial{f.node.Serial}, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateCRL(foreign); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("list of another CA: err = %v, want ErrUnknownIssuer", err)
	}
	// Names our CA but is signed by another key.
	forged := &RevocationList{Issuer: f.caKey.PublicKey().ID(), TrustDomain: testTrustDomain, Number: 99, IssuedAt: f.now, Serials: []Serial{f.node.Serial}}
	if err := forged.sign(f.otherKey); err != nil {
		t.Fatal(err)
	}
	if changed, err := v.UpdateCRL(forged); err == nil || changed {
		t.Fatal("forged list accepted")
	}
	// Signed by our CA but for another trust domain.
	wrongDomain := &RevocationList{Issuer: f.caKey.PublicKey().ID(), TrustDomain: "evil.test", Number: 5, IssuedAt: f.now}
	if err := wrongDomain.sign(f.caKey); err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateCRL(wrongDomain); !errors.Is(err, ErrWrongDomain) {
		t.Fatalf("list for another domain: err = %v, want ErrWrongDomain", err)
	}
	if v.CRL(f.caKey.PublicKey().ID()) != nil {
		t.Fatal("a refused list was installed")
	}
	if err := v.Verify(f.node, f.now); err != nil {
		t.Fatalf("node revoked by a refused list: %v", err)
	}
}

func TestUpdateCRLRollback(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	l1 := f.crl
	l2, err := f.ca.SignRevocationList(l1, []Serial{f.node.Serial}, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := v.UpdateCRL(l2); !changed || err != nil {
		t.Fatalf("install list 2: %v %v", changed, err)
	}
	if changed, err := v.UpdateCRL(l1); !errors.Is(err, ErrCRLRollback) || changed {
		t.Fatalf("list 1 after 2: changed %v err %v, want ErrCRLRollback", changed, err)
	}
	// Same list again (also as a parsed copy): accepted, nothing changes.
	p, err := ParseRevocationList(l2.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*RevocationList{l2, p} {
		if changed, err := v.UpdateCRL(l); changed || err != nil {
			t.Fatalf("same list again: changed %v err %v", changed, err)
		}
	}
	// A different list that reuses number 2.
	l2b, err := f.ca.SignRevocationList(l1, []Serial{f.node2.Serial}, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if l2b.Number != 2 {
		t.Fatalf("l2b number %d", l2b.Number)
	}
	if changed, err := v.UpdateCRL(l2b); err == nil || changed {
		t.Fatal("different list with the held number accepted")
	}
	if v.CRL(l2.Issuer) != l2 {
		t.Fatal("held list replaced")
	}
	if err := v.Verify(f.node, f.now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("node after refused updates: %v", err)
	}
	if err := v.Verify(f.node2, f.now); err != nil {
		t.Fatalf("node2 revoked by a refused list: %v", err)
	}
	// Moving forward works.
	l3, err := f.ca.SignRevocationList(l2, nil, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := v.UpdateCRL(l3); !changed || err != nil {
		t.Fatalf("list 3: %v %v", changed, err)
	}
}

// TestTamperRevocationListEveryByte flips one bit of every byte of a signed list: parsing or
// UpdateCRL must refuse it.
func TestTamperRevocationListEveryByte(t *testing.T) {
	f := getFixture(t)
	enc := f.crl.Bytes()
	v := newTestVerifier(t, f.ca.Certificate())
	buf := make([]byte, len(enc))
	var parseFailed, updateFailed int
	for i := range enc {
		copy(buf, enc)
		buf[i] ^= 1 << (i % 8)
		l, err := ParseRevocationList(buf)
		if err != nil {
			if !errors.Is(err, ErrMalformedCRL) {
				t.Fatalf("byte %d: error does not wrap ErrMalformedCRL: %v", i, err)
			}
			parseFailed++
			continue
		}
		if changed, err := v.UpdateCRL(l); err == nil || changed {
			t.Fatalf("byte %d: tampered revocation list ACCEPTED (changed=%v)", i, changed)
		}
		updateFailed++
	}
	if v.CRL(f.crl.Issuer) != nil {
		t.Fatal("a tampered list was installed")
	}
	if changed, err := v.UpdateCRL(f.crl); !changed || err != nil {
		t.Fatalf("genuine list: %v %v", changed, err)
	}
	if updateFailed < identity.SignatureSize {
		t.Fatalf("only %d lists reached UpdateCRL", updateFailed)
	}
	t.Logf("%d bytes: %d refused at parse, %d refused by UpdateCRL", len(enc), parseFailed, updateFailed)
}

func TestVerifierConcurrentUse(t *testing.T) {
	f := getFixture(t)
	v := newTestVerifier(t, f.ca.Certificate())
	l2, err := f.ca.SignRevocationList(f.crl, []Serial{f.node2.Serial}, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 4 {
		wg.Go(func() {
			for range 20 {
				if err := v.Verify(f.node, f.now); err != nil {
					errs <- err
					return
				}
				if i == 0 {
					if _, err := v.UpdateCRL(f.crl); err != nil && !errors.Is(err, ErrCRLRollback) {
						errs <- err
						return
					}
					if _, err := v.UpdateCRL(l2); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v.CRL(l2.Issuer).Number != 2 {
		t.Fatal("final list is not number 2")
	}
}

func TestVerifyRefusesEditedFields(t *testing.T) {
	f := getFixture(t)
	v, err := NewVerifier(f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	now := f.now.Add(time.Minute)
	edits := map[string]func(c *Certificate){
		"groups":    func(c *Certificate) { c.Groups = []string{"admin", "ops", "web"} },
		"not after": func(c *Certificate) { c.NotAfter = c.NotAfter.Add(1000 * time.Hour) },
		"name":      func(c *Certificate) { c.Name = "other" },
	}
	for name, edit := range edits {
		c, err := ParseCertificate(f.node.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(c, now); err != nil {
			t.Fatalf("unedited: %v", err)
		}
		edit(c)
		if err := v.Verify(c, now); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s edited after parsing: got %v, want ErrBadSignature", name, err)
		}
	}
}
