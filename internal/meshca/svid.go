package meshca

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"x0tta6bl4/internal/identity"
)

// X.509-SVIDs follow the SPIFFE X.509-SVID specification: the CA certificate carries the trust domain's
// SPIFFE ID and may sign; a leaf carries exactly one URI SAN (the node's SPIFFE ID), is not a CA, has a
// critical key usage of digitalSignature only, and is good for both TLS server and client auth.
// Keys and signatures are ML-DSA-65, so a TLS 1.3 handshake with them is post-quantum end to end when
// the key exchange is X25519MLKEM768.

// X509CACertificate creates the self-signed X.509 form of the CA, with the CA's key and validity.
func (ca *CA) X509CACertificate() (*x509.Certificate, error) {
	serial, err := x509Serial()
	if err != nil {
		return nil, err
	}
	keyID := ca.cert.SignPublicKey.ID()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"x0tta6bl4"}, CommonName: ca.cert.Name + " (" + ca.cert.TrustDomain + ")"},
		NotBefore:             ca.cert.NotBefore,
		NotAfter:              ca.cert.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{spiffeURL(ca.cert.SPIFFEID())},
		SubjectKeyId:          keyID[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.key.MLDSA().PublicKey(), ca.key.MLDSA())
	if err != nil {
		return nil, fmt.Errorf("create X.509 CA certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// IssueSVID creates an X.509-SVID for a node certificate this CA issued: same SPIFFE ID, same ML-DSA
// key, same validity window. caX509 is the CA's X.509 certificate (X509CACertificate).
func (ca *CA) IssueSVID(caX509 *x509.Certificate, node *Certificate) (*x509.Certificate, error) {
	if node.Kind != KindNode || node.Issuer != ca.cert.SignPublicKey.ID() {
		return nil, errors.New("issue SVID: not a node certificate of this CA")
	}
	serial := new(big.Int).SetBytes(node.Serial[:])
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"x0tta6bl4"}, CommonName: node.Name},
		NotBefore:             node.NotBefore,
		NotAfter:              node.NotAfter,
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{spiffeURL(node.SPIFFEID())},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caX509, node.SignPublicKey.MLDSA(), ca.key.MLDSA())
	if err != nil {
		return nil, fmt.Errorf("issue SVID: %w", err)
	}
	return x509.ParseCertificate(der)
}

func spiffeURL(id identity.SPIFFEID) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: id.Path}
}

func x509Serial() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return new(big.Int).SetBytes(b[:]), nil
}

// ErrNotSVID reports a certificate that breaks the X.509-SVID rules.
var ErrNotSVID = errors.New("not a valid X.509-SVID")

// VerifySVID verifies a leaf and its intermediates against roots at time now, checks the X.509-SVID
// leaf rules, and returns the leaf's SPIFFE ID.
func VerifySVID(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) (identity.SPIFFEID, error) {
	if err := checkSVIDLeaf(leaf); err != nil {
		return identity.SPIFFEID{}, err
	}
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return identity.SPIFFEID{}, fmt.Errorf("X.509-SVID chain: %w", err)
	}
	id, err := identity.ParseSPIFFEID(leaf.URIs[0].String())
	if err != nil {
		return identity.SPIFFEID{}, fmt.Errorf("%w: %w", ErrNotSVID, err)
	}
	return id, nil
}

func checkSVIDLeaf(c *x509.Certificate) error {
	switch {
	case len(c.URIs) != 1:
		return fmt.Errorf("%w: %d URI SANs, want exactly 1", ErrNotSVID, len(c.URIs))
	case c.IsCA:
		return fmt.Errorf("%w: leaf is a CA", ErrNotSVID)
	case c.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return fmt.Errorf("%w: key usage lacks digitalSignature", ErrNotSVID)
	case c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return fmt.Errorf("%w: leaf may sign certificates or CRLs", ErrNotSVID)
	}
	id, err := identity.ParseSPIFFEID(c.URIs[0].String())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotSVID, err)
	}
	if id.Path == "" {
		return fmt.Errorf("%w: leaf SPIFFE ID %s has no path", ErrNotSVID, id)
	}
	return nil
}

// Authorizer decides whether a verified peer SPIFFE ID may connect; nil allows any ID of the trust domain.
type Authorizer func(peer identity.SPIFFEID) error

// TLSConfig returns a TLS 1.3-only configuration for mutual authentication with X.509-SVIDs: it
// presents cert, requires the peer's SVID, verifies it against roots with the SVID rules, and
// offers only the X25519MLKEM768 hybrid key exchange, so a peer that cannot do post-quantum key
// exchange fails the handshake instead of falling back. Use it for both clients and servers.
func TLSConfig(cert tls.Certificate, roots *x509.CertPool, trustDomain string, authorize Authorizer) *tls.Config {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: peer sent no certificate", ErrNotSVID)
		}
		id, err := VerifySVID(cs.PeerCertificates[0], cs.PeerCertificates[1:], roots, time.Now())
		if err != nil {
			return err
		}
		if id.TrustDomain != trustDomain {
			return fmt.Errorf("peer %s is outside trust domain %s", id, trustDomain)
		}
		if authorize != nil {
			return authorize(id)
		}
		return nil
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		ClientAuth:       tls.RequireAnyClientCert,
		// Chain and SVID checks happen in VerifyConnection for both roles, with the SPIFFE rules
		// instead of host names.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
	}
}
