package control

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"x0tta6bl4/internal/control/client"
)

// handshakes is the handshake counter's value for one label set.
func (h *harness) handshakes(group, kx, cert string) float64 {
	return testutil.ToFloat64(h.srv.m.tlsHandshakes.WithLabelValues(group, kx, cert))
}

// needCurl returns Debian's curl, or skips outside CI when it is missing (.ci/run installs it).
func needCurl(t *testing.T) string {
	p, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is missing in CI (.ci/run installs it)")
		}
		t.Skip("curl not installed; .ci/run installs it")
	}
	return p
}

// TestTLSStandardClients: curl (OpenSSL 3.0: no ML-KEM, no ML-DSA) connects with the classical
// certificate pinned, over X25519; our Go client still gets the ML-DSA-65 chain over
// X25519MLKEM768; the handshake counter tells them apart.
func TestTLSStandardClients(t *testing.T) {
	curl := needCurl(t)
	h := sqliteHarness(t, nil)
	pins, err := initClassical(h.cfg.DataDir, h.srv.now()) // already made by Init: reads them back
	if err != nil {
		t.Fatal(err)
	}

	// The Go client with the ML-DSA chain.
	var me map[string]any
	h.must(200, "GET", "/api/v1/users/me", h.adminKey, nil, &me)
	if n := h.handshakes("X25519MLKEM768", "hybrid", "ml-dsa-65"); n < 1 {
		t.Fatalf("hybrid ML-DSA handshakes: %v", n)
	}
	r, err := h.hc.Get(h.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.TLS.CurveID != tls.X25519MLKEM768 || len(r.TLS.PeerCertificates[0].URIs) == 0 {
		t.Fatalf("Go client: group %v, leaf %v", r.TLS.CurveID, r.TLS.PeerCertificates[0].Subject)
	}

	// A client that offers ML-DSA-65 but does not ask for the mesh CA (as Chromium does) gets the
	// classical certificate, over the hybrid group it prefers.
	caPEM, err := os.ReadFile(pins.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	browserLike := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}}
	r, err = browserLike.Get(h.url + "/health")
	if err != nil {
		t.Fatalf("browser-like client: %v", err)
	}
	r.Body.Close()
	if r.TLS.CurveID != tls.X25519MLKEM768 || h.handshakes("X25519MLKEM768", "hybrid", "ecdsa-p256") != 1 {
		t.Fatalf("browser-like client: group %v", r.TLS.CurveID)
	}

	// curl, pinning the leaf key and verifying against the classical CA.
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "--tlsv1.3", "--cacert", pins.CACertFile,
		"--pinnedpubkey", "sha256//"+pins.SPKIPin, "-H", "Authorization: Bearer "+h.adminKey,
		h.url+"/api/v1/users/me").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if err := json.Unmarshal(out, &me); err != nil || me["user"] == nil {
		t.Fatalf("curl answer %s (%v)", out, err)
	}
	if n := h.handshakes("X25519", "classical", "ecdsa-p256"); n != 1 {
		t.Fatalf("classical handshakes after curl: %v", n)
	}
	// A wrong pin is refused by curl: the pin is what is checked.
	wrong := "sha256//" + strings.Repeat("A", 43) + "="
	if out, err := exec.Command(curl, "-sS", "-k", "--pinnedpubkey", wrong, h.url+"/health").CombinedOutput(); err == nil {
		t.Fatalf("curl accepted a wrong pin: %s", out)
	}
	// Prometheus' scrape path: /metrics over the same listener, classical certificate.
	out, err = exec.Command(curl, "-sS", "--fail-with-body", "--cacert", pins.CACertFile,
		"-H", "Authorization: Bearer "+h.adminKey, h.url+"/metrics").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `x0tta6bl4_control_tls_handshakes_total{certificate="ecdsa-p256",group="X25519",key_exchange="classical"}`) {
		t.Fatalf("curl /metrics: %v: %.400s", err, out)
	}
	// A node endpoint over the classical certificate: no client certificate is asked for.
	out, _ = exec.Command(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", pins.CACertFile,
		"-X", "POST", h.url+"/api/v1/renew").CombinedOutput()
	if string(out) != "401" {
		t.Fatalf("renew over the classical certificate: %s", out)
	}
}

// TestTLSRequireHybrid: with tls.require_hybrid, a client without X25519MLKEM768 is refused even
// for the classical certificate.
func TestTLSRequireHybrid(t *testing.T) {
	curl := needCurl(t)
	h := sqliteHarness(t, func(c *Config) { c.TLS.RequireHybrid = true })
	pins, err := initClassical(h.cfg.DataDir, h.srv.now())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(curl, "-sS", "--cacert", pins.CACertFile, h.url+"/health").CombinedOutput(); err == nil {
		t.Fatalf("curl without ML-KEM was accepted: %s", out)
	}
	if n := h.handshakes("X25519", "classical", "ecdsa-p256"); n != 0 {
		t.Fatalf("classical handshakes: %v", n)
	}
	h.must(200, "GET", "/health", "", nil, nil)
}

// TestNodeTLSStaysPostQuantum: a node's mutual TLS never runs over a classical group, and a
// classical client certificate is refused.
func TestNodeTLSStaysPostQuantum(t *testing.T) {
	h := sqliteHarness(t, nil)
	n := h.enrollNode(t, h.apiClient(h.adminKey), "alpha")
	cfg := nodeHTTP(t, n).Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if r, err := hc.Post(h.url+"/api/v1/renew", "application/json", nil); err == nil {
		r.Body.Close()
		t.Fatalf("node mutual TLS over X25519 answered %d", r.StatusCode)
	}
	// An ECDSA client certificate from the classical CA is not a node.
	ca, caKey, leafKey, err := loadClassicalCA(h.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&classicalIssuer{ca: ca, caKey: caKey, leafKey: leafKey, names: []string{"alpha"}}).issue(h.srv.now(), h.cfg.TLS.CertDuration)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ = client.Trust{CAPin: h.pin}.TLSConfig()
	cfg.Certificates = []tls.Certificate{*cc}
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if r, err := hc.Post(h.url+"/api/v1/renew", "application/json", nil); err == nil {
		r.Body.Close()
		t.Fatalf("classical client certificate answered %d", r.StatusCode)
	}
	// The node itself still renews.
	r, err := nodeHTTP(t, n).Post(h.url+"/api/v1/renew", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || r.TLS.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("node renew: %d over %v", r.StatusCode, r.TLS.CurveID)
	}
}

// TestOperatorClassicalCertificate: an operator's own certificate is served to classical clients.
func TestOperatorClassicalCertificate(t *testing.T) {
	curl := needCurl(t)
	dir := t.TempDir()
	pins, err := initClassical(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey, leafKey, err := loadClassicalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := (&classicalIssuer{ca: ca, caKey: caKey, leafKey: leafKey, names: []string{"127.0.0.1"}}).issue(time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := pemChain(t, cc)
	certFile, keyFile := filepath.Join(dir, "op.pem"), filepath.Join(dir, "op.key")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	h := sqliteHarness(t, func(c *Config) { c.TLS.ClassicalCertFile, c.TLS.ClassicalKeyFile = certFile, keyFile })
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "--cacert", pins.CACertFile, h.url+"/health").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.DataDir, classicCAKeyFile)); err == nil {
		t.Fatal("a classical CA was made although the operator gave a certificate")
	}
}

func pemChain(t *testing.T, c *tls.Certificate) ([]byte, []byte) {
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
}
