package meshca

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
)

var storeOpts = CAOptions{TrustDomain: testTrustDomain, Name: "store-root", Groups: []string{"ops", "web"}, Duration: 30 * 24 * time.Hour}

func newStore(t *testing.T) (*Store, string, time.Time) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now().UTC().Truncate(time.Second)
	s, err := InitStore(dir, storeOpts, now)
	if err != nil {
		t.Fatalf("InitStore: %v", err)
	}
	return s, dir, now
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode()
}

func TestInitStoreLayout(t *testing.T) {
	s, dir, now := newStore(t)
	for name, want := range map[string]os.FileMode{
		"ca.key":      0o600,
		"ca.crt":      0o644,
		"ca-x509.pem": 0o644,
		"crl.pem":     0o644,
		"issued":      os.ModeDir | 0o700,
	} {
		if got := fileMode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("CA directory holds %q, want exactly the five CA files", names)
	}

	cert, err := LoadCertificateFile(s.CertificatePath())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.Bytes(), s.CA().Certificate().Bytes()) || cert.Name != "store-root" || !slices.Equal(cert.Groups, []string{"ops", "web"}) {
		t.Fatal("ca.crt does not hold the CA certificate")
	}
	key, err := identity.LoadCAKeyFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if key.PublicKey().ID() != cert.SignPublicKey.ID() {
		t.Fatal("ca.key does not match ca.crt")
	}
	l, err := s.RevocationList()
	if err != nil {
		t.Fatal(err)
	}
	if l.Number != 1 || len(l.Serials) != 0 || len(l.Keys) != 0 || !l.IssuedAt.Equal(now) {
		t.Fatalf("initial list: number %d, %d serials, %d keys", l.Number, len(l.Serials), len(l.Keys))
	}
	x := s.X509CA()
	if !x.IsCA || len(x.URIs) != 1 || x.URIs[0].String() != "spiffe://mesh.test" || x.PublicKey == nil {
		t.Fatalf("X.509 CA: IsCA %v URIs %v", x.IsCA, x.URIs)
	}
	if !x.NotAfter.Equal(cert.NotAfter) || !x.NotBefore.Equal(cert.NotBefore) {
		t.Fatalf("X.509 CA validity %s..%s, mesh CA %s..%s", x.NotBefore, x.NotAfter, cert.NotBefore, cert.NotAfter)
	}
	if err := x.CheckSignatureFrom(x); err != nil {
		t.Fatalf("X.509 CA not self-signed: %v", err)
	}
}

func TestInitStoreRefusesNonEmptyDir(t *testing.T) {
	_, dir, now := newStore(t)
	keyBefore, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := InitStore(dir, storeOpts, now); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second InitStore: err = %v", err)
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil || !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("existing CA key changed")
	}

	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := InitStore(other, storeOpts, now); err == nil {
		t.Fatal("InitStore into a directory with a stray file succeeded")
	}
	// An existing empty directory is fine.
	if _, err := InitStore(t.TempDir(), storeOpts, now); err != nil {
		t.Fatalf("InitStore into an empty directory: %v", err)
	}
}

// A refused init (bad options) must not leave anything behind that blocks a corrected retry.
func TestInitStoreFailureLeavesDirUsable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	bad := storeOpts
	bad.Duration = 0
	if _, err := InitStore(dir, bad, now); err == nil {
		t.Fatal("InitStore with zero duration succeeded")
	}
	bad = storeOpts
	bad.TrustDomain = "Bad Domain"
	if _, err := InitStore(dir, bad, now); err == nil {
		t.Fatal("InitStore with a bad trust domain succeeded")
	}
	if _, err := InitStore(dir, storeOpts, now); err != nil {
		t.Fatalf("InitStore after a refused attempt: %v", err)
	}
}

func TestOpenStoreRoundTrip(t *testing.T) {
	s, dir, now := newStore(t)
	o, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.CA().Certificate().Bytes(), s.CA().Certificate().Bytes()) {
		t.Fatal("reopened CA certificate differs")
	}
	if !bytes.Equal(o.X509CA().Raw, s.X509CA().Raw) {
		t.Fatal("reopened X.509 CA differs")
	}
	// The reopened store signs with the same key.
	nk, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.Issue(IssueRequest{Name: "n1", Groups: []string{"ops"}, PublicKey: nk.Public(), Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, s.CA().Certificate())
	if err := v.Verify(c, now); err != nil {
		t.Fatalf("certificate from the reopened store: %v", err)
	}
	if _, err := o.Issue(IssueRequest{Name: "n2", Groups: []string{"db"}, PublicKey: nk.Public(), Duration: time.Hour}, now); err == nil {
		t.Fatal("reopened store lost its group constraint")
	}
}

func TestOpenStoreErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := OpenStore(missing)
	if err == nil || !strings.Contains(err.Error(), "ca init") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing dir: err = %v", err)
	}

	_, dir, _ := newStore(t)
	keyPath := filepath.Join(dir, "ca.key")
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("ca.key with mode 0644: err = %v", err)
	}
	if err := os.Chmod(keyPath, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err != nil {
		t.Fatalf("after chmod 600: %v", err)
	}

	// A CA certificate that does not belong to the key.
	f := getFixture(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), EncodeCertificatePEM(f.ca.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir); err == nil {
		t.Fatal("CA certificate of another key accepted")
	}
}

