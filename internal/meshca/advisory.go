package meshca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

// Cost advisories: one CA-signed, numbered, short-lived list of relays that the control plane's
// detector judges faulty, each with a bounded link-cost multiplier that the relay's neighbours apply
// alongside their own probe evidence (docs/control.md, "Cost advisories"). This file holds the
// signed object only: the control plane decides what goes in it, the node decides how to weigh it.

const (
	advisoryMagic            = "X6AD"
	advisoryFormat           = 1
	advisorySignatureContext = "x0tta6bl4 cost advisory v1"

	// MaxAdvisories bounds the entries of one list.
	MaxAdvisories = 256
	// MinAdvisoryMultiplier and MaxAdvisoryMultiplier bound an entry's cost multiplier. The cap
	// keeps an advisory below self-healing's own penalty (×400, routing.PenaltyLoss): an advisory
	// makes a relay a worse choice, never a last resort, and never removes a link.
	MinAdvisoryMultiplier = 2
	MaxAdvisoryMultiplier = 16
	// MaxAdvisoryLifetime bounds expires-at − issued-at: an advisory the control plane stops
	// renewing lapses within minutes, whatever becomes of the control plane.
	MaxAdvisoryLifetime = 15 * time.Minute
	// MaxAdvisoryReason bounds an entry's reason (printable ASCII).
	MaxAdvisoryReason = 64
	// MaxAdvisoriesSize bounds an encoded list, signature included.
	MaxAdvisoriesSize = 32 << 10
)

// Advisory is one entry: raise the cost of every link to Subject by Multiplier.
type Advisory struct {
	Subject    string  // the node's name in the list's trust domain
	Multiplier uint8   // MinAdvisoryMultiplier to MaxAdvisoryMultiplier
	Confidence float64 // the detector's probability for Reason, basis-point precision on the wire
	Reason     string  // the detector's class, e.g. "greyhole"
}

// Advisories is the CA-signed list of cost advisories in force. Sequence increases with every
// list the control plane signs; a node never replaces a list with one whose sequence is not
// higher, so a replayed or stale list cannot bring back a withdrawn advisory nor withdraw a
// current one. Every entry lapses at ExpiresAt; a list without entries withdraws them all.
type Advisories struct {
	Issuer      identity.KeyID
	TrustDomain string
	Sequence    uint64
	IssuedAt    time.Time // second precision
	ExpiresAt   time.Time // second precision, after IssuedAt by at most MaxAdvisoryLifetime
	Entries     []Advisory
	Signature   []byte

	raw []byte
}

// Bytes returns the canonical signed encoding.
func (a *Advisories) Bytes() []byte { return a.raw }

// Find returns the entry for subject.
func (a *Advisories) Find(subject string) (Advisory, bool) {
	i, ok := slices.BinarySearchFunc(a.Entries, subject, func(e Advisory, s string) int { return strings.Compare(e.Subject, s) })
	if !ok {
		return Advisory{}, false
	}
	return a.Entries[i], true
}

func (a *Advisories) validate() error {
	if a.Sequence == 0 {
		return errors.New("sequence 0")
	}
	if !a.ExpiresAt.After(a.IssuedAt) || a.ExpiresAt.Sub(a.IssuedAt) > MaxAdvisoryLifetime {
		return fmt.Errorf("lifetime %s, want more than 0 and at most %s", a.ExpiresAt.Sub(a.IssuedAt), MaxAdvisoryLifetime)
	}
	if len(a.Entries) > MaxAdvisories {
		return fmt.Errorf("%d entries, at most %d", len(a.Entries), MaxAdvisories)
	}
	for i, e := range a.Entries {
		if err := identity.ValidateNodeName(e.Subject); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if i > 0 && a.Entries[i-1].Subject >= e.Subject {
			return fmt.Errorf("entry %d (%s): subjects not sorted and unique", i, e.Subject)
		}
		if e.Multiplier < MinAdvisoryMultiplier || e.Multiplier > MaxAdvisoryMultiplier {
			return fmt.Errorf("entry %s: multiplier %d, want %d to %d", e.Subject, e.Multiplier, MinAdvisoryMultiplier, MaxAdvisoryMultiplier)
		}
		if !(e.Confidence >= 0 && e.Confidence <= 1) {
			return fmt.Errorf("entry %s: confidence %v, want 0 to 1", e.Subject, e.Confidence)
		}
		if len(e.Reason) == 0 || len(e.Reason) > MaxAdvisoryReason || strings.IndexFunc(e.Reason, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
			return fmt.Errorf("entry %s: reason must be 1 to %d printable ASCII characters", e.Subject, MaxAdvisoryReason)
		}
	}
	return nil
}

func confidenceBP(c float64) uint16 { return uint16(c*10000 + 0.5) }

func (a *Advisories) tbs() []byte {
	b := make([]byte, 0, 128+len(a.Entries)*48)
	b = append(b, advisoryMagic...)
	b = append(b, advisoryFormat)
	b = append(b, a.Issuer[:]...)
	b = wire.AppendStr8(b, a.TrustDomain)
	b = binary.BigEndian.AppendUint64(b, a.Sequence)
	b = binary.BigEndian.AppendUint64(b, uint64(a.IssuedAt.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(a.ExpiresAt.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Entries)))
	for _, e := range a.Entries {
		b = wire.AppendStr8(b, e.Subject)
		b = append(b, e.Multiplier)
		b = binary.BigEndian.AppendUint16(b, confidenceBP(e.Confidence))
		b = wire.AppendStr8(b, e.Reason)
	}
	return b
}

