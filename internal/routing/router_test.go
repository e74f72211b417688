package routing

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"x0tta6bl4/internal/meshca"
)

var fast = Metrics{RTT: 10 * time.Millisecond} // cost 110

// line builds routers 0..n-1 of the fixture connected in a line and converges them.
func line(t testing.TB, n int, mod func(*Config)) (*mesh, []*Router) {
	f := getFixture(t)
	rs := make([]*Router, n)
	for i := range rs {
		rs[i] = f.router(t, i, mod)
	}
	m := newMesh(t, f.now, rs...)
	for i := 1; i < n; i++ {
		m.connect(rs[i-1], rs[i], fast)
	}
	m.pump()
	m.advance(20*time.Millisecond, 5*time.Millisecond) // let the delayed acknowledgements through
	return m, rs
}

func TestLineConverges(t *testing.T) {
	m, rs := line(t, 4, nil)
	if len(m.errs) > 0 {
		t.Fatalf("errors: %v", m.errs)
	}
	for i, r := range rs {
		routes := r.Routes()
		if len(routes) != len(rs)-1 {
			t.Fatalf("router %d has %d routes, want %d", i, len(routes), len(rs)-1)
		}
		for j, d := range rs {
			if i == j {
				continue
			}
			rt := routes[d.ID()]
			hops := max(i-j, j-i)
			next := i + 1
			if j < i {
				next = i - 1
			}
			if rt.Hops != hops || rt.Cost != uint64(110*hops) || rt.NextHop != rs[next].ID() {
				t.Fatalf("%d→%d: %+v", i, j, rt)
			}
		}
		g := r.Graph()
		if len(g.Nodes) != 4 || len(g.Links) != 3 {
			t.Fatalf("graph of %d: %d nodes, %d links", i, len(g.Nodes), len(g.Links))
		}
		for _, n := range g.Nodes {
			if !n.Reachable || n.Name == "" || !n.Overlay.IsValid() {
				t.Fatalf("graph node %+v", n)
			}
			if id, ok := r.NodeByAddr(n.Overlay); !ok || id != n.ID {
				t.Fatal("NodeByAddr disagrees with the graph")
			}
		}
	}
	// Each router signed exactly one record: all its links came up before its first Tick.
	for i, r := range rs {
		if s := r.Stats(); s.Originated != 1 {
			t.Errorf("router %d originated %d records", i, s.Originated)
		}
	}
}

func TestLinkDownReroutesAndThrottles(t *testing.T) {
	f := getFixture(t)
	rs := make([]*Router, 4)
	for i := range rs {
		rs[i] = f.router(t, i, nil)
	}
	m := newMesh(t, f.now, rs...)
	// Square 0-1-2-3-0; 0-1 is cheap, so 0 reaches 2 via 1.
	m.connect(rs[0], rs[1], fast)
	m.connect(rs[1], rs[2], fast)
	m.connect(rs[2], rs[3], fast)
	m.connect(rs[3], rs[0], Metrics{RTT: 20 * time.Millisecond})
	m.pump()
	if rt, _ := rs[0].NextHop(rs[2].ID()); rt.NextHop != rs[1].ID() {
		t.Fatalf("before: next hop %v", rt)
	}
	m.now = m.now.Add(time.Minute / 2) // quiet for a while: the throttle is idle
	m.pump()
	before := rs[1].Stats().Originated
	m.cut(rs[1], rs[2])
	m.pump() // no time passes: the first triggered record must go out at once
	if got := rs[1].Stats().Originated; got != before+1 {
		t.Fatalf("originated %d records at once, want 1", got-before)
	}
	rt, ok := rs[0].NextHop(rs[2].ID())
	if !ok || rt.NextHop != rs[3].ID() || rt.Cost != 210+110 {
		t.Fatalf("after the cut, 0→2 = %+v %v", rt, ok)
	}
	// A second change within the hold time waits for it.
	m.connect(rs[1], rs[2], fast)
	m.pump()
	if got := rs[1].Stats().Originated; got != before+1 {
		t.Fatalf("second record inside the hold time")
	}
	m.advance(100*time.Millisecond, 10*time.Millisecond)
	if got := rs[1].Stats().Originated; got != before+2 {
		t.Fatalf("second record not sent after the hold time (%d)", got-before)
	}
	if rt, _ := rs[0].NextHop(rs[2].ID()); rt.NextHop != rs[1].ID() {
		t.Fatalf("route not restored: %+v", rt)
	}
}

