package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Limits on a configuration.
const (
	// MaxRules bounds the rules of one direction.
	MaxRules = 4096
	// MaxConfigSize bounds the YAML accepted by ParseYAML.
	MaxConfigSize = 1 << 20
	// MaxConntrackEntries bounds conntrack.max_entries.
	MaxConntrackEntries = 1 << 22
)

// Defaults of ConntrackConfig.
const (
	DefaultMaxEntries     = 65536
	DefaultMaxPerPeer     = 16384
	DefaultTCPTimeout     = 12 * time.Minute
	DefaultUDPTimeout     = 3 * time.Minute
	DefaultDefaultTimeout = 2 * time.Minute
)

// Config is the firewall section of node.yaml. The zero Config denies everything.
type Config struct {
	Inbound   []Rule          `yaml:"inbound"`
	Outbound  []Rule          `yaml:"outbound"`
	Conntrack ConntrackConfig `yaml:"conntrack"`
	// Policy, when set, is a second set of rules that every packet a rule would allow must pass as
	// well: the mesh-wide access policy as it applies to this node (internal/policy). nil leaves the
	// decision to Inbound and Outbound alone. It never comes from node.yaml.
	Policy *PolicyRules `yaml:"-"`
}

// PolicyRules are the rules of the mesh policy layer. Empty lists deny everything.
type PolicyRules struct {
	Inbound  []Rule
	Outbound []Rule
}

// Rule allows packets of one protocol and port range to or from the peers one selector names.
// Exactly one of Host, SPIFFEID, Group, Groups and Any must be set.
type Rule struct {
	Proto string `yaml:"proto"` // any, tcp, udp, icmp (ICMPv6)
	Port  string `yaml:"port"`  // any, "443", "8000-8100"; required for tcp and udp

	Host     string   `yaml:"host"`      // node name
	SPIFFEID string   `yaml:"spiffe_id"` // spiffe://<trust-domain>/node/<name>
	Group    string   `yaml:"group"`     // one group
	Groups   []string `yaml:"groups"`    // the peer must be in all of them
	Any      bool     `yaml:"any"`       // any authenticated node

	line int // line in the YAML source, 0 when built in Go
}

// ConntrackConfig sizes the connection-tracking table. Zero fields take the defaults.
type ConntrackConfig struct {
	MaxEntries     int           `yaml:"max_entries"`
	MaxPerPeer     int           `yaml:"max_per_peer"`
	TCPTimeout     time.Duration `yaml:"tcp_timeout"`     // idle timeout of a replied TCP flow
	UDPTimeout     time.Duration `yaml:"udp_timeout"`     // idle timeout of a replied UDP flow
	DefaultTimeout time.Duration `yaml:"default_timeout"` // ICMPv6 echo and other protocols
}

// ParseYAML decodes and validates the body of the firewall section (the keys inbound, outbound and
// conntrack). Errors carry the YAML line.
func ParseYAML(data []byte) (Config, error) {
	var cfg Config
	if len(data) > MaxConfigSize {
		return cfg, fmt.Errorf("firewall config is %d bytes, at most %d allowed", len(data), MaxConfigSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("firewall config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("firewall config: %w", err)
	}
	return cfg, nil
}

// UnmarshalYAML decodes the section, refusing unknown keys even when the surrounding decoder does not.
func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, "firewall", "inbound", "outbound", "conntrack"); err != nil {
		return err
	}
	type plain Config
	return n.Decode((*plain)(c))
}

// UnmarshalYAML decodes a rule, refusing unknown keys and remembering the rule's line for errors.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, "firewall rule", "proto", "port", "host", "spiffe_id", "group", "groups", "any"); err != nil {
		return err
	}
	type plain Rule
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.line = n.Line
	return nil
}

// UnmarshalYAML decodes the conntrack settings, refusing unknown keys.
func (c *ConntrackConfig) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, "firewall conntrack", "max_entries", "max_per_peer", "tcp_timeout", "udp_timeout", "default_timeout"); err != nil {
		return err
	}
	type plain ConntrackConfig
	return n.Decode((*plain)(c))
}

