package meshca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/secfile"
)

// Files of a CA directory (docs/identity.md).
const (
	caKeyFile      = "ca.key"      // ML-DSA-65 seed, mode 0600
	caCertFile     = "ca.crt"      // mesh CA certificate
	caX509File     = "ca-x509.pem" // X.509 form of the CA, for TLS with X.509-SVIDs
	crlFile        = "crl.pem"     // current signed revocation list
	issuedDir      = "issued"      // every certificate issued, as <serial>.crt
	lockFile       = "lock"
	maxIssuedCerts = 1_000_000
)

// Store is a CA kept in a directory. Operations that change it hold an exclusive lock on the directory,
// so two commands running at once cannot sign two revocation lists with the same number.
type Store struct {
	dir  string
	ca   *CA
	x509 *x509.Certificate
}

// InitStore creates a new CA in dir, which must not exist or be empty.
func InitStore(dir string, opts CAOptions, now time.Time) (*Store, error) {
	// Everything is generated and validated before the directory is touched, so a bad option leaves
	// nothing behind.
	key, err := identity.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	ca, err := NewRootCA(key, opts, now)
	if err != nil {
		return nil, err
	}
	x, err := ca.X509CACertificate()
	if err != nil {
		return nil, err
	}
	crl, err := ca.SignRevocationList(nil, nil, nil, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read CA directory: %w", err)
	}
	if len(entries) != 0 {
		return nil, fmt.Errorf("CA directory %s is not empty; refusing to overwrite an existing CA", dir)
	}
	if err := os.Mkdir(filepath.Join(dir, issuedDir), 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	if err := identity.WriteCAKeyFile(filepath.Join(dir, caKeyFile), key, false); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{caCertFile, EncodeCertificatePEM(ca.cert)},
		{caX509File, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})},
		{crlFile, EncodeRevocationListPEM(crl)},
	} {
		if err := secfile.Write(filepath.Join(dir, f.name), f.data, 0o644, false); err != nil {
			return nil, err
		}
	}
	return &Store{dir: dir, ca: ca, x509: x}, nil
}

// OpenStore opens the CA in dir.
func OpenStore(dir string) (*Store, error) {
	key, err := identity.LoadCAKeyFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no CA in %s (run 'x0tta6bl4 ca init --dir %s' first): %w", dir, dir, err)
		}
		return nil, err
	}
	cert, err := LoadCertificateFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, err
	}
	ca, err := LoadCA(cert, key)
	if err != nil {
		return nil, err
	}
	x, err := LoadX509File(filepath.Join(dir, caX509File))
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir, ca: ca, x509: x}, nil
}

// CA returns the CA.
func (s *Store) CA() *CA { return s.ca }

// X509CA returns the X.509 form of the CA certificate.
func (s *Store) X509CA() *x509.Certificate { return s.x509 }

// CertificatePath is where the CA certificate lives, for distribution to nodes.
func (s *Store) CertificatePath() string { return filepath.Join(s.dir, caCertFile) }

// RevocationListPath is where the current revocation list lives.
func (s *Store) RevocationListPath() string { return filepath.Join(s.dir, crlFile) }

// RevocationList reads and verifies the current revocation list.
func (s *Store) RevocationList() (*RevocationList, error) {
	l, err := LoadRevocationListFile(s.RevocationListPath())
	if err != nil {
		return nil, err
	}
	if err := l.CheckSignature(s.ca.cert.SignPublicKey); err != nil {
		return nil, err
	}
	return l, nil
}

// Issue signs a node certificate and records it under issued/.
func (s *Store) Issue(req IssueRequest, now time.Time) (*Certificate, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := s.ca.Issue(req, now)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, issuedDir, c.Serial.String()+".crt")
	if err := secfile.Write(path, EncodeCertificatePEM(c), 0o644, false); err != nil {
		return nil, fmt.Errorf("record issued certificate: %w", err)
	}
	return c, nil
}

// Issued lists every certificate the CA has issued, oldest first.
func (s *Store) Issued() ([]*Certificate, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, issuedDir))
	if err != nil {
		return nil, fmt.Errorf("list issued certificates: %w", err)
	}
	if len(entries) > maxIssuedCerts {
		return nil, fmt.Errorf("%d issued certificates, more than %d", len(entries), maxIssuedCerts)
	}
	var out []*Certificate
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		c, err := LoadCertificateFile(filepath.Join(s.dir, issuedDir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Certificate) int { return a.NotBefore.Compare(b.NotBefore) })
	return out, nil
}

// StoreRevocationList replaces the stored list with l, a list this CA signed elsewhere (a control
// plane keeps the signed lists in its database and mirrors the newest here). It refuses a list
// with a bad signature and keeps the stored list if l is not newer.
func (s *Store) StoreRevocationList(l *RevocationList) error {
	if err := l.CheckSignature(s.ca.cert.SignPublicKey); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if cur, err := s.RevocationList(); err == nil && cur.Number >= l.Number {
		return nil
	}
	return secfile.Write(s.RevocationListPath(), EncodeRevocationListPEM(l), 0o644, true)
}

// Revoke adds serials and keys to the revocation list and signs its successor.
func (s *Store) Revoke(serials []Serial, keys []identity.KeyID, now time.Time) (*RevocationList, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, err := s.RevocationList()
	if err != nil {
		return nil, err
	}
	next, err := s.ca.SignRevocationList(prev, serials, keys, now)
	if err != nil {
		return nil, err
	}
	if err := secfile.Write(s.RevocationListPath(), EncodeRevocationListPEM(next), 0o644, true); err != nil {
		return nil, err
	}
	return next, nil
}

func (s *Store) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock CA directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock CA directory: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// LoadX509File reads one PEM "CERTIFICATE" block.
func LoadX509File(path string) (*x509.Certificate, error) {
	data, err := secfile.Read(path, 64<<10)
	if err != nil {
		return nil, err
	}
	body, err := identity.DecodePEM(data, "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := x509.ParseCertificate(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
