package routing

import (
	"errors"
	"testing"
	"time"
)

// level2Fixture: level-2 routers of gateways 0 (area 1), 1 and 2 (area 2, 300 apart inside it) and
// 3 (area 3), in a chain 0–1=2–3; node 5 is a plain node of area 3 behind gateway 3; node 4 is
// free for an adversary.
type level2Fixture struct {
	f     *fixture
	m     *mesh
	l2    []*Router // by fixture index; nil where no level-2 router runs
	proof *Record   // node 5's destination proof
}

func newLevel2Fixture(t *testing.T) *level2Fixture {
	t.Helper()
	f := getFixture(t)
	x := &level2Fixture{f: f, l2: make([]*Router, fixtureNodes)}
	areas := []uint32{1, 2, 2, 3}
	var rs []*Router
	for i, a := range areas {
		x.l2[i] = f.router(t, i, func(c *Config) { c.Area, c.Level2 = a, true })
		rs = append(rs, x.l2[i])
	}
	// Level 1 of area 3: gateway 3 and node 5, one fast link apart.
	gw := f.router(t, 3, func(c *Config) { c.Area, c.Gateway = 3, true })
	dst := f.router(t, 5, func(c *Config) { c.Area = 3 })
	x.m = newMesh(t, f.now, rs...) // level 2 only: gateway 3's two routers share its ID
	x.m.connect(x.l2[0], x.l2[1], fast)
	x.m.connect(x.l2[1], x.l2[2], Metrics{Cost: 300})
	x.m.connect(x.l2[2], x.l2[3], fast)
	gw.LinkUp(f.now, dst.ID(), fast)
	dst.LinkUp(f.now, gw.ID(), fast)
	x.m.advance(time.Second, 10*time.Millisecond)
	// The level-1 pair exchanges directly.
	for range 20 {
		for _, o := range gw.Drain() {
			_ = dst.HandleMessage(x.m.now, gw.ID(), o.Msg)
		}
		for _, o := range dst.Drain() {
			_ = gw.HandleMessage(x.m.now, dst.ID(), o.Msg)
		}
		x.m.now = x.m.now.Add(10 * time.Millisecond)
		gw.Tick(x.m.now)
		dst.Tick(x.m.now)
	}
	if got := dst.Gateways(); len(got) != 1 || got[0] != f.ids[3] {
		t.Fatalf("node 5 sees gateways %v, want gateway 3", got)
	}
	if got := gw.Gateways(); len(got) != 1 || got[0] != f.ids[3] {
		t.Fatalf("gateway 3 sees gateways %v, want itself", got)
	}
	var err error
	if x.proof, err = dst.DestinationProof(x.m.now); err != nil {
		t.Fatal(err)
	}
	if !x.proof.Level2 || x.proof.Area != 3 || len(x.proof.Links) != 1 || x.proof.Links[0].Neighbour != f.ids[3] || x.proof.Links[0].Cost != 110 {
		t.Fatalf("proof: %+v", x.proof)
	}
	return x
}

func (x *level2Fixture) route(t *testing.T, from int, proof *Record, cert int) (AreaRoute, error) {
	t.Helper()
	return x.l2[from].RouteByProof(x.m.now, proof, x.f.certs[cert])
}

// Gateways route to a node of another area through the level-2 graph, towards the gateway the
// destination named, at the sum of level-2 costs and the destination's own distance.
func TestLevel2RoutesByProof(t *testing.T) {
	x := newLevel2Fixture(t)
	ids := x.f.ids
	for _, c := range []struct {
		from    int
		next    NodeID
		entry   NodeID
		costSum uint64
	}{
		{0, ids[1], ids[3], 110 + 300 + 110 + 110},
		{1, ids[2], ids[3], 300 + 110 + 110},
		{2, ids[3], ids[3], 110 + 110},
		{3, NodeID{}, ids[3], 110},
	} {
		rt, err := x.route(t, c.from, x.proof, 5)
		if err != nil || rt.NextHop != c.next || rt.Entry != c.entry || rt.Cost != c.costSum {
			t.Errorf("from %d: %+v, %v; want next %x entry %x cost %d", c.from, rt, err, c.next[:4], c.entry[:4], c.costSum)
		}
	}
	// A level-1 router never takes a level-2 record, and the other way round.
	if x.l2[0].Record(ids[1]) == nil || !x.l2[0].Record(ids[1]).Level2 {
		t.Fatal("level-2 record of gateway 1 not held at gateway 0")
	}
}

