package meshca

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
)

func issueSVID(tb testing.TB, ca *CA, caX509 *x509.Certificate, node *Certificate) *x509.Certificate {
	tb.Helper()
	s, err := ca.IssueSVID(caX509, node)
	if err != nil {
		tb.Fatalf("IssueSVID: %v", err)
	}
	return s
}

// rawSVID signs a leaf for nodeKey's signing key with the given CA, from a template the test shapes.
func rawSVID(tb testing.TB, ca *CA, caX509 *x509.Certificate, nodeKey *identity.NodeKey, mutate func(*x509.Certificate)) *x509.Certificate {
	tb.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(4242),
		Subject:               pkix.Name{CommonName: "crafted"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: testTrustDomain, Path: "/node/crafted"}},
	}
	if mutate != nil {
		mutate(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caX509, nodeKey.Sign.MLDSA().PublicKey(), ca.key.MLDSA())
	if err != nil {
		tb.Fatalf("CreateCertificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("ParseCertificate: %v", err)
	}
	return c
}

func TestX509CACertificate(t *testing.T) {
	f := getFixture(t)
	x := f.caX509
	if !x.IsCA || !x.BasicConstraintsValid || x.MaxPathLen != 0 || !x.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA %v valid %v maxPathLen %d zero %v", x.IsCA, x.BasicConstraintsValid, x.MaxPathLen, x.MaxPathLenZero)
	}
	if x.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("key usage %b", x.KeyUsage)
	}
	if len(x.URIs) != 1 || x.URIs[0].String() != "spiffe://mesh.test" {
		t.Errorf("URIs %v", x.URIs)
	}
	if x.SignatureAlgorithm != x509.MLDSA65 || x.PublicKeyAlgorithm != x509.MLDSA {
		t.Errorf("algorithms %v / %v", x.SignatureAlgorithm, x.PublicKeyAlgorithm)
	}
	id := f.caKey.PublicKey().ID()
	if !bytes.Equal(x.SubjectKeyId, id[:20]) {
		t.Errorf("subject key ID %x, want %x", x.SubjectKeyId, id[:20])
	}
	if !x.NotBefore.Equal(f.ca.Certificate().NotBefore) || !x.NotAfter.Equal(f.ca.Certificate().NotAfter) {
		t.Errorf("validity %s..%s differs from the mesh CA", x.NotBefore, x.NotAfter)
	}
	if err := x.CheckSignatureFrom(x); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestIssueSVID(t *testing.T) {
	f := getFixture(t)
	svid := issueSVID(t, f.ca, f.caX509, f.node)
	if len(svid.URIs) != 1 || svid.URIs[0].String() != "spiffe://mesh.test/node/alpha" {
		t.Fatalf("URI SANs %v", svid.URIs)
	}
	if len(svid.DNSNames) != 0 || len(svid.IPAddresses) != 0 || len(svid.EmailAddresses) != 0 {
		t.Errorf("extra SANs: %v %v %v", svid.DNSNames, svid.IPAddresses, svid.EmailAddresses)
	}
	if svid.IsCA || !svid.BasicConstraintsValid {
		t.Errorf("IsCA %v, basic constraints valid %v", svid.IsCA, svid.BasicConstraintsValid)
	}
	if svid.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %b, want digitalSignature only", svid.KeyUsage)
	}
	if len(svid.ExtKeyUsage) != 2 || svid.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || svid.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU %v", svid.ExtKeyUsage)
	}
	if svid.SignatureAlgorithm != x509.MLDSA65 {
		t.Errorf("signature algorithm %v, want ML-DSA-65", svid.SignatureAlgorithm)
	}
	pub, ok := svid.PublicKey.(interface{ Bytes() []byte })
	if !ok || !bytes.Equal(pub.Bytes(), f.nodeKey.Sign.PublicKey().Bytes()) {
		t.Errorf("SVID key is not the node's signing key")
	}
	if !svid.NotBefore.Equal(f.node.NotBefore) || !svid.NotAfter.Equal(f.node.NotAfter) {
		t.Errorf("validity %s..%s, node certificate %s..%s", svid.NotBefore, svid.NotAfter, f.node.NotBefore, f.node.NotAfter)
	}
	if new(big.Int).SetBytes(f.node.Serial[:]).Cmp(svid.SerialNumber) != 0 {
		t.Errorf("serial %x differs from the node certificate's", svid.SerialNumber)
	}
	if !bytes.Equal(svid.RawIssuer, f.caX509.RawSubject) {
		t.Errorf("issuer is not the CA's subject")
	}
	id, err := VerifySVID(svid, nil, f.roots, f.now)
	if err != nil {
		t.Fatalf("VerifySVID: %v", err)
	}
	if id.String() != "spiffe://mesh.test/node/alpha" {
		t.Fatalf("VerifySVID ID %s", id)
	}

	// IssueSVID only for node certificates of this CA.
	if _, err := f.ca.IssueSVID(f.caX509, f.ca.Certificate()); err == nil {
		t.Error("SVID issued for a CA certificate")
	}
	foreign, err := f.otherCA.Issue(IssueRequest{Name: "alpha", PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ca.IssueSVID(f.caX509, foreign); err == nil {
		t.Error("SVID issued for another CA's certificate")
	}
}

func TestVerifySVIDRejects(t *testing.T) {
	f := getFixture(t)
	good := issueSVID(t, f.ca, f.caX509, f.node)
	foreign, err := f.otherCA.Issue(IssueRequest{Name: "alpha", PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	foreignSVID := issueSVID(t, f.otherCA, f.otherX509, foreign)

	var unknownAuthority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	cases := []struct {
		name  string
		leaf  *x509.Certificate
		inter []*x509.Certificate
		at    time.Time
		check func(error) bool
	}{
		{"another CA's leaf", foreignSVID, nil, f.now, func(err error) bool { return errors.As(err, &unknownAuthority) }},
		{"another CA's leaf, its CA as intermediate", foreignSVID, []*x509.Certificate{f.otherX509}, f.now,
			func(err error) bool { return errors.As(err, &unknownAuthority) }},
		{"expired", good, nil, good.NotAfter.Add(time.Second), func(err error) bool {
			return errors.As(err, &invalid) && invalid.Reason == x509.Expired
		}},
		{"not yet valid", good, nil, good.NotBefore.Add(-time.Second), func(err error) bool {
			return errors.As(err, &invalid) && invalid.Reason == x509.Expired
		}},
		{"CA certificate as leaf", f.caX509, nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"two URI SANs", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.URIs = append(c.URIs, &url.URL{Scheme: "spiffe", Host: testTrustDomain, Path: "/node/other"})
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"no URI SAN", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.URIs, c.DNSNames = nil, []string{"crafted.mesh.test"}
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"keyCertSign", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCertSign
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"cRLSign", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.KeyUsage |= x509.KeyUsageCRLSign
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"no digitalSignature", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyAgreement
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"IsCA leaf", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) { c.IsCA = true }), nil, f.now,
			func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"SPIFFE ID without path", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "spiffe", Host: testTrustDomain}}
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"not a SPIFFE URI", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "https", Host: testTrustDomain, Path: "/node/x"}}
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"uppercase trust domain", rawSVID(t, f.ca, f.caX509, f.nodeKey, func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "spiffe", Host: "MESH.test", Path: "/node/x"}}
		}), nil, f.now, func(err error) bool { return errors.Is(err, ErrNotSVID) }},
		{"signed by another CA's key under our CA's name", func() *x509.Certificate {
			// Our CA's subject and key ID, another key.
			forgedParent := *f.caX509
			forgedParent.PublicKey = f.otherKey.MLDSA().PublicKey()
			der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
				SerialNumber: big.NewInt(7), NotBefore: f.now.Add(-time.Hour), NotAfter: f.now.Add(time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
				URIs: []*url.URL{{Scheme: "spiffe", Host: testTrustDomain, Path: "/node/alpha"}},
			}, &forgedParent, f.nodeKey.Sign.MLDSA().PublicKey(), f.otherKey.MLDSA())
			if err != nil {
				t.Fatal(err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}(), nil, f.now, func(err error) bool { return errors.As(err, &unknownAuthority) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := VerifySVID(tc.leaf, tc.inter, f.roots, tc.at)
			if err == nil {
				t.Fatalf("accepted as %s", id)
			}
			if !tc.check(err) {
				t.Fatalf("wrong error: %v", err)
			}
		})
	}
	// Control: a leaf from the same template without the defect verifies.
	if _, err := VerifySVID(rawSVID(t, f.ca, f.caX509, f.nodeKey, nil), nil, f.roots, f.now); err != nil {
		t.Fatalf("control leaf: %v", err)
	}
	// The other CA's leaf verifies against its own roots.
	if _, err := VerifySVID(foreignSVID, nil, f.otherRoots, f.now); err != nil {
		t.Fatalf("foreign leaf with its own roots: %v", err)
	}
}

