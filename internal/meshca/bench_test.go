package meshca

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

func BenchmarkIssue(b *testing.B) {
	f := getFixture(b)
	req := IssueRequest{Name: "bench", Groups: []string{"ops"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}
	for b.Loop() {
		if _, err := f.ca.Issue(req, f.now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCertificate(b *testing.B) {
	f := getFixture(b)
	enc := f.node.Bytes()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := ParseCertificate(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyUncached empties the signature cache before every call, so each Verify does the
// ML-DSA-65 verification.
func BenchmarkVerifyUncached(b *testing.B) {
	f := getFixture(b)
	v := newTestVerifier(b, f.ca.Certificate())
	for b.Loop() {
		v.mu.Lock()
		clear(v.verified)
		v.mu.Unlock()
		if err := v.Verify(f.node, f.now); err != nil {
			b.Fatal(err)
		}
	}
	if len(v.verified) != 1 {
		b.Fatal("cache not used as expected")
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	f := getFixture(b)
	v := newTestVerifier(b, f.ca.Certificate())
	if err := v.Verify(f.node, f.now); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := v.Verify(f.node, f.now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignRevocationList(b *testing.B) {
	f := getFixture(b)
	for b.Loop() {
		if _, err := f.ca.SignRevocationList(f.crl, []Serial{f.node.Serial}, nil, f.now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRevocationList(b *testing.B) {
	f := getFixture(b)
	enc := f.crl.Bytes()
	for b.Loop() {
		if _, err := ParseRevocationList(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTLSHandshakeSVID is a full mutual TLS 1.3 handshake with ML-DSA-65 SVIDs and
// X25519MLKEM768, over net.Pipe, including both sides' SVID chain verification.
func BenchmarkTLSHandshakeSVID(b *testing.B) {
	f, tf := getTLSFixture(b)
	scfg := TLSConfig(tf.server.cert(), f.roots, testTrustDomain, nil)
	ccfg := TLSConfig(tf.client.cert(), f.roots, testTrustDomain, nil)
	scfg.SessionTicketsDisabled = true // every iteration is a full handshake
	ccfg.SessionTicketsDisabled = true
	for b.Loop() {
		cc, sc := net.Pipe()
		var serr error
		var wg sync.WaitGroup
		wg.Go(func() { serr = tls.Server(sc, scfg).Handshake() })
		client := tls.Client(cc, ccfg)
		cerr := client.Handshake()
		wg.Wait()
		if cerr != nil || serr != nil {
			b.Fatalf("client %v, server %v", cerr, serr)
		}
		if client.ConnectionState().CurveID != tls.X25519MLKEM768 {
			b.Fatal("not X25519MLKEM768")
		}
		cc.Close()
		sc.Close()
	}
}
