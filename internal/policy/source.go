// Package policy is the mesh access policy as people write it and as nodes apply it: the source
// format (YAML or JSON, with grants and tests) that the control plane compiles into the CA-signed
// meshca.Policy, and the translation of a signed policy into one node's firewall policy layer
// (docs/connectivity.md, "Policy").
//
// It does no I/O and holds no key: signing is meshca's, storing and serving the control plane's,
// installing the node's.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Limits of the source format.
const (
	// MaxSourceSize bounds a source file or request body.
	MaxSourceSize = 1 << 20
	// MaxTests bounds the tests of one source.
	MaxTests = 256
	// MaxTestCases bounds the accept plus deny entries of one test.
	MaxTestCases = 64
)

// Source is a policy as operators write it, and as GET /api/v1/policy shows it.
//
//	grants:
//	  - src: [group:ops, spiffe://mesh.example/node/laptop-1]
//	    dst: [group:db]
//	    ports: [tcp:5432, icmp]
//	tests:
//	  - src: {name: laptop-1}
//	    dst: {name: db-1, groups: [db]}
//	    accept: [tcp:5432]
//	    deny: [tcp:22]
type Source struct {
	Grants []GrantSource `json:"grants" yaml:"grants"`
	// Tests are checked when the policy is set; a policy that fails one is refused. They are not
	// part of the signed policy.
	Tests []Test `json:"tests,omitempty" yaml:"tests,omitempty"`
}

// GrantSource lets every node of Src open flows to every node of Dst on Ports.
type GrantSource struct {
	// Src and Dst hold selectors: "*" (every node), "group:<group>", or a node's SPIFFE ID
	// "spiffe://<trust-domain>/node/<name>". A node matches a list if it matches any of them.
	Src []string `json:"src" yaml:"src"`
	Dst []string `json:"dst" yaml:"dst"`
	// Ports hold protocols and destination ports: "*" (everything), "icmp" (ICMPv6), "tcp" or
	// "udp" (every port), "tcp:443", "udp:8000-8100".
	Ports []string `json:"ports" yaml:"ports"`
}

// Test asserts what the policy lets Src send Dst: each Accept entry must be allowed, each Deny
// entry refused. Entries are "tcp:<port>", "udp:<port>" or "icmp".
type Test struct {
	Src    TestNode `json:"src" yaml:"src"`
	Dst    TestNode `json:"dst" yaml:"dst"`
	Accept []string `json:"accept,omitempty" yaml:"accept,omitempty"`
	Deny   []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// TestNode is a node as its certificate would describe it: a name in the policy's trust domain or
// a full SPIFFE ID, and its groups.
type TestNode struct {
	Name     string   `json:"name,omitempty" yaml:"name,omitempty"`
	SPIFFEID string   `json:"spiffe_id,omitempty" yaml:"spiffe_id,omitempty"`
	Groups   []string `json:"groups,omitempty" yaml:"groups,omitempty"`
}

// ParseSource reads a source file: YAML, or JSON (which YAML reads too). Unknown keys are errors.
// It checks the shape only; Compile checks the contents.
func ParseSource(data []byte) (*Source, error) {
	if len(data) > MaxSourceSize {
		return nil, fmt.Errorf("policy source is %d bytes, at most %d allowed", len(data), MaxSourceSize)
	}
	var s Source
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy source is empty; write at least \"grants: []\"")
		}
		return nil, fmt.Errorf("policy source: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("policy source: more than one YAML document")
	}
	return &s, nil
}

// Compile checks the source for trustDomain (the control plane's) and turns its grants into the
// signed policy's form. It then runs the tests against them and fails, listing every failing case,
// if any fails.
func (s *Source) Compile(trustDomain string) ([]meshca.Grant, error) {
	if len(s.Grants) > meshca.MaxPolicyGrants {
		return nil, fmt.Errorf("%d grants, at most %d allowed", len(s.Grants), meshca.MaxPolicyGrants)
	}
	grants := make([]meshca.Grant, len(s.Grants))
	for i, gs := range s.Grants {
		g, err := compileGrant(gs)
		if err != nil {
			return nil, fmt.Errorf("grant %d: %w", i, err)
		}
		grants[i] = g
	}
	if err := s.runTests(trustDomain, grants); err != nil {
		return nil, err
	}
	return grants, nil
}

