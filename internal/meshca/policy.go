package meshca

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/secfile"
	"x0tta6bl4/internal/wire"
)

// The mesh access policy: one CA-signed, numbered list of grants that says which nodes may reach
// which others, on which protocols and ports (docs/connectivity.md, "Policy"). This file holds the
// signed object only; internal/policy reads the operators' source format and turns a policy into a
// node's firewall rules.

const (
	policyMagic            = "X6PL"
	policyFormat           = 1
	policySignatureContext = "x0tta6bl4 access policy v1"

	// MaxPolicyGrants bounds the grants of one policy.
	MaxPolicyGrants = 1024
	// MaxGrantSelectors bounds the sources, and separately the destinations, of one grant.
	MaxGrantSelectors = 64
	// MaxGrantPorts bounds the protocol and port entries of one grant.
	MaxGrantPorts = 64
	// MaxPolicyRules bounds the firewall rules a policy can turn into on one node, per direction: the
	// sum over all grants of sources × ports (inbound, every grant naming the node as destination),
	// and of destinations × ports (outbound). It equals the firewall's per-direction rule limit.
	MaxPolicyRules = 4096
	// MaxPolicySize bounds an encoded policy, signature included, so that it fits one link frame
	// (overlay frame type 10) with room to spare.
	MaxPolicySize = 60 << 10
)

// Protocols a grant can name. The numbers are the IPv6 next-header values.
const (
	ProtoAny    uint8 = 0
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// SelectorKind says what a Selector matches.
type SelectorKind uint8

// Selector kinds, in their canonical order.
const (
	SelectAny   SelectorKind = 0 // every node
	SelectGroup SelectorKind = 1 // nodes whose certificate lists the group
	SelectNode  SelectorKind = 2 // the node with this SPIFFE ID (trust domain and name)
)

// Selector names a set of nodes by their certificates.
type Selector struct {
	Kind        SelectorKind
	Group       string // SelectGroup
	TrustDomain string // SelectNode
	Name        string // SelectNode
}

// Matches reports whether the node certificate c is one the selector names.
func (s Selector) Matches(c *Certificate) bool {
	switch s.Kind {
	case SelectAny:
		return true
	case SelectGroup:
		return c.InGroup(s.Group)
	case SelectNode:
		return c.Name == s.Name && c.TrustDomain == s.TrustDomain
	}
	return false
}

func (s Selector) String() string {
	switch s.Kind {
	case SelectAny:
		return "*"
	case SelectGroup:
		return "group:" + s.Group
	case SelectNode:
		return identity.SPIFFEID{TrustDomain: s.TrustDomain, Path: "/node/" + s.Name}.String()
	}
	return fmt.Sprintf("selector(%d)", s.Kind)
}

func compareSelectors(a, b Selector) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Group, b.Group),
		cmp.Compare(a.TrustDomain, b.TrustDomain), cmp.Compare(a.Name, b.Name))
}

func (s Selector) validate() error {
	switch s.Kind {
	case SelectAny:
		if s.Group != "" || s.TrustDomain != "" || s.Name != "" {
			return errors.New("selector * carries a name")
		}
	case SelectGroup:
		if s.TrustDomain != "" || s.Name != "" {
			return errors.New("group selector carries a node name")
		}
		return identity.ValidateGroup(s.Group)
	case SelectNode:
		if s.Group != "" {
			return errors.New("node selector carries a group")
		}
		if err := identity.ValidateTrustDomain(s.TrustDomain); err != nil {
			return err
		}
		return identity.ValidateNodeName(s.Name)
	default:
		return fmt.Errorf("unknown selector kind %d", s.Kind)
	}
	return nil
}

// PortRange is one protocol and destination port range of a grant. Lo = Hi = 0 means every port,
// and is the only choice for ProtoAny and ProtoICMPv6, which have no ports.
type PortRange struct {
	Proto  uint8
	Lo, Hi uint16
}

