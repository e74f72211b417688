package routing

import (
	"math"
	"testing"
	"time"
)

func defaultDamping(t *testing.T) DampingConfig {
	t.Helper()
	var c DampingConfig
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectedPenalty is the penalty after flaps at the given offsets, seen at the last one, by the
// formula of docs/routing.md rather than the code's state: Σ Penalty·2^(−age/HalfLife).
func expectedPenalty(flaps ...time.Duration) float64 {
	last := flaps[len(flaps)-1]
	p := 0.0
	for _, f := range flaps {
		p += 1000 * math.Exp2(-(last-f).Seconds()/15)
	}
	return p
}

// TestDampingArithmetic checks the defaults against the goals: suppressed on the third of flaps a
// second apart, never by one or two, reused after about 30 s of stability, never suppressed longer
// than MaxSuppress after the last flap, and forgotten once decayed.
func TestDampingArithmetic(t *testing.T) {
	c := defaultDamping(t)
	if got := c.ceiling(); got != 12000 {
		t.Fatalf("ceiling %v, want 750·2^(60/15) = 12000", got)
	}
	t0 := getFixture(t).now
	id := NodeID{1}
	d := newDamper(c, 16)
	for i, want := range []bool{false, false, true} {
		at := t0.Add(time.Duration(i) * time.Second)
		if got := d.flap(at, id); got != want {
			t.Fatalf("flap %d: suppressed %v, want %v", i+1, got, want)
		}
		if got := d.suppressed(id, at); got != want {
			t.Fatalf("flap %d: suppressed %v", i+1, got)
		}
		offsets := []time.Duration{0, time.Second, 2 * time.Second}[:i+1]
		if p, want := d.penaltyAt(d.flaps[id], at), expectedPenalty(offsets...); math.Abs(p-want) > 1e-6 {
			t.Fatalf("flap %d: penalty %v, want %v", i+1, p, want)
		}
	}
	// 1000·(1 + 2^(−1/15) + 2^(−2/15)) = 2866.6 > 2000; it decays to 750 after 15 s·log2(2866.6/750) ≈ 29.0 s.
	last := t0.Add(2 * time.Second)
	reuse := d.flaps[id].reuseAt.Sub(last)
	if want := 15 * math.Log2(expectedPenalty(0, time.Second, 2*time.Second)/750); math.Abs(reuse.Seconds()-want) > 1e-6 || reuse < 28*time.Second || reuse > 30*time.Second {
		t.Fatalf("reused %s after the last flap, want %.3f s (about 29 s)", reuse, want)
	}
	// The first flap's state would have been forgotten earlier: the router wakes up then, finds
	// nothing to do, and learns the next time it is needed.
	var reused []NodeID
	note := func(id NodeID) { reused = append(reused, id) }
	if d.due.After(d.flaps[id].reuseAt) {
		t.Fatalf("due %s, after the reuse time", d.due)
	}
	d.expire(d.due, note)
	if d.due != d.flaps[id].reuseAt || len(reused) != 0 {
		t.Fatalf("due %s, want the reuse time", d.due)
	}
	// Nothing happens before the reuse time; at it the link is reused, once.
	d.expire(last.Add(reuse-time.Nanosecond), note)
	if len(reused) != 0 || !d.suppressed(id, last.Add(reuse-time.Nanosecond)) {
		t.Fatal("reused early")
	}
	d.expire(last.Add(reuse), note)
	if len(reused) != 1 || reused[0] != id || d.suppressed(id, last.Add(reuse)) {
		t.Fatalf("not reused on time: %v", reused)
	}
	// The state is kept until the penalty is below Reuse/2, then forgotten.
	forget := d.flaps[id].forgetAt
	if d.due != forget || forget.Sub(last) <= reuse {
		t.Fatalf("forget at %s, due %s", forget.Sub(last), d.due)
	}
	d.expire(forget, note)
	if len(d.flaps) != 0 || !d.due.IsZero() || len(reused) != 1 {
		t.Fatalf("state not forgotten: %d entries, due %s", len(d.flaps), d.due)
	}

	// One flap, or two at the same instant (exactly the threshold), never suppress.
	d = newDamper(c, 16)
	if d.flap(t0, id) || d.flap(t0, NodeID{2}) || d.flap(t0, NodeID{2}) {
		t.Fatal("suppressed by one or two flaps")
	}
	if d.suppressed(NodeID{2}, t0) {
		t.Fatal("suppressed by two flaps")
	}

	// Flapping every second for minutes: the penalty stops at the ceiling, and the link is reused
	// exactly MaxSuppress after the last flap.
	d = newDamper(c, 16)
	at := t0
	for range 300 {
		d.flap(at, id)
		at = at.Add(time.Second)
	}
	last = at.Add(-time.Second)
	if p := d.flaps[id].penalty; p != 12000 {
		t.Fatalf("penalty %v, want the ceiling", p)
	}
	if got := d.flaps[id].reuseAt.Sub(last); got != time.Minute {
		t.Fatalf("suppressed for %s after the last flap, want 1m0s", got)
	}
	// And the link flapping again while suppressed stays suppressed (each flap restarts the clock).
	d.expire(last.Add(30*time.Second), note)
	if d.flap(last.Add(30*time.Second), id) || !d.suppressed(id, last.Add(30*time.Second)) {
		t.Fatal("a flap while suppressed was reported as a new suppression, or ended it")
	}
}

// TestDampingStateBounded: the damping table never holds more than its limit of neighbours.
func TestDampingStateBounded(t *testing.T) {
	d := newDamper(defaultDamping(t), 4)
	at := getFixture(t).now
	for i := range 100 {
		at = at.Add(time.Second)
		d.flap(at, NodeID{byte(i)})
		if len(d.flaps) > 4 {
			t.Fatalf("%d entries", len(d.flaps))
		}
	}
	if d.flaps[NodeID{99}] == nil {
		t.Fatal("the latest flap was not recorded")
	}
}

func TestDampingConfig(t *testing.T) {
	f := getFixture(t)
	for _, c := range []DampingConfig{
		{Reuse: 2000, Suppress: 2000},
		{Reuse: 3000},
		{MaxSuppress: time.Second}, // the ceiling 750·2^(1/15) is below the suppress threshold
		{Penalty: math.Inf(1)},
	} {
		if _, err := New(Config{Key: f.keys[0].Sign, Certificate: f.certs[0], Verifier: f.verifier, Damping: c}); err == nil {
			t.Errorf("damping %+v accepted", c)
		}
	}
	if _, err := New(Config{Key: f.keys[0].Sign, Certificate: f.certs[0], Verifier: f.verifier, Damping: DampingConfig{Disabled: true, Reuse: 3000}}); err != nil {
		t.Errorf("disabled damping with odd values refused: %v", err)
	}
}

// square builds 0-1-2-3-0 with 0-1 the cheap way from 0 to 1 (110 against 210+110+110 = 430) and
// lets the throttles go idle.
func square(t *testing.T, mods ...func(*Config)) (*mesh, []*Router) {
	f := getFixture(t)
	rs := make([]*Router, 4)
	for i := range rs {
		var mod func(*Config)
		if i < len(mods) {
			mod = mods[i]
		}
		rs[i] = f.router(t, i, mod)
	}
	m := newMesh(t, f.now, rs...)
	m.connect(rs[0], rs[1], fast)
	m.connect(rs[1], rs[2], fast)
	m.connect(rs[2], rs[3], fast)
	m.connect(rs[3], rs[0], Metrics{RTT: 20 * time.Millisecond})
	m.pump()
	m.now = m.now.Add(time.Minute)
	m.pump()
	if rt, _ := rs[0].NextHop(rs[1].ID()); rt.NextHop != rs[1].ID() || rt.Cost != 110 {
		t.Fatalf("before: 0→1 %+v", rt)
	}
	return m, rs
}

// flapLink takes 0-1 down and, half a second later, up again; another half second passes.
func flapLink(m *mesh, rs []*Router) {
	m.cut(rs[0], rs[1])
	m.advance(500*time.Millisecond, 10*time.Millisecond)
	m.connect(rs[0], rs[1], fast)
	m.advance(500*time.Millisecond, 10*time.Millisecond)
}

func linkCost(t *testing.T, r *Router, a, b NodeID) uint32 {
	t.Helper()
	for _, l := range r.Graph().Links {
		if l.A == a && l.B == b || l.A == b && l.B == a {
			return l.Cost
		}
	}
	t.Fatal("link not in the graph")
	return 0
}

// penalised is what a suppressed link with fast's metrics is advertised at: ceil(110·400).
var penalised = uint64(LinkCost(Metrics{RTT: fast.RTT, Loss: PenaltyLoss}))

// TestFlapDamping: a link that flaps every second is avoided from its third flap on, yet used when
// it is the only way; it is advertised at its own cost again at the reuse time, which the router's
// NextDeadline wakes it for, at once even though a metric-triggered record has just gone out.
func TestFlapDamping(t *testing.T) {
	f := getFixture(t)
	m, rs := square(t)
	if penalised != 44000 {
		t.Fatalf("penalised cost %d", penalised)
	}
	first := m.now // the first cut; the flaps are a second apart
	for i := 1; i <= 2; i++ {
		flapLink(m, rs)
		// Healing stays immediate: the route is back on the link after each of the first two flaps.
		if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[1] || rt.Cost != 110 {
			t.Fatalf("after flap %d: 0→1 %+v", i, rt)
		}
	}
	flapLink(m, rs)
	// From now on no route takes the link, whether it is up or down. (Records wait for the topology
	// hold-down, which flapping has raised to seconds; meanwhile the link is not listed at all.)
	for end := m.now.Add(3 * time.Second); m.now.Before(end); {
		m.advance(10*time.Millisecond, 10*time.Millisecond)
		if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[3] || rt.Cost != 430 {
			t.Fatalf("suppressed: 0→1 %+v, want via 3", rt)
		}
	}
	for i, r := range rs[:2] {
		if p, s := r.FlapPenalty(f.ids[1-i]); !s || p < 2000 {
			t.Fatalf("router %d: penalty %v, suppressed %v after three flaps", i, p, s)
		}
		if r.Stats().Suppressed != 1 {
			t.Fatalf("router %d: %d suppressions", i, r.Stats().Suppressed)
		}
	}
	if c := linkCost(t, rs[2], f.ids[0], f.ids[1]); uint64(c) != penalised {
		t.Fatalf("suppressed link costs %d, want %d", c, penalised)
	}
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[3] || rt.Cost != 430 {
		t.Fatalf("suppressed: 0→1 %+v, want via 3", rt)
	}
	// The last resort: with 2-3 gone, the suppressed link is the only way, and it is used.
	m.cut(rs[2], rs[3])
	m.pump()
	if rt, ok := rs[0].NextHop(f.ids[2]); !ok || rt.NextHop != f.ids[1] || rt.Cost != penalised+110 {
		t.Fatalf("only way: 0→2 %+v %v", rt, ok)
	}
	m.advance(time.Second, 10*time.Millisecond)
	m.connect(rs[2], rs[3], fast)
	m.advance(time.Second, 10*time.Millisecond)

	// The reuse time by the formula; the routers must wake for it by themselves.
	lastFlap := first.Add(2 * time.Second)
	p := expectedPenalty(0, time.Second, 2*time.Second)
	reuse := lastFlap.Add(time.Duration(15 * math.Log2(p/750) * float64(time.Second)))
	// A metric-triggered record 300 ms before it: a reuse taken for a metric change would wait
	// MetricInterval (2 s) after it.
	metricAt := reuse.Add(-300 * time.Millisecond)
	for next := rs[0].NextDeadline(); next.Before(metricAt); next = rs[0].NextDeadline() {
		m.now = next
		m.pump()
	}
	m.now = metricAt
	n := rs[0].Stats().Originated
	rs[0].UpdateMetrics(m.now, f.ids[3], Metrics{RTT: 40 * time.Millisecond})
	m.pump()
	if rs[0].Stats().Originated != n+1 {
		t.Fatal("the metric change was not advertised at once")
	}
	before := [2]uint64{rs[0].Stats().Originated, rs[1].Stats().Originated}
	for {
		next := minTime(rs[0].NextDeadline(), rs[1].NextDeadline())
		if next.After(reuse.Add(time.Millisecond)) {
			t.Fatalf("next deadline %s after the reuse time %s", next.Sub(first), reuse.Sub(first))
		}
		m.now = next
		m.pump()
		if m.now.After(reuse.Add(-time.Millisecond)) {
			break
		}
		if c := linkCost(t, rs[2], f.ids[0], f.ids[1]); uint64(c) != penalised {
			t.Fatalf("reused at %s, before %s", m.now.Sub(first), reuse.Sub(first))
		}
	}
	for i, r := range rs[:2] {
		if got := r.Stats().Originated - before[i]; got != 1 {
			t.Fatalf("router %d originated %d records at the reuse time", i, got)
		}
	}
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[1] || rt.Cost != 110 {
		t.Fatalf("reused: 0→1 %+v", rt)
	}
	t.Logf("three flaps a second apart: reused %s after the last", m.now.Sub(lastFlap))

	// The state is forgotten once decayed.
	m.advance(time.Minute, time.Second)
	if len(rs[0].damp.flaps) != 0 || !rs[0].damp.due.IsZero() {
		t.Fatalf("damping state kept: %d entries", len(rs[0].damp.flaps))
	}
}

// TestFlapDampingOneEnd: one end's suppression is enough, since a link costs its larger report.
func TestFlapDampingOneEnd(t *testing.T) {
	f := getFixture(t)
	m, rs := square(t, nil, func(c *Config) { c.Damping.Disabled = true })
	for range 3 {
		flapLink(m, rs)
	}
	if _, s := rs[1].FlapPenalty(f.ids[0]); s {
		t.Fatal("disabled end suppressed the link")
	}
	if rt, _ := rs[3].NextHop(f.ids[1]); rt.NextHop != f.ids[2] {
		t.Fatalf("3→1 %+v, want via 2", rt)
	}
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[3] {
		t.Fatalf("0→1 %+v, want via 3", rt)
	}
}

// TestFlapDampingDisabled: with damping off on both ends, a flapping link is used after every flap.
func TestFlapDampingDisabled(t *testing.T) {
	f := getFixture(t)
	off := func(c *Config) { c.Damping.Disabled = true }
	m, rs := square(t, off, off)
	for range 5 {
		flapLink(m, rs)
	}
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[1] || rt.Cost != 110 {
		t.Fatalf("0→1 %+v", rt)
	}
	if p, s := rs[0].FlapPenalty(f.ids[1]); p != 0 || s {
		t.Fatalf("penalty %v %v with damping off", p, s)
	}
}

// TestSingleFailureNotDamped: one failure and its repair are advertised at once, at the link's cost.
func TestSingleFailureNotDamped(t *testing.T) {
	f := getFixture(t)
	m, rs := square(t)
	m.cut(rs[0], rs[1])
	m.pump()
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[3] {
		t.Fatalf("after the cut: 0→1 %+v", rt)
	}
	m.now = m.now.Add(time.Second)
	m.connect(rs[0], rs[1], fast)
	m.pump() // no time passes
	if rt, _ := rs[0].NextHop(f.ids[1]); rt.NextHop != f.ids[1] || rt.Cost != 110 {
		t.Fatalf("after the repair: 0→1 %+v", rt)
	}
	if p, s := rs[0].FlapPenalty(f.ids[1]); s || math.Abs(p-1000*math.Exp2(-1.0/15)) > 1e-6 {
		t.Fatalf("penalty %v, suppressed %v", p, s)
	}
}