func TestStoreIssueAndIssued(t *testing.T) {
	s, dir, now := newStore(t)
	if got, err := s.Issued(); err != nil || len(got) != 0 {
		t.Fatalf("fresh store Issued: %d, %v", len(got), err)
	}
	var issued []*Certificate
	for i, name := range []string{"n1", "n2", "n3"} {
		nk, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Issue(IssueRequest{Name: name, PublicKey: nk.Public(), Duration: time.Hour}, now.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, c)
		path := filepath.Join(dir, "issued", c.Serial.String()+".crt")
		if got := fileMode(t, path); got != 0o644 {
			t.Errorf("%s: mode %v", path, got)
		}
		onDisk, err := LoadCertificateFile(path)
		if err != nil || !bytes.Equal(onDisk.Bytes(), c.Bytes()) {
			t.Fatalf("recorded certificate differs: %v", err)
		}
	}
	// A refused request records nothing.
	if _, err := s.Issue(IssueRequest{Name: "Bad", PublicKey: issued[0].NodePublicKey(), Duration: time.Hour}, now); err == nil {
		t.Fatal("bad name accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "issued", "README"), []byte("ignored"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := s.Issued()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(issued) {
		t.Fatalf("Issued lists %d certificates, want %d", len(got), len(issued))
	}
	for i := range got {
		if !bytes.Equal(got[i].Bytes(), issued[i].Bytes()) {
			t.Fatalf("Issued()[%d] is %s, want %s (oldest first)", i, got[i].Name, issued[i].Name)
		}
	}
	// A damaged record is reported, not skipped.
	if err := os.WriteFile(filepath.Join(dir, "issued", "broken.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Issued(); err == nil {
		t.Fatal("Issued ignored a damaged record")
	}
}

func TestStoreRevoke(t *testing.T) {
	s, dir, now := newStore(t)
	var a, b, c Serial
	a[0], b[0], c[0] = 0xaa, 0xbb, 0xcc
	key := identity.KeyID{0x42}
	steps := []struct {
		serials []Serial
		keys    []identity.KeyID
	}{{[]Serial{b}, nil}, {[]Serial{a}, []identity.KeyID{key}}, {[]Serial{c, b}, nil}, {nil, nil}}
	for i, st := range steps {
		l, err := s.Revoke(st.serials, st.keys, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if want := uint64(i + 2); l.Number != want {
			t.Fatalf("step %d: number %d, want %d", i, l.Number, want)
		}
		onDisk, err := s.RevocationList()
		if err != nil || !bytes.Equal(onDisk.Bytes(), l.Bytes()) {
			t.Fatalf("step %d: crl.pem does not hold the new list: %v", i, err)
		}
	}
	l, err := s.RevocationList()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Serials, []Serial{a, b, c}) || !slices.Equal(l.Keys, []identity.KeyID{key}) {
		t.Fatalf("final list: serials %v keys %v", l.Serials, l.Keys)
	}
	if got := fileMode(t, filepath.Join(dir, "crl.pem")); got != 0o644 {
		t.Errorf("crl.pem mode %v", got)
	}
	// A verifier accepts the store's lists in order.
	v := newTestVerifier(t, s.CA().Certificate())
	if changed, err := v.UpdateCRL(l); !changed || err != nil {
		t.Fatalf("UpdateCRL: %v %v", changed, err)
	}

	// A list on disk signed by another CA is refused, not extended.
	f := getFixture(t)
	if err := os.WriteFile(s.RevocationListPath(), EncodeRevocationListPEM(f.crl), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Revoke([]Serial{a}, nil, now); err == nil {
		t.Fatal("Revoke extended a list of another CA")
	}
}

// TestStoreConcurrentRevoke has several goroutines, each with its own Store (and so its own lock file
// description), revoke at once: flock must serialise them into consecutive, distinct list numbers
// with no lost update.
func TestStoreConcurrentRevoke(t *testing.T) {
	_, dir, now := newStore(t)
	const workers = 8
	numbers := make([]uint64, workers)
	errs := make([]error, workers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			s, err := OpenStore(dir)
			if err != nil {
				errs[i] = err
				return
			}
			<-start
			var serial Serial
			serial[0], serial[15] = byte(i), 0x5a
			l, err := s.Revoke([]Serial{serial}, nil, now)
			if err != nil {
				errs[i] = err
				return
			}
			numbers[i] = l.Number
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	slices.Sort(numbers)
	for i, n := range numbers {
		if n != uint64(i+2) {
			t.Fatalf("list numbers %v, want 2..%d each once", numbers, workers+1)
		}
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.RevocationList()
	if err != nil {
		t.Fatal(err)
	}
	if l.Number != workers+1 || len(l.Serials) != workers {
		t.Fatalf("final list: number %d with %d serials, want %d with %d", l.Number, len(l.Serials), workers+1, workers)
	}
	for i := range workers {
		var serial Serial
		serial[0], serial[15] = byte(i), 0x5a
		if !l.RevokesSerial(serial) {
			t.Fatalf("serial of worker %d lost", i)
		}
	}
}

func TestLoadX509FileErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.pem")
	f := getFixture(t)
	for name, data := range map[string][]byte{
		"mesh cert": EncodeCertificatePEM(f.node),
		"bad DER":   []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		"empty":     nil,
	} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadX509File(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadX509File(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}
