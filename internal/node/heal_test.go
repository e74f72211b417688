package node

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	mapek "x0tta6bl4/internal/mapek/loop"
	"x0tta6bl4/internal/memnet"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// healBench drives the detector and the loop with a virtual clock: one probe through neighbour B per
// step, answered after rtt unless drop says otherwise.
type healBench struct {
	t       *testing.T
	det     *detector
	loop    *mapek.Loop
	now     time.Time
	start   time.Time
	step    time.Duration
	tick    time.Duration // the engine's tick interval the detector's clock is told
	rtt     time.Duration
	view    nbrView
	replies []benchReply
	// hold, while set, keeps the answers to the probes sent in held instead of letting them arrive
	// (their neighbour stalled); release lets them arrive.
	hold bool
	held []benchReply
	act  *healRecorder
	sent int
	// before, if set, runs at the start of every step (to change the view, say).
	before func()
}

type benchReply struct {
	at  time.Time
	seq uint16
	src netip.Addr
}

type healRecorder struct{ log []string }

func (r *healRecorder) Penalise(int) { r.log = append(r.log, "P") }
func (r *healRecorder) Restore(int)  { r.log = append(r.log, "R") }

func healID(b byte) routing.NodeID { var id routing.NodeID; id[0] = b; return id }

func healAddr(b byte) netip.Addr { return netip.AddrFrom16([16]byte{0xfd, 0x74, 15: b}) }

// newHealBench makes a bench whose neighbour's link came up long enough ago for its grace to be over,
// with targets whose answers come back through it.
func newHealBench(t *testing.T, targets int) *healBench {
	b := &healBench{t: t, det: newDetector(detectRules{}), now: time.Unix(1000, 0), step: 200 * time.Millisecond,
		tick: 50 * time.Millisecond, rtt: 2 * time.Millisecond, act: &healRecorder{},
		loop: mapek.New(mapek.Rules{Confidence: 0.99, Consecutive: 2, Hold: 10 * time.Second})}
	b.start = b.now
	b.view = nbrView{id: healID(1), addr: healAddr(1), name: "B", linkSamples: 24,
		linkSince: b.now.Add(-time.Minute)}
	for i := range targets {
		b.view.targets = append(b.view.targets, healTarget{id: healID(byte(10 + i)), name: "D",
			addr: healAddr(byte(10 + i)), reply: healID(1), soleRelay: true})
	}
	return b
}

// run advances n steps; drop(i) decides whether the i-th probe sent is lost. It returns the
// decisions and the last judgement.
func (b *healBench) run(n int, drop func(i int) bool) ([]mapek.Decision, mapek.Judgement) {
	var ds []mapek.Decision
	var j mapek.Judgement
	for range n {
		d, jj := b.stepAfter(b.step, drop)
		ds, j = append(ds, d...), jj
	}
	return ds, j
}

// stepAfter is one step gap after the last: the detector's clock ticks (the bench ticks once per
// step, which is within the stall threshold at the default step), the answers due arrive, the
// detector and the loop judge, and a probe goes out unless drop says it is lost.
func (b *healBench) stepAfter(gap time.Duration, drop func(i int) bool) ([]mapek.Decision, mapek.Judgement) {
	var ds []mapek.Decision
	b.now = b.now.Add(gap)
	b.det.tick(b.now, b.tick)
	if b.before != nil {
		b.before()
	}
	kept := b.replies[:0]
	for _, r := range b.replies {
		if !r.at.After(b.now) {
			b.det.reply(r.at, r.seq, r.src)
		} else {
			kept = append(kept, r)
		}
	}
	b.replies = kept
	b.det.update(b.now, []nbrView{b.view})
	b.det.expire(b.now)
	j := b.det.judge(b.now, 0, b.view.id)
	for _, d := range b.loop.Step(b.now.Sub(b.start), []mapek.Judgement{j}, b.act) {
		if d.Action == mapek.Restore {
			b.det.afresh(b.view.id) // as healActuator.Restore does
		}
		ds = append(ds, d)
	}
	tg, seq, ok := b.det.next(b.now, b.view.id)
	if !ok {
		return ds, j // no target
	}
	if !drop(b.sent) {
		r := benchReply{b.now.Add(b.rtt), seq, tg.addr}
		if b.hold {
			b.held = append(b.held, r)
		} else {
			b.replies = append(b.replies, r)
		}
	}
	b.sent++
	return ds, j
}

