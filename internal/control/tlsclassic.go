package control

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"x0tta6bl4/internal/secfile"
)

// The classical certificate serves clients that cannot verify ML-DSA-65 (browsers, curl and
// Prometheus on OpenSSL 3.0 or Go's x509): an ECDSA P-256 leaf issued by a classical CA that
// `control init` creates in the data directory, or an operator's own certificate and key
// (tls.classical_cert_file, tls.classical_key_file). The leaf's key is kept, so its public-key
// pin (printed by `control init`) survives restarts and re-issues.
const (
	classicCAKeyFile   = "console-ca.key"
	classicCACertFile  = "console-ca.pem"
	classicLeafKeyFile = "console-tls.key"
	classicCALife      = 10 * 365 * 24 * time.Hour
)

// ClassicalPins identify the classical certificate for clients that pin it.
type ClassicalPins struct {
	// CACertFile is the classical CA's certificate (PEM), for curl --cacert or Prometheus ca_file;
	// empty with an operator-supplied certificate.
	CACertFile string
	// CAFingerprint is the SHA-256 of the classical CA certificate (hex).
	CAFingerprint string
	// SPKIPin is the SHA-256 of the leaf's public key, base64: curl --pinnedpubkey sha256//<pin>,
	// Chromium --ignore-certificate-errors-spki-list=<pin>.
	SPKIPin string
}

// initClassical creates the classical CA and leaf key in dataDir unless they exist, and returns
// their pins.
func initClassical(dataDir string, now time.Time) (*ClassicalPins, error) {
	caKeyPath := filepath.Join(dataDir, classicCAKeyFile)
	caCertPath := filepath.Join(dataDir, classicCACertFile)
	if _, err := os.Stat(caCertPath); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		serial, err := randomSerial()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial, Subject: pkix.Name{CommonName: "x0tta6bl4 control plane console CA"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(classicCALife),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
			MaxPathLen: 0, MaxPathLenZero: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			return nil, err
		}
		// The certificate marks a finished CA: a key left by an interrupted init is replaced.
		if err := writeECKey(caKeyPath, key, true); err != nil {
			return nil, err
		}
		if err := secfile.Write(caCertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, false); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	leafPath := filepath.Join(dataDir, classicLeafKeyFile)
	if _, err := os.Stat(leafPath); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := writeECKey(leafPath, key, false); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	ca, _, leafKey, err := loadClassicalCA(dataDir)
	if err != nil {
		return nil, err
	}
	return classicalPins(caCertPath, ca, leafKey.Public())
}

func classicalPins(caPath string, ca *x509.Certificate, leafPub crypto.PublicKey) (*ClassicalPins, error) {
	spki, err := x509.MarshalPKIXPublicKey(leafPub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki)
	p := &ClassicalPins{CACertFile: caPath, SPKIPin: base64.StdEncoding.EncodeToString(sum[:])}
	if ca != nil {
		fp := sha256.Sum256(ca.Raw)
		p.CAFingerprint = hex.EncodeToString(fp[:])
	}
	return p, nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writeECKey(path string, key *ecdsa.PrivateKey, overwrite bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return secfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, overwrite)
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s block", path, typ)
	}
	return blk.Bytes, nil
}

func readECKey(path string) (*ecdsa.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not an ECDSA P-256 key", path)
	}
	return ec, nil
}

// loadClassicalCA reads the classical CA made by initClassical and the leaf key.
func loadClassicalCA(dataDir string) (*x509.Certificate, *ecdsa.PrivateKey, *ecdsa.PrivateKey, error) {
	der, err := readPEM(filepath.Join(dataDir, classicCACertFile), "CERTIFICATE")
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	caKey, err := readECKey(filepath.Join(dataDir, classicCAKeyFile))
	if err != nil {
		return nil, nil, nil, err
	}
	leafKey, err := readECKey(filepath.Join(dataDir, classicLeafKeyFile))
	if err != nil {
		return nil, nil, nil, err
	}
	return ca, caKey, leafKey, nil
}

// classicalIssuer re-issues the classical leaf from the CA in the data directory.
type classicalIssuer struct {
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey
	names   []string
}

func (ci *classicalIssuer) issue(now time.Time, life time.Duration) (*tls.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "x0tta6bl4 control plane"},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range ci.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ci.ca, ci.leafKey.Public(), ci.caKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ci.ca.Raw}, PrivateKey: ci.leafKey, Leaf: leaf}, nil
}

// loadOperatorCertificate reads an operator's classical certificate chain and key; the key must be
// ECDSA P-256 or Ed25519.
func loadOperatorCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("control: tls.classical_cert_file: %w", err)
	}
	switch k := c.PrivateKey.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("control: tls.classical_key_file: ECDSA keys must be P-256")
		}
	case ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("control: tls.classical_key_file: %T; want ECDSA P-256 or Ed25519", c.PrivateKey)
	}
	return &c, nil
}

// classicalNames are the names the issued classical leaf carries: tls.hostnames, or loopback and
// the listen address's host.
func classicalNames(cfg Config) []string {
	if len(cfg.TLS.Hostnames) > 0 {
		return cfg.TLS.Hostnames
	}
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" && h != "127.0.0.1" && h != "::1" && h != "localhost" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			names = append(names, h)
		}
	}
	return names
}