func TestFlappingThrottle(t *testing.T) {
	m, rs := line(t, 2, nil)
	m.now = m.now.Add(time.Minute)
	m.pump()
	start := rs[0].Stats().Originated
	// Flap every 20 ms for 10 s.
	up := true
	for i := range 500 {
		if up {
			m.cut(rs[0], rs[1])
		} else {
			m.connect(rs[0], rs[1], fast)
		}
		up = !up
		_ = i
		m.advance(20*time.Millisecond, 10*time.Millisecond)
	}
	n := rs[0].Stats().Originated - start
	t.Logf("flapping every 20 ms for 10 s: %d records", n)
	// Holds 0, .1, .3, .7, 1.5, 3.1, 6.3 s (doubling from 100 ms, capped at 5 s) → about 8.
	if n > 9 || n < 5 {
		t.Fatalf("%d records during 10 s of flapping", n)
	}
}

func TestUnconfirmedLinkIgnored(t *testing.T) {
	f := getFixture(t)
	_, rs := line(t, 3, nil) // 0-1-2
	// Node 5 (a real member with a valid certificate) claims cheap links to 0 and 2. Neither reports
	// a link to it, so nothing may use them.
	evil := signRecord(t, f.keys[5].Sign, f.certs[5], f.ids[5], uint64(f.now.UnixNano()), f.now.Add(time.Minute), []LinkInfo{
		{Neighbour: f.ids[0], Cost: 1}, {Neighbour: f.ids[2], Cost: 1},
	})
	evil.cert = f.certs[5]
	if err := rs[0].HandleMessage(f.now, f.ids[1], evil.message(true)); err != nil {
		t.Fatalf("a valid record was refused: %v", err)
	}
	if rs[0].Record(f.ids[5]) == nil {
		t.Fatal("record not held (it is valid, only its links are unconfirmed)")
	}
	if _, ok := rs[0].NextHop(f.ids[5]); ok {
		t.Fatal("route to a node none of whose links is confirmed")
	}
	if rt, _ := rs[0].NextHop(f.ids[2]); rt.Cost != 220 || rt.NextHop != f.ids[1] {
		t.Fatalf("0→2 changed: %+v", rt)
	}
	for _, l := range rs[0].Graph().Links {
		if l.A == f.ids[5] || l.B == f.ids[5] {
			t.Fatal("unconfirmed link in the graph")
		}
	}
}