// release lets the held answers arrive rtt from now, as a neighbour that stalled answers what
// waited in its socket once it runs again.
func (b *healBench) release() {
	for _, r := range b.held {
		r.at = b.now.Add(b.rtt)
		b.replies = append(b.replies, r)
	}
	b.held, b.hold = nil, false
}

func never(int) bool { return false }

func TestHealDetectorHealthy(t *testing.T) {
	b := newHealBench(t, 2)
	ds, j := b.run(3000, never) // ten virtual minutes
	if len(ds) != 0 || j.Class != classHealthy || b.det.lost != 0 {
		t.Fatalf("healthy path: decisions %v, judgement %+v, lost %d", ds, j, b.det.lost)
	}
	// Background loss within what the links explain (here 10 % on the link, 2 % elsewhere):
	// no action in ten minutes.
	b.view.linkLoss = 0.1
	k := 0
	ds, _ = b.run(3000, func(int) bool { k++; return k%10 == 0 })
	if len(ds) != 0 {
		t.Fatalf("lossy but explained path: %v", ds)
	}
}

// lossyLinkRun runs the bench for steps with the probes lost as links losing oneWay each way would
// lose them: the probe crosses A–B and B–D, and its answer crosses them back. The link monitor's
// estimate of A–B, and B's and D's reports of B–D, are redrawn every step as the 24-probe samples
// they are; the reports are one-way, as records carry them. It returns the decisions.
func lossyLinkRun(b *healBench, seed uint64, steps int, abOneWay, bdOneWay float64) []mapek.Decision {
	rng := rand.New(rand.NewPCG(seed, 7))
	crossed := func(oneWay float64) bool { return rng.Float64() < oneWay }
	sample := func(oneWay float64) float64 { // a 24-probe round-trip loss estimate
		lost := 0
		for range 24 {
			probeLost := crossed(oneWay)
			if echoLost := crossed(oneWay); probeLost || echoLost {
				lost++
			}
		}
		return float64(lost) / 24
	}
	b.before = func() {
		b.view.linkLoss = sample(abOneWay)
		for i := range b.view.targets {
			b.view.targets[i].nextLoss = sample(bdOneWay)
		}
	}
	ds, _ := b.run(steps, func(int) bool {
		return crossed(abOneWay) || crossed(bdOneWay) || crossed(bdOneWay) || crossed(abOneWay)
	})
	b.before = nil
	return ds
}

// TestHealDetectorLossyLinkNoDecision: a link that loses 30 % each way, on the way to the neighbour
// or behind it, produces no decision in two virtual hours per seed: the round-trip loss it explains
// is 51 %, and even the unluckiest run of losses in that time is no evidence at FalseAlarm. So is a
// link that loses 10 % each way.
func TestHealDetectorLossyLinkNoDecision(t *testing.T) {
	for _, c := range []struct {
		name   string
		ab, bd float64
	}{{"A–B 30 %", 0.3, 0}, {"B–D 30 %", 0, 0.3}, {"A–B 10 %", 0.1, 0}, {"both 10 %", 0.1, 0.1}} {
		for seed := uint64(1); seed <= 3; seed++ {
			b := newHealBench(t, 3)
			if ds := lossyLinkRun(b, seed, 36000, c.ab, c.bd); len(ds) != 0 {
				t.Errorf("%s, seed %d: %d decisions, the first %v", c.name, seed, len(ds), ds[0])
			}
		}
	}
}

