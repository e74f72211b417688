package meshtest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// journalHas is a condition: n's heal journal holds an entry about peer with action whose rule
// contains rule.
func journalHas(n *Node, peer, action, rule string) func() bool {
	return func() bool {
		return slices.ContainsFunc(n.Heal().Decisions, func(d node.HealDecision) bool {
			return d.Peer == peer && d.Action == action && strings.Contains(d.Rule, rule)
		})
	}
}

// TestAdvisoryRoutesAroundGreyhole: bravo drops 15 % of what it relays, too little for alpha's own
// probe rule to convict it at once. A CA-signed cost advisory naming bravo, given to every node,
// moves alpha's route to delta off bravo; a newer list without bravo brings it back, and the older
// list cannot be replayed; and a list that lapses is lifted at its expiry.
func TestAdvisoryRoutesAroundGreyhole(t *testing.T) {
	m := demoMesh(t, 11)
	alpha, bravo := m.Node("alpha"), m.Node("bravo")
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
	}
	if _, ok := m.RunUntil(outOfGrace(m.Nodes()...), 30*time.Second); !ok {
		t.Fatalf("the nodes did not get past their grace periods: %+v", alpha.Heal())
	}
	give := func(a *meshca.Advisories) {
		t.Helper()
		for _, n := range m.Nodes() {
			if ok, err := n.UpdateAdvisories(a); !ok || err != nil {
				t.Fatalf("%s refused advisories %d: %v %v", n.Name, a.Sequence, ok, err)
			}
		}
	}
	sign := func(seq uint64, lifetime time.Duration, es ...meshca.Advisory) *meshca.Advisories {
		t.Helper()
		a, err := m.CA().SignAdvisories(seq, es, m.Now(), lifetime)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	grey := meshca.Advisory{Subject: "bravo", Multiplier: 8, Confidence: 0.9, Reason: "greyhole"}

	bravo.SetTransitFault(0.15)
	m.Run(2 * time.Second) // alpha's window of probes through bravo now holds losses
	if h := alpha.Heal(); h.Penalties != 0 {
		t.Fatalf("the probe rule already acted, so this test shows nothing about advisories: %+v", h.Decisions)
	}
	v1 := sign(1, 2*time.Minute, grey)
	give(v1)
	took, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 5*time.Second)
	if !ok {
		t.Fatalf("the advisory did not move alpha's route off bravo: %+v\n%s", alpha.Heal(), dump(m))
	}
	if !journalHas(alpha, "bravo", "advise", "advisory 1")() {
		t.Fatalf("alpha's journal has no advisory entry: %+v", alpha.Heal().Decisions)
	}
	if p := alpha.Heal().Penalties; p != 0 {
		t.Fatalf("the probe rule acted too (%d penalties), so the reroute is not the advisory's alone", p)
	}
	if slices.ContainsFunc(bravo.Heal().Decisions, func(d node.HealDecision) bool { return d.Action == "advise" }) {
		t.Fatal("bravo applied an advisory about itself to its own links")
	}
	t.Logf("advisory against bravo installed: alpha's route off it %s later", took)

	// Withdrawal: a newer list without bravo.
	give(sign(2, 2*time.Minute))
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("the route did not come back after the withdrawal: %+v", alpha.Heal())
	}
	if !journalHas(alpha, "bravo", "unadvise", "withdrawn")() {
		t.Fatalf("no withdrawal in alpha's journal: %+v", alpha.Heal().Decisions)
	}
	if ok, err := alpha.UpdateAdvisories(v1); ok || !errors.Is(err, meshca.ErrAdvisoriesRollback) {
		t.Fatalf("replayed older list: %v %v", ok, err)
	}

	// Expiry: a list that is not renewed lapses.
	give(sign(3, 5*time.Second, grey))
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 5*time.Second); !ok {
		t.Fatalf("advisory 3 did not move the route: %+v", alpha.Heal())
	}
	if _, ok := m.RunUntil(journalHas(alpha, "bravo", "unadvise", "expired"), 10*time.Second); !ok {
		t.Fatalf("advisory 3 did not lapse: %+v", alpha.Heal().Decisions)
	}
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("the route did not come back after the expiry: %+v", alpha.Heal())
	}

	for _, n := range m.Nodes() {
		for _, d := range n.Heal().Decisions {
			if d.Peer != "bravo" {
				t.Errorf("%s acted against %s: %+v", n.Name, d.Peer, d)
			}
		}
	}
}

// TestHealCutVertexSaysSo: golf is the only way to hotel. When golf turns into a blackhole, its
// neighbours route around it where they can, and say in their journals that hotel (and, for hotel,
// everyone) is reachable only through it, instead of pretending to have healed.
func TestHealCutVertexSaysSo(t *testing.T) {
	m := demoMesh(t, 12)
	foxtrot, golf, hotel := m.Node("foxtrot"), m.Node("golf"), m.Node("hotel")
	if _, ok := m.RunUntil(outOfGrace(m.Nodes()...), 30*time.Second); !ok {
		t.Fatalf("the nodes did not get past their grace periods: %+v", foxtrot.Heal())
	}
	golf.SetTransitFault(1)
	if _, ok := m.RunUntil(journalHas(foxtrot, "golf", "no-alternative", "hotel reachable only through it"), 20*time.Second); !ok {
		t.Fatalf("foxtrot did not report golf as the only way to hotel: %+v", foxtrot.Heal().Decisions)
	}
	h := foxtrot.Heal()
	i := slices.IndexFunc(h.Peers, func(p node.HealPeer) bool { return p.Name == "golf" })
	if i < 0 || !h.Peers[i].Penalised || !slices.Equal(h.Peers[i].OnlyThrough, []string{"hotel"}) || h.CutVertices == 0 {
		t.Fatalf("foxtrot's view of golf: %+v (cut vertices %d)", h.Peers, h.CutVertices)
	}
	if _, ok := m.RunUntil(journalHas(hotel, "golf", "no-alternative", "reachable only through it"), 20*time.Second); !ok {
		t.Fatalf("hotel did not report golf as its only way out: %+v", hotel.Heal().Decisions)
	}
	// Every entry is reportable to the control plane (bounded rule, plain class).
	for _, n := range []*Node{foxtrot, hotel} {
		var entries []api.HealingEntry
		for _, d := range n.HealJournal(api.MaxHealingEntries) {
			entries = append(entries, api.HealingEntry{Time: d.Time, Peer: d.Peer, Action: d.Action, Rule: d.Rule, Class: d.Class,
				Confidence: d.Confidence, Evidence: d.Evidence})
		}
		if err := api.ValidateHealing(entries); err != nil {
			t.Fatalf("%s's journal is not reportable: %v", n.Name, err)
		}
	}
	// The entry is made once per penalty, not on every step.
	if n := len(slices.DeleteFunc(foxtrot.Heal().Decisions, func(d node.HealDecision) bool { return d.Action != "no-alternative" })); n != 1 {
		t.Fatalf("foxtrot journalled %d no-alternative entries, want 1", n)
	}
}
