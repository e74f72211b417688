package meshca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

const (
	crlMagic            = "X6RL"
	crlVersion          = 1
	crlSignatureContext = "x0tta6bl4 revocation list v1"
	// MaxRevoked bounds the entries of one revocation list (serials plus keys).
	MaxRevoked = 100_000
	// MaxCRLSize bounds an encoded revocation list.
	MaxCRLSize = 64 + 256 + 32 + MaxRevoked*32 + 8 + 2 + identity.SignatureSize
)

// RevocationList is a CA-signed list of revoked certificate serials and revoked signing keys.
// Number increases by one with every list the CA signs; a holder never replaces a list with one whose
// number is lower, so an attacker cannot roll revocations back by replaying an old list.
type RevocationList struct {
	Issuer      identity.KeyID
	TrustDomain string
	Number      uint64
	IssuedAt    time.Time
	Serials     []Serial         // sorted, unique
	Keys        []identity.KeyID // revoked signing keys: every certificate for such a key is revoked; sorted, unique
	Signature   []byte

	raw []byte
}

// Bytes returns the canonical signed encoding.
func (l *RevocationList) Bytes() []byte { return l.raw }

// RevokesSerial reports whether the serial is on the list.
func (l *RevocationList) RevokesSerial(s Serial) bool {
	_, found := slices.BinarySearchFunc(l.Serials, s, func(a, b Serial) int { return bytes.Compare(a[:], b[:]) })
	return found
}

// RevokesKey reports whether the signing key is on the list.
func (l *RevocationList) RevokesKey(k identity.KeyID) bool {
	_, found := slices.BinarySearchFunc(l.Keys, k, func(a, b identity.KeyID) int { return bytes.Compare(a[:], b[:]) })
	return found
}

// Revokes reports whether the certificate is revoked by this list.
func (l *RevocationList) Revokes(c *Certificate) bool {
	return l != nil && c.Issuer == l.Issuer && (l.RevokesSerial(c.Serial) || l.RevokesKey(c.SignPublicKey.ID()))
}

func (l *RevocationList) validate() error {
	if err := identity.ValidateTrustDomain(l.TrustDomain); err != nil {
		return err
	}
	if n := len(l.Serials) + len(l.Keys); n > MaxRevoked {
		return fmt.Errorf("%d entries, at most %d allowed", n, MaxRevoked)
	}
	for i := 1; i < len(l.Serials); i++ {
		if bytes.Compare(l.Serials[i-1][:], l.Serials[i][:]) >= 0 {
			return errors.New("serials must be sorted and unique")
		}
	}
	for i := 1; i < len(l.Keys); i++ {
		if bytes.Compare(l.Keys[i-1][:], l.Keys[i][:]) >= 0 {
			return errors.New("keys must be sorted and unique")
		}
	}
	return nil
}

func (l *RevocationList) tbs() []byte {
	b := make([]byte, 0, 4+1+32+1+len(l.TrustDomain)+16+8+len(l.Serials)*serialSize+len(l.Keys)*32)
	b = append(b, crlMagic...)
	b = append(b, crlVersion)
	b = append(b, l.Issuer[:]...)
	b = wire.AppendStr8(b, l.TrustDomain)
	b = binary.BigEndian.AppendUint64(b, l.Number)
	b = binary.BigEndian.AppendUint64(b, uint64(l.IssuedAt.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Serials)))
	for _, s := range l.Serials {
		b = append(b, s[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Keys)))
	for _, k := range l.Keys {
		b = append(b, k[:]...)
	}
	return b
}

func (l *RevocationList) sign(key *identity.SigningKey) error {
	l.IssuedAt = l.IssuedAt.Truncate(time.Second)
	sortSerials(l.Serials)
	sortKeys(l.Keys)
	if err := l.validate(); err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	tbs := l.tbs()
	sig, err := key.Sign(crlSignatureContext, tbs)
	if err != nil {
		return err
	}
	l.Signature = sig
	l.raw = wire.AppendBytes16(tbs, sig)
	return nil
}

func sortSerials(s []Serial) {
	slices.SortFunc(s, func(a, b Serial) int { return bytes.Compare(a[:], b[:]) })
}

func sortKeys(k []identity.KeyID) {
	slices.SortFunc(k, func(a, b identity.KeyID) int { return bytes.Compare(a[:], b[:]) })
}

// CheckSignature verifies the list's signature with the CA key.
func (l *RevocationList) CheckSignature(ca *identity.VerifyKey) error {
	if ca.ID() != l.Issuer {
		return fmt.Errorf("revocation list issued by key %s, not by this CA (%s)", l.Issuer, ca.ID())
	}
	tbsLen := len(l.raw) - 2 - len(l.Signature)
	if tbsLen <= 0 {
		return errors.New("revocation list was not signed")
	}
	if err := ca.Verify(crlSignatureContext, l.raw[:tbsLen], l.Signature); err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	return nil
}

// ErrMalformedCRL wraps every revocation list decoding error.
var ErrMalformedCRL = errors.New("malformed revocation list")

// ParseRevocationList decodes a revocation list, accepting only the canonical encoding. It does not
// check the signature. The list shares no memory with data (a receive buffer, reused).
func ParseRevocationList(data []byte) (*RevocationList, error) {
	l, err := parseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCRL, err)
	}
	return l, nil
}

func parseRevocationList(data []byte) (*RevocationList, error) {
	if len(data) > MaxCRLSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(data), MaxCRLSize)
	}
	r := wire.NewReader(data)
	if string(r.Bytes(4)) != crlMagic {
		return nil, errors.New("not a revocation list (bad magic)")
	}
	if v := r.U8(); v != crlVersion {
		return nil, fmt.Errorf("revocation list version %d, this build reads version %d", v, crlVersion)
	}
	l := &RevocationList{}
	copy(l.Issuer[:], r.Bytes(32))
	l.TrustDomain = string(r.Bytes8())
	l.Number = r.U64()
	l.IssuedAt = time.Unix(int64(r.U64()), 0).UTC()
	// Counts are checked against the bytes actually present before anything is allocated.
	// Compared as uint32 before conversion: int(uint32) can be negative on 32-bit platforms.
	n := r.U32()
	if n > MaxRevoked || int(n)*serialSize > r.Remaining() {
		return nil, fmt.Errorf("serial count %d exceeds the data", n)
	}
	l.Serials = make([]Serial, n)
	for i := range l.Serials {
		copy(l.Serials[i][:], r.Bytes(serialSize))
	}
	n = r.U32()
	if n > MaxRevoked || int(n)*32 > r.Remaining() {
		return nil, fmt.Errorf("key count %d exceeds the data", n)
	}
	l.Keys = make([]identity.KeyID, n)
	for i := range l.Keys {
		copy(l.Keys[i][:], r.Bytes(32))
	}
	tbsEnd := r.Offset()
	l.Signature = r.Bytes16()
	if r.Err() != nil {
		return nil, r.Err()
	}
	if r.Offset() != len(data) {
		return nil, fmt.Errorf("%d trailing bytes", r.Remaining())
	}
	if len(l.Signature) != identity.SignatureSize {
		return nil, fmt.Errorf("signature is %d bytes, want %d", len(l.Signature), identity.SignatureSize)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(l.tbs(), data[:tbsEnd]) {
		return nil, errors.New("non-canonical encoding")
	}
	l.raw = bytes.Clone(data)
	l.Signature = l.raw[len(l.raw)-len(l.Signature):] // not data's memory: callers reuse it
	return l, nil
}
