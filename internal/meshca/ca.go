package meshca

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
)

// Backdate is subtracted from "now" for a new certificate's not-before, so nodes whose clocks lag the
// CA's by up to this much accept it at once.
const Backdate = time.Minute

// MaxDuration bounds the lifetime of any certificate the CA signs (ten years, for roots).
const MaxDuration = 10 * 365 * 24 * time.Hour

// CA signs node certificates and revocation lists with an ML-DSA-65 key.
type CA struct {
	cert *Certificate
	key  *identity.SigningKey
}

// CAOptions describe a new root CA.
type CAOptions struct {
	TrustDomain string
	Name        string
	Groups      []string // groups the CA may grant; empty means any
	Duration    time.Duration
}

// NewRootCA creates a self-signed root CA certificate for key.
func NewRootCA(key *identity.SigningKey, opts CAOptions, now time.Time) (*CA, error) {
	if opts.Duration <= 0 || opts.Duration > MaxDuration {
		return nil, fmt.Errorf("CA duration %s: must be positive and at most %s", opts.Duration, MaxDuration)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	pub := key.PublicKey()
	c := &Certificate{
		Kind:          KindCA,
		Serial:        serial,
		NotBefore:     now.Add(-Backdate),
		NotAfter:      now.Add(opts.Duration),
		Issuer:        pub.ID(),
		TrustDomain:   opts.TrustDomain,
		Name:          opts.Name,
		Groups:        NormalizeGroups(opts.Groups),
		SignPublicKey: pub,
	}
	if err := c.sign(key); err != nil {
		return nil, err
	}
	return &CA{cert: c, key: key}, nil
}

// LoadCA pairs a root CA certificate with its key, checking that they belong together.
func LoadCA(cert *Certificate, key *identity.SigningKey) (*CA, error) {
	if cert.Kind != KindCA {
		return nil, errors.New("certificate is not a CA certificate")
	}
	if cert.SignPublicKey.ID() != key.PublicKey().ID() {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	if err := cert.CheckSignature(cert.SignPublicKey); err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate returns the CA's own certificate.
func (ca *CA) Certificate() *Certificate { return ca.cert }

// IssueRequest asks for a node certificate.
type IssueRequest struct {
	Name      string
	Groups    []string
	PublicKey *identity.NodePublicKey
	Duration  time.Duration
}

// Issue signs a node certificate. It refuses groups outside the CA's constraint and lifetimes that
// would outlive the CA certificate.
func (ca *CA) Issue(req IssueRequest, now time.Time) (*Certificate, error) {
	if req.PublicKey == nil {
		return nil, errors.New("issue: no public key")
	}
	if req.Duration <= 0 || req.Duration > MaxDuration {
		return nil, fmt.Errorf("issue: duration %s must be positive and at most %s", req.Duration, MaxDuration)
	}
	groups := NormalizeGroups(req.Groups)
	if err := groupsAllowed(ca.cert, groups); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	if now.Before(ca.cert.NotBefore) || !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("issue: CA certificate is not valid now (valid %s to %s)",
			ca.cert.NotBefore.Format(time.RFC3339), ca.cert.NotAfter.Format(time.RFC3339))
	}
	notAfter := now.Add(req.Duration)
	if notAfter.After(ca.cert.NotAfter) {
		return nil, fmt.Errorf("issue: certificate would expire at %s, after the CA certificate (%s); ask for a shorter duration",
			notAfter.UTC().Format(time.RFC3339), ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-Backdate)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	c := &Certificate{
		Kind:          KindNode,
		Serial:        serial,
		NotBefore:     notBefore,
		NotAfter:      notAfter,
		Issuer:        ca.cert.SignPublicKey.ID(),
		TrustDomain:   ca.cert.TrustDomain,
		Name:          req.Name,
		Groups:        groups,
		Overlay:       req.PublicKey.OverlayAddress(),
		KEMPublicKey:  req.PublicKey.KEM,
		SignPublicKey: req.PublicKey.Sign,
	}
	if err := c.sign(ca.key); err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	return c, nil
}

// SignRevocationList signs the successor of prev (nil for the first list): prev's entries plus the new
// ones, with a number one higher.
func (ca *CA) SignRevocationList(prev *RevocationList, serials []Serial, keys []identity.KeyID, now time.Time) (*RevocationList, error) {
	l := &RevocationList{
		Issuer:      ca.cert.SignPublicKey.ID(),
		TrustDomain: ca.cert.TrustDomain,
		Number:      1,
		IssuedAt:    now,
	}
	if prev != nil {
		if prev.Issuer != l.Issuer {
			return nil, errors.New("previous revocation list belongs to another CA")
		}
		l.Number = prev.Number + 1
		l.Serials = slices.Clone(prev.Serials)
		l.Keys = slices.Clone(prev.Keys)
	}
	for _, s := range serials {
		if !slices.Contains(l.Serials, s) {
			l.Serials = append(l.Serials, s)
		}
	}
	for _, k := range keys {
		if !slices.Contains(l.Keys, k) {
			l.Keys = append(l.Keys, k)
		}
	}
	if err := l.sign(ca.key); err != nil {
		return nil, err
	}
	return l, nil
}

// groupsAllowed checks Nebula's rule: a CA that lists groups may only grant subsets of them.
func groupsAllowed(ca *Certificate, groups []string) error {
	if len(ca.Groups) == 0 {
		return nil
	}
	for _, g := range groups {
		if !ca.InGroup(g) {
			return fmt.Errorf("%w: %q (CA %q may grant only %v)", ErrGroupNotAllowed, g, ca.Name, ca.Groups)
		}
	}
	return nil
}

func newSerial() (Serial, error) {
	var s Serial
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("serial: %w", err)
	}
	return s, nil
}
