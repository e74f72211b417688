package node

import (
	"math"
	"net/netip"
	"testing"
	"time"

	mapek "x0tta6bl4/internal/mapek/loop"
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
	rtt     time.Duration
	view    nbrView
	replies []struct {
		at  time.Time
		seq uint16
		src netip.Addr
	}
	act  *healRecorder
	sent int
}

type healRecorder struct{ log []string }

func (r *healRecorder) Penalise(int) { r.log = append(r.log, "P") }
func (r *healRecorder) Restore(int)  { r.log = append(r.log, "R") }

func healID(b byte) routing.NodeID { var id routing.NodeID; id[0] = b; return id }

func newHealBench(t *testing.T, targets int) *healBench {
	b := &healBench{t: t, det: newDetector(detectRules{}), now: time.Unix(1000, 0), step: 200 * time.Millisecond,
		rtt: 2 * time.Millisecond, act: &healRecorder{},
		loop: mapek.New(mapek.Rules{Confidence: 0.99, Consecutive: 2, Hold: 10 * time.Second})}
	b.start = b.now
	b.view = nbrView{id: healID(1), name: "B"}
	for i := range targets {
		b.view.targets = append(b.view.targets, healTarget{id: healID(byte(10 + i)), name: "D",
			addr: netip.AddrFrom16([16]byte{0xfd, 0x74, 15: byte(10 + i)})})
	}
	return b
}

// run advances n steps; drop(i) decides whether the i-th probe sent is lost. It returns the
// decisions and the last judgement.
func (b *healBench) run(n int, drop func(i int) bool) ([]mapek.Decision, mapek.Judgement) {
	var ds []mapek.Decision
	var j mapek.Judgement
	for range n {
		b.now = b.now.Add(b.step)
		kept := b.replies[:0]
		for _, r := range b.replies {
			if !r.at.After(b.now) {
				b.det.reply(r.at, r.seq, r.src)
			} else {
				kept = append(kept, r)
			}
		}
		b.replies = kept
		b.det.update([]nbrView{b.view})
		b.det.expire(b.now)
		j = b.det.judge(0, b.view.id)
		for _, d := range b.loop.Step(b.now.Sub(b.start), []mapek.Judgement{j}, b.act) {
			if d.Action == mapek.Restore {
				b.det.afresh(b.view.id) // as healActuator.Restore does
			}
			ds = append(ds, d)
		}
		tg, seq, ok := b.det.next(b.now, b.view.id)
		if !ok {
			continue // no target
		}
		if !drop(b.sent) {
			b.replies = append(b.replies, struct {
				at  time.Time
				seq uint16
				src netip.Addr
			}{b.now.Add(b.rtt), seq, tg.addr})
		}
		b.sent++
	}
	return ds, j
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

func TestHealDetectorGreyhole(t *testing.T) {
	b := newHealBench(t, 3)
	b.run(30, never)
	// Every other probe lost: never three in a row, so only the window's excess loss can tell.
	ds, j := b.run(30, func(i int) bool { return i%2 == 0 })
	if len(ds) != 1 || ds[0].Evidence.Class != "greyhole" || ds[0].Evidence.Confidence < 0.99 {
		t.Fatalf("grey hole: decisions %v, judgement %+v", ds, j)
	}
}

func TestHealDetectorEvidenceRules(t *testing.T) {
	// A destination that never answered (a firewall refusing echo) is no evidence against the relay.
	b := newHealBench(t, 1)
	ds, j := b.run(100, func(int) bool { return true })
	if len(ds) != 0 || j.Class != classUnknown || b.det.lost != 0 {
		t.Fatalf("never-answering target: %v %+v", ds, j)
	}

	// A lossy link explains the loss: no verdict (routing prices the link already).
	b = newHealBench(t, 1)
	b.run(20, never)
	b.view.linkLoss = 0.5
	if ds, j := b.run(20, func(int) bool { return true }); len(ds) != 0 || j.Class != classLossyLink {
		t.Fatalf("lossy link: %v %+v", ds, j)
	}

	// A target that leaves the neighbour's list (it died; the neighbour's record no longer has it)
	// takes its outcomes and probes in flight with it, and must answer again once it is back.
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
	if ds, j := b.run(20, func(int) bool { return true }); len(ds) != 0 || j.Class != classUnknown {
		t.Fatalf("returned target counted before answering: %v %+v", ds, j)
	}

	// A neighbour whose link went down is forgotten.
	b.det.update(nil)
	if len(b.det.nbrs) != 0 || len(b.det.pending) != 0 {
		t.Fatal("state kept for a neighbour that is gone")
	}
}

func TestHealJudgePath(t *testing.T) {
	r := detectRules{}
	r.setDefaults()
	w := func(s string) []healOutcome {
		var o []healOutcome
		for _, c := range s {
			o = append(o, healOutcome{lost: c == 'x'})
		}
		return o
	}
	for _, c := range []struct {
		window         string
		link, next     float64
		class          string
		minConf, maxCf float64
	}{
		{"", 0, 0, classUnknown, 0, 0},
		{"..", 0, 0, classHealthy, 1, 1},
		{"........xxx", 0, 0, "blackhole", 0.9999, 1},
		{"........xx", 0, 0, classHealthy, 0, 1},
		{"x.x.x.x.x.x.", 0, 0, "greyhole", 0.9999, 1},
		{"x.......x...", 0, 0, classHealthy, 0, 1},
		{"........xxx", 0.3, 0, classLossyLink, 0, 0},
		// With 15 % loss on each link, three losses in a row are not proof enough (p ≈ 0.98 < 0.99).
		{"........xxx", 0.15, 0.15, "blackhole", 0.97, 0.99},
	} {
		j := judgePath(r, 7, w(c.window), c.link, c.next)
		if j.Node != 7 || j.Class != c.class || j.Confidence < c.minConf || j.Confidence > c.maxCf {
			t.Errorf("%q link %.2f next %.2f: %s p=%.5f, want %s in [%.4f, %.4f] (%v)", c.window, c.link, c.next,
				j.Class, j.Confidence, c.class, c.minConf, c.maxCf, j.Evidence)
		}
	}
}

func TestBinomialTail(t *testing.T) {
	for _, c := range []struct {
		n, k int
		p    float64
		want float64
	}{
		{10, 0, 0.3, 1}, {1, 1, 0.3, 0.3}, {2, 2, 0.5, 0.25}, {3, 2, 0.5, 0.5}, {16, 8, 0, 0}, {4, 1, 1, 1},
	} {
		if got := binomialTail(c.n, c.k, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("P(Bin(%d, %g) ≥ %d) = %g, want %g", c.n, c.p, c.k, got, c.want)
		}
	}
}

func TestHealConfigFile(t *testing.T) {
	off := false
	c := HealFile{Enabled: &off, Hold: 3 * time.Second}.config()
	c.setDefaults()
	if !c.Disabled || c.Hold != 3*time.Second || c.MaxHold != 5*time.Minute || c.ProbeInterval != 200*time.Millisecond || c.Confidence != 0.99 {
		t.Fatalf("%+v", c)
	}
	if c := (HealFile{}).config(); c.Disabled {
		t.Fatal("self-healing must be on by default")
	}
}
