package meshca

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

// Kind says whether a certificate belongs to a CA or to a node.
type Kind uint8

// Certificate kinds.
const (
	KindCA   Kind = 1
	KindNode Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindCA:
		return "ca"
	case KindNode:
		return "node"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

const (
	certMagic   = "X6CT"
	certVersion = 1
	// SignatureContext is the ML-DSA context string of certificate signatures.
	certSignatureContext = "x0tta6bl4 certificate v1"
	// MaxCertificateSize bounds an encoded certificate; a real one is about 7 KB.
	MaxCertificateSize = 16 << 10
	// MaxGroups bounds the number of groups in one certificate.
	MaxGroups  = 32
	serialSize = 16
)

// Serial is a certificate's random 128-bit serial number.
type Serial [serialSize]byte

func (s Serial) String() string { return fmt.Sprintf("%x", s[:]) }

// ParseSerial parses a serial written in hex.
func ParseSerial(s string) (Serial, error) {
	var out Serial
	b, err := decodeHex(s)
	if err != nil || len(b) != serialSize {
		return out, fmt.Errorf("serial %q: want %d hex digits", s, 2*serialSize)
	}
	copy(out[:], b)
	return out, nil
}

// Fingerprint is the SHA-256 of a certificate's full encoding.
type Fingerprint [32]byte

func (f Fingerprint) String() string { return fmt.Sprintf("%x", f[:]) }

// Certificate is a mesh certificate. Fields are set by the CA and covered by its signature.
type Certificate struct {
	Kind        Kind
	Serial      Serial
	NotBefore   time.Time // second precision
	NotAfter    time.Time
	Issuer      identity.KeyID // the signing CA's key ID; a root CA names itself
	TrustDomain string
	Name        string   // node name, or the CA's name
	Groups      []string // sorted, unique; for a CA: the groups it may grant (empty = any)
	// Overlay is the node's overlay IPv6 address, derived from its keys; unset for a CA.
	Overlay netip.Addr
	// KEMPublicKey is the node's hybrid KEM key; nil for a CA.
	KEMPublicKey *identity.KEMPublicKey
	// SignPublicKey is the ML-DSA-65 key of the node, or of the CA.
	SignPublicKey *identity.VerifyKey
	Signature     []byte

	raw []byte // full canonical encoding, set by Parse and by sign
}

// SPIFFEID returns spiffe://<trust-domain>/node/<name> for a node and spiffe://<trust-domain> for a CA.
// It is derived from two signed fields rather than stored a third time, so it cannot disagree with them.
func (c *Certificate) SPIFFEID() identity.SPIFFEID {
	if c.Kind == KindCA {
		return identity.SPIFFEID{TrustDomain: c.TrustDomain}
	}
	return identity.SPIFFEID{TrustDomain: c.TrustDomain, Path: "/node/" + c.Name}
}

// NodePublicKey returns the node's keys; nil for a CA certificate.
func (c *Certificate) NodePublicKey() *identity.NodePublicKey {
	if c.Kind != KindNode {
		return nil
	}
	return &identity.NodePublicKey{KEM: c.KEMPublicKey, Sign: c.SignPublicKey}
}

// Bytes returns the canonical encoding of a signed certificate.
func (c *Certificate) Bytes() []byte { return c.raw }

// Fingerprint returns the SHA-256 of the encoding.
func (c *Certificate) Fingerprint() Fingerprint { return sha256.Sum256(c.raw) }

// InGroup reports whether the certificate lists group g.
func (c *Certificate) InGroup(g string) bool {
	_, found := slices.BinarySearch(c.Groups, g)
	return found
}

// validate checks the semantic rules every certificate obeys, for both encoding and decoding.
func (c *Certificate) validate() error {
	if c.Kind != KindCA && c.Kind != KindNode {
		return fmt.Errorf("unknown certificate kind %d", c.Kind)
	}
	if err := identity.ValidateTrustDomain(c.TrustDomain); err != nil {
		return err
	}
	if c.Kind == KindNode {
		if err := identity.ValidateNodeName(c.Name); err != nil {
			return err
		}
	} else if err := identity.ValidatePathSegment(c.Name); err != nil || len(c.Name) > identity.MaxNodeNameLen {
		return fmt.Errorf("CA name %q: use 1-63 characters a-z, A-Z, 0-9, '.', '-', '_'", c.Name)
	}
	if len(c.Groups) > MaxGroups {
		return fmt.Errorf("%d groups, at most %d allowed", len(c.Groups), MaxGroups)
	}
	for i, g := range c.Groups {
		if err := identity.ValidateGroup(g); err != nil {
			return err
		}
		if i > 0 && c.Groups[i-1] >= g {
			return errors.New("groups must be sorted and unique")
		}
	}
	if !c.NotAfter.After(c.NotBefore) {
		return fmt.Errorf("validity window is empty: not-after %s is not after not-before %s",
			c.NotAfter.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
	}
	if c.SignPublicKey == nil {
		return errors.New("missing signing public key")
	}
	switch c.Kind {
	case KindNode:
		if c.KEMPublicKey == nil {
			return errors.New("node certificate without a KEM public key")
		}
		want := identity.OverlayAddressFor(c.KEMPublicKey.Bytes(), c.SignPublicKey.Bytes())
		if c.Overlay != want {
			return fmt.Errorf("overlay address %s is not the one derived from the keys (%s)", c.Overlay, want)
		}
	case KindCA:
		if c.KEMPublicKey != nil || c.Overlay.IsValid() {
			return errors.New("CA certificate must not carry a KEM key or an overlay address")
		}
	}
	return nil
}

// NormalizeGroups trims, sorts and de-duplicates group names, dropping empty ones.
func NormalizeGroups(groups []string) []string {
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// tbs returns the encoding of everything the signature covers.
func (c *Certificate) tbs() []byte {
	b := make([]byte, 0, 4+2+serialSize+16+32+2+len(c.TrustDomain)+len(c.Name)+16+4+
		identity.KEMPublicKeySize+identity.SigningPublicKeySize+64*len(c.Groups)+8)
	b = append(b, certMagic...)
	b = append(b, certVersion, byte(c.Kind))
	b = append(b, c.Serial[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
	b = append(b, c.Issuer[:]...)
	b = wire.AppendStr8(b, c.TrustDomain)
	b = wire.AppendStr8(b, c.Name)
	b = append(b, byte(len(c.Groups)))
	for _, g := range c.Groups {
		b = wire.AppendStr8(b, g)
	}
	var overlay [16]byte
	if c.Overlay.IsValid() {
		overlay = c.Overlay.As16()
	}
	b = append(b, overlay[:]...)
	if c.KEMPublicKey != nil {
		b = wire.AppendBytes16(b, c.KEMPublicKey.Bytes())
	} else {
		b = wire.AppendBytes16(b, nil)
	}
	b = wire.AppendBytes16(b, c.SignPublicKey.Bytes())
	return b
}

// sign validates c, signs it with key and fills in Signature and the encoding.
func (c *Certificate) sign(key *identity.SigningKey) error {
	c.NotBefore = c.NotBefore.Truncate(time.Second)
	c.NotAfter = c.NotAfter.Truncate(time.Second)
	if err := c.validate(); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	tbs := c.tbs()
	sig, err := key.Sign(certSignatureContext, tbs)
	if err != nil {
		return err
	}
	c.Signature = sig
	c.raw = wire.AppendBytes16(tbs, sig)
	return nil
}

// fieldsMatchEncoding reports whether the exported fields still encode to the signed bytes.
func (c *Certificate) fieldsMatchEncoding() bool {
	tbsLen := len(c.raw) - 2 - len(c.Signature)
	return tbsLen > 0 && bytes.Equal(c.tbs(), c.raw[:tbsLen])
}

// CheckSignature verifies the certificate's signature with the given CA key.
func (c *Certificate) CheckSignature(ca *identity.VerifyKey) error {
	tbsLen := len(c.raw) - 2 - len(c.Signature)
	if tbsLen <= 0 {
		return errors.New("certificate was not signed")
	}
	return ca.Verify(certSignatureContext, c.raw[:tbsLen], c.Signature)
}

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("malformed certificate")

// ParseCertificate decodes a certificate. It accepts only the canonical encoding: every length is
// checked, groups must be sorted and unique, no trailing bytes, and re-encoding gives the same bytes.
// It does not check the signature; Verifier does. The certificate shares no memory with data, which
// may be a receive buffer the next datagram overwrites.
func ParseCertificate(data []byte) (*Certificate, error) {
	c, err := parseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return c, nil
}

func parseCertificate(data []byte) (*Certificate, error) {
	if len(data) > MaxCertificateSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(data), MaxCertificateSize)
	}
	r := wire.NewReader(data)
	if magic := r.Bytes(4); string(magic) != certMagic {
		return nil, errors.New("not a mesh certificate (bad magic)")
	}
	if v := r.U8(); v != certVersion {
		return nil, fmt.Errorf("certificate version %d, this build reads version %d", v, certVersion)
	}
	c := &Certificate{Kind: Kind(r.U8())}
	copy(c.Serial[:], r.Bytes(serialSize))
	c.NotBefore = time.Unix(int64(r.U64()), 0).UTC()
	c.NotAfter = time.Unix(int64(r.U64()), 0).UTC()
	copy(c.Issuer[:], r.Bytes(32))
	c.TrustDomain = string(r.Bytes8())
	c.Name = string(r.Bytes8())
	n := int(r.U8())
	if n > MaxGroups {
		return nil, fmt.Errorf("%d groups, at most %d allowed", n, MaxGroups)
	}
	for range n {
		c.Groups = append(c.Groups, string(r.Bytes8()))
	}
	overlay := netip.AddrFrom16([16]byte(r.Bytes(16)))
	if overlay != netip.IPv6Unspecified() {
		c.Overlay = overlay
	}
	kemPub := r.Bytes16()
	signPub := r.Bytes16()
	tbsEnd := r.Offset()
	c.Signature = r.Bytes16()
	if r.Err() != nil {
		return nil, r.Err()
	}
	if r.Offset() != len(data) {
		return nil, fmt.Errorf("%d trailing bytes", r.Remaining())
	}
	if len(kemPub) != 0 {
		k, err := identity.ParseKEMPublicKey(kemPub)
		if err != nil {
			return nil, err
		}
		c.KEMPublicKey = k
	}
	s, err := identity.ParseVerifyKey(signPub)
	if err != nil {
		return nil, err
	}
	c.SignPublicKey = s
	if len(c.Signature) != identity.SignatureSize {
		return nil, fmt.Errorf("signature is %d bytes, want %d", len(c.Signature), identity.SignatureSize)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(c.tbs(), data[:tbsEnd]) {
		return nil, errors.New("non-canonical encoding")
	}
	c.raw = bytes.Clone(data)
	c.Signature = c.raw[len(c.raw)-len(c.Signature):] // not data's memory: callers reuse it
	return c, nil
}