func TestHealDetectorBlackhole(t *testing.T) {
	b := newHealBench(t, 1)
	b.run(20, never)
	fault := b.now
	ds, j := b.run(20, func(int) bool { return true })
	if len(ds) != 1 || ds[0].Action != mapek.Penalise || ds[0].Evidence.Class != "blackhole" {
		t.Fatalf("blackhole: decisions %v, judgement %+v", ds, j)
	}
	// The first lost probe is seen after the 1 s timeout; three in a row, judged twice.
	mttd := ds[0].At - fault.Sub(b.start)
	t.Logf("MTTD %s, evidence %v", mttd, ds[0].Evidence.Evidence)
	if mttd > 2*time.Second || ds[0].Evidence.Confidence < 0.99 || ds[0].Evidence.Evidence["run"] < 3 {
		t.Fatalf("decision %v after %s", ds[0], mttd)
	}
	// Re-probe after the hold: restored, judged afresh from continued probing, penalised again.
	ds, _ = b.run(60, func(int) bool { return true })
	if len(ds) != 2 || ds[0].Action != mapek.Restore || ds[1].Action != mapek.Penalise {
		t.Fatalf("re-probe of a lasting blackhole: %v", ds)
	}
	// The relay recovers one second before the (doubled, 20 s) hold ends: it is restored and judged
	// on fresh evidence only, so it stays restored.
	second := ds[1].At
	ds, _ = b.run(int((second+19*time.Second-b.now.Sub(b.start))/b.step), func(int) bool { return true })
	if len(ds) != 0 || !b.loop.Penalised(0) {
		t.Fatalf("during the second hold: %v", ds)
	}
	ds, _ = b.run(200, never)
	if len(ds) != 1 || ds[0].Action != mapek.Restore || b.loop.Penalised(0) {
		t.Fatalf("recovered relay: %v", ds)
	}
}

// TestHealDetectorBlackholeBehindLossyLink: behind a link that loses 10 % each way a blackhole takes
// a longer run of losses to prove, and is still caught within a few seconds.
func TestHealDetectorBlackholeBehindLossyLink(t *testing.T) {
	b := newHealBench(t, 2)
	lossyLinkRun(b, 1, 300, 0.1, 0)
	b.view.linkLoss = 0.19 // 10 % each way
	fault := b.now
	ds, j := b.run(50, func(int) bool { return true })
	if len(ds) != 1 || ds[0].Evidence.Class != "blackhole" {
		t.Fatalf("blackhole behind a lossy link: %v %+v", ds, j)
	}
	mttd := ds[0].At - fault.Sub(b.start)
	run := ds[0].Evidence.Evidence["run"]
	t.Logf("MTTD %s after a run of %.0f (explained loss %.3f)", mttd, run, ds[0].Evidence.Evidence["explained_loss"])
	if mttd > 4*time.Second || run <= 3 {
		t.Fatalf("decision %v after %s", ds[0], mttd)
	}
}

func TestHealDetectorGreyhole(t *testing.T) {
	b := newHealBench(t, 3)
	b.run(30, never)
	fault := b.now
	// Every other probe lost: never three in a row, so only the window's excess loss can tell, once
	// the outcomes are older than the links' reports take.
	ds, j := b.run(45, func(i int) bool { return i%2 == 0 })
	if len(ds) != 1 || ds[0].Evidence.Class != "greyhole" || ds[0].Evidence.Confidence < 0.99 {
		t.Fatalf("grey hole: decisions %v, judgement %+v", ds, j)
	}
	mttd := ds[0].At - fault.Sub(b.start)
	t.Logf("MTTD %s, evidence %v", mttd, ds[0].Evidence.Evidence)
	if mttd > 7*time.Second {
		t.Fatalf("grey hole caught after %s", mttd)
	}
}