// --- TLS ---

type tlsPeer struct {
	svid *x509.Certificate
	key  *identity.NodeKey
}

func (p tlsPeer) cert() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{p.svid.Raw}, PrivateKey: p.key.Sign.MLDSA(), Leaf: p.svid}
}

type handshakeResult struct {
	conn  *tls.Conn
	state tls.ConnectionState
	err   error
}

// handshake runs a TLS handshake over a loopback TCP connection with the given configurations and
// returns both ends. TCP rather than net.Pipe because a side that refuses its peer after the peer
// has finished (TLS 1.3 clients finish first) must be able to write its alert without a reader.
// The deadline only keeps a broken handshake from hanging the test.
func handshake(tb testing.TB, client, server *tls.Config) (c, s handshakeResult) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		sc, err := ln.Accept()
		if err != nil {
			s.err = err
			return
		}
		tb.Cleanup(func() { sc.Close() })
		sc.SetDeadline(deadline)
		s.conn = tls.Server(sc, server)
		s.err = s.conn.Handshake()
		s.state = s.conn.ConnectionState()
	})
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	cc.SetDeadline(deadline)
	c.conn = tls.Client(cc, client)
	c.err = c.conn.Handshake()
	c.state = c.conn.ConnectionState()
	if c.err != nil {
		cc.Close()
	}
	wg.Wait()
	if s.conn == nil {
		tb.Fatalf("accept: %v", s.err)
	}
	return c, s
}