// An adversary next to gateway 0 claims area 3 in its level-2 record and signs cost-1 links to
// gateway 0 and to gateway 3 (which never confirms it). It is named by no destination of area 3,
// so no route to node 5 goes through it; its unconfirmed link counts for nothing; it cannot forge
// node 5's proof, nor make a proof name a gateway of another area.
func TestLevel2LiarAttractsNothing(t *testing.T) {
	x := newLevel2Fixture(t)
	f, ids := x.f, x.f.ids
	liar := f.router(t, 4, func(c *Config) { c.Area, c.Level2 = 3, true }) // really a node of area 1
	x.m.rs[liar.ID()] = liar
	x.m.order = append(x.m.order, liar.ID())
	x.m.connect(x.l2[0], liar, fast)
	liar.LinkUp(x.m.now, ids[3], Metrics{Cost: 1}) // gateway 3 has no such link
	for range 50 {                                 // and it floods fresh records, again and again
		liar.LinkUp(x.m.now, ids[0], Metrics{Cost: 1})
		x.m.advance(200*time.Millisecond, 10*time.Millisecond)
	}
	if x.l2[2].Record(ids[4]) == nil {
		t.Fatal("the liar's record did not spread: the test tests nothing")
	}
	for from := range 3 {
		rt, err := x.route(t, from, x.proof, 5)
		if err != nil || rt.NextHop == ids[4] || rt.Entry != ids[3] {
			t.Fatalf("from %d: %+v, %v", from, rt, err)
		}
	}
	if rt, _ := x.l2[0].NextHop(ids[3]); rt.NextHop != ids[1] {
		t.Fatalf("gateway 0 → gateway 3 through %x: the liar's unconfirmed link counted", rt.NextHop[:4])
	}
	// The liar's own proof names itself; it routes only to the liar's own address.
	forged := &Record{Origin: ids[5], Seq: 1, Expires: x.m.now.Add(time.Minute), CertFingerprint: f.certs[5].Fingerprint(), Area: 3, Level2: true,
		Links: []LinkInfo{{Neighbour: ids[4], Cost: 1}}}
	raw, err := SignRecord(f.keys[4].Sign, forged)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := ParseRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.route(t, 0, fp, 5); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("proof for node 5 signed by the liar: %v", err)
	}
	if _, err := x.route(t, 0, fp, 4); err == nil {
		t.Fatal("proof for node 5 checked against the liar's certificate was accepted")
	}
	// Node 5 itself naming a gateway of area 2 gets no route: an entry must be of the proof's area.
	other := &Record{Origin: ids[5], Seq: 2, Expires: x.m.now.Add(time.Minute), CertFingerprint: f.certs[5].Fingerprint(), Area: 3, Level2: true,
		Links: []LinkInfo{{Neighbour: ids[1], Cost: 1}}}
	if raw, err = SignRecord(f.keys[5].Sign, other); err != nil {
		t.Fatal(err)
	}
	op, err := ParseRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.route(t, 0, op, 5); !errors.Is(err, ErrNoAreaRoute) {
		t.Fatalf("proof naming a gateway of area 2 for area 3: %v", err)
	}
}

// Level-1 and level-2 records never mix: each router refuses the other level's records unverified.
func TestLevelsDoNotMix(t *testing.T) {
	f := getFixture(t)
	l1 := f.router(t, 0, func(c *Config) { c.Area = 2 })
	l2 := f.router(t, 1, func(c *Config) { c.Area, c.Level2 = 2, true })
	m := newMesh(t, f.now, l1, l2)
	m.connect(l1, l2, fast)
	m.advance(time.Second, 10*time.Millisecond)
	if l1.Record(f.ids[1]) != nil || l2.Record(f.ids[0]) != nil {
		t.Fatal("a record crossed levels")
	}
	if l1.Stats().OtherArea == 0 || l2.Stats().OtherArea == 0 {
		t.Fatalf("refusals not counted: %d, %d", l1.Stats().OtherArea, l2.Stats().OtherArea)
	}
	if _, err := New(Config{Key: f.keys[0].Sign, Certificate: f.certs[0], Verifier: f.verifier, Level2: true}); err == nil {
		t.Fatal("a level-2 router of area 0 was accepted")
	}
}

// recordMessages counts the record messages, and those that carry a certificate.
func recordMessages(m *mesh) (records, certs *int) {
	records, certs = new(int), new(int)
	m.drop = func(_, _ NodeID, msg []byte) bool {
		if len(msg) > 1 && msg[0] == MsgRecord {
			*records++
			if msg[1]&flagCertificate != 0 {
				*certs++
			}
		}
		return false
	}
	return records, certs
}