// TestHealDetectorLossOnsetReportedLate: the link behind the neighbour starts losing every other
// probe's round trip, and the records say so 4 s later, as they may. Partial loss is judged only
// once the reports had time to explain it, so nothing happens; judged at once, the same evidence
// would have made a grey hole of a healthy relay.
func TestHealDetectorLossOnsetReportedLate(t *testing.T) {
	for _, lag := range []time.Duration{0, time.Nanosecond} {
		b := newHealBench(t, 1)
		if lag > 0 {
			b.det.r.ReportLag = lag
		}
		b.run(40, never)
		onset := b.now
		b.before = func() {
			if b.now.Sub(onset) >= 4*time.Second {
				b.view.targets[0].nextLoss = 0.5
			}
		}
		ds, _ := b.run(100, func(i int) bool { return i%2 == 0 })
		switch {
		case lag == 0 && len(ds) != 0:
			t.Fatalf("loss onset reported after 4 s: %v", ds)
		case lag > 0 && (len(ds) == 0 || ds[0].Evidence.Class != "greyhole"):
			t.Fatalf("judged without waiting for the reports, the onset should have looked like a grey hole: %v", ds)
		}
	}
}

func TestHealDetectorEvidenceRules(t *testing.T) {
	// A destination that never answered (a firewall refusing echo) is no evidence against the relay.
	b := newHealBench(t, 1)
	ds, j := b.run(100, func(int) bool { return true })
	if len(ds) != 0 || j.Class != classUnknown || b.det.lost != 0 {
		t.Fatalf("never-answering target: %v %+v", ds, j)
	}

	// A link so lossy that not even a window of losses would be evidence: no verdict.
	b = newHealBench(t, 1)
	b.run(20, never)
	b.view.linkLoss = 0.6
	if ds, j := b.run(60, func(int) bool { return true }); len(ds) != 0 || j.Class != classLossyPath {
		t.Fatalf("lossy link: %v %+v", ds, j)
	}

	// A destination whose answer returns by another relay is probed, but its outcomes are not
	// judged: a fault on that relay's way is not the neighbour's.
	b = newHealBench(t, 1)
	b.view.targets[0].soleRelay, b.view.targets[0].reply = false, healID(2)
	if ds, j := b.run(100, func(i int) bool { return i > 10 }); len(ds) != 0 || j.Class != classUnknown || b.det.lost != 0 {
		t.Fatalf("answers by another relay: %v %+v, %d lost", ds, j, b.det.lost)
	}

	// A target that leaves the neighbour's list (it died; the neighbour's record no longer has it)
	// takes its outcomes and probes in flight with it. Back within a minute, it keeps its
	// qualification: a relay that drops what it should forward cannot shed its destinations by
	// advertising its links to them as lossy for a moment.
	b = newHealBench(t, 1)
	b.run(20, never)
	b.run(3, func(int) bool { return true })
	target := b.view.targets
	b.view.targets = nil
	_, j = b.run(1, never)
	if s := b.det.nbrs[b.view.id]; len(s.window) != 0 || len(b.det.pending) != 0 || j.Class != classUnknown {
		t.Fatalf("after the target left: window %v, pending %d, %+v", s.window, len(b.det.pending), j)
	}
	b.view.targets = target
	if ds, _ := b.run(30, func(int) bool { return true }); len(ds) != 1 || ds[0].Evidence.Class != "blackhole" {
		t.Fatalf("blackhole whose destination flickered out of the records: %v", ds)
	}
	// Back after longer than that, it must answer again before its losses count.
	b = newHealBench(t, 1)
	b.run(20, never)
	b.view.targets = nil
	b.run(int(2*time.Minute/b.step), never)
	b.view.targets = target
	if ds, j := b.run(30, func(int) bool { return true }); len(ds) != 0 || j.Class != classUnknown {
		t.Fatalf("target back after two minutes counted before answering: %v %+v", ds, j)
	}

	// A neighbour whose link went down is forgotten.
	b.det.update(b.now, nil)
	if len(b.det.nbrs) != 0 || len(b.det.pending) != 0 {
		t.Fatal("state kept for a neighbour that is gone")
	}
}

