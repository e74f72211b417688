package policy

import (
	"fmt"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/meshca"
)

// largePolicy is signed by ca and as large as a node can be given: 256 grants that all name self
// as destination, 4 sources × 4 ports each, so Rules gives exactly MaxPolicyRules inbound rules.
func largePolicy(b *testing.B, ca *meshca.CA) *meshca.Policy {
	var grants []meshca.Grant
	for i := range 256 {
		g := meshca.Grant{Dst: []meshca.Selector{{Kind: meshca.SelectGroup, Group: "web"}}}
		for j := range 4 {
			g.Src = append(g.Src, meshca.Selector{Kind: meshca.SelectGroup, Group: fmt.Sprintf("g%d-%d", i, j)})
			g.Ports = append(g.Ports, meshca.PortRange{Proto: meshca.ProtoTCP, Lo: uint16(1000 + 4*i + j), Hi: uint16(1000 + 4*i + j)})
		}
		grants = append(grants, g)
	}
	p, err := ca.SignPolicy(1, grants, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkInstallLargePolicy: what a node spends to take the largest policy it can be given:
// decode, verify the CA's signature, compute its rules, compile them into the firewall.
func BenchmarkInstallLargePolicy(b *testing.B) {
	ca := testCA(b)
	p := largePolicy(b, ca)
	v, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		b.Fatal(err)
	}
	self := testNode("w1", "web")
	local := firewall.Config{Inbound: []firewall.Rule{{Proto: "any", Any: true}}, Outbound: []firewall.Rule{{Proto: "any", Any: true}}}
	fw, err := firewall.New(local, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		q, err := meshca.ParsePolicy(p.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		if err := v.CheckPolicy(q); err != nil {
			b.Fatal(err)
		}
		cfg := local
		cfg.Policy = Rules(q, self)
		if len(cfg.Policy.Inbound) != meshca.MaxPolicyRules {
			b.Fatalf("%d inbound rules", len(cfg.Policy.Inbound))
		}
		if err := fw.Reload(cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Bytes())), "policy-bytes")
}