// Covers reports whether a packet of protocol proto to destination port port (hasPort false: a
// packet without ports) falls in the range.
func (p PortRange) Covers(proto uint8, port uint16, hasPort bool) bool {
	if p.Proto != ProtoAny && p.Proto != proto {
		return false
	}
	return p.Lo == 0 || hasPort && port >= p.Lo && port <= p.Hi
}

// String is the source form (internal/policy): "*", "icmp", "tcp", "tcp:443", "udp:8000-8100".
func (p PortRange) String() string {
	var s string
	switch p.Proto {
	case ProtoAny:
		return "*"
	case ProtoICMPv6:
		return "icmp"
	case ProtoTCP:
		s = "tcp"
	case ProtoUDP:
		s = "udp"
	default:
		return fmt.Sprintf("proto(%d)", p.Proto)
	}
	switch {
	case p.Lo == 0:
		return s
	case p.Lo == p.Hi:
		return fmt.Sprintf("%s:%d", s, p.Lo)
	}
	return fmt.Sprintf("%s:%d-%d", s, p.Lo, p.Hi)
}

func comparePorts(a, b PortRange) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi))
}

func (p PortRange) validate() error {
	switch p.Proto {
	case ProtoAny, ProtoICMPv6:
		if p.Lo != 0 || p.Hi != 0 {
			return fmt.Errorf("%s has no ports", p)
		}
	case ProtoTCP, ProtoUDP:
		if p.Lo == 0 && p.Hi != 0 || p.Lo > p.Hi {
			return fmt.Errorf("port range %d-%d is empty or backwards", p.Lo, p.Hi)
		}
	default:
		return fmt.Errorf("unknown protocol %d (use any, tcp, udp or icmp)", p.Proto)
	}
	return nil
}

// Grant lets every node a source selector names open flows to every node a destination selector
// names, with the protocols and destination ports listed.
type Grant struct {
	Src   []Selector // sorted, unique; * alone if present
	Dst   []Selector // sorted, unique; * alone if present
	Ports []PortRange
}

// Policy is the CA-signed access policy of a mesh. Version increases with every policy the control
// plane signs; a node never replaces a policy with one whose version is not higher, so neither a
// stale control plane nor a replayed frame can roll its rules back.
type Policy struct {
	Issuer      identity.KeyID
	TrustDomain string
	Version     uint64
	IssuedAt    time.Time // second precision
	Grants      []Grant
	Signature   []byte

	raw []byte
}

// Bytes returns the canonical signed encoding.
func (p *Policy) Bytes() []byte { return p.raw }

// Allows reports whether some grant lets src open a flow to dst, on any protocol or port. A node
// that may not reach another at all needs nothing about it (its endpoints, for one).
func (p *Policy) Allows(src, dst *Certificate) bool {
	for i := range p.Grants {
		g := &p.Grants[i]
		if anyMatches(g.Src, src) && anyMatches(g.Dst, dst) {
			return true
		}
	}
	return false
}

// AllowsPacket reports whether some grant lets src send dst a packet of protocol proto to
// destination port port (hasPort false: the packet has no ports) as the first packet of a flow.
func (p *Policy) AllowsPacket(src, dst *Certificate, proto uint8, port uint16, hasPort bool) bool {
	for i := range p.Grants {
		g := &p.Grants[i]
		if !anyMatches(g.Src, src) || !anyMatches(g.Dst, dst) {
			continue
		}
		for _, r := range g.Ports {
			if r.Covers(proto, port, hasPort) {
				return true
			}
		}
	}
	return false
}

func anyMatches(sels []Selector, c *Certificate) bool {
	for _, s := range sels {
		if s.Matches(c) {
			return true
		}
	}
	return false
}