// In a clique of level-2 routers every router receives each other originator's record, and its
// certificate, once: records are offered, and asked for (with the certificate when the router
// holds nothing of that originator) by one neighbour each. Level 1 of an area does the same for
// the first record of each originator; area 0 floods records and attaches certificates as before.
func TestLevel2CertificateOncePerOriginator(t *testing.T) {
	f := getFixture(t)
	const n = 4
	for _, tc := range []struct {
		level2 bool
		area   uint32
	}{{true, 2}, {false, 2}, {false, 0}} {
		level2, pull := tc.level2, tc.area != 0
		var rs []*Router
		for i := range n {
			rs = append(rs, f.router(t, i, func(c *Config) { c.Area, c.Level2 = tc.area, level2 }))
		}
		m := newMesh(t, f.now, rs...)
		records, certs := recordMessages(m)
		for i := range rs {
			for _, s := range rs[i+1:] {
				m.connect(rs[i], s, fast)
			}
		}
		m.advance(2*time.Second, 10*time.Millisecond)
		var requests, answers, offered uint64
		for _, r := range rs {
			for _, o := range rs {
				if r.Record(o.ID()) == nil {
					t.Fatalf("level 2 %v: a router lacks a record", level2)
				}
			}
			requests += r.Stats().CertRequests
			answers += r.Stats().CertAnswers
			offered += r.Stats().Offered
		}
		switch {
		case pull && (*records != n*(n-1) || *certs != n*(n-1) || offered == 0):
			t.Fatalf("level 2 %v, area %d: %d records, %d certificates sent, %d offered; want %d records and certificates", level2, tc.area, *records, *certs, offered, n*(n-1))
		case !pull && (requests != 0 || answers != 0 || offered != 0 || *certs < n*(n-1)):
			t.Fatalf("area 0: %d requests, %d answers, %d offers, %d certificates sent", requests, answers, offered, *certs)
		}
	}
}

// A neighbour repeating a certificate request gets one answer per retransmission timeout, and a
// request naming another certificate or an unknown originator gets none.
func TestLevel2CertRequestBounded(t *testing.T) {
	f := getFixture(t)
	a := f.router(t, 0, func(c *Config) { c.Area, c.Level2 = 2, true })
	b := f.router(t, 1, func(c *Config) { c.Area, c.Level2 = 3, true })
	m := newMesh(t, f.now, a, b)
	m.connect(a, b, fast)
	m.advance(time.Second, 10*time.Millisecond)
	before := a.Stats().CertAnswers
	for range 50 {
		_ = a.HandleMessage(m.now, b.ID(), encodeCertRequest(a.ID(), f.certs[0].Fingerprint()))
		_ = a.HandleMessage(m.now, b.ID(), encodeCertRequest(a.ID(), f.certs[1].Fingerprint()))
		_ = a.HandleMessage(m.now, b.ID(), encodeCertRequest(f.ids[5], f.certs[5].Fingerprint()))
	}
	if got := a.Stats().CertAnswers - before; got != 1 {
		t.Fatalf("%d answers to 150 requests, want 1", got)
	}
	m.now = m.now.Add(5 * time.Second)
	_ = a.HandleMessage(m.now, b.ID(), encodeCertRequest(a.ID(), f.certs[0].Fingerprint()))
	if got := a.Stats().CertAnswers - before; got != 2 {
		t.Fatalf("%d answers after the timeout, want 2", got)
	}
}

