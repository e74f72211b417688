package demo

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// pki walks through the identity layer, for real and on this machine only: a CA, certified nodes
// with post-quantum keys, tamper and revocation checks, and a mutual TLS 1.3 connection on 127.0.0.1
// authenticated with ML-DSA-65 X.509-SVIDs over the X25519MLKEM768 key exchange.
func pki(e *env, work string) error {
	w := e.stdout
	step := func(format string, a ...any) { fmt.Fprintf(w, "\n== "+format+"\n", a...) }

	step("1. a mesh certificate authority (ML-DSA-65)")
	start := time.Now()
	store, err := meshca.InitStore(filepath.Join(work, "ca"), meshca.CAOptions{
		TrustDomain: "demo.x0tta6bl4.mesh", Name: "demo-root", Groups: []string{"edge", "ops", "relay"}, Duration: 24 * time.Hour,
	}, e.now())
	if err != nil {
		return err
	}
	caCert := store.CA().Certificate()
	fmt.Fprintf(w, "   %s may grant groups %s; key id %s…  (%.1f ms)\n",
		caCert.SPIFFEID(), strings.Join(caCert.Groups, ", "), caCert.SignPublicKey.ID().String()[:16], ms(time.Since(start)))

	step("2. nodes generate hybrid ML-KEM-768+X25519 and ML-DSA-65 keys; the CA certifies them")
	type node struct {
		name   string
		groups []string
		key    *identity.NodeKey
		cert   *meshca.Certificate
	}
	nodes := []*node{{name: "alpha", groups: []string{"ops", "relay"}}, {name: "beta", groups: []string{"edge"}}, {name: "gamma", groups: []string{"edge", "relay"}}}
	for _, n := range nodes {
		t0 := time.Now()
		if n.key, err = identity.GenerateNodeKey(); err != nil {
			return err
		}
		keygen := time.Since(t0)
		t1 := time.Now()
		n.cert, err = store.Issue(meshca.IssueRequest{Name: n.name, Groups: n.groups, PublicKey: n.key.Public(), Duration: time.Hour}, e.now())
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "   %-6s %-40s %-40s %5d B cert  keygen %.2f ms, issue %.2f ms\n",
			n.name, n.cert.SPIFFEID(), n.cert.Overlay, len(n.cert.Bytes()), ms(keygen), ms(time.Since(t1)))
	}
	_, err = store.Issue(meshca.IssueRequest{Name: "mallory", Groups: []string{"admin"}, PublicKey: nodes[0].key.Public(), Duration: time.Hour}, e.now())
	fmt.Fprintf(w, "   a request for group \"admin\" is refused: %v\n", err)
	if !errors.Is(err, meshca.ErrGroupNotAllowed) {
		return fmt.Errorf("demo: CA constraint not enforced (got %v)", err)
	}

	step("3. every node verifies the others against the CA")
	verifier, err := meshca.NewVerifier(caCert)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		t0 := time.Now()
		if err := verifier.Verify(n.cert, e.now()); err != nil {
			return fmt.Errorf("demo: %s: %w", n.name, err)
		}
		first := time.Since(t0)
		t1 := time.Now()
		if err := verifier.Verify(n.cert, e.now()); err != nil {
			return err
		}
		fmt.Fprintf(w, "   %-6s ok  (%.3f ms, %.4f ms with the signature cached)\n", n.name, ms(first), ms(time.Since(t1)))
	}
	tampered := append([]byte(nil), nodes[2].cert.Bytes()...)
	tampered[100] ^= 1 // inside the signed fields
	if c, perr := meshca.ParseCertificate(tampered); perr != nil {
		fmt.Fprintf(w, "   one flipped bit in gamma's certificate: %v\n", perr)
	} else if verr := verifier.Verify(c, e.now()); verr != nil {
		fmt.Fprintf(w, "   one flipped bit in gamma's certificate: %v\n", verr)
	} else {
		return errors.New("demo: a tampered certificate was accepted")
	}

	step("4. post-quantum mutual TLS 1.3 between alpha and beta with X.509-SVIDs")
	if err := demoTLS(e, store, nodes[0].key, nodes[0].cert, nodes[1].key, nodes[1].cert); err != nil {
		return err
	}

	step("5. revoke beta; its certificate is refused, and an old revocation list cannot be replayed")
	oldCRL, err := store.RevocationList()
	if err != nil {
		return err
	}
	crl, err := store.Revoke([]meshca.Serial{nodes[1].cert.Serial}, nil, e.now())
	if err != nil {
		return err
	}
	if _, err := verifier.UpdateCRL(crl); err != nil {
		return err
	}
	err = verifier.Verify(nodes[1].cert, e.now())
	fmt.Fprintf(w, "   revocation list %d (%d B): beta -> %v\n", crl.Number, len(crl.Bytes()), err)
	if !errors.Is(err, meshca.ErrRevoked) {
		return errors.New("demo: revoked certificate accepted")
	}
	_, err = verifier.UpdateCRL(oldCRL)
	fmt.Fprintf(w, "   replaying revocation list %d: %v\n", oldCRL.Number, err)
	if !errors.Is(err, meshca.ErrCRLRollback) {
		return errors.New("demo: revocation list rollback accepted")
	}
	fmt.Fprintf(w, "   alpha and gamma still verify: %v, %v\n", verifier.Verify(nodes[0].cert, e.now()), verifier.Verify(nodes[2].cert, e.now()))

	return nil
}

func demoTLS(e *env, store *meshca.Store, serverKey *identity.NodeKey, serverCert *meshca.Certificate,
	clientKey *identity.NodeKey, clientCert *meshca.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(store.X509CA())
	td := store.CA().Certificate().TrustDomain
	tlsCert := func(k *identity.NodeKey, c *meshca.Certificate) (tls.Certificate, error) {
		svid, err := store.CA().IssueSVID(store.X509CA(), c)
		if err != nil {
			return tls.Certificate{}, err
		}
		return tls.Certificate{Certificate: [][]byte{svid.Raw}, PrivateKey: k.Sign.MLDSA(), Leaf: svid}, nil
	}
	sc, err := tlsCert(serverKey, serverCert)
	if err != nil {
		return err
	}
	cc, err := tlsCert(clientKey, clientCert)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", meshca.TLSConfig(sc, roots, td, nil))
	if err != nil {
		return err
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			serverErr <- err
			return
		}
		peer := conn.(*tls.Conn).ConnectionState().PeerCertificates[0].URIs[0]
		_, err = fmt.Fprintf(conn, "hello %s, you said %q\n", peer, line[:len(line)-1])
		serverErr <- err
	}()
	t0 := time.Now()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), meshca.TLSConfig(cc, roots, td, nil))
	if err != nil {
		return fmt.Errorf("demo TLS: %w", err)
	}
	defer conn.Close()
	handshake := time.Since(t0)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(conn, "ping"); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if err := <-serverErr; err != nil {
		return fmt.Errorf("demo TLS server: %w", err)
	}
	cs := conn.ConnectionState()
	fmt.Fprintf(e.stdout, "   %s, key exchange %s, certificates %s, handshake %.2f ms on %s\n",
		tls.VersionName(cs.Version), cs.CurveID, cs.PeerCertificates[0].SignatureAlgorithm, ms(handshake), ln.Addr())
	fmt.Fprintf(e.stdout, "   server -> client: %s", reply)
	if cs.CurveID != tls.X25519MLKEM768 {
		return fmt.Errorf("demo TLS: negotiated %s, not X25519MLKEM768", cs.CurveID)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