func compileGrant(gs GrantSource) (meshca.Grant, error) {
	var g meshca.Grant
	for _, l := range []struct {
		name string
		in   []string
		out  *[]meshca.Selector
	}{{"src", gs.Src, &g.Src}, {"dst", gs.Dst, &g.Dst}} {
		if len(l.in) == 0 {
			return g, fmt.Errorf("%s is empty; name at least one selector (\"*\" for every node)", l.name)
		}
		if len(l.in) > meshca.MaxGrantSelectors {
			return g, fmt.Errorf("%s: %d selectors, at most %d allowed", l.name, len(l.in), meshca.MaxGrantSelectors)
		}
		for _, v := range l.in {
			sel, err := ParseSelector(v)
			if err != nil {
				return g, fmt.Errorf("%s: %w", l.name, err)
			}
			*l.out = append(*l.out, sel)
		}
	}
	if len(gs.Ports) == 0 {
		return g, errors.New(`ports is empty; list at least one ("*" for everything)`)
	}
	if len(gs.Ports) > meshca.MaxGrantPorts {
		return g, fmt.Errorf("ports: %d entries, at most %d allowed", len(gs.Ports), meshca.MaxGrantPorts)
	}
	for _, v := range gs.Ports {
		r, err := ParsePorts(v)
		if err != nil {
			return g, fmt.Errorf("ports: %w", err)
		}
		g.Ports = append(g.Ports, r)
	}
	return g, nil
}

// ParseSelector reads "*", "group:<group>" or "spiffe://<trust-domain>/node/<name>".
func ParseSelector(v string) (meshca.Selector, error) {
	switch {
	case v == "*":
		return meshca.Selector{Kind: meshca.SelectAny}, nil
	case strings.HasPrefix(v, "group:"):
		g := strings.TrimPrefix(v, "group:")
		if err := identity.ValidateGroup(g); err != nil {
			return meshca.Selector{}, fmt.Errorf("%q: %w", v, err)
		}
		return meshca.Selector{Kind: meshca.SelectGroup, Group: g}, nil
	case strings.HasPrefix(v, "spiffe://"):
		td, name, err := nodeSPIFFEID(v)
		if err != nil {
			return meshca.Selector{}, err
		}
		return meshca.Selector{Kind: meshca.SelectNode, TrustDomain: td, Name: name}, nil
	}
	return meshca.Selector{}, fmt.Errorf(`selector %q: use "*", "group:<group>" or "spiffe://<trust-domain>/node/<name>"`, v)
}

func nodeSPIFFEID(v string) (td, name string, err error) {
	id, err := identity.ParseSPIFFEID(v)
	if err != nil {
		return "", "", err
	}
	name, ok := strings.CutPrefix(id.Path, "/node/")
	if !ok || identity.ValidateNodeName(name) != nil {
		return "", "", fmt.Errorf("%q can never name a node: node SPIFFE IDs are spiffe://<trust-domain>/node/<name>", v)
	}
	return id.TrustDomain, name, nil
}

// ParsePorts reads "*", "icmp", "tcp", "udp", "tcp:443", "udp:8000-8100" ("tcp:*" is "tcp").
func ParsePorts(v string) (meshca.PortRange, error) {
	proto, ports, hasPorts := strings.Cut(strings.ToLower(strings.TrimSpace(v)), ":")
	var r meshca.PortRange
	switch proto {
	case "*":
		r.Proto = meshca.ProtoAny
	case "icmp", "icmpv6", "icmp6":
		r.Proto = meshca.ProtoICMPv6
	case "tcp":
		r.Proto = meshca.ProtoTCP
	case "udp":
		r.Proto = meshca.ProtoUDP
	default:
		return r, fmt.Errorf(`%q: protocol %q: use "*", "icmp", "tcp" or "udp"`, v, proto)
	}
	if !hasPorts || ports == "*" {
		return r, nil
	}
	if r.Proto != meshca.ProtoTCP && r.Proto != meshca.ProtoUDP {
		return r, fmt.Errorf("%q: only tcp and udp have ports", v)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	var err error
	if r.Lo, err = parsePort(lo); err != nil {
		return r, fmt.Errorf("%q: %w", v, err)
	}
	r.Hi = r.Lo
	if isRange {
		if r.Hi, err = parsePort(hi); err != nil {
			return r, fmt.Errorf("%q: %w", v, err)
		}
		if r.Lo > r.Hi {
			return r, fmt.Errorf("%q: range is backwards (low-high)", v)
		}
	}
	return r, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port (use 1-65535)", s)
	}
	return uint16(n), nil
}