func TestForgedRecordsRefused(t *testing.T) {
	f := getFixture(t)
	_, rs := line(t, 2, nil)
	r := rs[0]
	before := r.Routes()
	exp := f.now.Add(time.Minute)
	seq := uint64(f.now.UnixNano()) + 1000
	genuine := signRecord(t, f.keys[3].Sign, f.certs[3], f.ids[3], seq, exp, []LinkInfo{{Neighbour: f.ids[0], Cost: 1}})

	flipSig := bytes.Clone(genuine.raw)
	flipSig[len(flipSig)-10] ^= 1
	flipBody := bytes.Clone(genuine.raw)
	flipBody[recordHeaderSize+32+3] ^= 2 // the cost of its link: 1 → 3
	// Node 4 signs a record claiming to be node 3, attaching node 3's certificate.
	wrongKey := signRecord(t, f.keys[4].Sign, f.certs[3], f.ids[3], seq, exp, nil)
	// A record by a node certified by an untrusted CA.
	untrusted := signRecord(t, f.otherKey.Sign, f.otherCert, f.otherCert.SignPublicKey.ID(), seq, exp, nil)
	// A genuine record with someone else's certificate attached.
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		// (while the router does not know node 3's certificate yet)
		{"mismatched certificate", appendRecordMessage(nil, f.certs[4].Bytes(), genuine.raw), ErrBadCertificate},
		{"garbage certificate", appendRecordMessage(nil, []byte("junk"), genuine.raw), ErrBadCertificate},
		{"bad signature", appendRecordMessage(nil, f.certs[3].Bytes(), flipSig), ErrBadSignature},
		{"modified body", appendRecordMessage(nil, f.certs[3].Bytes(), flipBody), ErrBadSignature},
		{"wrong signer", appendRecordMessage(nil, f.certs[3].Bytes(), wrongKey.raw), ErrBadSignature},
		{"untrusted CA", appendRecordMessage(nil, f.otherCert.Bytes(), untrusted.raw), ErrBadCertificate},
		{"far future", appendRecordMessage(nil, f.certs[3].Bytes(), signRecord(t, f.keys[3].Sign, f.certs[3], f.ids[3], seq, f.now.Add(time.Hour), nil).raw), ErrFuture},
	}
	for _, c := range cases {
		if err := r.HandleMessage(f.now, f.ids[1], c.msg); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if r.Record(f.ids[3]) != nil {
			t.Fatalf("%s: record installed", c.name)
		}
	}
	if got := r.Routes(); len(got) != len(before) {
		t.Fatal("routes changed")
	}
	r.Tick(f.now.Add(ackDelay))
	if out := r.Drain(); len(out) != 1 || out[0].Msg[0] != MsgAck {
		t.Fatalf("forgeries were flooded or not only acknowledged: %d messages", len(out))
	}
	s := r.Stats()
	if s.BadSignature != 3 || s.BadCertificate != 3 || s.Future != 1 || s.Accepted != 1 {
		t.Fatalf("stats %+v", s)
	}
	// A valid record of our own origin that we never signed (node 4 signing "as node 0") is refused.
	fake := signRecord(t, f.keys[4].Sign, f.certs[0], f.ids[0], seq+1e12, exp, nil)
	if err := r.HandleMessage(f.now, f.ids[1], appendRecordMessage(nil, nil, fake.raw)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged own record: %v", err)
	}
	// Once the certificate is known by its fingerprint, a junk attachment is simply not needed.
	if err := r.HandleMessage(f.now, f.ids[1], appendRecordMessage(nil, []byte("junk"), genuine.raw)); err != nil || r.Record(f.ids[3]) == nil {
		t.Fatalf("genuine record with a junk attachment: %v", err)
	}
	// Messages from non-neighbours are ignored.
	if err := r.HandleMessage(f.now, f.ids[3], genuine.message(true)); !errors.Is(err, ErrNotNeighbour) {
		t.Fatalf("non-neighbour: %v", err)
	}
}

