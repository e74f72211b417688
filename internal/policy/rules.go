package policy

import (
	"strconv"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/meshca"
)

// meshca bounds a policy so that its rules on any node fit the firewall's limit per direction.
var _ [firewall.MaxRules - meshca.MaxPolicyRules]struct{}

// Rules returns the firewall policy layer that p gives the node with certificate self. Inbound: for
// every grant whose destination selects self, one rule per source selector and port entry (the
// grant's sources may open flows to self). Outbound: for every grant whose source selects self, one
// rule per destination selector and port entry. A policy that names self nowhere gives empty lists:
// the node may neither open nor accept a flow.
func Rules(p *meshca.Policy, self *meshca.Certificate) *firewall.PolicyRules {
	out := &firewall.PolicyRules{Inbound: []firewall.Rule{}, Outbound: []firewall.Rule{}}
	for i := range p.Grants {
		g := &p.Grants[i]
		if selects(g.Dst, self) {
			out.Inbound = appendRules(out.Inbound, g.Src, g.Ports)
		}
		if selects(g.Src, self) {
			out.Outbound = appendRules(out.Outbound, g.Dst, g.Ports)
		}
	}
	return out
}

func selects(sels []meshca.Selector, c *meshca.Certificate) bool {
	for _, s := range sels {
		if s.Matches(c) {
			return true
		}
	}
	return false
}

func appendRules(rules []firewall.Rule, peers []meshca.Selector, ports []meshca.PortRange) []firewall.Rule {
	for _, sel := range peers {
		for _, r := range ports {
			fr := firewall.Rule{Proto: protoName(r.Proto), Port: "any"}
			if r.Lo != 0 {
				fr.Port = strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
			}
			switch sel.Kind {
			case meshca.SelectAny:
				fr.Any = true
			case meshca.SelectGroup:
				fr.Group = sel.Group
			case meshca.SelectNode:
				fr.SPIFFEID = sel.String()
			}
			rules = append(rules, fr)
		}
	}
	return rules
}

func protoName(p uint8) string {
	switch p {
	case meshca.ProtoTCP:
		return "tcp"
	case meshca.ProtoUDP:
		return "udp"
	case meshca.ProtoICMPv6:
		return "icmp"
	}
	return "any"
}

// Connected reports whether p lets a and b talk at all: some grant lets one open a flow to the
// other. A node makes direct links only to such peers; a nil policy (none set) connects everyone.
func Connected(p *meshca.Policy, a, b *meshca.Certificate) bool {
	if p == nil {
		return true
	}
	for i := range p.Grants {
		g := &p.Grants[i]
		if selects(g.Src, a) && selects(g.Dst, b) || selects(g.Src, b) && selects(g.Dst, a) {
			return true
		}
	}
	return false
}