// TestHealDetectorGrace: a neighbour whose link has just come up is not judged for Grace, however
// its probes fare; after the grace a real blackhole is caught as fast as ever. A link that comes up
// again (a new adjacency) starts afresh, with what was gathered before dropped.
func TestHealDetectorGrace(t *testing.T) {
	b := newHealBench(t, 2)
	b.view.linkSince = b.now
	b.run(5, never)
	ds, j := b.run(40, func(int) bool { return true }) // 9 s into the grace: everything lost
	if len(ds) != 0 || j.Class != classGrace || len(b.det.nbrs[b.view.id].window) != 0 {
		t.Fatalf("in grace: %v %+v", ds, j)
	}
	b.run(10, never) // the grace ends
	if j := b.det.nbrs[b.view.id].last; j.Class != classHealthy {
		t.Fatalf("after the grace: %+v", j)
	}
	fault := b.now
	ds, _ = b.run(20, func(int) bool { return true })
	if len(ds) != 1 || ds[0].Action != mapek.Penalise || ds[0].At-fault.Sub(b.start) > 2*time.Second {
		t.Fatalf("blackhole after the grace: %v", ds)
	}

	// The link goes down and up between two steps: a new adjacency, in grace, with no history.
	b = newHealBench(t, 2)
	b.run(20, never)
	b.run(6, func(int) bool { return true }) // two losses judged so far
	b.view.linkSince = b.now
	_, j = b.run(1, never)
	if s := b.det.nbrs[b.view.id]; len(s.window) != 0 || j.Class != classGrace || len(b.det.pending) > 1 {
		t.Fatalf("new adjacency: window %v, %+v, %d pending", s.window, j, len(b.det.pending))
	}
}

// TestHealDetectorRestarts: a neighbour that restarted while its link stayed up starts a new grace
// with its history dropped (at most once a minute); a destination that restarted must answer under
// its new session before its losses count again.
func TestHealDetectorRestarts(t *testing.T) {
	b := newHealBench(t, 1)
	b.run(20, never)
	b.run(6, func(int) bool { return true }) // the old process died: losses, not yet a verdict
	b.det.neighbourRestarted(b.now, b.view.addr)
	if s := b.det.nbrs[b.view.id]; len(s.window) != 0 || len(b.det.pending) != 0 {
		t.Fatalf("history kept across the restart: %v, %d pending", s.window, len(b.det.pending))
	}
	ds, j := b.run(40, func(i int) bool { return i%3 != 0 }) // resynchronising
	if len(ds) != 0 || j.Class != classGrace {
		t.Fatalf("restarted neighbour in grace: %v %+v", ds, j)
	}
	// A second report within the minute is no new grace: a real blackhole is still caught.
	b.run(20, never)
	b.det.neighbourRestarted(b.now, b.view.addr)
	ds, _ = b.run(20, func(int) bool { return true })
	if len(ds) != 1 || ds[0].Action != mapek.Penalise {
		t.Fatalf("claimed restarts shelter a blackhole: %v, %+v", ds, b.det.nbrs[b.view.id].last)
	}

	// The destination restarts: the probes sent to its old sessions are lost, yet count for nothing;
	// once it answers again its losses count.
	b = newHealBench(t, 1)
	b.run(20, never)
	lost := b.det.lost
	b.det.targetRestarted(b.now, b.view.targets[0].addr)
	ds, j = b.run(30, func(int) bool { return true })
	if len(ds) != 0 || b.det.lost != lost || j.Class != classUnknown {
		t.Fatalf("restarted destination: %v %+v, %d lost", ds, j, b.det.lost-lost)
	}
	b.run(15, never) // a new session; answered again
	ds, _ = b.run(20, func(int) bool { return true })
	if len(ds) != 1 || ds[0].Action != mapek.Penalise {
		t.Fatalf("blackhole after the destination came back: %v", ds)
	}

	// A destination that left the list and restarted while away must answer again when it is back.
	b = newHealBench(t, 1)
	b.run(20, never)
	target := b.view.targets
	b.view.targets = nil
	b.run(5, never)
	b.det.targetRestarted(b.now, target[0].addr)
	b.view.targets = target
	if ds, j := b.run(30, func(int) bool { return true }); len(ds) != 0 || j.Class != classUnknown {
		t.Fatalf("destination restarted while away counted before answering: %v %+v", ds, j)
	}
}