// A level-2 router sends each record version it did not sign to at most maxAnswers neighbours
// that ask for it, and answers the others Busy; they get it from another neighbour that offered it,
// so every router still ends up holding every record.
func TestLevel2AnswersShared(t *testing.T) {
	f := getFixture(t)
	const n = 6 // 0 is the hub, 1..4 a clique around it, 5 hangs off the hub alone
	var rs []*Router
	for i := range n {
		rs = append(rs, f.router(t, i, func(c *Config) { c.Area, c.Level2 = 2, true }))
	}
	m := newMesh(t, f.now, rs...)
	sent := map[[2]NodeID]int{} // (sender, origin) → record messages
	m.drop = func(from, _ NodeID, msg []byte) bool {
		if p, err := parseMessage(msg); err == nil && p.typ == MsgRecord {
			if h, ok := peekRecord(p.record); ok && h.origin != from {
				sent[[2]NodeID{from, h.origin}]++
			}
		}
		return false
	}
	for i := 1; i < n; i++ {
		m.connect(rs[0], rs[i], fast)
		for j := i + 1; j < n-1; j++ {
			m.connect(rs[i], rs[j], fast)
		}
	}
	m.advance(3*time.Second, 10*time.Millisecond)
	requireAllRecords(t, rs)
	if rs[0].Stats().Busy == 0 {
		t.Fatal("the hub never answered Busy")
	}
	for _, c := range sent {
		if c > maxAnswers+1 { // one more: a Busy neighbour that nobody else served gets it on retransmission
			t.Fatalf("a router sent another's record %d times", c)
		}
	}
	// A Busy for a record nobody asked for, or from a neighbour not asked, changes nothing.
	before := rs[1].Stats()
	if err := rs[1].HandleMessage(m.now, rs[0].ID(), encodeEntries(MsgBusy, []entry{{rs[3].ID(), 1}, {NodeID{9}, 7}})); err != nil {
		t.Fatal(err)
	}
	if rs[1].Stats().Requested != before.Requested || len(rs[1].Drain()) != 0 {
		t.Fatal("a stray Busy made the router ask for something")
	}
}

// A router of an area whose neighbour never sends its summary signs its first record anyway once
// the hold (firstRecordHold) is over.
func TestFirstRecordHoldBounded(t *testing.T) {
	f := getFixture(t)
	a := f.router(t, 0, func(c *Config) { c.Area = 4 })
	b := f.router(t, 1, func(c *Config) { c.Area = 4 })
	m := newMesh(t, f.now, a, b)
	m.drop = func(from, _ NodeID, msg []byte) bool {
		return from == b.ID() && (msg[0] == MsgAreaSummary || msg[0] == MsgSummary)
	}
	m.connect(a, b, fast)
	m.advance(firstRecordHold-50*time.Millisecond, 10*time.Millisecond)
	if a.Seq() != 0 {
		t.Fatal("signed before the hold ended, without the neighbour's summary")
	}
	if b.Seq() == 0 {
		t.Fatal("the neighbour that got a summary did not sign at once")
	}
	m.advance(100*time.Millisecond, 10*time.Millisecond)
	if a.Seq() == 0 {
		t.Fatal("still no record after the hold")
	}
}

// On a line of five nodes whose ends and middle are gateways, every gateway links to every other
// at its level-1 distance, but the ends flood only through the middle: it is nearer to both.
func TestVirtualLinksFloodingTopology(t *testing.T) {
	f := getFixture(t)
	var rs []*Router
	for i := range 5 {
		rs = append(rs, f.router(t, i, func(c *Config) { c.Area, c.Gateway = 1, i%2 == 0 }))
	}
	m := newMesh(t, f.now, rs...)
	for i := range 4 {
		m.connect(rs[i], rs[i+1], fast)
	}
	m.advance(2*time.Second, 10*time.Millisecond)
	cost := uint64(LinkCost(fast))
	want := map[int]map[NodeID]VirtualLink{
		0: {rs[2].ID(): {rs[2].ID(), 2 * cost, true}, rs[4].ID(): {rs[4].ID(), 4 * cost, false}},
		2: {rs[0].ID(): {rs[0].ID(), 2 * cost, true}, rs[4].ID(): {rs[4].ID(), 2 * cost, true}},
		4: {rs[2].ID(): {rs[2].ID(), 2 * cost, true}, rs[0].ID(): {rs[0].ID(), 4 * cost, false}},
	}
	checkVirtualLinks(t, rs, want)
	if rs[1].VirtualLinks() != nil {
		t.Fatal("a node that is not a gateway has virtual links")
	}
}