// normalize sorts and de-duplicates each grant's lists (a list holding * or a port entry of every
// protocol keeps only that), on copies, so the caller's grants are left alone.
func normalizeGrants(in []Grant) []Grant {
	out := make([]Grant, len(in))
	for i, g := range in {
		src := slices.Clone(g.Src)
		dst := slices.Clone(g.Dst)
		ports := slices.Clone(g.Ports)
		slices.SortFunc(src, compareSelectors)
		slices.SortFunc(dst, compareSelectors)
		slices.SortFunc(ports, comparePorts)
		src = slices.CompactFunc(src, func(a, b Selector) bool { return a == b })
		dst = slices.CompactFunc(dst, func(a, b Selector) bool { return a == b })
		ports = slices.Compact(ports)
		if len(src) > 0 && src[0] == (Selector{Kind: SelectAny}) {
			src = src[:1]
		}
		if len(dst) > 0 && dst[0] == (Selector{Kind: SelectAny}) {
			dst = dst[:1]
		}
		if len(ports) > 0 && ports[0] == (PortRange{Proto: ProtoAny}) {
			ports = ports[:1]
		}
		out[i] = Grant{Src: src, Dst: dst, Ports: ports}
	}
	return out
}

func (p *Policy) validate() error {
	if err := identity.ValidateTrustDomain(p.TrustDomain); err != nil {
		return err
	}
	if p.Version == 0 {
		return errors.New("version 0 is reserved for no policy")
	}
	if len(p.Grants) > MaxPolicyGrants {
		return fmt.Errorf("%d grants, at most %d allowed", len(p.Grants), MaxPolicyGrants)
	}
	var inRules, outRules int
	for i := range p.Grants {
		g := &p.Grants[i]
		if err := validateSelectors(g.Src); err != nil {
			return fmt.Errorf("grant %d: src: %w", i, err)
		}
		if err := validateSelectors(g.Dst); err != nil {
			return fmt.Errorf("grant %d: dst: %w", i, err)
		}
		if len(g.Ports) == 0 || len(g.Ports) > MaxGrantPorts {
			return fmt.Errorf("grant %d: %d port entries, want 1-%d", i, len(g.Ports), MaxGrantPorts)
		}
		for j, r := range g.Ports {
			if err := r.validate(); err != nil {
				return fmt.Errorf("grant %d: ports: %w", i, err)
			}
			if j > 0 && comparePorts(g.Ports[j-1], r) >= 0 {
				return fmt.Errorf("grant %d: ports must be sorted and unique", i)
			}
		}
		if len(g.Ports) > 1 && g.Ports[0].Proto == ProtoAny {
			return fmt.Errorf("grant %d: ports: * must stand alone", i)
		}
		inRules += len(g.Src) * len(g.Ports)
		outRules += len(g.Dst) * len(g.Ports)
	}
	if inRules > MaxPolicyRules || outRules > MaxPolicyRules {
		return fmt.Errorf("the grants expand to %d inbound and %d outbound firewall rules on a node they all name, at most %d allowed",
			inRules, outRules, MaxPolicyRules)
	}
	return nil
}

func validateSelectors(sels []Selector) error {
	if len(sels) == 0 || len(sels) > MaxGrantSelectors {
		return fmt.Errorf("%d selectors, want 1-%d", len(sels), MaxGrantSelectors)
	}
	for i, s := range sels {
		if err := s.validate(); err != nil {
			return err
		}
		if i > 0 && compareSelectors(sels[i-1], s) >= 0 {
			return errors.New("selectors must be sorted and unique")
		}
	}
	if len(sels) > 1 && sels[0].Kind == SelectAny {
		return errors.New("* must stand alone")
	}
	return nil
}

func (p *Policy) tbs() []byte {
	b := make([]byte, 0, 256+len(p.Grants)*64)
	b = append(b, policyMagic...)
	b = append(b, policyFormat)
	b = append(b, p.Issuer[:]...)
	b = wire.AppendStr8(b, p.TrustDomain)
	b = binary.BigEndian.AppendUint64(b, p.Version)
	b = binary.BigEndian.AppendUint64(b, uint64(p.IssuedAt.Unix()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Grants)))
	for i := range p.Grants {
		g := &p.Grants[i]
		b = appendSelectors(b, g.Src)
		b = appendSelectors(b, g.Dst)
		b = append(b, byte(len(g.Ports)))
		for _, r := range g.Ports {
			b = append(b, r.Proto)
			b = binary.BigEndian.AppendUint16(b, r.Lo)
			b = binary.BigEndian.AppendUint16(b, r.Hi)
		}
	}
	return b
}

