package client

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func x509PEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// bundleFor issues a certificate for key from a fresh CA and packs it like the server does.
func bundleFor(t *testing.T, ca *meshca.Store, key *identity.NodeKey, name string) api.Bundle {
	t.Helper()
	c, err := ca.Issue(meshca.IssueRequest{Name: name, PublicKey: key.Public(), Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.CA().IssueSVID(ca.X509CA(), c)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.RevocationList()
	if err != nil {
		t.Fatal(err)
	}
	return api.Bundle{Name: name, CertificatePEM: string(meshca.EncodeCertificatePEM(c)), SVIDPEM: x509PEM(svid),
		CAPEM: string(meshca.EncodeCertificatePEM(ca.CA().Certificate())), CAX509PEM: x509PEM(ca.X509CA()),
		CRLPEM: string(meshca.EncodeRevocationListPEM(crl))}
}

func newCA(t *testing.T) *meshca.Store {
	t.Helper()
	s, err := meshca.InitStore(t.TempDir()+"/ca", meshca.CAOptions{TrustDomain: "mesh.test", Name: "ca", Duration: 24 * time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestParseBundleRefusals: a node accepts a bundle only for its own keys and name, from the pinned
// CA, with both CA forms the same key, and a certificate that verifies and is not revoked.
func TestParseBundleRefusals(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	key, _ := identity.GenerateNodeKey()
	stranger, _ := identity.GenerateNodeKey()
	pin := ca.CA().Certificate().SignPublicKey.ID().String()
	good := bundleFor(t, ca, key, "alpha")
	if b, err := parseBundle(good, key.Public(), "alpha", pin, time.Now()); err != nil || b.Certificate.Name != "alpha" {
		t.Fatalf("good bundle: %v", err)
	}
	otherCA := bundleFor(t, other, key, "alpha")
	mixed := good
	mixed.CAX509PEM = otherCA.CAX509PEM
	strangers := bundleFor(t, ca, stranger, "alpha")
	strangers.SVIDPEM = good.SVIDPEM
	swappedSVID := good
	swappedSVID.SVIDPEM = bundleFor(t, ca, stranger, "alpha").SVIDPEM
	revokedCRL, err := ca.Revoke(nil, []identity.KeyID{key.Sign.PublicKey().ID()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	revoked := good
	revoked.CRLPEM = string(meshca.EncodeRevocationListPEM(revokedCRL))
	for name, c := range map[string]struct {
		b    api.Bundle
		pub  *identity.NodePublicKey
		node string
		pin  string
		want string
	}{
		"another CA than the pin":      {otherCA, key.Public(), "alpha", pin, "pinned"},
		"X.509 CA of another key":      {mixed, key.Public(), "alpha", pin, "not the mesh CA"},
		"certificate for another key":  {good, stranger.Public(), "alpha", pin, "not for this node's keys"},
		"certificate for another name": {good, key.Public(), "beta", pin, "not \"beta\""},
		"SVID of another key":          {swappedSVID, key.Public(), "alpha", pin, "SVID is not for this node's key"},
		"certificate of a stranger":    {strangers, key.Public(), "alpha", pin, "not for this node's keys"},
		"revoked in the bundled CRL":   {revoked, key.Public(), "alpha", pin, "revoked"},
		"garbage certificate":          {api.Bundle{CAPEM: good.CAPEM, CAX509PEM: good.CAX509PEM, CertificatePEM: "x"}, key.Public(), "alpha", pin, "certificate"},
		"missing CA":                   {api.Bundle{}, key.Public(), "alpha", pin, "CA"},
	} {
		if _, err := parseBundle(c.b, c.pub, c.node, c.pin, time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want an error mentioning %q)", name, err, c.want)
		}
	}
	if _, err := parseBundle(good, key.Public(), "alpha", pin, time.Now().Add(2*time.Hour)); err == nil {
		t.Error("expired certificate accepted")
	}
}

func TestTrustNeedsAnAnchor(t *testing.T) {
	if _, err := (Trust{}).TLSConfig(); err == nil {
		t.Fatal("TLS configuration without a pin or CA")
	}
	if _, err := (Trust{CAPin: "abc"}).TLSConfig(); err == nil {
		t.Fatal("short pin accepted")
	}
	if _, err := (Trust{CAPin: strings.Repeat("a", 64)}).httpClient("ftp://x", nil, time.Second); err == nil {
		t.Fatal("ftp URL accepted")
	}
	if _, err := (Trust{CAPin: strings.Repeat("a", 64)}).httpClient("http://127.0.0.1:1", nil, time.Second); err == nil {
		t.Fatal("plain HTTP accepted without AllowHTTP")
	}
}
