package control

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/telemetry"
)

// relayLoop is the advisor in a closed loop with a mesh that does what the nodes do with its list:
// alpha and gamma each send flow packets a second to the other through relay beta, and while the
// list names beta they route the flow round it (only the self-healing echo probes, probes a
// second each way, still cross it, as on real kernels). beta loses drop of the flow it relays and
// none of the probes (a grey hole that spares probes). The neighbours' reports carry per-second
// counts and their means over the last telemetry.Window reports, as real nodes' do.
type relayLoop struct {
	t            *testing.T
	h            *harness
	nodes        map[string]*testNode
	mu           sync.Mutex
	now          time.Time
	step         time.Duration
	seq          uint64
	flow, probes float64
	drop         float64 // the fraction of the flow beta loses now (0: healthy)
	probeDrop    float64 // the fraction of the probes it loses
	noDetour     bool    // the flow has no other way: it stays on beta while beta is named (a cut vertex)
	// per neighbour (alpha, gamma): what it handed beta and got back from it, last Window reports
	handed, back map[string][]float64
	// what happened, for the assertions: namings and withdrawals of beta, with their times
	named, withdrawn []time.Time
	exposed          time.Duration // time beta carried the flow while it was dropping part of it
}

func newRelayLoop(t *testing.T, step time.Duration, mutate func(*AdvisoryConfig)) *relayLoop {
	l := &relayLoop{t: t, now: time.Now(), step: step, flow: 50, probes: 5, handed: map[string][]float64{}, back: map[string][]float64{}}
	l.h = newHarnessAt(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "c.db")}, func(c *Config) {
		c.AI.Model = writeModel(t, constantModel(classIndex("normal")))
		c.AI.Advisories = AdvisoryConfig{Enabled: true, Interval: step}
		if mutate != nil {
			mutate(&c.AI.Advisories)
		}
	}, l.clock)
	admin := l.h.apiClient(l.h.adminKey)
	l.nodes = map[string]*testNode{}
	for _, name := range []string{"alpha", "beta", "gamma"} {
		l.nodes[name] = l.h.enrollNode(t, admin, name, "web")
	}
	return l
}

func (l *relayLoop) clock() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

// betaNamed reports whether the list in force names beta.
func (l *relayLoop) betaNamed() bool {
	s := l.h.srv
	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	if s.adv.cur == nil {
		return false
	}
	_, ok := s.adv.cur.Find("beta")
	return ok
}

// tick moves the clock one step, has every node report what the last step carried, and runs the
// advisor once.
func (l *relayLoop) tick() {
	l.t.Helper()
	named := l.betaNamed()
	handed, back := l.probes, l.probes*(1-l.probeDrop)
	if !named || l.noDetour {
		handed, back = l.flow+l.probes, l.flow*(1-l.drop)+back
		if l.drop > 0 && !named {
			l.exposed += l.step
		}
	}
	l.mu.Lock()
	l.now = l.now.Add(l.step)
	l.mu.Unlock()
	l.seq++
	peers := map[string][]api.PeerReport{}
	for _, n := range []string{"alpha", "gamma"} {
		l.handed[n] = append(l.handed[n], handed)
		l.back[n] = append(l.back[n], back)
		if len(l.handed[n]) > telemetry.Window {
			l.handed[n], l.back[n] = l.handed[n][1:], l.back[n][1:]
		}
		peers[n] = []api.PeerReport{{Name: "beta", State: api.PeerUp, RTTMillis: 1, Features: map[string]float64{
			"tx_transit": handed, "rx_transit": back, "tx_transit_5s_mean": mean(l.handed[n]), "rx_transit_5s_mean": mean(l.back[n]),
			"probe_loss": 0, "probe_rtt_ms": 1.5, "up": 1}}}
	}
	peers["beta"] = []api.PeerReport{{Name: "alpha", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(0, 0)},
		{Name: "gamma", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(0, 0)}}
	for name, n := range l.nodes {
		if _, err := n.c.Report(l.t.Context(), &api.MeshReport{Sequence: l.seq, Features: nodeFeatures(1), Peers: peers[name]}); err != nil {
			l.t.Fatal(err)
		}
	}
	if err := l.h.srv.advise(l.t.Context()); err != nil {
		l.t.Fatal(err)
	}
	switch now := l.betaNamed(); {
	case now && !named:
		l.named = append(l.named, l.clock())
	case !now && named:
		l.withdrawn = append(l.withdrawn, l.clock())
	}
}

