package control

import (
	"encoding/base64"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/telemetry"
)

// constantModel is a detector whose every answer is class k (its output weights are zero, its bias
// favours k): the advisor's rules are under test here, not a model.
func constantModel(k int) *detector.Model {
	m := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 4, 4, len(telemetry.Classes), 1)
	clear(m.Wo)
	clear(m.Bo)
	m.Bo[k] = 20
	m.Threshold = 0.5
	return m
}

func classIndex(name string) int {
	for i, c := range telemetry.Classes {
		if c == name {
			return i
		}
	}
	panic(name)
}

// TestAdvisorNamesAndWithdraws: the control plane names a relay after `consecutive` distinct fresh
// reports judged a relay fault, not before and not by judging one report twice; hands the signed
// list to nodes in their report answers; and withdraws it by a newer list after `clear_after`
// reports judged otherwise.
func TestAdvisorNamesAndWithdraws(t *testing.T) {
	clock, tick := steppedClock()
	h := newHarnessAt(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "c.db")}, func(c *Config) {
		c.AI.Model = writeModel(t, constantModel(classIndex("greyhole")))
		c.AI.Advisories = AdvisoryConfig{Enabled: true, Interval: 10 * time.Minute, Consecutive: 3, ClearAfter: 2}
	}, clock)
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	beta := h.enrollNode(t, admin, "beta", "web")
	alpha := h.enrollNode(t, admin, "alpha", "web")
	report := func(n *testNode, seq uint64) *api.ReportAccepted {
		t.Helper()
		peer := "alpha"
		if n == alpha {
			peer = "beta"
		}
		acc, err := n.c.Report(ctx, &api.MeshReport{Sequence: seq, Features: nodeFeatures(1),
			Peers: []api.PeerReport{{Name: peer, State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(30, 30)}}}) // above min_relayed: clean judgements count
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	s := h.srv
	advise := func() {
		t.Helper()
		if err := s.advise(ctx); err != nil {
			t.Fatal(err)
		}
	}
	named := func() []string {
		s.adv.mu.Lock()
		defer s.adv.mu.Unlock()
		var out []string
		if s.adv.cur != nil {
			for _, e := range s.adv.cur.Entries {
				out = append(out, e.Subject)
			}
		}
		return out
	}
	for i := range uint64(2) {
		tick()
		report(beta, i+1)
		advise()
		advise() // the same report judged again counts once
	}
	if n := named(); len(n) != 0 {
		t.Fatalf("named after 2 reports: %v", n)
	}
	tick()
	report(beta, 3)
	advise()
	if n := named(); len(n) != 1 || n[0] != "beta" {
		t.Fatalf("after 3 reports judged grey hole, named %v, want [beta]", n)
	}
	acc := report(alpha, 1)
	raw, err := base64.StdEncoding.DecodeString(acc.Advisories)
	if err != nil {
		t.Fatal(err)
	}
	list, err := meshca.ParseAdvisories(raw)
	if err != nil {
		t.Fatal(err)
	}
	v, err := meshca.NewVerifier(alpha.bundle.CA)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckAdvisories(list, clock()); err != nil {
		t.Fatalf("the list in the report answer does not verify: %v", err)
	}
	if e, ok := list.Find("beta"); !ok || e.Reason != "greyhole" || e.Multiplier != 8 || e.Confidence < 0.99 {
		t.Fatalf("entry for beta %+v %v", e, ok)
	}
	first := list.Sequence

	// The judgement clears: two distinct reports judged normal withdraw it by a newer list.
	s.detector = constantModel(classIndex("normal"))
	for i := range uint64(2) {
		tick()
		report(beta, 4+i)
		advise()
	}
	if n := named(); len(n) != 0 {
		t.Fatalf("still named after 2 clean reports: %v", n)
	}
	s.adv.mu.Lock()
	seq := s.adv.cur.Sequence
	s.adv.mu.Unlock()
	if seq <= first {
		t.Fatalf("withdrawal signed sequence %d, not above %d", seq, first)
	}
}

// steppedClock is a clock that moves only when tick is called, by a second.
func steppedClock() (clock func() time.Time, tick func()) {
	var mu sync.Mutex
	now := time.Now()
	return func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		func() { mu.Lock(); now = now.Add(time.Second); mu.Unlock() }
}

// TestAdvisorFlowConservation: with a model that judges every node normal, the flow-conservation
// judgement names the relay whose neighbours' counters show a deficit nothing else explains (alpha
// and gamma hand beta 100 packets to relay and get 80 back) after deficit_consecutive reports, not
// before, with its own reason, and nobody else; switched off, it names nobody.
func TestAdvisorFlowConservation(t *testing.T) {
	for _, on := range []bool{true, false} {
		clock, tick := steppedClock()
		h := newHarnessAt(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "c.db")}, func(c *Config) {
			c.AI.Model = writeModel(t, constantModel(classIndex("normal")))
			c.AI.Advisories = AdvisoryConfig{Enabled: true, Interval: 10 * time.Minute, FlowConservation: &on}
		}, clock)
		ctx := t.Context()
		admin := h.apiClient(h.adminKey)
		nodes := map[string]*testNode{}
		for _, name := range []string{"alpha", "beta", "gamma"} {
			nodes[name] = h.enrollNode(t, admin, name, "web")
		}
		peers := map[string][]api.PeerReport{
			"alpha": {{Name: "beta", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(100, 80)}},
			"gamma": {{Name: "beta", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(100, 80)}},
			"beta": {{Name: "alpha", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(0, 0)},
				{Name: "gamma", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(0, 0)}},
		}
		named := func() []meshca.Advisory {
			h.srv.adv.mu.Lock()
			defer h.srv.adv.mu.Unlock()
			if cur := h.srv.adv.cur; cur != nil {
				return cur.Entries
			}
			return nil
		}
		for seq := uint64(1); seq <= detector.DeficitConsecutive; seq++ {
			if seq == detector.DeficitConsecutive {
				if e := named(); len(e) != 0 {
					t.Fatalf("named after %d reports, before deficit_consecutive: %+v", seq-1, e)
				}
			}
			tick()
			for name, n := range nodes {
				if _, err := n.c.Report(ctx, &api.MeshReport{Sequence: seq, Features: nodeFeatures(1), Peers: peers[name]}); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.srv.advise(ctx); err != nil {
				t.Fatal(err)
			}
		}
		entries := named()
		if !on {
			if len(entries) != 0 {
				t.Fatalf("flow conservation off: named %+v", entries)
			}
			continue
		}
		if len(entries) != 1 || entries[0].Subject != "beta" || entries[0].Reason != FlowConservationReason ||
			math.Abs(entries[0].Confidence-0.19) > 0.001 {
			t.Fatalf("named %+v, want beta for flow conservation with confidence 0.19 (deficit 0.2, probe loss 0.01)", entries)
		}
	}
}