func appendSelectors(b []byte, sels []Selector) []byte {
	b = append(b, byte(len(sels)))
	for _, s := range sels {
		b = append(b, byte(s.Kind))
		switch s.Kind {
		case SelectGroup:
			b = wire.AppendStr8(b, s.Group)
		case SelectNode:
			b = wire.AppendStr8(b, s.TrustDomain)
			b = wire.AppendStr8(b, s.Name)
		}
	}
	return b
}

// SignPolicy signs a policy with the given version (at least 1) and grants. The grants are
// normalized on a copy: each list sorted and de-duplicated.
func (ca *CA) SignPolicy(version uint64, grants []Grant, now time.Time) (*Policy, error) {
	p := &Policy{
		Issuer:      ca.cert.SignPublicKey.ID(),
		TrustDomain: ca.cert.TrustDomain,
		Version:     version,
		IssuedAt:    now.Truncate(time.Second),
		Grants:      normalizeGrants(grants),
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	tbs := p.tbs()
	if n := len(tbs) + 2 + identity.SignatureSize; n > MaxPolicySize {
		return nil, fmt.Errorf("policy: %d bytes encoded, at most %d allowed", n, MaxPolicySize)
	}
	sig, err := ca.key.Sign(policySignatureContext, tbs)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p.Signature = sig
	p.raw = wire.AppendBytes16(tbs, sig)
	return p, nil
}

// CheckSignature verifies the policy's signature with the CA key.
func (p *Policy) CheckSignature(ca *identity.VerifyKey) error {
	if ca.ID() != p.Issuer {
		return fmt.Errorf("policy issued by key %s, not by this CA (%s)", p.Issuer, ca.ID())
	}
	tbsLen := len(p.raw) - 2 - len(p.Signature)
	if tbsLen <= 0 {
		return errors.New("policy was not signed")
	}
	if err := ca.Verify(policySignatureContext, p.raw[:tbsLen], p.Signature); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

// CheckPolicy verifies that p was signed by one of the trusted CAs, for that CA's trust domain.
// It says nothing about the version; see PolicySupersedes.
func (v *Verifier) CheckPolicy(p *Policy) error {
	v.mu.RLock()
	root, ok := v.roots[p.Issuer]
	v.mu.RUnlock()
	if !ok {
		return fmt.Errorf("policy: %w (issuer key %s)", ErrUnknownIssuer, p.Issuer)
	}
	if p.TrustDomain != root.TrustDomain {
		return fmt.Errorf("policy: %w", ErrWrongDomain)
	}
	return p.CheckSignature(root.SignPublicKey)
}

// ErrPolicyRollback is returned for a policy whose version is lower than the held one's.
var ErrPolicyRollback = errors.New("policy is older than the one already held")

// PolicySupersedes reports whether next, already verified, should replace held (nil: none held).
// A lower version is ErrPolicyRollback; the same version is no change when it is the same policy
// and an error when it is not (the control plane never signs two policies with one version).
func PolicySupersedes(held, next *Policy) (bool, error) {
	if held == nil {
		return true, nil
	}
	switch {
	case next.Version < held.Version:
		return false, fmt.Errorf("%w: offered version %d, held %d", ErrPolicyRollback, next.Version, held.Version)
	case next.Version == held.Version:
		if !bytes.Equal(next.raw, held.raw) {
			return false, fmt.Errorf("policy version %d differs from the held policy with the same version", next.Version)
		}
		return false, nil
	}
	return true, nil
}

// ErrMalformedPolicy wraps every policy decoding error.
var ErrMalformedPolicy = errors.New("malformed policy")

// ParsePolicy decodes a policy, accepting only the canonical encoding. It does not check the
// signature. The policy shares no memory with data (a receive buffer, reused).
func ParsePolicy(data []byte) (*Policy, error) {
	p, err := parsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedPolicy, err)
	}
	return p, nil
}

// Smallest encodings, for checking counts against the bytes present before allocating.
const (
	minGrantSize    = 1 + 1 + 1 + 1 + 1 + 5 // one * source, one * destination, one port entry
	minSelectorSize = 1
	portEntrySize   = 5
)