// SignAdvisories signs a list with the given sequence (at least 1), in force from now for
// lifetime. The entries are sorted by subject on a copy; confidences are rounded to basis points.
func (ca *CA) SignAdvisories(sequence uint64, entries []Advisory, now time.Time, lifetime time.Duration) (*Advisories, error) {
	es := slices.Clone(entries)
	for i := range es {
		es[i].Confidence = float64(confidenceBP(min(max(es[i].Confidence, 0), 1))) / 10000
	}
	slices.SortFunc(es, func(x, y Advisory) int { return strings.Compare(x.Subject, y.Subject) })
	issued := now.Truncate(time.Second)
	a := &Advisories{
		Issuer:      ca.cert.SignPublicKey.ID(),
		TrustDomain: ca.cert.TrustDomain,
		Sequence:    sequence,
		IssuedAt:    issued,
		ExpiresAt:   issued.Add(lifetime.Truncate(time.Second)),
		Entries:     es,
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("advisories: %w", err)
	}
	tbs := a.tbs()
	sig, err := ca.key.Sign(advisorySignatureContext, tbs)
	if err != nil {
		return nil, fmt.Errorf("advisories: %w", err)
	}
	a.Signature = sig
	a.raw = wire.AppendBytes16(tbs, sig)
	return a, nil
}

// CheckAdvisories verifies that a was signed by one of the trusted CAs, for that CA's trust
// domain, and is in force at now. It says nothing about the sequence; see AdvisoriesSupersede.
func (v *Verifier) CheckAdvisories(a *Advisories, now time.Time) error {
	v.mu.RLock()
	root, ok := v.roots[a.Issuer]
	v.mu.RUnlock()
	if !ok {
		return fmt.Errorf("advisories: %w (issuer key %s)", ErrUnknownIssuer, a.Issuer)
	}
	if a.TrustDomain != root.TrustDomain {
		return fmt.Errorf("advisories: %w", ErrWrongDomain)
	}
	if !now.Before(a.ExpiresAt) {
		return fmt.Errorf("advisories %d expired at %s", a.Sequence, a.ExpiresAt.Format(time.RFC3339))
	}
	tbsLen := len(a.raw) - 2 - len(a.Signature)
	if tbsLen <= 0 {
		return errors.New("advisories were not signed")
	}
	if err := root.SignPublicKey.Verify(advisorySignatureContext, a.raw[:tbsLen], a.Signature); err != nil {
		return fmt.Errorf("advisories: %w", err)
	}
	return nil
}

// ErrAdvisoriesRollback is returned for a list whose sequence is lower than the held one's.
var ErrAdvisoriesRollback = errors.New("advisories are older than the ones already held")

// AdvisoriesSupersede reports whether next, already verified, should replace held (nil: none
// held). A lower sequence is ErrAdvisoriesRollback; the same sequence is no change when it is the
// same list and an error when it is not (the control plane never signs two lists with one sequence).
func AdvisoriesSupersede(held, next *Advisories) (bool, error) {
	if held == nil {
		return true, nil
	}
	switch {
	case next.Sequence < held.Sequence:
		return false, fmt.Errorf("%w: offered sequence %d, held %d", ErrAdvisoriesRollback, next.Sequence, held.Sequence)
	case next.Sequence == held.Sequence:
		if !bytes.Equal(next.raw, held.raw) {
			return false, fmt.Errorf("advisories sequence %d differ from the held list with the same sequence", next.Sequence)
		}
		return false, nil
	}
	return true, nil
}

// ErrMalformedAdvisories wraps every advisory decoding error.
var ErrMalformedAdvisories = errors.New("malformed advisories")

// minAdvisorySize is the smallest encoded entry: a one-byte name, multiplier, confidence, a
// one-byte reason.
const minAdvisorySize = 1 + 1 + 1 + 2 + 1 + 1

// ParseAdvisories decodes a list, accepting only the canonical encoding. It checks neither the
// signature nor the expiry. The list shares no memory with data (a receive buffer, reused).
func ParseAdvisories(data []byte) (*Advisories, error) {
	a, err := parseAdvisories(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedAdvisories, err)
	}
	return a, nil
}

func parseAdvisories(data []byte) (*Advisories, error) {
	if len(data) > MaxAdvisoriesSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(data), MaxAdvisoriesSize)
	}
	r := wire.NewReader(data)
	r.Magic(advisoryMagic, advisoryFormat)
	a := &Advisories{}
	copy(a.Issuer[:], r.Bytes(32))
	a.TrustDomain = r.Str8()
	a.Sequence = r.U64()
	a.IssuedAt = time.Unix(int64(r.U64()&(1<<62-1)), 0).UTC()
	a.ExpiresAt = time.Unix(int64(r.U64()&(1<<62-1)), 0).UTC()
	n := int(r.U16())
	if r.Err() != nil {
		return nil, r.Err()
	}
	if n > MaxAdvisories || n*minAdvisorySize > r.Remaining() {
		return nil, fmt.Errorf("entry count %d exceeds the data", n)
	}
	a.Entries = make([]Advisory, n)
	for i := range a.Entries {
		a.Entries[i] = Advisory{Subject: r.Str8(), Multiplier: r.U8(), Confidence: float64(r.U16()) / 10000, Reason: r.Str8()}
	}
	tbsEnd := r.Offset()
	a.Signature = r.Bytes16()
	if err := r.Done(); err != nil {
		return nil, err
	}
	if len(a.Signature) != identity.SignatureSize {
		return nil, fmt.Errorf("signature is %d bytes, want %d", len(a.Signature), identity.SignatureSize)
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(a.tbs(), data[:tbsEnd]) {
		return nil, errors.New("non-canonical encoding")
	}
	a.raw = bytes.Clone(data)
	a.Signature = a.raw[len(a.raw)-len(a.Signature):] // not data's memory: callers reuse it
	return a, nil
}