// run ticks for d of the clock.
func (l *relayLoop) run(d time.Duration) {
	l.t.Helper()
	for end := l.clock().Add(d); l.clock().Before(end); {
		l.tick()
	}
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// TestAdvisorHoldsAGreyHoleTheMeshLeft: a grey hole dropping 15 % of the flow it relays is named by
// flow conservation; the mesh then routes the flow round it, so its deficit fades with nothing left
// to lose. That is absence of evidence, not evidence of repair: the advisory must stay in force for
// the whole fault (one naming, no withdrawal), not cycle (withdrawn as "clean", the traffic back,
// the deficit back, named again, each cycle exposing the flow to the grey hole for the time it
// takes to convict it again). After the fault ends the relay is released at the end of its hold and
// not named again.
func TestAdvisorHoldsAGreyHoleTheMeshLeft(t *testing.T) {
	l := newRelayLoop(t, time.Second, nil)
	l.run(10 * time.Second) // healthy
	if len(l.named) != 0 {
		t.Fatalf("named a healthy relay at %v", l.named)
	}
	l.drop = 0.15
	fault := l.clock()
	l.run(100 * time.Second)
	if len(l.named) != 1 || len(l.withdrawn) != 0 {
		t.Fatalf("during a 100-s fault beta was named %d times and withdrawn %d times (want once, never): named at %v, withdrawn at %v; the flow crossed the grey hole for %s",
			len(l.named), len(l.withdrawn), since(fault, l.named), since(fault, l.withdrawn), l.exposed)
	}
	t.Logf("named %s after the fault; the flow crossed the grey hole for %s of the 100 s", l.named[0].Sub(fault), l.exposed)
	l.drop = 0
	repaired := l.clock()
	hold := l.h.srv.cfg.AI.Advisories.Damping.Hold
	l.run(hold + 30*time.Second)
	if len(l.withdrawn) != 1 || len(l.named) != 1 {
		t.Fatalf("after the fault ended: named at %v, withdrawn at %v (after the repair), want one withdrawal and no new naming", since(repaired, l.named), since(repaired, l.withdrawn))
	}
	if got, want := l.withdrawn[0].Sub(l.named[0]), hold; got < want || got > want+2*l.step {
		t.Fatalf("released %s after its naming, want at the end of its hold, %s", got, want)
	}
	t.Logf("repaired relay released %s after the repair (%s after its naming)", l.withdrawn[0].Sub(repaired), l.withdrawn[0].Sub(l.named[0]))
}

func since(t0 time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(t0)
	}
	return out
}

