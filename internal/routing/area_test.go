package routing

import (
	"errors"
	"testing"
	"time"
)

// Records stay in their area: routers of one area hold each other's records and route among
// themselves; a record of another area is refused at the border and never flooded on.
func TestAreasScopeFlooding(t *testing.T) {
	f := getFixture(t)
	area := func(a uint32) func(*Config) { return func(c *Config) { c.Area = a } }
	rs := []*Router{f.router(t, 0, area(7)), f.router(t, 1, area(7)), f.router(t, 2, area(7)), f.router(t, 3, area(9)), f.router(t, 4, area(9))}
	m := newMesh(t, f.now, rs...)
	for i := 1; i < len(rs); i++ {
		m.connect(rs[i-1], rs[i], fast)
	}
	m.advance(time.Second, 10*time.Millisecond)
	in := func(r *Router, id NodeID) bool { return r.Record(id) != nil }
	for i, r := range rs {
		for j := range rs {
			same := (i < 3) == (j < 3)
			if got := in(r, f.ids[j]); got != same {
				t.Errorf("router %d holds router %d's record: %v, want %v", i, j, got, same)
			}
			if _, ok := r.NextHop(f.ids[j]); i != j && ok != same {
				t.Errorf("router %d routes to router %d: %v, want %v", i, j, ok, same)
			}
		}
	}
	if rec := rs[0].Record(f.ids[1]); rec.Area != 7 || rec.version != recordVersionArea {
		t.Fatalf("record of area %d, version %d", rec.Area, rec.version)
	}
	// An end of the border link 2–3 learns the other's area from its Summary before flooding
	// anything across, so no record crosses it.
	for _, i := range []int{2, 3} {
		if n := rs[i].Stats().OtherArea; n != 0 {
			t.Errorf("router %d refused %d records of the other area: something crossed the border", i, n)
		}
	}
}

// A node that lies about its area (signs area 9 while all its neighbours are in area 7) gets none of
// its records into area 7, so no link to it is ever confirmed there and nobody routes through it;
// its neighbours refuse what it sends.
func TestAreaLiarAttractsNothing(t *testing.T) {
	f := getFixture(t)
	area := func(a uint32) func(*Config) { return func(c *Config) { c.Area = a } }
	rs := []*Router{f.router(t, 0, area(7)), f.router(t, 1, area(7)), f.router(t, 2, area(7)), f.router(t, 3, area(7))}
	liar := f.router(t, 5, area(9))
	m := newMesh(t, f.now, append(rs, liar)...)
	// Ring 0–1–2–3–0 with a slow link 0–1, and the liar offering a cheap shortcut between 0 and 1.
	m.connect(rs[0], rs[1], Metrics{RTT: 200 * time.Millisecond})
	m.connect(rs[1], rs[2], fast)
	m.connect(rs[2], rs[3], fast)
	m.connect(rs[3], rs[0], fast)
	m.connect(rs[0], liar, fast)
	m.connect(liar, rs[1], fast)
	m.advance(time.Second, 10*time.Millisecond)
	for i, r := range rs {
		if r.Record(f.ids[5]) != nil {
			t.Fatalf("router %d holds the liar's record", i)
		}
		for j := range rs {
			if rt, ok := r.NextHop(f.ids[j]); i != j && (!ok || rt.NextHop == f.ids[5]) {
				t.Fatalf("router %d → %d: route %+v, %v (through the liar or none)", i, j, rt, ok)
			}
		}
	}
	// A liar's router would push its record anyway: it is refused unverified and counted.
	raw := liar.Record(f.ids[5]).Bytes()
	if err := rs[0].HandleMessage(m.now, f.ids[5], appendRecordMessage(nil, f.certs[5].Bytes(), raw)); err != nil && !errors.Is(err, ErrNotNeighbour) {
		t.Fatalf("liar's record: %v", err)
	}
	if rs[0].Record(f.ids[5]) != nil || rs[0].Stats().OtherArea == 0 {
		t.Fatalf("liar's record installed, or not counted as another area's (%d)", rs[0].Stats().OtherArea)
	}
}

// Area 0 is today's encoding (version 2); any other area signs version 3; a version 3 record of area
// 0 is not canonical and is refused.
func TestAreaEncoding(t *testing.T) {
	for _, a := range []uint32{0, 1, 0xffffffff} {
		rec := fakeRecord(1, 2, 2)
		rec.Area, rec.version = a, 0
		rec.raw = rec.encode()
		got, err := ParseRecord(rec.raw)
		if err != nil {
			t.Fatalf("area %d: %v", a, err)
		}
		if got.Area != a || got.version != signingVersion(a) {
			t.Fatalf("area %d: parsed area %d version %d", a, got.Area, got.version)
		}
		if h, _ := peekRecord(rec.raw); h.area != a {
			t.Fatalf("area %d: peeked %d", a, h.area)
		}
	}
	rec := fakeRecord(1, 2, 0)
	rec.Area, rec.version = 5, 0
	rec.raw = rec.encode()
	bad := append([]byte(nil), rec.raw...)
	copy(bad[areaOffset:], []byte{0, 0, 0, 0})
	if _, err := ParseRecord(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 3 record of area 0 accepted: %v", err)
	}
	if _, err := parseMessage(encodeSummary(0, 1, 0, NodeID{1}, NodeID{2}, nil)); err != nil {
		t.Fatal(err)
	}
	m, err := parseMessage(encodeSummary(4, 1, 0, NodeID{1}, NodeID{2}, nil))
	if err != nil || m.area != 4 || m.typ != MsgAreaSummary {
		t.Fatalf("area summary: %+v, %v", m, err)
	}
	zero := encodeSummary(4, 1, 0, NodeID{1}, NodeID{2}, nil)
	copy(zero[1:], []byte{0, 0, 0, 0})
	if _, err := parseMessage(zero); !errors.Is(err, ErrMalformed) {
		t.Fatalf("area summary of area 0 accepted: %v", err)
	}
}
