package agent

import (
	"context"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/node"
)

// TestAdvisoriesReachNodes: an admin names bravo in a cost advisory; the control plane signs a
// list, alpha's agent gets it with its next report answer, alpha verifies it and raises the cost of
// its link to bravo; clearing it withdraws it on alpha by a newer list.
func TestAdvisoriesReachNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, url, admin := startControlPlane(t, ctx, "advisory.test", nil)
	alpha, ab := startJoined(t, ctx, admin, url, "alpha", 200*time.Millisecond, nil)
	bravo, _ := startJoined(t, ctx, admin, url, "bravo", 200*time.Millisecond, func(o *node.Options) {
		o.Peers = []node.Peer{{Addr: alpha.UDPAddr(), Cert: ab.Certificate}}
	})
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
	if h := bravo.Heal(); h.Advises != 0 {
		t.Fatal("bravo applied an advisory about itself")
	}
	if _, err := admin.ClearAdvisory(ctx, "bravo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "alpha lifts it", advised(0))
	// Both decisions are reportable: the agent would otherwise leave the journal out of reports.
	var entries []api.HealingEntry
	for _, d := range alpha.HealJournal(api.MaxHealingEntries) {
		entries = append(entries, api.HealingEntry{Time: d.Time, Peer: d.Peer, Action: d.Action, Rule: d.Rule, Class: d.Class,
			Confidence: d.Confidence, Evidence: d.Evidence})
	}
	if len(entries) != 2 {
		t.Fatalf("alpha's journal %+v, want advise and unadvise", entries)
	}
	if err := api.ValidateHealing(entries); err != nil {
		t.Fatalf("advisory decisions not reportable: %v", err)
	}
	if _, err := admin.ClearAdvisory(ctx, "bravo"); err == nil {
		t.Fatal("clearing an advisory that is not there succeeded")
	}
}