// TestAdvisorDampsARelayThatStaysFaulty: a grey hole that never recovers, on 10-s reports (the
// nodes' default). Each hold ends in a probation: the advisory is withdrawn, the flow comes back,
// and the relay is named again. Every re-naming lengthens the hold (a penalty with exponential
// decay, as RFC 2439's route flap damping), up to max_hold and never beyond, so the flow crosses the
// grey hole less and less often; re-namings are suppressed (held absolutely). After the fault ends,
// the relay is released at most max_hold after its last naming, never named again, and its record
// is forgotten within half_life·log2(ceiling/reuse) of that release (the penalty stands still while
// the relay is held).
func TestAdvisorDampsARelayThatStaysFaulty(t *testing.T) {
	const step = 10 * time.Second
	l := newRelayLoop(t, step, nil)
	d := l.h.srv.cfg.AI.Advisories.Damping
	l.run(60 * time.Second)
	l.drop = 0.15
	fault := l.clock()
	l.run(90 * time.Minute)
	if len(l.named) < 4 {
		t.Fatalf("named %d times in 90 min of a fault, withdrawn at %v", len(l.named), since(fault, l.withdrawn))
	}
	var holds []time.Duration
	for i, w := range l.withdrawn {
		holds = append(holds, w.Sub(l.named[i]))
	}
	var seq strings.Builder
	for i, h := range holds {
		fmt.Fprintf(&seq, "| %d | +%s | %s | %s |\n", i+1, l.named[i].Sub(fault).Round(time.Second), h.Round(time.Second), l.withdrawn[i].Sub(fault).Round(time.Second))
	}
	t.Logf("a relay that stays faulty, damping %+v; exposed for %s of %s:\n| naming | named after the fault | held | withdrawn after the fault |\n|---|---|---|---|\n%s",
		d, l.exposed, 90*time.Minute, seq.String())
	for i, h := range holds {
		if h > d.MaxHold+step {
			t.Errorf("hold %d: %s, above max_hold %s", i+1, h, d.MaxHold)
		}
		if i > 0 && h <= holds[i-1] && holds[i-1] < d.MaxHold {
			t.Errorf("hold %d (%s) not longer than hold %d (%s), which was below max_hold", i+1, h, i, holds[i-1])
		}
	}
	if holds[0] < d.Hold || holds[0] > d.Hold+step {
		t.Errorf("first hold %s, want %s", holds[0], d.Hold)
	}
	if l.exposed > 90*time.Minute/10 {
		t.Errorf("the flow crossed the grey hole for %s of 90 min, more than a tenth", l.exposed)
	}
	sp := l.suspect("beta")
	if !sp.suppressed {
		t.Error("the last re-naming is not suppressed")
	}

	// The fault ends. The relay is released at most max_hold after its last naming, and not named
	// again; its record is forgotten in bounded time.
	l.drop = 0
	repaired := l.clock()
	last := l.named[len(l.named)-1]
	penalty := sp.record.penalty
	l.run(d.MaxHold + time.Minute)
	if len(l.withdrawn) != len(l.named) {
		t.Fatalf("repaired at +%s, the relay named at +%s is still held %s later", repaired.Sub(fault), last.Sub(fault), l.clock().Sub(repaired))
	}
	if w := l.withdrawn[len(l.withdrawn)-1]; w.Sub(last) > d.MaxHold+step {
		t.Errorf("released %s after its last naming, above max_hold %s", w.Sub(last), d.MaxHold)
	}
	release := l.withdrawn[len(l.withdrawn)-1]
	forget := time.Duration(float64(d.HalfLife) * math.Log2(penalty/d.Reuse))
	t.Logf("repaired at +%s; the last naming (+%s) released %s after the repair, %s after it; penalty %.3f at that naming, forgotten %s after the release",
		repaired.Sub(fault).Round(time.Second), last.Sub(fault).Round(time.Second), release.Sub(repaired).Round(time.Second), release.Sub(last).Round(time.Second), penalty, forget.Round(time.Second))
	if forget > time.Duration(float64(d.HalfLife)*math.Log2(d.ceiling()/d.Reuse))+time.Second {
		t.Errorf("record kept %s, beyond the bound", forget)
	}
	l.run(release.Add(forget).Sub(l.clock()) - 2*step)
	if p := l.suspect("beta").record.penalty; p == 0 {
		t.Errorf("penalty forgotten %s after the release, before the bound %s", l.clock().Sub(release), forget)
	}
	l.run(4 * step)
	if p := l.suspect("beta").record.penalty; p != 0 {
		t.Errorf("penalty %v not forgotten %s after the release", p, l.clock().Sub(release))
	}
	if len(l.named) != len(l.withdrawn) {
		t.Errorf("the repaired relay was named again at +%s", l.named[len(l.named)-1].Sub(fault))
	}
}

// suspect returns a copy of the advisor's state for name.
func (l *relayLoop) suspect(name string) suspect {
	s := l.h.srv
	s.adv.mu.Lock()
	defer s.adv.mu.Unlock()
	if sp := s.adv.suspects[name]; sp != nil {
		return *sp
	}
	return suspect{}
}

