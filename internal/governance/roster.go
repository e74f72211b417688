package governance

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

const (
	rosterMagic   = "X6GR"
	rosterFormat  = 1
	rosterLabel   = "x0tta6bl4 governance roster v1"
	MaxMembers    = 16
	MaxWeight     = 1_000_000
	maxRosterSize = 4 + 1 + 256 + 8 + 32 + 1 + MaxMembers*(256+4+2+identity.SigningPublicKeySize)
)

// Member is one voter: a name for people, a weight, and the ML-DSA-65 key that signs its ballots.
type Member struct {
	Name   string
	Weight uint32
	Key    *identity.VerifyKey
}

// Roster is the set of members at one epoch. The genesis roster has epoch 0 and no parent; every
// later one is derived from its parent by one enacted admit or retire action.
type Roster struct {
	TrustDomain string
	Epoch       uint64
	Parent      [32]byte
	Members     []Member // sorted by key ID

	raw  []byte
	hash [32]byte
}

// NewRoster validates and encodes a roster; members are sorted by key ID.
func NewRoster(trustDomain string, epoch uint64, parent [32]byte, members []Member) (*Roster, error) {
	r := &Roster{TrustDomain: trustDomain, Epoch: epoch, Parent: parent, Members: slices.Clone(members)}
	slices.SortFunc(r.Members, func(a, b Member) int {
		ka, kb := a.Key.ID(), b.Key.ID()
		return bytes.Compare(ka[:], kb[:])
	})
	if err := r.validate(); err != nil {
		return nil, err
	}
	r.raw = r.encode()
	r.hash = labelledHash(rosterLabel, r.raw)
	return r, nil
}

// Genesis is NewRoster at epoch 0.
func Genesis(trustDomain string, members []Member) (*Roster, error) {
	return NewRoster(trustDomain, 0, [32]byte{}, members)
}

func (r *Roster) validate() error {
	if err := identity.ValidateTrustDomain(r.TrustDomain); err != nil {
		return fmt.Errorf("roster: %w", err)
	}
	if len(r.Members) == 0 || len(r.Members) > MaxMembers {
		return fmt.Errorf("roster: %d members, 1 to %d allowed", len(r.Members), MaxMembers)
	}
	if (r.Epoch == 0) != (r.Parent == [32]byte{}) {
		return errors.New("roster: the genesis roster (epoch 0) and only it has no parent")
	}
	names := make(map[string]bool, len(r.Members))
	for i, m := range r.Members {
		if m.Key == nil {
			return fmt.Errorf("roster: member %q has no key", m.Name)
		}
		if err := identity.ValidateNodeName(m.Name); err != nil {
			return fmt.Errorf("roster: member name: %w", err)
		}
		if names[m.Name] {
			return fmt.Errorf("roster: member name %q twice", m.Name)
		}
		names[m.Name] = true
		if m.Weight == 0 || m.Weight > MaxWeight {
			return fmt.Errorf("roster: member %q weight %d, 1 to %d allowed", m.Name, m.Weight, MaxWeight)
		}
		if i > 0 {
			prev, cur := r.Members[i-1].Key.ID(), m.Key.ID()
			if bytes.Compare(prev[:], cur[:]) >= 0 {
				return errors.New("roster: members must be sorted by key ID and unique")
			}
		}
	}
	return nil
}

func (r *Roster) encode() []byte {
	b := make([]byte, 0, 64+len(r.Members)*(2000))
	b = append(b, rosterMagic...)
	b = append(b, rosterFormat)
	b = wire.AppendStr8(b, r.TrustDomain)
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = append(b, r.Parent[:]...)
	b = append(b, byte(len(r.Members)))
	for _, m := range r.Members {
		b = wire.AppendStr8(b, m.Name)
		b = binary.BigEndian.AppendUint32(b, m.Weight)
		b = wire.AppendBytes16(b, m.Key.Bytes())
	}
	return b
}

// Bytes returns the canonical encoding.
func (r *Roster) Bytes() []byte { return r.raw }

// Hash identifies the roster: what proposals freeze and what nodes pin.
func (r *Roster) Hash() [32]byte { return r.hash }

// Member returns the member with this key ID, or false.
func (r *Roster) Member(id identity.KeyID) (Member, bool) {
	i, found := slices.BinarySearchFunc(r.Members, id, func(m Member, id identity.KeyID) int {
		k := m.Key.ID()
		return bytes.Compare(k[:], id[:])
	})
	if !found {
		return Member{}, false
	}
	return r.Members[i], true
}

// ParseRoster decodes a canonical roster encoding.
func ParseRoster(data []byte) (*Roster, error) {
	if len(data) > maxRosterSize {
		return nil, fmt.Errorf("roster: %d bytes, at most %d allowed", len(data), maxRosterSize)
	}
	rd := wire.NewReader(data)
	rd.Magic(rosterMagic, rosterFormat)
	r := &Roster{TrustDomain: rd.Str8(), Epoch: rd.U64(), Parent: rd.Hash()}
	n := int(rd.U8())
	if rd.Err() == nil && (n == 0 || n > MaxMembers) {
		return nil, fmt.Errorf("roster: %d members, 1 to %d allowed", n, MaxMembers)
	}
	for i := 0; i < n && rd.Err() == nil; i++ {
		m := Member{Name: rd.Str8(), Weight: rd.U32()}
		kb := rd.Bytes16()
		if rd.Err() != nil {
			break
		}
		k, err := identity.ParseVerifyKey(kb)
		if err != nil {
			return nil, fmt.Errorf("roster: member %d: %w", i, err)
		}
		m.Key = k
		r.Members = append(r.Members, m)
	}
	if err := rd.Done(); err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	r.raw = slices.Clone(data)
	if !bytes.Equal(r.encode(), data) {
		return nil, errors.New("roster: not the canonical encoding")
	}
	r.hash = labelledHash(rosterLabel, r.raw)
	return r, nil
}

// Total is the frozen total weight under a weighting.
func (r *Roster) Total(w Weighting) uint64 {
	var t uint64
	for _, m := range r.Members {
		t += w.weight(m.Weight)
	}
	return t
}

// Next derives the roster an enacted admit or retire action makes of r.
func (r *Roster) Next(a Action) (*Roster, error) {
	members := slices.Clone(r.Members)
	switch a := a.(type) {
	case AdmitMember:
		for _, m := range members {
			if m.Name == a.Name || m.Key.ID() == a.Key.ID() {
				return nil, fmt.Errorf("admit %q: already a member (name or key)", a.Name)
			}
		}
		members = append(members, Member(a))
	case RetireMember:
		i := slices.IndexFunc(members, func(m Member) bool { return m.Key.ID() == a.Key })
		if i < 0 {
			return nil, fmt.Errorf("retire %s: not a member", a.Key)
		}
		members = slices.Delete(members, i, i+1)
	default:
		return nil, fmt.Errorf("%s does not change the roster", a.Type())
	}
	return NewRoster(r.TrustDomain, r.Epoch+1, r.hash, members)
}

// PEMRoster is the PEM type of a roster file.
const PEMRoster = "X0TTA6BL4 GOVERNANCE ROSTER"

// EncodePEM returns the roster as a PEM block.
func (r *Roster) EncodePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMRoster, Bytes: r.raw})
}

// ParseRosterPEM decodes a roster file.
func ParseRosterPEM(data []byte) (*Roster, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != PEMRoster {
		return nil, fmt.Errorf("roster: no %q PEM block", PEMRoster)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("roster: trailing data after the PEM block")
	}
	return ParseRoster(b.Bytes)
}
