package meshca

import (
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

const testTrustDomain = "mesh.test"

// fixture is the ML-DSA material shared by the tests and benchmarks of this package. Keys and
// signatures cost about a millisecond each, so they are made once and never modified; tests that
// need to change something copy it first.
type fixture struct {
	now time.Time // the time everything below was made at, to the second

	caKey  *identity.SigningKey
	ca     *CA // unconstrained root of testTrustDomain
	caX509 *x509.Certificate
	roots  *x509.CertPool

	groupCA *CA // root of testTrustDomain that may grant only {ops, web}

	otherKey   *identity.SigningKey
	otherCA    *CA // another root of the same trust domain, with its own key
	otherX509  *x509.Certificate
	otherRoots *x509.CertPool

	nodeKey  *identity.NodeKey
	nodeKey2 *identity.NodeKey
	node     *Certificate // "alpha" in {ops, web}, issued by ca for 24h
	node2    *Certificate // "beta", no groups, issued by ca for 24h
	crl      *RevocationList
}

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
)

func getFixture(tb testing.TB) *fixture {
	tb.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = newFixture() })
	if fixtureErr != nil {
		tb.Fatalf("fixture: %v", fixtureErr)
	}
	return fixtureVal
}

func newFixture() (*fixture, error) {
	f := &fixture{now: time.Now().UTC().Truncate(time.Second)}
	var err error
	if f.caKey, err = identity.GenerateSigningKey(); err != nil {
		return nil, err
	}
	if f.ca, err = NewRootCA(f.caKey, CAOptions{TrustDomain: testTrustDomain, Name: "root", Duration: 365 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	if f.caX509, err = f.ca.X509CACertificate(); err != nil {
		return nil, err
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.caX509)

	gk, err := identity.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	if f.groupCA, err = NewRootCA(gk, CAOptions{TrustDomain: testTrustDomain, Name: "ops-ca", Groups: []string{"web", "ops", "web"}, Duration: 365 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}

	if f.otherKey, err = identity.GenerateSigningKey(); err != nil {
		return nil, err
	}
	if f.otherCA, err = NewRootCA(f.otherKey, CAOptions{TrustDomain: testTrustDomain, Name: "other", Duration: 365 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	if f.otherX509, err = f.otherCA.X509CACertificate(); err != nil {
		return nil, err
	}
	f.otherRoots = x509.NewCertPool()
	f.otherRoots.AddCert(f.otherX509)

	if f.nodeKey, err = identity.GenerateNodeKey(); err != nil {
		return nil, err
	}
	if f.nodeKey2, err = identity.GenerateNodeKey(); err != nil {
		return nil, err
	}
	if f.node, err = f.ca.Issue(IssueRequest{Name: "alpha", Groups: []string{"web", "ops"}, PublicKey: f.nodeKey.Public(), Duration: 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	if f.node2, err = f.ca.Issue(IssueRequest{Name: "beta", PublicKey: f.nodeKey2.Public(), Duration: 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	var s1, s2 Serial
	s1[0], s2[0] = 0x11, 0xee
	if f.crl, err = f.ca.SignRevocationList(nil, []Serial{s2, s1, s2}, []identity.KeyID{{0x55}, {0x22}}, f.now); err != nil {
		return nil, err
	}
	return f, nil
}

// craftNode returns a node certificate for nodeKey with the given fields, signed by key without the
// CA's issuing rules (but with the encoding rules, which sign enforces).
func (f *fixture) craftNode(tb testing.TB, key *identity.SigningKey, mutate func(c *Certificate)) *Certificate {
	tb.Helper()
	pub := f.nodeKey.Public()
	c := &Certificate{
		Kind:          KindNode,
		Serial:        Serial{0xc0, 0xff, 0xee},
		NotBefore:     f.now.Add(-time.Minute),
		NotAfter:      f.now.Add(time.Hour),
		Issuer:        f.caKey.PublicKey().ID(),
		TrustDomain:   testTrustDomain,
		Name:          "crafted",
		Overlay:       pub.OverlayAddress(),
		KEMPublicKey:  pub.KEM,
		SignPublicKey: pub.Sign,
	}
	if mutate != nil {
		mutate(c)
	}
	if err := c.sign(key); err != nil {
		tb.Fatalf("sign crafted certificate: %v", err)
	}
	return c
}

// unsignedEncoding returns c's to-be-signed bytes followed by a signature field holding sig, without
// validating c: it lets tests build encodings that sign would refuse.
func unsignedEncoding(c *Certificate, sig []byte) []byte {
	return wire.AppendBytes16(c.tbs(), sig)
}

func newTestVerifier(tb testing.TB, roots ...*Certificate) *Verifier {
	tb.Helper()
	v, err := NewVerifier(roots...)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v
}