func TestReplayAndExpiry(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 2, nil)
	r := rs[0]
	old := r.Record(f.ids[1])
	oldMsg := appendRecordMessage(nil, nil, old.raw)
	// Make 1 originate a newer record.
	m.now = m.now.Add(2 * time.Second)
	rs[1].UpdateMetrics(m.now, f.ids[0], Metrics{RTT: 40 * time.Millisecond})
	m.pump()
	cur := r.Record(f.ids[1])
	if cur.Seq <= old.Seq {
		t.Fatal("no newer record")
	}
	r.Drain()
	if err := r.HandleMessage(m.now, f.ids[1], oldMsg); err != nil {
		t.Fatal(err)
	}
	if r.Record(f.ids[1]) != cur {
		t.Fatal("an older record replaced a newer one")
	}
	out := r.Drain()
	sentBack := false
	for _, o := range out {
		if o.Msg[0] == MsgRecord && bytes.Contains(o.Msg, cur.raw) {
			sentBack = true
		}
	}
	if !sentBack || r.Stats().Stale != 1 {
		t.Fatal("the sender of a stale record was not given the newer one")
	}

	// A replay after expiry is refused too.
	if err := r.HandleMessage(old.Expires, f.ids[1], oldMsg); err != nil || r.Stats().Expired != 1 {
		t.Fatalf("expired replay: %v %+v", err, r.Stats())
	}

	// Node 1 dies silently (no LinkDown): its record ages out after the lifetime.
	delete(m.rs, f.ids[1])
	m.order = m.order[:1]
	m.advance(179*time.Second, time.Second)
	if r.Record(f.ids[1]) == nil {
		t.Fatal("record aged out early")
	}
	m.advance(3*time.Second, time.Second)
	if r.Record(f.ids[1]) != nil {
		t.Fatal("record did not age out")
	}
	if len(r.Graph().Nodes) != 1 || r.Stats().AgedOut != 1 {
		t.Fatalf("graph %+v stats %+v", r.Graph(), r.Stats())
	}
	if r.Record(f.ids[0]) == nil || !r.Record(f.ids[0]).Expires.After(m.now) {
		t.Fatal("own record not refreshed")
	}
}

func TestCertificateElision(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 3, nil)
	var sizes []int
	m.drop = func(from, to NodeID, msg []byte) bool {
		if from == f.ids[1] && to == f.ids[2] && msg[0] == MsgRecord {
			if h, _ := peekRecord(msg[len(msg)-len(rs[0].Record(f.ids[0]).raw):]); h.origin == f.ids[0] {
				sizes = append(sizes, len(msg))
			}
		}
		return false
	}
	m.now = m.now.Add(time.Second)
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 50 * time.Millisecond})
	m.advance(3*time.Second, 10*time.Millisecond)
	if len(sizes) != 1 || sizes[0] > 4000 {
		t.Fatalf("refresh forwarded as %v bytes, want one message without the certificate", sizes)
	}

	// Router 2 restarts on the same adjacency (its state is lost but the link never went down).
	// It drops certificate-less records it cannot verify, unacknowledged; the retransmission carries
	// the certificate.
	fresh := f.router(t, 2, nil)
	m.rs[f.ids[2]] = fresh
	fresh.LinkUp(m.now, f.ids[1], fast)
	m.pump()
	m.now = m.now.Add(time.Second)
	rs[0].UpdateMetrics(m.now, f.ids[1], fast)
	m.advance(3*time.Second, 50*time.Millisecond)
	if fresh.Record(f.ids[0]) == nil || fresh.Record(f.ids[0]).Seq != rs[0].Seq() {
		t.Fatal("restarted router did not get the latest record")
	}
	if _, ok := fresh.NextHop(f.ids[0]); !ok {
		t.Fatal("restarted router has no route")
	}
	if fresh.Stats().NeedCertificate == 0 || rs[1].Stats().Retransmitted == 0 {
		t.Fatalf("the certificate-less path was not exercised: %+v", fresh.Stats())
	}
}

func TestRestartWithClockBehind(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 2, nil)
	// Node 0 once ran with its clock an hour ahead, so node 1 holds a record of it with a sequence
	// number above anything node 0 will now pick by its (correct) clock.
	m.now = m.now.Add(time.Second)
	high := uint64(m.now.Add(time.Hour).UnixNano())
	old := signRecord(t, f.keys[0].Sign, f.certs[0], f.ids[0], high, m.now.Add(time.Minute), []LinkInfo{{Neighbour: f.ids[1], Cost: 110}})
	old.cert = f.certs[0]
	if err := rs[1].HandleMessage(m.now, f.ids[0], old.message(false)); err != nil || rs[1].Record(f.ids[0]).Seq != high {
		t.Fatalf("setup: %v", err)
	}
	// Node 0 restarts with no state. Its neighbour sends the old record back during synchronisation;
	// node 0 jumps above it and floods a new record, which replaces the old one.
	m.now = m.now.Add(time.Second)
	restarted := f.router(t, 0, nil)
	m.rs[f.ids[0]] = restarted
	rs[1].LinkUp(m.now, f.ids[0], fast)
	restarted.LinkUp(m.now, f.ids[1], fast)
	m.advance(time.Second, 50*time.Millisecond)
	if restarted.Seq() <= high {
		t.Fatalf("restarted node's sequence %d is not above its old %d", restarted.Seq(), high)
	}
	if got := rs[1].Record(f.ids[0]).Seq; got != restarted.Seq() {
		t.Fatalf("neighbour holds sequence %d, want %d", got, restarted.Seq())
	}
	if _, ok := rs[1].NextHop(f.ids[0]); !ok {
		t.Fatal("no route to the restarted node")
	}
}