func parsePolicy(data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(data), MaxPolicySize)
	}
	r := wire.NewReader(data)
	if string(r.Bytes(4)) != policyMagic {
		return nil, errors.New("not a policy (bad magic)")
	}
	if v := r.U8(); v != policyFormat {
		return nil, fmt.Errorf("policy format %d, this build reads format %d", v, policyFormat)
	}
	p := &Policy{}
	copy(p.Issuer[:], r.Bytes(32))
	p.TrustDomain = string(r.Bytes8())
	p.Version = r.U64()
	p.IssuedAt = time.Unix(int64(r.U64()), 0).UTC()
	n := int(r.U16())
	if n > MaxPolicyGrants || n*minGrantSize > r.Remaining() {
		return nil, fmt.Errorf("grant count %d exceeds the data", n)
	}
	p.Grants = make([]Grant, n)
	for i := range p.Grants {
		g := &p.Grants[i]
		g.Src = readSelectors(r)
		g.Dst = readSelectors(r)
		m := int(r.U8())
		if r.Err() == nil && m*portEntrySize > r.Remaining() {
			return nil, fmt.Errorf("grant %d: port count %d exceeds the data", i, m)
		}
		if r.Err() != nil {
			return nil, r.Err()
		}
		g.Ports = make([]PortRange, m)
		for j := range g.Ports {
			g.Ports[j] = PortRange{Proto: r.U8(), Lo: r.U16(), Hi: r.U16()}
		}
	}
	tbsEnd := r.Offset()
	p.Signature = r.Bytes16()
	if r.Err() != nil {
		return nil, r.Err()
	}
	if r.Offset() != len(data) {
		return nil, fmt.Errorf("%d trailing bytes", r.Remaining())
	}
	if len(p.Signature) != identity.SignatureSize {
		return nil, fmt.Errorf("signature is %d bytes, want %d", len(p.Signature), identity.SignatureSize)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	if !bytes.Equal(p.tbs(), data[:tbsEnd]) {
		return nil, errors.New("non-canonical encoding")
	}
	p.raw = bytes.Clone(data)
	p.Signature = p.raw[len(p.raw)-len(p.Signature):] // not data's memory: callers reuse it
	return p, nil
}

// readSelectors reads a selector list; on malformed input it sets r.Err() and returns what it has.
func readSelectors(r *wire.Reader) []Selector {
	n := int(r.U8())
	if r.Err() != nil || n*minSelectorSize > r.Remaining() {
		if r.Err() == nil {
			r.Fail(fmt.Errorf("selector count %d exceeds the data", n))
		}
		return nil
	}
	out := make([]Selector, n)
	for i := range out {
		s := Selector{Kind: SelectorKind(r.U8())}
		switch s.Kind {
		case SelectAny:
		case SelectGroup:
			s.Group = string(r.Bytes8())
		case SelectNode:
			s.TrustDomain = string(r.Bytes8())
			s.Name = string(r.Bytes8())
		default:
			if r.Err() == nil {
				r.Fail(fmt.Errorf("unknown selector kind %d", s.Kind))
			}
		}
		if r.Err() != nil {
			return nil
		}
		out[i] = s
	}
	return out
}

// PEMPolicy is the PEM block type of a signed policy file.
const PEMPolicy = "X0TTA6BL4 ACCESS POLICY"

// EncodePolicyPEM wraps a signed policy in PEM.
func EncodePolicyPEM(p *Policy) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMPolicy, Bytes: p.Bytes()})
}

// DecodePolicyPEM parses one PEM-wrapped policy. It does not check the signature.
func DecodePolicyPEM(data []byte) (*Policy, error) {
	body, err := identity.DecodePEM(data, PEMPolicy)
	if err != nil {
		return nil, err
	}
	return ParsePolicy(body)
}

// LoadPolicyFile reads a PEM policy file. It does not check the signature.
func LoadPolicyFile(path string) (*Policy, error) {
	data, err := secfile.Read(path, 2*MaxPolicySize)
	if err != nil {
		return nil, err
	}
	p, err := DecodePolicyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