// Gateway A reaches gateways B and C through the same neighbour v, and B and C are nearer to A
// than to each other (by another path, through w). A minimum spanning tree (and the relative
// neighbourhood graph) would flood A–B and A–C, so v would relay every level-2 record twice; the
// flooding tree takes A–B and B–C instead, and v relays each once.
func TestVirtualLinksSpreadOverRelays(t *testing.T) {
	f := getFixture(t)
	const a, v, b, c, w = 0, 1, 2, 3, 4
	var rs []*Router
	for i := range 5 {
		rs = append(rs, f.router(t, i, func(cfg *Config) { cfg.Area, cfg.Gateway = 1, i == a || i == b || i == c }))
	}
	m := newMesh(t, f.now, rs...)
	m.connect(rs[a], rs[v], Metrics{Cost: 1})
	m.connect(rs[v], rs[b], Metrics{Cost: 10})
	m.connect(rs[v], rs[c], Metrics{Cost: 10})
	m.connect(rs[b], rs[w], Metrics{Cost: 7})
	m.connect(rs[w], rs[c], Metrics{Cost: 7})
	m.advance(2*time.Second, 10*time.Millisecond)
	want := map[int]map[NodeID]VirtualLink{
		a: {rs[b].ID(): {rs[b].ID(), 11, true}, rs[c].ID(): {rs[c].ID(), 11, false}},
		b: {rs[a].ID(): {rs[a].ID(), 11, true}, rs[c].ID(): {rs[c].ID(), 14, true}},
		c: {rs[a].ID(): {rs[a].ID(), 11, false}, rs[b].ID(): {rs[b].ID(), 14, true}},
	}
	checkVirtualLinks(t, rs, want)
}

// checkVirtualLinks fails unless each router rs[i] of want returns exactly the virtual links want[i].
func checkVirtualLinks(t *testing.T, rs []*Router, want map[int]map[NodeID]VirtualLink) {
	t.Helper()
	for i, w := range want {
		got := rs[i].VirtualLinks()
		if len(got) != len(w) {
			t.Fatalf("gateway %d: %d virtual links, want %d", i, len(got), len(w))
		}
		for _, v := range got {
			if w[v.Gateway] != v {
				t.Fatalf("gateway %d: %+v, want %+v", i, v, w[v.Gateway])
			}
		}
	}
}

// A level-2 link marked NoFlood carries no records, yet counts for routes.
func TestLevel2NoFloodLink(t *testing.T) {
	f := getFixture(t)
	var rs []*Router
	for i := range 3 {
		rs = append(rs, f.router(t, i, func(c *Config) { c.Area, c.Level2 = 2, true }))
	}
	m := newMesh(t, f.now, rs...)
	var overNoFlood int
	m.drop = func(from, to NodeID, msg []byte) bool {
		if msg[0] == MsgRecord && ((from == rs[0].ID() && to == rs[2].ID()) || (from == rs[2].ID() && to == rs[0].ID())) {
			overNoFlood++
		}
		return false
	}
	m.connect(rs[0], rs[1], fast)
	m.connect(rs[1], rs[2], fast)
	noFlood := fast
	noFlood.NoFlood = true
	m.connect(rs[0], rs[2], noFlood)
	m.advance(2*time.Second, 10*time.Millisecond)
	requireAllRecords(t, rs)
	if overNoFlood != 0 {
		t.Fatalf("%d records crossed the NoFlood link", overNoFlood)
	}
	if rt, ok := rs[0].NextHop(rs[2].ID()); !ok || rt.NextHop != rs[2].ID() {
		t.Fatalf("route 0→2 %+v (%v), want over the NoFlood link", rt, ok)
	}
}

// A hub's leaves can get a record from the hub alone. The one told Busy gets it when its offer
// times out, with the certificate it asked for: one record message per leaf, and no certificate
// asked for again.
func TestLevel2BusyThenCertificate(t *testing.T) {
	f := getFixture(t)
	const hub = 0
	var rs []*Router
	for i := range 5 {
		rs = append(rs, f.router(t, i, func(c *Config) { c.Area, c.Level2 = 2, true }))
	}
	m := newMesh(t, f.now, rs...)
	sent := recordsSent(m)
	for i := 1; i < 5; i++ {
		m.connect(rs[hub], rs[i], fast)
	}
	m.advance(3*time.Second, 10*time.Millisecond)
	requireAllRecords(t, rs)
	if rs[hub].Stats().Busy == 0 {
		t.Fatal("the hub never answered Busy: the test tests nothing")
	}
	for o := 1; o < 5; o++ {
		if got := sent[[2]NodeID{rs[hub].ID(), rs[o].ID()}]; got != 3 {
			t.Fatalf("the hub sent router %d's record %d times, want once to each of the 3 other leaves", o, got)
		}
	}
	if got := rs[hub].Stats().CertAnswers; got != 0 {
		t.Fatalf("the hub answered %d certificate requests", got)
	}
}

// requireAllRecords fails unless every router of rs holds every router's record.
func requireAllRecords(t *testing.T, rs []*Router) {
	t.Helper()
	for _, r := range rs {
		for _, o := range rs {
			if r.Record(o.ID()) == nil {
				t.Fatal("a router lacks a record")
			}
		}
	}
}