// TestAdvisorReleasesOnEvidence: a relay whose flow has no other way (a cut vertex) keeps being
// judged on the traffic it was named on. Repaired, it is released after clear_after clean
// judgements, long before its hold ends. Named again at once, its hold is suppressed: clean
// judgements no longer end it early, and it is released at the hold's end. Clean judgements on too
// little traffic never release it: with the flow gone, only the probes cross it, and it is held.
func TestAdvisorReleasesOnEvidence(t *testing.T) {
	l := newRelayLoop(t, time.Second, nil)
	l.probes = 12 // above min_relayed together, a fifth of the traffic named on
	l.noDetour = true
	cfg := l.h.srv.cfg.AI.Advisories
	l.drop = 0.15
	l.run(15 * time.Second)
	if len(l.named) != 1 {
		t.Fatalf("named at %v", l.named)
	}
	l.drop = 0
	repaired := l.clock()
	l.run(20 * time.Second)
	if len(l.withdrawn) != 1 {
		t.Fatalf("repaired relay with its traffic through it not released within 20 s (hold %s)", cfg.Damping.Hold)
	}
	// The windowed deficit fades over a window, then clear_after clean judgements.
	if took := l.withdrawn[0].Sub(repaired); took > time.Duration(telemetry.Window+cfg.ClearAfter+1)*time.Second {
		t.Errorf("released %s after the repair, want within a window and clear_after reports", took)
	}
	t.Logf("first naming, repaired: released on evidence %s after the repair", l.withdrawn[0].Sub(repaired))

	l.drop = 0.15
	l.run(15 * time.Second)
	if len(l.named) != 2 || !l.suspect("beta").suppressed {
		t.Fatalf("re-named %d times, suppressed %v", len(l.named)-1, l.suspect("beta").suppressed)
	}
	l.drop = 0
	l.run(cfg.Damping.Hold)
	if len(l.withdrawn) != 1 {
		t.Fatalf("suppressed hold ended by clean judgements %s after the re-naming (hold %s)", l.withdrawn[1].Sub(l.named[1]), l.h.srv.adv.suspects["beta"].heldUntil.Sub(l.named[1]))
	}
	l.run(2 * cfg.Damping.Hold)
	if len(l.withdrawn) != 2 {
		t.Fatal("suppressed hold never ended")
	}
	held := l.withdrawn[1].Sub(l.named[1])
	if want := cfg.Damping.holdFor(l.suspect("beta").record.penalty); held < want || held > want+l.step {
		t.Errorf("suppressed naming held %s, want its hold %s", held, want)
	}
	t.Logf("re-named %s later: suppressed, held %s", l.named[1].Sub(l.withdrawn[0]), held)

	// Traffic gone (not a cut vertex now), relay repaired: what crosses it is the probes, a tenth
	// of what it was named on. Judged clean on them, it is unknown, and held to the end of its hold.
	l.h.srv.adv.mu.Lock()
	l.h.srv.adv.suspects["beta"].record = namingRecord{}
	l.h.srv.adv.mu.Unlock()
	l.noDetour = false
	l.drop = 0.15
	l.run(15 * time.Second)
	l.drop = 0
	if len(l.named) != 3 {
		t.Fatalf("named %d times", len(l.named))
	}
	l.run(cfg.Damping.Hold - 20*time.Second)
	if len(l.withdrawn) != 2 {
		t.Fatalf("released on probe traffic alone %s after its naming", l.withdrawn[2].Sub(l.named[2]))
	}
	if sp := l.suspect("beta"); sp.clean != 0 || sp.handed < cfg.MinRelayed {
		t.Errorf("on probes alone (%.1f packets/s, above min_relayed %v): %d clean judgements counted", sp.handed, cfg.MinRelayed, sp.clean)
	}
	// At the end of the hold, the few probes that cross it lose a third: judged faulty on too
	// little traffic, which does not hold it past its hold.
	l.probeDrop = 0.3
	l.run(30 * time.Second)
	if len(l.withdrawn) != 3 {
		t.Fatalf("held past its hold on a deficit of the probes alone (%+v)", l.suspect("beta"))
	}
	if held := l.withdrawn[2].Sub(l.named[2]); held > cfg.Damping.Hold+l.step {
		t.Errorf("held %s, want its hold %s", held, cfg.Damping.Hold)
	}
	// A cut vertex still faulty on its full traffic at the end of its hold stays named until a
	// judgement is not faulty.
	l.probeDrop, l.noDetour = 0, true
	l.h.srv.adv.mu.Lock()
	l.h.srv.adv.suspects["beta"].record = namingRecord{}
	l.h.srv.adv.mu.Unlock()
	l.drop = 0.15
	l.run(cfg.Damping.Hold + 30*time.Second)
	if len(l.named) != 4 || len(l.withdrawn) != 3 {
		t.Fatalf("a relay faulty on its full traffic at the end of its hold: named at %v, withdrawn at %v", l.named, l.withdrawn)
	}
	l.drop = 0
	l.run(20 * time.Second)
	if len(l.withdrawn) != 4 {
		t.Fatalf("not released once judged clean after its hold: named at %v, withdrawn at %v, %+v", l.named, l.withdrawn, l.suspect("beta"))
	}
}

