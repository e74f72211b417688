package routing

import (
	"testing"
	"time"
)

// recordsSent counts, per (sender, originator), the Record messages a router sent of another's
// record.
func recordsSent(m *mesh) map[[2]NodeID]int {
	sent := map[[2]NodeID]int{}
	m.drop = func(from, _ NodeID, msg []byte) bool {
		if p, err := parseMessage(msg); err == nil && p.typ == MsgRecord {
			if h, ok := peekRecord(p.record); ok && h.origin != from {
				sent[[2]NodeID{from, h.origin}]++
			}
		}
		return false
	}
	return sent
}

// areaRouters returns level-1 routers of area for the fixture's first n keys.
func areaRouters(t *testing.T, f *fixture, n int, area uint32) []*Router {
	t.Helper()
	var rs []*Router
	for i := range n {
		rs = append(rs, f.router(t, i, func(c *Config) { c.Area = area }))
	}
	return rs
}

// A level-1 hub of an area answers the requests for a new originator's first record for at most
// maxAnswers neighbours that another holder can serve (Busy for the rest, which get it from the
// neighbours served), and at once for a leaf nobody else can serve: every node holds it a few
// batching delays later, well before a retransmission timeout.
func TestAreaAnswersShared(t *testing.T) {
	f := getFixture(t)
	// 0 is the hub, 1..3 a clique around it, 4 hangs off the hub alone, 5 joins later on the hub.
	rs := areaRouters(t, f, 6, 3)
	m := newMesh(t, f.now, rs...)
	sent := recordsSent(m)
	for i := 1; i <= 4; i++ {
		m.connect(rs[0], rs[i], fast)
	}
	m.connect(rs[1], rs[2], fast)
	m.connect(rs[1], rs[3], fast)
	m.connect(rs[2], rs[3], fast)
	m.advance(3*time.Second, 10*time.Millisecond)
	busy := rs[0].Stats().Busy
	m.connect(rs[0], rs[5], fast)
	newcomer := rs[5].ID()
	deadline := m.now.Add(firstRecordHold + time.Second)
	for rs[0].Record(newcomer) == nil && m.now.Before(deadline) {
		m.advance(10*time.Millisecond, 10*time.Millisecond)
	}
	if rs[0].Record(newcomer) == nil {
		t.Fatal("the hub never got the newcomer's record")
	}
	m.advance(60*time.Millisecond, 10*time.Millisecond) // a few batching delays, far below busyHold × RTO
	for i, r := range rs {
		if r.Record(newcomer) == nil {
			t.Fatalf("router %d lacks the newcomer's record 60 ms after the hub got it", i)
		}
	}
	if got := sent[[2]NodeID{rs[0].ID(), newcomer}]; got != maxAnswers+1 { // two of the clique and the leaf
		t.Fatalf("the hub sent the newcomer's record %d times, want %d", got, maxAnswers+1)
	}
	if rs[0].Stats().Busy == busy {
		t.Fatal("the hub never answered Busy for the newcomer's record")
	}
}

// The answers counted for one record version lapse after busyHold retransmission timeouts: a
// node that restarts long after the cold start is answered by the first neighbour it asks, not
// sent round every neighbour by Busy answers left from the cold start.
func TestAnswersCountLapses(t *testing.T) {
	f := getFixture(t)
	// 1 is the hub, 2..4 a clique around it, 0 joins later on the hub alone.
	rs := areaRouters(t, f, 5, 3)
	m := newMesh(t, f.now, rs...)
	for i := 2; i <= 4; i++ {
		m.connect(rs[1], rs[i], fast)
		for j := i + 1; j <= 4; j++ {
			m.connect(rs[i], rs[j], fast)
		}
	}
	m.advance(3*time.Second, 10*time.Millisecond)
	m.connect(rs[1], rs[0], fast)
	m.advance(3*time.Second, 10*time.Millisecond)
	if rs[1].Stats().Busy == 0 {
		t.Fatal("the hub never answered Busy: the test does not exercise the count")
	}
	var busy uint64
	for _, r := range rs[:4] {
		busy += r.Stats().Busy
	}
	restarted := f.router(t, 4, func(c *Config) { c.Area = 3 })
	m.rs[restarted.ID()] = restarted
	for _, r := range rs[1:4] {
		m.connect(restarted, r, fast) // back before they noticed: a new handshake
	}
	m.advance(100*time.Millisecond, 10*time.Millisecond)
	for _, r := range rs[:4] {
		if restarted.Record(r.ID()) == nil {
			t.Fatal("the restarted router lacks a record 100 ms after it came back")
		}
	}
	var after uint64
	for _, r := range rs[:4] {
		after += r.Stats().Busy
	}
	if after != busy {
		t.Fatalf("%d requests of the restarted router answered Busy", after-busy)
	}
}
