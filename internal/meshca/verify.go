package meshca

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"x0tta6bl4/internal/identity"
)

// Verification errors; Verify wraps them with detail, so test with errors.Is.
var (
	ErrUnknownIssuer   = errors.New("certificate issuer is not a trusted CA")
	ErrBadSignature    = errors.New("certificate signature is invalid")
	ErrExpired         = errors.New("certificate has expired")
	ErrNotYetValid     = errors.New("certificate is not valid yet")
	ErrRevoked         = errors.New("certificate has been revoked")
	ErrGroupNotAllowed = errors.New("group not allowed by the CA")
	ErrWrongDomain     = errors.New("certificate trust domain differs from its CA's")
	ErrNotNode         = errors.New("not a node certificate")
	ErrCRLRollback     = errors.New("revocation list is older than the one already held")
)

// maxCachedSignatures bounds the verified-signature cache; when full it is emptied.
const maxCachedSignatures = 4096

// Verifier checks node certificates against a set of trusted root CAs and their revocation lists.
// Signature checks are cached by certificate fingerprint; validity, constraints and revocation are
// checked on every call. It is safe for concurrent use.
type Verifier struct {
	mu       sync.RWMutex
	roots    map[identity.KeyID]*Certificate
	crls     map[identity.KeyID]*RevocationList
	verified map[Fingerprint]struct{}
	// revokedKeys are signing keys revoked by a decision outside any CA's lists (a quorum
	// certificate of the members, internal/governance): no CA list can take them back.
	revokedKeys map[identity.KeyID]struct{}
}

// NewVerifier trusts the given self-signed CA certificates.
func NewVerifier(roots ...*Certificate) (*Verifier, error) {
	if len(roots) == 0 {
		return nil, errors.New("verifier: no CA certificate")
	}
	v := &Verifier{
		roots:       make(map[identity.KeyID]*Certificate),
		crls:        make(map[identity.KeyID]*RevocationList),
		verified:    make(map[Fingerprint]struct{}),
		revokedKeys: make(map[identity.KeyID]struct{}),
	}
	for _, r := range roots {
		if r.Kind != KindCA {
			return nil, fmt.Errorf("verifier: %q is not a CA certificate", r.Name)
		}
		id := r.SignPublicKey.ID()
		if r.Issuer != id {
			return nil, fmt.Errorf("verifier: CA %q is not self-signed", r.Name)
		}
		if err := r.CheckSignature(r.SignPublicKey); err != nil {
			return nil, fmt.Errorf("verifier: CA %q: %w", r.Name, err)
		}
		v.roots[id] = r
	}
	return v, nil
}

// UpdateCRL installs a revocation list signed by one of the trusted CAs. A list with a lower number
// than the one held is refused with ErrCRLRollback; the same number is accepted only for the same list.
// It reports whether the held list changed.
func (v *Verifier) UpdateCRL(l *RevocationList) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	root, ok := v.roots[l.Issuer]
	if !ok {
		return false, fmt.Errorf("revocation list: %w (issuer key %s)", ErrUnknownIssuer, l.Issuer)
	}
	if l.TrustDomain != root.TrustDomain {
		return false, fmt.Errorf("revocation list: %w", ErrWrongDomain)
	}
	if err := l.CheckSignature(root.SignPublicKey); err != nil {
		return false, err
	}
	if cur, ok := v.crls[l.Issuer]; ok {
		switch {
		case l.Number < cur.Number:
			return false, fmt.Errorf("%w: offered number %d, held %d", ErrCRLRollback, l.Number, cur.Number)
		case l.Number == cur.Number:
			if !bytes.Equal(l.raw, cur.raw) {
				return false, fmt.Errorf("revocation list %d differs from the held list with the same number", l.Number)
			}
			return false, nil
		}
	}
	v.crls[l.Issuer] = l
	return true, nil
}

// RevokeKey revokes every certificate of a signing key, whichever CA issued it, for as long as the
// verifier lives. It reports whether the key was not revoked this way before.
func (v *Verifier) RevokeKey(id identity.KeyID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, held := v.revokedKeys[id]
	v.revokedKeys[id] = struct{}{}
	return !held
}

// CRL returns the revocation list held for a CA, or nil.
func (v *Verifier) CRL(ca identity.KeyID) *RevocationList {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.crls[ca]
}

// Verify checks a node certificate at time now: issuer, signature, validity window of both the
// certificate and its CA, trust domain, group constraints and revocation.
func (v *Verifier) Verify(c *Certificate, now time.Time) error {
	if c.Kind != KindNode {
		return ErrNotNode
	}
	// The signature covers the encoding; make sure the fields checked below are the encoded ones, so a
	// caller that edited a parsed certificate cannot get the edit accepted.
	if !c.fieldsMatchEncoding() {
		return fmt.Errorf("%w: fields differ from the signed encoding", ErrBadSignature)
	}
	v.mu.RLock()
	root, ok := v.roots[c.Issuer]
	crl := v.crls[c.Issuer]
	_, cached := v.verified[c.Fingerprint()]
	_, keyRevoked := v.revokedKeys[c.SignPublicKey.ID()]
	v.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w (issuer key %s)", ErrUnknownIssuer, c.Issuer)
	}
	if !cached {
		if err := c.CheckSignature(root.SignPublicKey); err != nil {
			return fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
		v.mu.Lock()
		if len(v.verified) >= maxCachedSignatures {
			clear(v.verified)
		}
		v.verified[c.Fingerprint()] = struct{}{}
		v.mu.Unlock()
	}
	if err := checkWindow(c, now); err != nil {
		return err
	}
	if err := checkWindow(root, now); err != nil {
		return fmt.Errorf("CA %q: %w", root.Name, err)
	}
	if c.TrustDomain != root.TrustDomain {
		return fmt.Errorf("%w: %q vs %q", ErrWrongDomain, c.TrustDomain, root.TrustDomain)
	}
	if err := groupsAllowed(root, c.Groups); err != nil {
		return err
	}
	if keyRevoked {
		return fmt.Errorf("%w: the key of %q, by a governance decision", ErrRevoked, c.Name)
	}
	if crl.Revokes(c) {
		return fmt.Errorf("%w: serial %s of %q (revocation list %d)", ErrRevoked, c.Serial, c.Name, crl.Number)
	}
	return nil
}

func checkWindow(c *Certificate, now time.Time) error {
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: valid from %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(c.NotAfter) {
		return fmt.Errorf("%w: valid until %s", ErrExpired, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