func checkKeys(n *yaml.Node, what string, known ...string) error {
	if n.Kind != yaml.MappingNode {
		return nil // the decoder reports the type mismatch with its line
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fmt.Errorf("line %d: %s: unknown key %q (known: %s)", k.Line, what, k.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

// Validate checks the whole configuration and returns the first error, naming the rule.
func (c *Config) Validate() error {
	_, err := compile(c)
	return err
}

// withDefaults returns c with zero fields replaced by defaults.
func (c ConntrackConfig) withDefaults() ConntrackConfig {
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxPerPeer == 0 {
		c.MaxPerPeer = min(DefaultMaxPerPeer, c.MaxEntries)
	}
	if c.TCPTimeout == 0 {
		c.TCPTimeout = DefaultTCPTimeout
	}
	if c.UDPTimeout == 0 {
		c.UDPTimeout = DefaultUDPTimeout
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = DefaultDefaultTimeout
	}
	return c
}

func (c ConntrackConfig) validate() error {
	if c.MaxEntries < 1 || c.MaxEntries > MaxConntrackEntries {
		return fmt.Errorf("conntrack: max_entries %d: use 1-%d", c.MaxEntries, MaxConntrackEntries)
	}
	if c.MaxPerPeer < 1 || c.MaxPerPeer > c.MaxEntries {
		return fmt.Errorf("conntrack: max_per_peer %d: use 1-%d (max_entries)", c.MaxPerPeer, c.MaxEntries)
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"tcp_timeout", c.TCPTimeout}, {"udp_timeout", c.UDPTimeout}, {"default_timeout", c.DefaultTimeout}} {
		if t.d < time.Second || t.d > 24*time.Hour {
			return fmt.Errorf("conntrack: %s %s: use 1s-24h", t.name, t.d)
		}
	}
	return nil
}

// compiled rules of one direction, split by protocol so a packet scans only rules that can match.
type ruleList struct {
	tcp, udp, icmp, other []rule
}

type selectorKind uint8

const (
	selAny selectorKind = iota
	selHost
	selSPIFFE
	selGroups
)

type rule struct {
	index   int
	proto   uint8 // 0 = any
	anyPort bool
	portLo  uint16
	portHi  uint16
	sel     selectorKind
	name    string   // selHost, selSPIFFE
	domain  string   // selSPIFFE
	groups  []string // selGroups: sorted, unique
}

type ruleset struct {
	gen      uint64
	in, out  ruleList
	layered  bool            // a policy layer is set: a packet needs a rule of both
	pin      ruleList        // policy layer, inbound
	pout     ruleList        // policy layer, outbound
	ct       ConntrackConfig // with defaults
	unreply  int64           // timeouts in nanoseconds, precomputed
	tcpEst   int64
	udpEst   int64
	otherEst int64
	closing  int64
}

func compile(c *Config) (*ruleset, error) {
	rs := &ruleset{ct: c.Conntrack.withDefaults()}
	if err := rs.ct.validate(); err != nil {
		return nil, err
	}
	type ruleSource struct {
		name  string
		rules []Rule
		list  *ruleList
	}
	dirs := []ruleSource{{"inbound", c.Inbound, &rs.in}, {"outbound", c.Outbound, &rs.out}}
	if c.Policy != nil {
		rs.layered = true
		dirs = append(dirs, ruleSource{"policy inbound", c.Policy.Inbound, &rs.pin}, ruleSource{"policy outbound", c.Policy.Outbound, &rs.pout})
	}
	for _, d := range dirs {
		if len(d.rules) > MaxRules {
			return nil, fmt.Errorf("%s: %d rules, at most %d allowed", d.name, len(d.rules), MaxRules)
		}
		for i := range d.rules {
			r, err := compileRule(&d.rules[i], i)
			if err != nil {
				if l := d.rules[i].line; l > 0 {
					return nil, fmt.Errorf("line %d: %s rule %d: %w", l, d.name, i, err)
				}
				return nil, fmt.Errorf("%s rule %d: %w", d.name, i, err)
			}
			switch r.proto {
			case ProtoTCP:
				d.list.tcp = append(d.list.tcp, r)
			case ProtoUDP:
				d.list.udp = append(d.list.udp, r)
			case ProtoICMPv6:
				d.list.icmp = append(d.list.icmp, r)
			default:
				d.list.tcp = append(d.list.tcp, r)
				d.list.udp = append(d.list.udp, r)
				d.list.icmp = append(d.list.icmp, r)
				d.list.other = append(d.list.other, r)
			}
		}
	}
	rs.tcpEst = int64(rs.ct.TCPTimeout)
	rs.udpEst = int64(rs.ct.UDPTimeout)
	rs.otherEst = int64(rs.ct.DefaultTimeout)
	rs.unreply = int64(unrepliedTimeout)
	rs.closing = int64(closingTimeout)
	return rs, nil
}

func compileRule(in *Rule, index int) (rule, error) {
	r := rule{index: index}
	switch strings.ToLower(strings.TrimSpace(in.Proto)) {
	case "any":
		r.proto = 0
	case "tcp":
		r.proto = ProtoTCP
	case "udp":
		r.proto = ProtoUDP
	case "icmp", "icmpv6", "icmp6":
		r.proto = ProtoICMPv6
	case "":
		return r, errors.New("proto is required (any, tcp, udp or icmp)")
	default:
		return r, fmt.Errorf("proto %q: use any, tcp, udp or icmp", in.Proto)
	}
	port := strings.ToLower(strings.TrimSpace(in.Port))
	switch {
	case port == "any":
		r.anyPort = true
	case port == "" && (r.proto == ProtoTCP || r.proto == ProtoUDP):
		return r, errors.New(`port is required for tcp and udp ("any", "443" or "8000-8100")`)
	case port == "":
		r.anyPort = true
	case r.proto != ProtoTCP && r.proto != ProtoUDP:
		return r, fmt.Errorf("port %q: only tcp and udp have ports; use port: any or proto: tcp/udp", in.Port)
	default:
		lo, hi, err := parsePortRange(port)
		if err != nil {
			return r, fmt.Errorf("port %q: %w", in.Port, err)
		}
		r.portLo, r.portHi = lo, hi
	}

	set := 0
	if in.Host != "" {
		set++
		if err := identity.ValidateNodeName(in.Host); err != nil {
			return r, fmt.Errorf("host: %w", err)
		}
		r.sel, r.name = selHost, in.Host
	}
	if in.SPIFFEID != "" {
		set++
		id, err := identity.ParseSPIFFEID(in.SPIFFEID)
		if err != nil {
			return r, fmt.Errorf("spiffe_id: %w", err)
		}
		name, ok := strings.CutPrefix(id.Path, "/node/")
		if !ok || identity.ValidateNodeName(name) != nil {
			return r, fmt.Errorf("spiffe_id %q can never match a node: node SPIFFE IDs are spiffe://<trust-domain>/node/<name>", in.SPIFFEID)
		}
		r.sel, r.domain, r.name = selSPIFFE, id.TrustDomain, name
	}
	if in.Group != "" || in.Groups != nil {
		set++
		if in.Group != "" && in.Groups != nil {
			return r, errors.New("both group and groups set; put the group in the groups list")
		}
		groups := in.Groups
		if in.Group != "" {
			groups = []string{in.Group}
		}
		if len(groups) == 0 {
			return r, errors.New("groups is empty; list at least one group (or use any: true)")
		}
		for _, g := range groups {
			if err := identity.ValidateGroup(g); err != nil {
				return r, err
			}
		}
		groups = meshca.NormalizeGroups(groups)
		if len(groups) > meshca.MaxGroups {
			return r, fmt.Errorf("%d groups: a certificate holds at most %d, so the rule could never match", len(groups), meshca.MaxGroups)
		}
		r.sel, r.groups = selGroups, groups
	}
	if in.Any {
		set++
		r.sel = selAny
	}
	switch set {
	case 0:
		return r, errors.New("no peer selector: set one of host, spiffe_id, group, groups or any: true")
	case 1:
	default:
		return r, errors.New("more than one peer selector: use one of host, spiffe_id, group, groups, any per rule (write two rules for either-or)")
	}
	return r, nil
}

func parsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if lo > hi {
			return 0, 0, fmt.Errorf("range %d-%d is backwards (low-high)", lo, hi)
		}
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port (use 1-65535)", s)
	}
	return uint16(n), nil
}

