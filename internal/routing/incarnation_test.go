package routing

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// A node that restarts signs a larger incarnation; every node that held its previous record reports
// the restart once, the first time the new record is installed, and never for refreshes.
func TestRestartReportedOnce(t *testing.T) {
	f := getFixture(t)
	inc := func(v uint64) func(*Config) { return func(c *Config) { c.Incarnation = v } }
	rs := []*Router{f.router(t, 0, inc(100)), f.router(t, 1, inc(100)), f.router(t, 2, inc(100))}
	m := newMesh(t, f.now, rs...)
	m.connect(rs[0], rs[1], fast)
	m.connect(rs[1], rs[2], fast)
	m.advance(time.Second, 10*time.Millisecond)
	for i, r := range rs {
		if got := r.Restarts(); len(got) != 0 {
			t.Fatalf("router %d reports restarts %v at first contact", i, got)
		}
	}
	if got := rs[2].Record(f.ids[0]).Incarnation; got != 100 {
		t.Fatalf("record carries incarnation %d, want 100", got)
	}

	// Refreshes and metric changes keep the incarnation: no restart.
	m.now = m.now.Add(2 * time.Minute)
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 80 * time.Millisecond})
	m.advance(3*time.Second, 10*time.Millisecond)
	if got := rs[2].Restarts(); len(got) != 0 {
		t.Fatalf("refresh reported as restart: %v", got)
	}

	// Router 0 restarts with a larger incarnation on the same adjacency (faster than the link layer
	// notices).
	fresh := f.router(t, 0, inc(200))
	m.rs[f.ids[0]] = fresh
	fresh.LinkUp(m.now, f.ids[1], fast)
	m.advance(time.Second, 10*time.Millisecond)
	for _, i := range []int{1, 2} {
		if got := rs[i].Restarts(); !slices.Equal(got, []NodeID{f.ids[0]}) {
			t.Fatalf("router %d reports %v, want router 0's restart", i, got)
		}
		if got := rs[i].Restarts(); len(got) != 0 {
			t.Fatalf("router %d reports the restart twice: %v", i, got)
		}
		if rs[i].Stats().Restarts != 1 {
			t.Fatalf("router %d counted %d restarts", i, rs[i].Stats().Restarts)
		}
	}

	// An older incarnation with a newer sequence (a clock that went back) is not a restart.
	fresh2 := f.router(t, 0, inc(150))
	m.rs[f.ids[0]] = fresh2
	m.now = m.now.Add(time.Minute)
	fresh2.LinkUp(m.now, f.ids[1], fast)
	m.advance(time.Second, 10*time.Millisecond)
	if got := rs[2].Restarts(); len(got) != 0 {
		t.Fatalf("smaller incarnation reported as restart: %v", got)
	}
	if got := rs[2].Record(f.ids[0]).Incarnation; got != 150 {
		t.Fatalf("record carries incarnation %d, want 150", got)
	}
}

// Records of version 1 (before incarnations) still parse, verify and round-trip, and a node that
// upgrades from version 1 is seen restarting.
func TestVersion1Records(t *testing.T) {
	f := getFixture(t)
	v1 := &Record{Origin: f.ids[0], Seq: 7, Expires: time.UnixMilli(f.now.Add(time.Minute).UnixMilli()),
		CertFingerprint: f.certs[0].Fingerprint(), Links: testLinks(f, 1), cert: f.certs[0], version: recordVersion1}
	sig, err := f.keys[0].Sign.Sign(SignatureContext, v1.appendTBS(nil))
	if err != nil {
		t.Fatal(err)
	}
	v1.Signature = sig
	v1.raw = v1.encode()
	if got, want := len(v1.raw), recordHeaderSizeV1+linkSize+2+len(sig); got != want {
		t.Fatalf("version 1 record is %d bytes, want %d", got, want)
	}
	p, err := ParseRecord(bytes.Clone(v1.raw))
	if err != nil {
		t.Fatal(err)
	}
	if p.Incarnation != 0 || p.Seq != 7 || !bytes.Equal(p.encode(), v1.raw) {
		t.Fatalf("version 1 record parsed as %+v", p)
	}

	r := f.router(t, 1, nil)
	r.LinkUp(f.now, f.ids[0], fast)
	if err := r.HandleMessage(f.now, f.ids[0], v1.message(true)); err != nil {
		t.Fatal(err)
	}
	if got := r.Record(f.ids[0]); got == nil || got.Seq != 7 {
		t.Fatal("version 1 record not installed")
	}
	v2 := &Record{Origin: f.ids[0], Seq: 8, Expires: f.now.Add(time.Minute), CertFingerprint: f.certs[0].Fingerprint(),
		Incarnation: 1, Links: testLinks(f, 1), cert: f.certs[0]}
	if _, err := SignRecord(f.keys[0].Sign, v2); err != nil {
		t.Fatal(err)
	}
	now := f.now.Add(time.Second)
	if err := r.HandleMessage(now, f.ids[0], v2.message(false)); err != nil {
		t.Fatal(err)
	}
	if got := r.Restarts(); !slices.Equal(got, []NodeID{f.ids[0]}) {
		t.Fatalf("upgrade from version 1 reported as %v", got)
	}
}
