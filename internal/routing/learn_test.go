package routing

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// A record learnt from outside the flood is verified like a flooded one, installed, and flooded on;
// an older one, a forgery and one with a wrong certificate change nothing.
func TestLearn(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 2, nil)
	m.advance(time.Second, 10*time.Millisecond)
	cert, rec := rs[0].Own()
	if cert == nil || rec == nil {
		t.Fatal("router 0 has no record to report")
	}

	joiner := f.router(t, 3, nil)
	peer := f.router(t, 4, nil)
	now := m.now
	joiner.LinkUp(now, f.ids[4], fast) // learnt records are flooded to neighbours
	peer.LinkUp(now, f.ids[3], fast)
	_ = joiner.Drain()

	otherCert, _ := rs[1].Own()
	if err := joiner.Learn(now, otherCert, rec); !errors.Is(err, ErrBadCertificate) {
		t.Fatalf("record with another node's certificate: %v", err)
	}
	bad := bytes.Clone(rec)
	bad[len(bad)-1] ^= 1
	if err := joiner.Learn(now, cert, bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged record: %v", err)
	}
	if joiner.Record(f.ids[0]) != nil {
		t.Fatal("a refused record was installed")
	}
	if err := joiner.Learn(now, cert, rec); err != nil {
		t.Fatal(err)
	}
	got := joiner.Record(f.ids[0])
	if got == nil || !bytes.Equal(got.Bytes(), rec) {
		t.Fatal("learnt record not held")
	}
	flooded := false
	for _, o := range joiner.Drain() {
		if o.To == f.ids[4] && o.Msg[0] == MsgRecord {
			flooded = true
		}
	}
	if !flooded {
		t.Fatal("learnt record not flooded to the neighbour")
	}
	if joiner.Certificate(f.ids[0]) == nil {
		t.Fatal("the certificate came with the record but is not held")
	}

	// A newer record replaces it; the older one offered again changes nothing.
	m.now = m.now.Add(2 * time.Minute)
	rs[0].UpdateMetrics(m.now, f.ids[1], Metrics{RTT: 90 * time.Millisecond})
	m.advance(3*time.Second, 10*time.Millisecond)
	_, newer := rs[0].Own()
	if err := joiner.Learn(m.now, cert, newer); err != nil {
		t.Fatal(err)
	}
	if err := joiner.Learn(m.now.Add(time.Second), cert, rec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joiner.Record(f.ids[0]).Bytes(), newer) {
		t.Fatal("an older learnt record rolled the database back")
	}
	if _, r := joiner.Own(); r != nil {
		t.Fatal("a router that never originated reports a record")
	}
}

// A record of another area learnt from outside the flood is ignored, unverified, as a flooded one
// is: a control plane hands out the records of every node a node may reach, whatever its area, and
// one installed would give a level-1 route across the border.
func TestLearnOtherArea(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 2, nil)
	m.advance(time.Second, 10*time.Millisecond)
	cert, rec := rs[0].Own() // area 0
	joiner := f.router(t, 3, func(c *Config) { c.Area = 7 })
	if err := joiner.Learn(m.now, cert, rec); err != nil {
		t.Fatalf("a record of another area: %v, want it ignored", err)
	}
	if joiner.Record(f.ids[0]) != nil || joiner.Certificate(f.ids[0]) != nil {
		t.Fatal("a record of another area was installed")
	}
	if s := joiner.Stats(); s.OtherArea != 1 || s.BadCertificate != 0 || s.BadSignature != 0 {
		t.Fatalf("stats %+v, want one record of another area and nothing verified", s)
	}
}