func TestMetricHysteresis(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 2, nil)
	m.now = m.now.Add(time.Minute / 2)
	m.pump()
	n := rs[0].Stats().Originated
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 12 * time.Millisecond}) // 130 vs 110: inside 25 %
	m.advance(5*time.Second, 500*time.Millisecond)
	if rs[0].Stats().Originated != n {
		t.Fatal("a change inside the hysteresis band was advertised")
	}
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 20 * time.Millisecond, Loss: 0.2}) // 330
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 30 * time.Millisecond, Loss: 0.2})
	m.advance(5*time.Second, 100*time.Millisecond)
	if got := rs[0].Stats().Originated - n; got != 1 {
		t.Fatalf("%d records for a metric change, want 1", got)
	}
	for _, l := range rs[1].Graph().Links {
		if l.AB.Cost != 485 && l.BA.Cost != 485 {
			t.Fatalf("advertised cost not updated: %+v", l)
		}
		if l.Cost != 485 {
			t.Fatalf("link cost %d, want the larger report 485", l.Cost)
		}
	}
}

func TestTableFull(t *testing.T) {
	f := getFixture(t)
	_, rs := line(t, 3, func(c *Config) { c.MaxNodes = 2 })
	// Router 1 holds itself and the first neighbour record it got; it refuses the other.
	if rs[1].Stats().TableFull == 0 || rs[1].Record(f.ids[0]) != nil && rs[1].Record(f.ids[2]) != nil {
		t.Fatalf("LSDB not bounded: %+v", rs[1].Stats())
	}
	if rs[0].Record(f.ids[1]) == nil {
		t.Fatal("neighbour's record missing")
	}
}