// TestHealDetectorWayBackChanges: when the way a destination's answer returns changes, the probes in
// flight and those sent for Settle after are not judged.
func TestHealDetectorWayBackChanges(t *testing.T) {
	b := newHealBench(t, 1)
	b.run(20, never)
	b.view.targets[0].reply = healID(0)      // the answer now comes straight back
	b.run(1, func(int) bool { return true }) // the answer to the last probe arrived before the change
	judged := b.det.ok + b.det.lost
	ds, _ := b.run(10, func(int) bool { return true })
	if len(ds) != 0 || b.det.ok+b.det.lost != judged {
		t.Fatalf("while settling: %v, %d judged", ds, b.det.ok+b.det.lost-judged)
	}
	ds, _ = b.run(20, func(int) bool { return true })
	if len(ds) != 1 {
		t.Fatalf("blackhole after the way back settled: %v", ds)
	}
}

func TestHealJudgePath(t *testing.T) {
	r := detectRules{}
	r.setDefaults()
	w := func(s string, q float64) []healOutcome {
		var o []healOutcome
		for _, c := range s {
			o = append(o, healOutcome{lost: c == 'x', q: q})
		}
		return o
	}
	for _, c := range []struct {
		window         string
		q              float64
		class          string
		minConf, maxCf float64
	}{
		{"", 0.02, classUnknown, 0, 0},
		{"..", 0.02, classHealthy, 1, 1},
		{"........xxx", 0.02, "blackhole", 0.99999, 1},
		{"........xx", 0.02, classHealthy, 0, 1},
		{"x.x.x.x.x.x.", 0.02, "greyhole", 0.99999, 1},
		{"x.......x...", 0.02, classHealthy, 0, 1},
		// With 15 % explained, three losses in a row are no proof (0.15³ ≈ 0.003), nor are six
		// (1.1·10⁻⁵); seven (1.7·10⁻⁶) are.
		{"........xxx", 0.15, classHealthy, 0, 1},
		{"........xxxxxx", 0.15, classHealthy, 0, 1},
		{"........xxxxxxx", 0.15, "blackhole", 0.99999, 1},
		// Half the probes lost when 0.3 is explained: a grey hole would be a guess.
		{"x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.", 0.3, classHealthy, 0, 1},
		// So much explained loss that 32 losses in a row (0.71³² ≈ 1.7·10⁻⁵) would be no proof.
		{"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 0.71, classLossyPath, 0, 0},
	} {
		j := judgePath(r, time.Unix(1000, 0), 7, w(c.window, c.q))
		if j.Node != 7 || j.Class != c.class || j.Confidence < c.minConf || j.Confidence > c.maxCf {
			t.Errorf("%q q %.2f: %s p=%.7f, want %s in [%.5f, %.5f] (%v)", c.window, c.q,
				j.Class, j.Confidence, c.class, c.minConf, c.maxCf, j.Evidence)
		}
	}
}

func TestHealExplainedLoss(t *testing.T) {
	r := detectRules{}
	r.setDefaults()
	for _, c := range []struct {
		link       float64
		samples    int
		next, back float64
		min, max   float64
		what       string
	}{
		{0, 24, 0, 0, 0.0199, 0.0201, "clean: only the base loss"},
		// 30 % each way on the link to the neighbour: 51 % round trip, plus two standard errors.
		{0.51, 24, 0, 0, 0.51 + 0.2, 0.51 + 0.22, "a 30 %-lossy link"},
		{0.51, 8, 0, 0, 0.86, 0.87, "the same from fewer samples"},
		{0.19, 24, 0.19, 0, 0.50, 0.55, "10 % each way on both links"},
		{0, 24, 0, 0.19, 0.36, 0.37, "an answer over a 10 %-lossy link of ours"},
	} {
		got := explainedLoss(r, c.link, c.samples, c.next, c.back)
		if got < c.min || got > c.max {
			t.Errorf("%s: %.4f, want in [%.3f, %.3f]", c.what, got, c.min, c.max)
		}
	}
}

func TestPoissonBinomialTail(t *testing.T) {
	same := func(n int, q float64) []healOutcome {
		o := make([]healOutcome, n)
		for i := range o {
			o[i].q = q
		}
		return o
	}
	for _, c := range []struct {
		w    []healOutcome
		k    int
		want float64
	}{
		{same(10, 0.3), 0, 1}, {same(1, 0.3), 1, 0.3}, {same(2, 0.5), 2, 0.25}, {same(3, 0.5), 2, 0.5},
		{same(16, 0), 8, 0}, {same(4, 1), 1, 1}, {same(3, 0.5), 4, 0},
		{[]healOutcome{{q: 0.1}, {q: 0.5}}, 1, 1 - 0.9*0.5},
		{[]healOutcome{{q: 0.1}, {q: 0.5}}, 2, 0.05},
	} {
		if got := poissonBinomialTail(c.w, c.k); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%v, k %d: %g, want %g", c.w, c.k, got, c.want)
		}
	}
}