// matches reports whether r allows a packet of the rule list's protocol to reach port (hasPort false:
// the packet has no ports) from or to peer.
func (r *rule) matches(hasPort bool, port uint16, peer *meshca.Certificate) bool {
	if !r.anyPort && (!hasPort || port < r.portLo || port > r.portHi) {
		return false
	}
	switch r.sel {
	case selAny:
		return true
	case selHost:
		return peer.Name == r.name
	case selSPIFFE:
		return peer.Name == r.name && peer.TrustDomain == r.domain
	case selGroups:
		for _, g := range r.groups {
			if !peer.InGroup(g) {
				return false
			}
		}
		return true
	}
	return false
}

// list returns the rules that can match protocol proto.
func (l *ruleList) list(proto uint8) []rule {
	switch proto {
	case ProtoTCP:
		return l.tcp
	case ProtoUDP:
		return l.udp
	case ProtoICMPv6:
		return l.icmp
	}
	return l.other
}

// match returns the index of the first rule allowing the packet, or -1.
func (l *ruleList) match(proto uint8, hasPort bool, port uint16, peer *meshca.Certificate) int {
	rules := l.list(proto)
	for i := range rules {
		if rules[i].matches(hasPort, port, peer) {
			return rules[i].index
		}
	}
	return -1
}

// policyAllows reports whether the policy layer (if any) has a rule of direction d allowing the
// packet; without a policy layer everything passes it.
func (rs *ruleset) policyAllows(d direction, proto uint8, hasPort bool, port uint16, peer *meshca.Certificate) bool {
	if !rs.layered {
		return true
	}
	list := &rs.pin
	if d == dirOut {
		list = &rs.pout
	}
	return list.match(proto, hasPort, port, peer) >= 0
}