// testPacket reads a test entry: "tcp:<port>", "udp:<port>" or "icmp".
func testPacket(v string) (proto uint8, port uint16, hasPort bool, err error) {
	r, err := ParsePorts(v)
	switch {
	case err != nil:
		return 0, 0, false, err
	case r.Proto == meshca.ProtoICMPv6:
		return r.Proto, 0, false, nil
	case (r.Proto == meshca.ProtoTCP || r.Proto == meshca.ProtoUDP) && r.Lo != 0 && r.Lo == r.Hi:
		return r.Proto, r.Lo, true, nil
	}
	return 0, 0, false, fmt.Errorf(`test entry %q: name one packet: "tcp:<port>", "udp:<port>" or "icmp"`, v)
}

func (n TestNode) certificate(trustDomain string) (*meshca.Certificate, error) {
	c := &meshca.Certificate{Kind: meshca.KindNode, TrustDomain: trustDomain, Name: n.Name}
	switch {
	case n.Name != "" && n.SPIFFEID != "":
		return nil, errors.New("set name or spiffe_id, not both")
	case n.SPIFFEID != "":
		td, name, err := nodeSPIFFEID(n.SPIFFEID)
		if err != nil {
			return nil, err
		}
		c.TrustDomain, c.Name = td, name
	case n.Name == "":
		return nil, errors.New("set name or spiffe_id")
	default:
		if err := identity.ValidateNodeName(n.Name); err != nil {
			return nil, err
		}
	}
	if len(n.Groups) > meshca.MaxGroups {
		return nil, fmt.Errorf("%d groups, a certificate holds at most %d", len(n.Groups), meshca.MaxGroups)
	}
	for _, g := range n.Groups {
		if err := identity.ValidateGroup(g); err != nil {
			return nil, err
		}
	}
	c.Groups = meshca.NormalizeGroups(n.Groups)
	return c, nil
}

// runTests checks every test against grants and reports all failures in one error.
func (s *Source) runTests(trustDomain string, grants []meshca.Grant) error {
	if len(s.Tests) > MaxTests {
		return fmt.Errorf("%d tests, at most %d allowed", len(s.Tests), MaxTests)
	}
	p := &meshca.Policy{TrustDomain: trustDomain, Grants: grants}
	var failed []string
	for i, t := range s.Tests {
		if len(t.Accept)+len(t.Deny) == 0 {
			return fmt.Errorf("test %d: no accept or deny entry", i)
		}
		if len(t.Accept)+len(t.Deny) > MaxTestCases {
			return fmt.Errorf("test %d: %d entries, at most %d allowed", i, len(t.Accept)+len(t.Deny), MaxTestCases)
		}
		src, err := t.Src.certificate(trustDomain)
		if err != nil {
			return fmt.Errorf("test %d: src: %w", i, err)
		}
		dst, err := t.Dst.certificate(trustDomain)
		if err != nil {
			return fmt.Errorf("test %d: dst: %w", i, err)
		}
		for _, c := range []struct {
			entries []string
			want    bool
		}{{t.Accept, true}, {t.Deny, false}} {
			for _, v := range c.entries {
				proto, port, hasPort, err := testPacket(v)
				if err != nil {
					return fmt.Errorf("test %d: %w", i, err)
				}
				if got := p.AllowsPacket(src, dst, proto, port, hasPort); got != c.want {
					verb := "denies"
					if got {
						verb = "accepts"
					}
					failed = append(failed, fmt.Sprintf("test %d: %s → %s %s: the policy %s it", i, src.SPIFFEID(), dst.SPIFFEID(), v, verb))
				}
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d policy test cases failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// FromPolicy writes a signed policy's grants in the source format (without tests, which are not
// signed).
func FromPolicy(p *meshca.Policy) Source {
	s := Source{Grants: make([]GrantSource, len(p.Grants))}
	for i, g := range p.Grants {
		gs := GrantSource{}
		for _, sel := range g.Src {
			gs.Src = append(gs.Src, sel.String())
		}
		for _, sel := range g.Dst {
			gs.Dst = append(gs.Dst, sel.String())
		}
		for _, r := range g.Ports {
			gs.Ports = append(gs.Ports, r.String())
		}
		s.Grants[i] = gs
	}
	return s
}