func TestHealConfigFile(t *testing.T) {
	off := false
	c := HealFile{Enabled: &off, Hold: 3 * time.Second}.config()
	c.setDefaults()
	if !c.Disabled || c.Hold != 3*time.Second || c.MaxHold != 5*time.Minute || c.ProbeInterval != 200*time.Millisecond ||
		c.Confidence != 0.99 || c.Grace != 10*time.Second {
		t.Fatalf("%+v", c)
	}
	if c := (HealFile{Grace: 4 * time.Second}).config(); c.Disabled || c.Grace != 4*time.Second {
		t.Fatalf("self-healing must be on by default, with the grace given: %+v", c)
	}
}

// TestHealReplyHopMatchesRouting: on a ring of six with a chord (equal-cost paths both ways round)
// and one lossy link, every node's prediction of each other node's next hop towards it (the way a
// probe's answer returns) is that node's actual next hop once routing has converged.
func TestHealReplyHopMatchesRouting(t *testing.T) {
	links := [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 0}, {0, 3}}
	w := memnet.New(3)
	now := w.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "test.mesh", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*Node, 6)
	for i := range nodes {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(meshca.IssueRequest{Name: string(rune('a' + i)), PublicKey: k.Public(), Duration: 30 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		conn := w.Conn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, 0, byte(i)}), 4242))
		opts := Options{Key: k, Cert: cert, CA: []*meshca.Certificate{ca.Certificate()}, Firewall: allowAll,
			Logger: testLogger(t), Conn: conn, PacketDevice: newNullTun(), Now: w.Now, Heal: HealConfig{Disabled: true}}
		for _, l := range links { // the higher-numbered end dials
			if lo, hi := min(l[0], l[1]), max(l[0], l[1]); hi == i {
				opts.Peers = append(opts.Peers, Peer{Addr: nodes[lo].UDPAddr(), Cert: nodes[lo].self})
				loss := 0.0
				if l == [2]int{2, 3} {
					loss = 0.2
				}
				w.Link(nodes[lo].UDPAddr(), conn.LocalAddr(), memnet.LinkParams{Loss: loss})
			}
		}
		if nodes[i], err = New(opts); err != nil {
			t.Fatal(err)
		}
		conn.Attach(nodes[i].NewReceiver())
	}
	w.OnTick = func(now time.Time) {
		for _, n := range nodes {
			n.Tick(now)
		}
	}
	for _, n := range nodes {
		n.Start(now)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Close()
		}
	})
	// Long enough for the lossy link's cost to settle into every record (metrics every second,
	// metric-triggered records every 2 s at most).
	w.Run(20 * time.Second)
	checked := 0
	for _, a := range nodes {
		a.mu.Lock()
		for _, d := range nodes {
			if d == a {
				continue
			}
			rec := a.router.Record(d.selfID)
			predicted, ok := a.replyHopLocked(d.selfID, rec)
			e, routed := d.fib.Load().byAddr[a.addr]
			if !ok || !routed || e.nextHop.id != predicted {
				t.Errorf("%s predicts %s's next hop towards it as %s (%v); %s routes by %v", a.self.Name, d.self.Name,
					nameOf(nodes, predicted), ok, d.self.Name, routed && e.nextHop != nil)
			}
			checked++
		}
		a.mu.Unlock()
	}
	if checked != 30 {
		t.Fatalf("checked %d pairs", checked)
	}
}

