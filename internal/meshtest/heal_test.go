package meshtest

import (
	"fmt"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
)

// outOfGrace is a condition: each of nodes judges every neighbour it has (none is in the grace
// period that follows a new link, when nothing probed through the neighbour counts).
func outOfGrace(nodes ...*Node) func() bool {
	return func() bool {
		for _, n := range nodes {
			h := n.Heal()
			if len(h.Peers) == 0 {
				return false
			}
			for _, p := range h.Peers {
				if p.Class == "" || p.Class == "grace" {
					return false
				}
			}
		}
		return true
	}
}

// healJournal gathers every node's heal decisions over a run, including those of processes that were
// later restarted (a restart starts an empty journal).
type healJournal struct {
	seen      map[string]bool
	decisions []journalEntry
}

type journalEntry struct {
	who string
	node.HealDecision
}

func (e journalEntry) String() string {
	return fmt.Sprintf("%s at %s: %s %s (%s p=%.6f %v)", e.who, e.Time.Sub(Epoch), e.Action, e.Peer, e.Class,
		e.Confidence, e.Evidence)
}

func (j *healJournal) collect(m *Mesh) {
	if j.seen == nil {
		j.seen = map[string]bool{}
	}
	for _, n := range m.Nodes() {
		if n.Node == nil {
			continue
		}
		for _, d := range n.Heal().Decisions {
			e := journalEntry{who: n.Name, HealDecision: d}
			if s := e.String(); !j.seen[s] {
				j.seen[s] = true
				j.decisions = append(j.decisions, e)
			}
		}
	}
}

// penalties are the gathered decisions that routed around someone.
func (j *healJournal) penalties() []journalEntry {
	var out []journalEntry
	for _, e := range j.decisions {
		if e.Action == "penalise" {
			out = append(out, e)
		}
	}
	return out
}

// run advances the mesh by d in steps of at most a second, collecting decisions as it goes.
func (j *healJournal) run(m *Mesh, d time.Duration) {
	for end := m.Now().Add(d); m.Now().Before(end); {
		m.Run(min(time.Second, end.Sub(m.Now())))
		j.collect(m)
	}
}

func (j *healJournal) none(t *testing.T, what string) {
	t.Helper()
	if len(j.decisions) != 0 {
		t.Errorf("%s: %d penalties of healthy nodes (%d decisions):", what, len(j.penalties()), len(j.decisions))
		for _, d := range j.decisions[:min(len(j.decisions), 10)] {
			t.Errorf("  %s", d)
		}
	}
}

// settledDemo is the demo mesh, every link shaped as link, with every node past its neighbours' grace
// periods.
func settledDemo(t *testing.T, cfg Config, link LinkParams) *Mesh {
	t.Helper()
	return settledDemoWith(t, cfg, func(string, string) LinkParams { return link })
}

