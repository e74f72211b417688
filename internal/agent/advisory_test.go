package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// TestAdvisoriesReachNodes: an admin names bravo in a cost advisory; the control plane signs a
// list, alpha's agent gets it with its next report answer, alpha verifies it and raises the cost of
// its link to bravo; clearing it withdraws it on alpha by a newer list.
func TestAdvisoriesReachNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	_, url, admin := startControlPlane(t, ctx, "advisory.test", nil)
	nodes := map[string]*node.Node{}
	var first *client.Bundle
	for _, name := range []string{"alpha", "bravo"} {
		tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: name, Groups: []string{"ops"}})
		if err != nil {
			t.Fatal(err)
		}
		key, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.Enroll(ctx, url, tok.Token, key, name, client.EnrollOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts := node.Options{Key: key, Cert: b.Certificate, CA: []*meshca.Certificate{b.CA}, CRL: b.CRL,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quiet,
			Firewall: firewall.Config{Inbound: []firewall.Rule{{Proto: "any", Port: "any", Group: "ops"}},
				Outbound: []firewall.Rule{{Proto: "any", Port: "any", Group: "ops"}}}}
		if first != nil {
			opts.Peers = []node.Peer{{Addr: nodes["alpha"].UDPAddr(), Cert: first.Certificate}}
		}
		first = b
		n, err := node.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go n.Run(ctx)
		cl, err := client.NewNode(url, key, b, client.NodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		go Run(ctx, Config{Node: n, Client: cl, ReportInterval: 200 * time.Millisecond, CRLWait: 5 * time.Second, Logger: quiet})
		nodes[name] = n
	}
	alpha := nodes["alpha"]
	advised := func(mult int) func() bool {
		return func() bool {
			h := alpha.Heal()
			i := slices.IndexFunc(h.Peers, func(p node.HealPeer) bool { return p.Name == "bravo" })
			return i >= 0 && h.Peers[i].Advised == mult
		}
	}
	waitFor(t, 15*time.Second, "alpha's link to bravo up", func() bool {
		return slices.ContainsFunc(alpha.Peers(), func(p node.PeerStatus) bool { return p.Name == "bravo" && p.Up })
	})

	if _, err := admin.SetAdvisory(ctx, "nobody", api.SetAdvisoryRequest{Reason: "x"}); err == nil {
		t.Fatal("advisory for a node that is not enrolled accepted")
	}
	if _, err := admin.SetAdvisory(ctx, "bravo", api.SetAdvisoryRequest{Reason: "x", Multiplier: 17}); err == nil {
		t.Fatal("multiplier above the cap accepted")
	}
	l, err := admin.SetAdvisory(ctx, "bravo", api.SetAdvisoryRequest{Reason: "maintenance", Multiplier: 4, TTLSeconds: 600})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 1 || l.Entries[0].Node != "bravo" || l.Entries[0].Source != "operator" || l.Entries[0].Reason != "operator: maintenance" {
		t.Fatalf("advisory list %+v", l)
	}
	waitFor(t, 5*time.Second, "alpha applies the advisory to its link to bravo", advised(4))
	if h := alpha.Heal(); h.AdvisoriesSequence != l.Sequence || h.Advises != 1 {
		t.Fatalf("alpha holds advisories %d (want %d), %d applied", h.AdvisoriesSequence, l.Sequence, h.Advises)
	}
	if h := nodes["bravo"].Heal(); h.Advises != 0 {
		t.Fatal("bravo applied an advisory about itself")
	}
	if _, err := admin.ClearAdvisory(ctx, "bravo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "alpha lifts it", advised(0))
	if _, err := admin.ClearAdvisory(ctx, "bravo"); err == nil {
		t.Fatal("clearing an advisory that is not there succeeded")
	}
}