type tlsFixture struct {
	server, client, foreignClient tlsPeer
}

var (
	tlsOnce sync.Once
	tlsFx   *tlsFixture
	tlsErr  error
)

func getTLSFixture(tb testing.TB) (*fixture, *tlsFixture) {
	tb.Helper()
	f := getFixture(tb)
	tlsOnce.Do(func() {
		tlsFx, tlsErr = func() (*tlsFixture, error) {
			// The fixture's certificates were issued at f.now; TLS checks against the real clock,
			// which has moved on by at most the test run.
			srv, err := f.ca.IssueSVID(f.caX509, f.node)
			if err != nil {
				return nil, err
			}
			cli, err := f.ca.IssueSVID(f.caX509, f.node2)
			if err != nil {
				return nil, err
			}
			foreign, err := f.otherCA.Issue(IssueRequest{Name: "mallory", PublicKey: f.nodeKey2.Public(), Duration: time.Hour}, f.now)
			if err != nil {
				return nil, err
			}
			fsvid, err := f.otherCA.IssueSVID(f.otherX509, foreign)
			if err != nil {
				return nil, err
			}
			return &tlsFixture{
				server:        tlsPeer{srv, f.nodeKey},
				client:        tlsPeer{cli, f.nodeKey2},
				foreignClient: tlsPeer{fsvid, f.nodeKey2},
			}, nil
		}()
	})
	if tlsErr != nil {
		tb.Fatalf("TLS fixture: %v", tlsErr)
	}
	return f, tlsFx
}

func TestTLSMutualHandshake(t *testing.T) {
	f, tf := getTLSFixture(t)
	var mu sync.Mutex
	var serverSaw, clientSaw []string
	record := func(dst *[]string) Authorizer {
		return func(id identity.SPIFFEID) error {
			mu.Lock()
			defer mu.Unlock()
			*dst = append(*dst, id.String())
			return nil
		}
	}
	scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, record(&serverSaw))
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, record(&clientSaw))
	c, s := handshake(t, ccfg, scfg)
	if c.err != nil || s.err != nil {
		t.Fatalf("handshake: client %v, server %v", c.err, s.err)
	}
	for side, st := range map[string]tls.ConnectionState{"client": c.state, "server": s.state} {
		if !st.HandshakeComplete {
			t.Errorf("%s: handshake not complete", side)
		}
		if st.Version != tls.VersionTLS13 {
			t.Errorf("%s: version %#x, want TLS 1.3", side, st.Version)
		}
		if st.CurveID != tls.X25519MLKEM768 {
			t.Errorf("%s: key exchange %v, want X25519MLKEM768", side, st.CurveID)
		}
		if len(st.PeerCertificates) != 1 {
			t.Errorf("%s: %d peer certificates", side, len(st.PeerCertificates))
		}
	}
	if got := s.state.PeerCertificates[0].URIs[0].String(); got != "spiffe://mesh.test/node/beta" {
		t.Errorf("server sees client %s", got)
	}
	if got := c.state.PeerCertificates[0].URIs[0].String(); got != "spiffe://mesh.test/node/alpha" {
		t.Errorf("client sees server %s", got)
	}
	if fmt.Sprint(serverSaw) != "[spiffe://mesh.test/node/beta]" || fmt.Sprint(clientSaw) != "[spiffe://mesh.test/node/alpha]" {
		t.Errorf("authorizers saw server %v, client %v", serverSaw, clientSaw)
	}

	// Echo.
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		n, err := s.conn.Read(buf)
		if err == nil {
			_, err = s.conn.Write(bytes.ToUpper(buf[:n]))
		}
		if err != nil {
			t.Errorf("server echo: %v", err)
		}
	})
	if _, err := c.conn.Write([]byte("hello mesh")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c.conn, buf, len("hello mesh"))
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if string(buf[:n]) != "HELLO MESH" {
		t.Fatalf("echo %q", buf[:n])
	}
}