func nameOf(nodes []*Node, id routing.NodeID) string {
	for _, n := range nodes {
		if n.selfID == id {
			return n.self.Name
		}
	}
	return id.String()
}

// TestHealDetectorLocalStall: a stall of the node's own host is no evidence against a neighbour.
// The host stalls: the neighbour's process stops first (for a second the answers to the probes
// through it wait in its socket), then ours, and 1.5 s pass without a tick of ours and without a
// packet. Without the stall rule those five probes all time out at our first tick after the gap,
// a run of losses no clean path explains: a blackhole verdict against a healthy neighbour. The same
// 1.5 s of lost probes on a node that keeps its schedule is a blackhole.
func TestHealDetectorLocalStall(t *testing.T) {
	verdicts := func(b *healBench, steps int) (bad []mapek.Judgement, ds []mapek.Decision) {
		for range steps {
			d, j := b.stepAfter(b.step, never)
			if j.Class == "blackhole" || j.Class == "greyhole" {
				bad = append(bad, j)
			}
			ds = append(ds, d...)
		}
		return bad, ds
	}

	b := newHealBench(t, 1)
	b.run(20, never)
	b.hold = true
	b.run(5, never)
	d, j := b.stepAfter(1500*time.Millisecond, never)
	if j.Class == "blackhole" || j.Class == "greyhole" || len(d) != 0 {
		t.Fatalf("first tick after a 1.5 s stall: judgement %+v, decisions %v", j, d)
	}
	b.release()
	if bad, ds := verdicts(b, 50); len(bad) != 0 || len(ds) != 0 || len(b.act.log) != 0 {
		t.Fatalf("after the stall: verdicts %+v, decisions %v", bad, ds)
	}
	if b.det.stalls != 1 || b.det.lost != 0 {
		t.Fatalf("stalls %d, probes counted lost %d; want 1 and 0", b.det.stalls, b.det.lost)
	}
	if j := b.det.judge(b.now, 0, b.view.id); j.Class != classHealthy {
		t.Fatalf("judgement after the stall %+v", j)
	}

	// Control: 1.5 s of probes whose answers never come while the node ticks on schedule (the
	// neighbour really stopped forwarding, and then recovered).
	b = newHealBench(t, 1)
	b.run(20, never)
	b.hold = true
	b.run(int(1500*time.Millisecond/b.step), never)
	b.held = nil // what a blackhole dropped never arrives
	b.hold = false
	bad, _ := verdicts(b, 10)
	if len(bad) == 0 || b.det.stalls != 0 {
		t.Fatalf("1.5 s of lost probes on schedule: no blackhole verdict (stalls %d)", b.det.stalls)
	}
	if bad[0].Class != "blackhole" {
		t.Fatalf("verdict %+v", bad[0])
	}
}

// TestHealDetectorStallThreshold: a tick late by up to StallTicks intervals is scheduling jitter,
// one later than that a stall.
func TestHealDetectorStallThreshold(t *testing.T) {
	d := newDetector(detectRules{})
	at := time.Unix(1000, 0)
	tick := 50 * time.Millisecond
	for i, c := range []struct {
		gap   time.Duration
		stall bool
	}{{0, false}, {tick, false}, {5 * tick, false}, {5*tick + time.Millisecond, true}, {tick, false}, {2 * time.Second, true}} {
		at = at.Add(c.gap)
		if gap, stall := d.tick(at, tick); stall != c.stall || (i > 0 && gap != c.gap) {
			t.Errorf("gap %s: stall %v (gap %s), want %v", c.gap, stall, gap, c.stall)
		}
	}
	if d.stalls != 2 {
		t.Fatalf("stalls %d, want 2", d.stalls)
	}
}