// TestAdvisorOperatorReleasesAHold: an admin's `ctl advisory clear` withdraws the detector's
// advisory at once, hold or not, and forgets the relay's record; the relay must then be judged
// faulty in a new run to be named again. A node nobody names is a 404.
func TestAdvisorOperatorReleasesAHold(t *testing.T) {
	l := newRelayLoop(t, time.Second, nil)
	admin := l.h.apiClient(l.h.adminKey)
	if _, err := admin.ClearAdvisory(t.Context(), "beta"); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("clearing an advisory nobody set: %v", err)
	}
	l.drop = 0.15
	l.run(15 * time.Second)
	if len(l.named) != 1 {
		t.Fatalf("named at %v", l.named)
	}
	shown, err := admin.Advisories(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e := shown.Entries; len(e) != 1 || e[0].Source != "detector" || e[0].HeldUntil == nil ||
		!e[0].HeldUntil.Equal(l.named[0].Add(cfg(l).Damping.Hold)) || e[0].Penalty != 1 || e[0].Suppressed {
		t.Fatalf("list shows %+v, want beta held %s from its naming at %s, penalty 1", e, cfg(l).Damping.Hold, l.named[0])
	}
	list, err := admin.ClearAdvisory(t.Context(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Entries) != 0 || l.betaNamed() {
		t.Fatalf("still named after an admin cleared it: %+v", list.Entries)
	}
	if sp := l.suspect("beta"); sp.record.penalty != 0 || sp.byDeficit != 0 {
		t.Errorf("record kept after an admin cleared it: %+v", sp)
	}
	// Still faulty, it is named again after a new run of judgements, as a first naming.
	at := l.clock()
	l.run(10 * time.Second)
	if len(l.named) != 2 || l.named[1].Sub(at) < time.Duration(cfg(l).DeficitConsecutive)*time.Second {
		t.Fatalf("after the clear, named at %v", since(at, l.named[1:]))
	}
	if sp := l.suspect("beta"); sp.suppressed || sp.heldUntil.Sub(l.named[1]) != cfg(l).Damping.Hold {
		t.Errorf("naming after a clear: suppressed %v, hold %s; want a first naming's", sp.suppressed, sp.heldUntil.Sub(l.named[1]))
	}
}

func cfg(l *relayLoop) AdvisoryConfig { return l.h.srv.cfg.AI.Advisories }

// TestAdvisoryConfigRanges: the evidence and damping settings default sanely and refuse values out
// of range with an error naming the key.
func TestAdvisoryConfigRanges(t *testing.T) {
	var c AdvisoryConfig
	c.setDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.MinRelayed != 20 || c.EvidenceFraction != 0.5 || c.Damping != (AdvisoryDamping{Hold: 2 * time.Minute, MaxHold: 30 * time.Minute, HalfLife: 15 * time.Minute, Suppress: 1.5, Reuse: 0.5}) {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.Damping.ceiling(); math.Abs(got-(1+math.Log2(15))) > 1e-9 {
		t.Errorf("ceiling %v", got)
	}
	for key, mutate := range map[string]func(*AdvisoryConfig){
		"min_relayed":       func(c *AdvisoryConfig) { c.MinRelayed = -1 },
		"evidence_fraction": func(c *AdvisoryConfig) { c.EvidenceFraction = 1.5 },
		"damping.hold":      func(c *AdvisoryConfig) { c.Damping.Hold = time.Second },
		"damping.max_hold":  func(c *AdvisoryConfig) { c.Damping.MaxHold = time.Minute },
		"damping.half_life": func(c *AdvisoryConfig) { c.Damping.HalfLife = 48 * time.Hour },
		"damping.reuse":     func(c *AdvisoryConfig) { c.Damping.Reuse = 1 },
		"damping.suppress":  func(c *AdvisoryConfig) { c.Damping.Suppress = 9 },
	} {
		c := AdvisoryConfig{}
		c.setDefaults()
		mutate(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "ai.advisories."+key+" ") {
			t.Errorf("%s out of range: %v", key, err)
		}
	}
	// Through the file: a misspelt key is refused, a good section is read.
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte("data_dir: data\nlisten: 127.0.0.1:9443\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := LoadConfig(write("ai:\n  advisories: {enabled: true, min_relayed: 4, damping: {hold: 1m, max_hold: 1h}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := got.AI.Advisories; a.MinRelayed != 4 || a.Damping.Hold != time.Minute || a.Damping.MaxHold != time.Hour || a.Damping.HalfLife != 15*time.Minute {
		t.Errorf("read %+v", a)
	}
	if _, err := LoadConfig(write("ai:\n  advisories: {damping: {hold_time: 1m}}\n")); err == nil {
		t.Error("a misspelt damping key was accepted")
	}
}

// TestAdvisorNoDeficitJudgementOnProbes: a relay that carries only the self-healing probes (5 a
// second from each neighbour, under min_relayed together) and loses a third of them reads a large
// deficit on a handful of packets. Flow conservation does not judge it, so it is never named; the
// same loss on a flow it relays is named.
func TestAdvisorNoDeficitJudgementOnProbes(t *testing.T) {
	l := newRelayLoop(t, time.Second, nil)
	l.flow, l.probeDrop = 0, 0.3
	l.run(30 * time.Second)
	if len(l.named) != 0 {
		t.Fatalf("named on %.1f packets/s of probes: %+v", l.suspect("beta").handed, l.suspect("beta"))
	}
	l.flow, l.drop = 50, 0.15
	l.run(15 * time.Second)
	if len(l.named) != 1 {
		t.Fatalf("a 15 %% grey hole on a 50 packets/s flow named %d times", len(l.named))
	}
}