// settledDemoWith is settledDemo with each link shaped as link says.
func settledDemoWith(t *testing.T, cfg Config, link func(a, b string) LinkParams) *Mesh {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"); err != nil {
		t.Fatal(err)
	}
	for _, l := range demoTopology {
		if err := m.Link(l[0], l[1], link(l[0], l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.RunUntil(outOfGrace(m.Nodes()...), 30*time.Second); !ok {
		t.Fatalf("the nodes did not get past their grace periods\n%s", dump(m))
	}
	return m
}

// TestHealLossyLinkNoDecision: two links lose 30 % of the datagrams each way from the start, one of
// them between a relay on the main path and its neighbour. For four virtual minutes per seed nobody
// acts against anyone: the round-trip loss on those links (51 %) explains what the probes across them
// lose.
func TestHealLossyLinkNoDecision(t *testing.T) {
	lossy := func(a, b string) LinkParams {
		if a+b == "alphabravo" || a+b == "deltagolf" {
			return LinkParams{Loss: 0.3}
		}
		return LinkParams{}
	}
	for seed := uint64(1); seed <= 3; seed++ {
		lossyLinkRun(t, seed, lossy)
	}
}

func lossyLinkRun(t *testing.T, seed uint64, lossy func(a, b string) LinkParams) {
	m := settledDemoWith(t, Config{Seed: seed}, lossy)
	var j healJournal
	var sum float64
	var reads int
	for range 24 {
		j.run(m, 10*time.Second)
		for _, p := range m.Node("alpha").Peers() {
			if p.Name == "bravo" && p.Up {
				sum += p.Loss
				reads++
			}
		}
	}
	j.none(t, fmt.Sprintf("seed %d: 30 %% loss each way on alpha–bravo and delta–golf", seed))
	// The link goes down now and then (at 30 % loss each way, 400 ms of silence happen), so not every
	// read finds it up, and one just after it came up rests on few probes: the estimator's accuracy
	// is linkmon's tests' business; here it is shown.
	t.Logf("seed %d: alpha's link to bravo read a mean one-way loss of %.3f over %d reads", seed, sum/float64(max(reads, 1)), reads)
}

// TestHealLossOnsetConfined: well after the start, two links turn 30 %-lossy each way at once. Until
// the records of the nodes at their ends carry the loss (2–4 s), a node whose probes cross one of
// them behind a neighbour that has no other destination cannot tell the loss from a grey hole, and
// may route around that neighbour for one hold. Once the records have caught up nobody acts: every
// penalty falls within 4 s of the onset.
func TestHealLossOnsetConfined(t *testing.T) {
	const seeds = 8
	early := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		m := settledDemo(t, Config{Seed: seed}, LinkParams{})
		m.Run(20 * time.Second) // full windows of healthy outcomes
		onset := m.Now()
		for _, l := range [][2]string{{"alpha", "bravo"}, {"delta", "golf"}} {
			if err := m.SetLink(l[0], l[1], LinkParams{Loss: 0.3}); err != nil {
				t.Fatal(err)
			}
		}
		var j healJournal
		j.run(m, 30*time.Second)
		ps := j.penalties()
		for _, p := range ps {
			if p.Time.Sub(onset) > 4*time.Second {
				t.Errorf("seed %d: penalty %s after the onset: %s", seed, p.Time.Sub(onset), p)
			}
		}
		if len(ps) > 0 {
			early++
			t.Logf("seed %d: %d penalties, the first %s after the onset: %s", seed, len(ps), ps[0].Time.Sub(onset), ps[0])
		}
	}
	t.Logf("%d of %d seeds had a penalty", early, seeds)
}

// TestHealRollingRestartNoDecision: every node in turn is killed, stays down 1.5 s and restarts with
// the same identity, on links with 30 ms of delay and 1 % loss. While each restarted node
// resynchronises, its neighbours' probes through it and the answers of destinations whose routes
// change are set aside, and nobody acts against anyone.
func TestHealRollingRestartNoDecision(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		rollingRestart(t, seed)
	}
}

func rollingRestart(t *testing.T, seed uint64) {
	m := settledDemo(t, Config{Seed: seed, Delay: 30 * time.Millisecond}, LinkParams{Loss: 0.01})
	var j healJournal
	for _, n := range m.Nodes() {
		if err := m.Kill(n.Name); err != nil {
			t.Fatal(err)
		}
		j.run(m, 1500*time.Millisecond)
		if err := m.Restart(n.Name); err != nil {
			t.Fatal(err)
		}
		j.run(m, 8*time.Second)
	}
	j.run(m, 20*time.Second)
	j.none(t, fmt.Sprintf("seed %d: rolling restart", seed))
	sent, unjudged := uint64(0), uint64(0)
	for _, n := range m.Nodes() {
		h := n.Heal()
		sent, unjudged = sent+h.ProbesSent, unjudged+h.ProbesUnjudged
	}
	t.Logf("seed %d: since their last start the nodes sent %d probes; %d were not judged", seed, sent, unjudged)
}

// TestHealRestartedRelayNotPenalised: relay bravo is killed and restarted, at once, before its
// neighbours notice (300 ms, dead-after 400 ms), and after they have routed around it (1.5 s), on
// links with 30 ms of delay and 1 % loss. No one acts against anyone in the 30 s after its return.
// Once its grace is over it is judged again: when it then turns into a blackhole, alpha routes
// around it.
func TestHealRestartedRelayNotPenalised(t *testing.T) {
	for _, c := range []struct {
		seed uint64
		down time.Duration
	}{{1, 0}, {1, 300 * time.Millisecond}, {1, 1500 * time.Millisecond}, {3, 0}, {3, 300 * time.Millisecond}} {
		down := c.down
		m := settledDemo(t, Config{Seed: c.seed, Delay: 30 * time.Millisecond}, LinkParams{Loss: 0.01})
		alpha := m.Node("alpha")
		var j healJournal
		if err := m.Kill("bravo"); err != nil {
			t.Fatal(err)
		}
		j.run(m, down)
		if err := m.Restart("bravo"); err != nil {
			t.Fatal(err)
		}
		j.run(m, 30*time.Second)
		j.none(t, fmt.Sprintf("seed %d: bravo restarted after %s", c.seed, down))
		if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
			t.Fatalf("down %s: alpha does not route through bravo again\n%s", down, dump(m))
		}
		m.Node("bravo").SetTransitFault(1)
		took, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 10*time.Second)
		if !ok || took > 6*time.Second {
			t.Fatalf("down %s: blackhole bravo avoided after %s (%v)\nheal %+v", down, took, ok, alpha.Heal())
		}
		t.Logf("seed %d, bravo down %s: no decision in the 30 s after its return; as a blackhole afterwards avoided in %s", c.seed, down, took)
	}
}