func TestTLSConfigShape(t *testing.T) {
	f, tf := getTLSFixture(t)
	cfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
	if cfg.MinVersion != tls.VersionTLS13 || cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions %#x..%#x", cfg.MinVersion, cfg.MaxVersion)
	}
	if len(cfg.CurvePreferences) != 1 || cfg.CurvePreferences[0] != tls.X25519MLKEM768 {
		t.Errorf("curves %v", cfg.CurvePreferences)
	}
	if cfg.ClientAuth != tls.RequireAnyClientCert || cfg.VerifyConnection == nil {
		t.Errorf("client auth %v, VerifyConnection set %v", cfg.ClientAuth, cfg.VerifyConnection != nil)
	}
	if err := cfg.VerifyConnection(tls.ConnectionState{}); !errors.Is(err, ErrNotSVID) {
		t.Errorf("no peer certificate: %v", err)
	}
}

func TestTLSClassicalKeyExchangeRefused(t *testing.T) {
	f, tf := getTLSFixture(t)
	scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
	ccfg.CurvePreferences = []tls.CurveID{tls.X25519}
	c, s := handshake(t, ccfg, scfg)
	if s.err == nil || c.err == nil {
		t.Fatalf("X25519-only client: client err %v, server err %v; want both to fail", c.err, s.err)
	}
	if s.state.HandshakeComplete || c.state.HandshakeComplete {
		t.Fatal("handshake completed")
	}
}

// refused checks that the server refused the client; the client may have finished its half of the
// TLS 1.3 handshake before the server's verdict, in which case its first read must fail.
func refused(t *testing.T, c, s handshakeResult) {
	t.Helper()
	if s.err == nil {
		t.Fatal("server accepted the client")
	}
	if c.err == nil {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("client could read from a server that refused it")
		}
	}
}

func TestTLSClientFromAnotherCARefused(t *testing.T) {
	f, tf := getTLSFixture(t)
	scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
	// The client trusts our CA, so only the server's check can stop it.
	ccfg := TLSConfig(tf.foreignClient.cert(), f.roots, testTrustDomain, nil)
	c, s := handshake(t, ccfg, scfg)
	refused(t, c, s)
	var unknown x509.UnknownAuthorityError
	if !errors.As(s.err, &unknown) {
		t.Fatalf("server error %v, want an unknown authority", s.err)
	}
}

func TestTLSServerFromAnotherCARefused(t *testing.T) {
	f, tf := getTLSFixture(t)
	scfg := TLSConfig(tf.foreignClient.cert(), f.otherRoots, testTrustDomain, nil)
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
	c, _ := handshake(t, ccfg, scfg)
	var unknown x509.UnknownAuthorityError
	if !errors.As(c.err, &unknown) {
		t.Fatalf("client error %v, want an unknown authority", c.err)
	}
}

func TestTLSAuthorizerDenies(t *testing.T) {
	f, tf := getTLSFixture(t)
	errDenied := errors.New("denied by policy")
	deny := func(who string) Authorizer {
		return func(id identity.SPIFFEID) error {
			if id.String() == who {
				return errDenied
			}
			return nil
		}
	}
	t.Run("server denies client", func(t *testing.T) {
		scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, deny("spiffe://mesh.test/node/beta"))
		ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
		c, s := handshake(t, ccfg, scfg)
		refused(t, c, s)
		if !errors.Is(s.err, errDenied) {
			t.Fatalf("server error %v, want the authorizer's", s.err)
		}
	})
	t.Run("client denies server", func(t *testing.T) {
		scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
		ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, deny("spiffe://mesh.test/node/alpha"))
		c, s := handshake(t, ccfg, scfg)
		if !errors.Is(c.err, errDenied) {
			t.Fatalf("client error %v, want the authorizer's", c.err)
		}
		if s.err == nil {
			t.Fatal("server completed a handshake the client refused")
		}
	})
	t.Run("other IDs pass", func(t *testing.T) {
		scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, deny("spiffe://mesh.test/node/gamma"))
		ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
		if c, s := handshake(t, ccfg, scfg); c.err != nil || s.err != nil {
			t.Fatalf("client %v, server %v", c.err, s.err)
		}
	})
}

func TestTLSTrustDomainMismatchRefused(t *testing.T) {
	f, tf := getTLSFixture(t)
	// The server expects peers of another trust domain, though it trusts the CA that issued them.
	scfg := TLSConfig(tf.server.cert(), f.roots, "other.test", nil)
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
	c, s := handshake(t, ccfg, scfg)
	refused(t, c, s)
}

func TestTLSClientWithoutCertificateRefused(t *testing.T) {
	f, tf := getTLSFixture(t)
	scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
	ccfg.Certificates = nil
	c, s := handshake(t, ccfg, scfg)
	refused(t, c, s)
}