func TestRevalidateDropsRevoked(t *testing.T) {
	f := getFixture(t)
	// A private verifier, so revoking here does not affect other tests.
	v, err := meshca.NewVerifier(f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	m, rs := line(t, 3, func(c *Config) { c.Verifier = v })
	if rs[0].Record(f.ids[2]) == nil {
		t.Fatal("not converged")
	}
	crl, err := f.ca.SignRevocationList(nil, []meshca.Serial{f.certs[2].Serial}, nil, m.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateCRL(crl); err != nil {
		t.Fatal(err)
	}
	rs[0].Revalidate(m.now)
	if rs[0].Record(f.ids[2]) != nil || rs[0].Stats().Revoked != 1 {
		t.Fatal("revoked node's record kept")
	}
	if _, ok := rs[0].NextHop(f.ids[2]); ok {
		t.Fatal("route to a revoked node")
	}
}

func TestSPFTieBreakAndMaxCost(t *testing.T) {
	f := getFixture(t)
	rs := make([]*Router, 4)
	for i := range rs {
		rs[i] = f.router(t, i, nil)
	}
	m := newMesh(t, f.now, rs...)
	// Diamond 0-1-3 and 0-2-3 with equal costs: 0 must pick the lower ID, 1.
	m.connect(rs[0], rs[1], fast)
	m.connect(rs[0], rs[2], fast)
	m.connect(rs[1], rs[3], fast)
	m.connect(rs[2], rs[3], fast)
	m.pump()
	if rt, _ := rs[0].NextHop(f.ids[3]); rt.NextHop != f.ids[1] || rt.Cost != 220 {
		t.Fatalf("tie-break: %+v", rt)
	}
	// Node 1 reports its link to 3 as slow; node 3 still says fast. The larger report counts.
	m.now = m.now.Add(time.Minute)
	rs[1].UpdateMetrics(m.now, f.ids[3], Metrics{RTT: 100 * time.Millisecond})
	m.pump()
	if rt, _ := rs[0].NextHop(f.ids[3]); rt.NextHop != f.ids[2] {
		t.Fatalf("max cost not used: %+v", rt)
	}
	if rt, _ := rs[3].NextHop(f.ids[1]); rt.NextHop != f.ids[1] || rt.Cost != 1010 {
		// 3→1 directly costs max(110, 1010) = 1010; via 2 and 0 it costs 330.
		if rt.NextHop != f.ids[2] || rt.Cost != 330 {
			t.Fatalf("3→1: %+v", rt)
		}
	}
}

func TestConfigChecks(t *testing.T) {
	f := getFixture(t)
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	if _, err := New(Config{Key: f.keys[1].Sign, Certificate: f.certs[0], Verifier: f.verifier}); err == nil {
		t.Fatal("key/certificate mismatch accepted")
	}
	if _, err := New(Config{Key: f.keys[0].Sign, Certificate: f.certs[0], Verifier: f.verifier, Lifetime: time.Second, RefreshInterval: time.Minute}); err == nil {
		t.Fatal("lifetime below refresh accepted")
	}
}

func TestSameSequenceConflict(t *testing.T) {
	// An originator that signs two different records with one sequence number (a bug, or a key used
	// on two machines): every router must settle on the same one, whatever the arrival order.
	f := getFixture(t)
	seq := uint64(f.now.UnixNano()) + 5e9
	exp := f.now.Add(time.Minute)
	a := signRecord(t, f.keys[3].Sign, f.certs[3], f.ids[3], seq, exp, []LinkInfo{{Neighbour: f.ids[0], Cost: 5}})
	b := signRecord(t, f.keys[3].Sign, f.certs[3], f.ids[3], seq, exp, []LinkInfo{{Neighbour: f.ids[0], Cost: 6}})
	var kept [2][]byte
	for i, order := range [2][2]*Record{{a, b}, {b, a}} {
		_, rs := line(t, 2, nil)
		now := f.now.Add(time.Second)
		for _, rec := range order {
			if err := rs[0].HandleMessage(now, f.ids[1], appendRecordMessage(nil, f.certs[3].Bytes(), rec.raw)); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Second)
		}
		kept[i] = rs[0].Record(f.ids[3]).raw
		if rs[0].Stats().Conflicts != 1 {
			t.Fatalf("conflict not counted: %+v", rs[0].Stats())
		}
	}
	if !bytes.Equal(kept[0], kept[1]) {
		t.Fatal("the arrival order decided which record was kept")
	}
}

func TestReceiveBufferReused(t *testing.T) {
	// The daemon decrypts into one reused buffer: nothing the router keeps may alias it.
	f := getFixture(t)
	_, rs := line(t, 2, nil)
	rec := signRecord(t, f.keys[3].Sign, f.certs[3], f.ids[3], uint64(f.now.UnixNano())+1e9, f.now.Add(time.Minute), nil)
	buf := appendRecordMessage(nil, f.certs[3].Bytes(), rec.raw)
	want := bytes.Clone(rec.raw)
	if err := rs[0].HandleMessage(f.now.Add(time.Second), f.ids[1], buf); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0xaa
	}
	held := rs[0].Record(f.ids[3])
	if held == nil || !bytes.Equal(held.Bytes(), want) || rs[0].Certificate(f.ids[3]).Name != f.certs[3].Name {
		t.Fatal("the router's copy changed with the caller's buffer")
	}
	if !bytes.Equal(rs[0].Certificate(f.ids[3]).Bytes(), f.certs[3].Bytes()) {
		t.Fatal("held certificate aliases the caller's buffer")
	}
}