// TestHealFlapsNoDecision: the link between alpha and bravo is cut for a second, five times, 10 s
// apart; no one acts against anyone.
func TestHealFlapsNoDecision(t *testing.T) {
	m := settledDemo(t, Config{Seed: 4}, LinkParams{})
	var j healJournal
	for range 5 {
		if err := m.SetLink("alpha", "bravo", LinkParams{Down: true}); err != nil {
			t.Fatal(err)
		}
		j.run(m, time.Second)
		if err := m.SetLink("alpha", "bravo", LinkParams{}); err != nil {
			t.Fatal(err)
		}
		j.run(m, 10*time.Second)
	}
	j.run(m, 20*time.Second)
	j.none(t, "flapping alpha–bravo")
}

// judgedHealthy reports whether n's healing loop judges its neighbour peer healthy: enough judged
// probes through it, answered.
func judgedHealthy(n *Node, peer string) func() bool {
	return func() bool {
		for _, p := range n.Heal().Peers {
			if p.Name == peer {
				return p.Class == "healthy"
			}
		}
		return false
	}
}

// healPhase runs the demo mesh, makes bravo drop the fraction of what it relays, and returns how long
// alpha took to route around it and the first decision.
func healPhase(t *testing.T, seed uint64, fraction float64, link LinkParams) (time.Duration, node.HealDecision) {
	t.Helper()
	m := settledDemo(t, Config{Seed: seed}, link)
	alpha := m.Node("alpha")
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
	}
	// The loop judges a relay only by destinations that have answered through it (docs/node.md):
	// on lossy links the end-to-end handshake with the destination behind bravo may take a retry
	// or two (a lost fragment of eight costs the 5 s retry), and until it answers, bravo's faults
	// are no one's to see. The fault starts once alpha has judged bravo healthy on answered probes.
	if _, ok := m.RunUntil(judgedHealthy(alpha, "bravo"), 30*time.Second); !ok {
		t.Fatalf("alpha never judged bravo on answered probes\nheal %+v\n%s", alpha.Heal(), dump(m))
	}
	m.Node("bravo").SetTransitFault(fraction)
	took, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 30*time.Second)
	if !ok {
		t.Fatalf("alpha still routes through bravo (drops %.2f)\nheal %+v\n%s", fraction, alpha.Heal(), dump(m))
	}
	var first node.HealDecision
	for _, n := range m.Nodes() {
		for _, d := range n.Heal().Decisions {
			if d.Peer != "bravo" {
				t.Errorf("false action: %s %s %s (%s p=%.4f)", n.Name, d.Action, d.Peer, d.Class, d.Confidence)
			}
			if first.Time.IsZero() || d.Time.Before(first.Time) {
				first = d
			}
		}
	}
	return took, first
}

// TestHealFaultsCaughtInBounds: after the grace, a blackhole and a grey hole (half dropped) are
// routed around within 2 s of the fault on clean links, for several seeds, as before the detector
// learnt to tell loss from malice. With 1 % loss on every link the links explain more and the rule
// asks for a longer run of losses: a blackhole within 5 s. A grey hole that link loss keeps from
// ever dropping three in a row waits for the grey-hole verdict: outcomes at least 3 s old, about
// 26 of them at 200 ms for evidence of chance ≤ 1e-5, and two consecutive judgements, so 8–10 s
// (10.0 s was seen; the protocols' own random draws move it from run to run); within 15 s.
func TestHealFaultsCaughtInBounds(t *testing.T) {
	for _, c := range []struct {
		fraction float64
		loss     float64
		bound    time.Duration
	}{{1, 0, 2 * time.Second}, {0.5, 0, 2 * time.Second}, {1, 0.01, 5 * time.Second}, {0.5, 0.01, 15 * time.Second}} {
		var worst time.Duration
		for seed := uint64(1); seed <= 3; seed++ {
			took, d := healPhase(t, seed, c.fraction, LinkParams{Loss: c.loss})
			worst = max(worst, took)
			if took > c.bound {
				t.Errorf("drops %.1f, link loss %.2f, seed %d: avoided after %s, want ≤ %s (%s %s p=%.6f %v)",
					c.fraction, c.loss, seed, took, c.bound, d.Action, d.Class, d.Confidence, d.Evidence)
			}
		}
		t.Logf("bravo drops %.1f of its transit, links lose %.2f: avoided within %s of the fault (3 seeds)", c.fraction, c.loss, worst)
	}
}
