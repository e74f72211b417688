package cli

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

const maxInspectFile = 1 << 20

func runCertInspect(e *env, args []string) error {
	fs := newFlags(e, "cert inspect", "[--json] FILE")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	path := fs.Arg(0)
	data, err := secfile.Read(path, maxInspectFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s: not a PEM file", path)
	}
	switch block.Type {
	case meshca.PEMCertificate:
		c, err := meshca.DecodeCertificatePEM(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return printCertificate(e, c, *asJSON)
	case meshca.PEMRevocationList:
		l, err := meshca.DecodeRevocationListPEM(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return printRevocationList(e, l, *asJSON, "signature not checked; use 'ca crl' or a verifier")
	case identity.PEMNodePublicKey:
		p, err := identity.ParseNodePublicKey(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return printPublicKey(e, p, *asJSON)
	case "CERTIFICATE":
		c, err := parseX509PEM(block)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return printX509(e, c, *asJSON)
	case identity.PEMNodePrivateKey, identity.PEMCAPrivateKey:
		return fmt.Errorf("%s: %w", path, errPrivateKey)
	}
	return fmt.Errorf("%s: unknown PEM type %q", path, block.Type)
}

type certView struct {
	Type          string    `json:"type"`
	Kind          string    `json:"kind"`
	Name          string    `json:"name"`
	SPIFFEID      string    `json:"spiffe_id"`
	TrustDomain   string    `json:"trust_domain"`
	Groups        []string  `json:"groups"`
	Overlay       string    `json:"overlay_address,omitempty"`
	Serial        string    `json:"serial"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
	Issuer        string    `json:"issuer_key_id"`
	KeyID         string    `json:"key_id"`
	KEMAlgorithm  string    `json:"kem_algorithm,omitempty"`
	KEMPublicKey  string    `json:"kem_public_key,omitempty"`
	SignAlgorithm string    `json:"signature_algorithm"`
	SignPublicKey string    `json:"sign_public_key"`
	Fingerprint   string    `json:"fingerprint_sha256"`
	Size          int       `json:"encoded_size"`
}

const (
	kemAlgorithm  = "ML-KEM-768+X25519 (X-Wing)"
	signAlgorithm = "ML-DSA-65"
)

func printCertificate(e *env, c *meshca.Certificate, asJSON bool) error {
	v := certView{
		Type: "x0tta6bl4 certificate v1", Kind: c.Kind.String(), Name: c.Name, SPIFFEID: c.SPIFFEID().String(),
		TrustDomain: c.TrustDomain, Groups: c.Groups, Serial: c.Serial.String(),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Issuer: c.Issuer.String(), KeyID: c.SignPublicKey.ID().String(),
		SignAlgorithm: signAlgorithm, SignPublicKey: hex.EncodeToString(c.SignPublicKey.Bytes()),
		Fingerprint: c.Fingerprint().String(), Size: len(c.Bytes()),
	}
	if v.Groups == nil {
		v.Groups = []string{}
	}
	if c.Kind == meshca.KindNode {
		v.Overlay = c.Overlay.String()
		v.KEMAlgorithm = kemAlgorithm
		v.KEMPublicKey = hex.EncodeToString(c.KEMPublicKey.Bytes())
	}
	if asJSON {
		return writeJSON(e, v)
	}
	w := e.stdout
	fmt.Fprintf(w, "x0tta6bl4 %s certificate (%d bytes)\n", v.Kind, v.Size)
	fmt.Fprintf(w, "  name:          %s\n  spiffe id:     %s\n  groups:        %s\n", v.Name, v.SPIFFEID, groupList(c.Groups))
	if c.Kind == meshca.KindNode {
		fmt.Fprintf(w, "  overlay:       %s\n", v.Overlay)
	}
	fmt.Fprintf(w, "  serial:        %s\n  not before:    %s\n  not after:     %s\n", v.Serial,
		v.NotBefore.Format(time.RFC3339), v.NotAfter.Format(time.RFC3339))
	fmt.Fprintf(w, "  issuer key id: %s\n  key id:        %s\n", v.Issuer, v.KeyID)
	if c.Kind == meshca.KindNode {
		fmt.Fprintf(w, "  kem key:       %s, %d bytes, %s…\n", kemAlgorithm, identity.KEMPublicKeySize, v.KEMPublicKey[:32])
	}
	fmt.Fprintf(w, "  signing key:   %s, %d bytes, %s…\n", signAlgorithm, identity.SigningPublicKeySize, v.SignPublicKey[:32])
	fmt.Fprintf(w, "  fingerprint:   %s\n", v.Fingerprint)
	return nil
}

type crlView struct {
	Type        string    `json:"type"`
	TrustDomain string    `json:"trust_domain"`
	Issuer      string    `json:"issuer_key_id"`
	Number      uint64    `json:"number"`
	IssuedAt    time.Time `json:"issued_at"`
	Serials     []string  `json:"revoked_serials"`
	Keys        []string  `json:"revoked_key_ids"`
	Note        string    `json:"note"`
}

func printRevocationList(e *env, l *meshca.RevocationList, asJSON bool, note string) error {
	v := crlView{Type: "x0tta6bl4 revocation list v1", TrustDomain: l.TrustDomain, Issuer: l.Issuer.String(),
		Number: l.Number, IssuedAt: l.IssuedAt, Serials: []string{}, Keys: []string{}, Note: note}
	for _, s := range l.Serials {
		v.Serials = append(v.Serials, s.String())
	}
	for _, k := range l.Keys {
		v.Keys = append(v.Keys, k.String())
	}
	if asJSON {
		return writeJSON(e, v)
	}
	w := e.stdout
	fmt.Fprintf(w, "x0tta6bl4 revocation list %d (%s)\n  trust domain:  %s\n  issuer key id: %s\n  issued at:     %s\n",
		v.Number, note, v.TrustDomain, v.Issuer, v.IssuedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "  revoked serials (%d):\n", len(v.Serials))
	for _, s := range v.Serials {
		fmt.Fprintf(w, "    %s\n", s)
	}
	fmt.Fprintf(w, "  revoked keys (%d):\n", len(v.Keys))
	for _, k := range v.Keys {
		fmt.Fprintf(w, "    %s\n", k)
	}
	return nil
}

type publicKeyView struct {
	Type          string `json:"type"`
	Overlay       string `json:"overlay_address"`
	KeyID         string `json:"key_id"`
	KEMAlgorithm  string `json:"kem_algorithm"`
	KEMPublicKey  string `json:"kem_public_key"`
	SignAlgorithm string `json:"signature_algorithm"`
	SignPublicKey string `json:"sign_public_key"`
}

func printPublicKey(e *env, p *identity.NodePublicKey, asJSON bool) error {
	v := publicKeyView{Type: "x0tta6bl4 node public key v1", Overlay: p.OverlayAddress().String(), KeyID: p.Sign.ID().String(),
		KEMAlgorithm: kemAlgorithm, KEMPublicKey: hex.EncodeToString(p.KEM.Bytes()),
		SignAlgorithm: signAlgorithm, SignPublicKey: hex.EncodeToString(p.Sign.Bytes())}
	if asJSON {
		return writeJSON(e, v)
	}
	fmt.Fprintf(e.stdout, "x0tta6bl4 node public key\n  overlay:     %s\n  key id:      %s\n  kem key:     %s, %s…\n  signing key: %s, %s…\n",
		v.Overlay, v.KeyID, kemAlgorithm, v.KEMPublicKey[:32], signAlgorithm, v.SignPublicKey[:32])
	return nil
}

type x509View struct {
	Type               string    `json:"type"`
	Subject            string    `json:"subject"`
	Issuer             string    `json:"issuer"`
	URIs               []string  `json:"uri_sans"`
	IsCA               bool      `json:"is_ca"`
	Serial             string    `json:"serial"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	SignatureAlgorithm string    `json:"signature_algorithm"`
	PublicKeyAlgorithm string    `json:"public_key_algorithm"`
	KeyUsage           []string  `json:"key_usage"`
	ExtKeyUsage        []string  `json:"ext_key_usage"`
}

func printX509(e *env, c *x509.Certificate, asJSON bool) error {
	v := x509View{Type: "X.509 certificate", Subject: c.Subject.String(), Issuer: c.Issuer.String(), IsCA: c.IsCA,
		Serial: fmt.Sprintf("%x", c.SerialNumber), NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		SignatureAlgorithm: c.SignatureAlgorithm.String(), PublicKeyAlgorithm: c.PublicKeyAlgorithm.String(),
		URIs: []string{}, KeyUsage: keyUsages(c.KeyUsage), ExtKeyUsage: []string{}}
	if !c.IsCA {
		v.Type = "X.509-SVID"
	}
	for _, u := range c.URIs {
		v.URIs = append(v.URIs, u.String())
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			v.ExtKeyUsage = append(v.ExtKeyUsage, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			v.ExtKeyUsage = append(v.ExtKeyUsage, "clientAuth")
		default:
			v.ExtKeyUsage = append(v.ExtKeyUsage, fmt.Sprintf("eku(%d)", u))
		}
	}
	if asJSON {
		return writeJSON(e, v)
	}
	fmt.Fprintf(e.stdout, "%s\n  subject:     %s\n  issuer:      %s\n  uri sans:    %s\n  is ca:       %t\n  serial:      %s\n",
		v.Type, v.Subject, v.Issuer, strings.Join(v.URIs, ", "), v.IsCA, v.Serial)
	fmt.Fprintf(e.stdout, "  not before:  %s\n  not after:   %s\n  algorithms:  %s signature, %s key\n  key usage:   %s\n  ext usage:   %s\n",
		v.NotBefore.Format(time.RFC3339), v.NotAfter.Format(time.RFC3339), v.SignatureAlgorithm, v.PublicKeyAlgorithm,
		strings.Join(v.KeyUsage, ", "), strings.Join(v.ExtKeyUsage, ", "))
	return nil
}

func keyUsages(u x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageCertSign, "keyCertSign"},
		{x509.KeyUsageCRLSign, "cRLSign"},
	}
	out := []string{}
	for _, n := range names {
		if u&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func groupList(g []string) string {
	if len(g) == 0 {
		return "(none)"
	}
	return strings.Join(g, ", ")
}

// errPrivateKey stops inspect from printing secrets.
var errPrivateKey = errors.New("this is a private key; inspect its public key file (.pub) instead")

func parseX509PEM(block *pem.Block) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("X.509 certificate: %w", err)
	}
	return c, nil
}
