package routing

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/meshca"
)

// Records kept across a restart are given back to a fresh router of the same node, which checks
// each one as it checks a received record: the copy on disk earns no trust. Good ones are held and
// age out at their own expiry; the node's own one raises the sequence number it signs.
func TestRestoreChecksLikeAReceivedRecord(t *testing.T) {
	f := getFixture(t)
	v, err := meshca.NewVerifier(f.ca.Certificate()) // private: this test revokes
	if err != nil {
		t.Fatal(err)
	}
	withV := func(c *Config) { c.Verifier = v }
	m, rs := line(t, 3, withV)
	now := m.now
	held := rs[0].Held(now)
	if len(held) != 3 {
		t.Fatalf("router 0 hands %d records to keep, want 3 (its own and two others)", len(held))
	}
	find := func(id NodeID) HeldRecord {
		for _, h := range held {
			if rec, err := ParseRecord(h.Record); err == nil && rec.Origin == id {
				return h
			}
		}
		t.Fatalf("no kept record of %x", id[:4])
		return HeldRecord{}
	}
	own, one, two := find(f.ids[0]), find(f.ids[1]), find(f.ids[2])

	fresh := f.router(t, 0, withV)
	for _, h := range held {
		if err := fresh.Restore(now, h.Cert, h.Record); err != nil {
			t.Fatalf("good kept record refused: %v", err)
		}
	}
	for _, id := range f.ids[1:3] {
		if got, want := fresh.Record(id), rs[0].Record(id); got == nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("record of %x not restored", id[:4])
		}
	}
	if fresh.Seq() != rs[0].Seq() {
		t.Fatalf("restored router signs above %d, want above its own kept record's %d", fresh.Seq(), rs[0].Seq())
	}
	if err := fresh.Restore(now, one.Cert, one.Record); !errors.Is(err, ErrStale) {
		t.Fatalf("the same record twice: %v, want ErrStale", err)
	}

	// Restored records age as received ones do: gone at the expiry they were signed with.
	exp := fresh.Record(f.ids[1]).Expires
	fresh.Tick(exp.Add(-time.Millisecond))
	if fresh.Record(f.ids[1]) == nil {
		t.Fatal("restored record dropped before its expiry")
	}
	fresh.Tick(exp.Add(time.Millisecond))
	if fresh.Record(f.ids[1]) != nil {
		t.Fatal("restored record outlived its expiry")
	}

	refused := func(name string, r *Router, at time.Time, h HeldRecord, want error) {
		t.Helper()
		if err := r.Restore(at, h.Cert, h.Record); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if rec, err := ParseRecord(h.Record); err == nil && rec.Origin != r.ID() && r.Record(rec.Origin) != nil {
			t.Fatalf("%s: installed", name)
		}
	}
	tampered := func(h HeldRecord, at int) HeldRecord {
		b := bytes.Clone(h.Record)
		b[at] ^= 1
		return HeldRecord{Cert: h.Cert, Record: b}
	}
	newRouter := func(mod func(*Config)) *Router {
		return f.router(t, 0, func(c *Config) {
			withV(c)
			if mod != nil {
				mod(c)
			}
		})
	}

	refused("signature flipped", newRouter(nil), now, tampered(one, len(one.Record)-1), ErrBadSignature)
	refused("sequence number changed", newRouter(nil), now, tampered(one, 44), ErrBadSignature)
	refused("another node's certificate attached", newRouter(nil), now, HeldRecord{Cert: two.Cert, Record: one.Record}, ErrBadCertificate)
	refused("no certificate", newRouter(nil), now, HeldRecord{Record: one.Record}, ErrBadCertificate)
	refused("expired", newRouter(nil), exp, one, ErrExpired)
	refused("another area", newRouter(func(c *Config) { c.Area = 7 }), now, one, ErrOtherArea)
	refused("not a record", newRouter(nil), now, HeldRecord{Cert: one.Cert, Record: one.Record[:20]}, ErrMalformed)

	foreign := signRecord(t, f.otherKey.Sign, f.otherCert, f.otherCert.SignPublicKey.ID(), 7, now.Add(time.Minute), nil)
	refused("certificate of a CA not trusted", newRouter(nil), now, HeldRecord{Cert: f.otherCert.Bytes(), Record: foreign.raw}, ErrBadCertificate)
	future := signRecord(t, f.keys[1].Sign, f.certs[1], f.ids[1], 7, now.Add(time.Hour), nil)
	refused("expiring too far ahead", newRouter(nil), now, HeldRecord{Cert: f.certs[1].Bytes(), Record: future.raw}, ErrFuture)

	// The node's own record: a forgery raises nothing; an expired one raises the sequence number
	// (we signed it) but is not taken back.
	r := newRouter(nil)
	refused("own record tampered", r, now, tampered(own, 44), ErrBadSignature)
	if r.Seq() != 0 {
		t.Fatalf("a forged own record raised the sequence number to %d", r.Seq())
	}
	r = newRouter(nil)
	refused("own record expired", r, exp, own, ErrExpired)
	if r.Seq() != rs[0].Seq() || r.kept != nil {
		t.Fatalf("expired own record: sequence %d (want %d), kept %v", r.Seq(), rs[0].Seq(), r.kept != nil)
	}

	// Revoked since it was kept.
	crl, err := f.ca.SignRevocationList(nil, []meshca.Serial{f.certs[2].Serial}, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.UpdateCRL(crl); err != nil {
		t.Fatal(err)
	}
	refused("revoked certificate", newRouter(nil), now, two, ErrBadCertificate)
}

// A new session with a neighbour the router has (the neighbour restarted, or the node's link layer
// handshook again) comes up before the link is measured: the router starts a new adjacency but
// keeps the link's measured cost instead of re-signing its record with the placeholder cost of no
// measurement, which would flood its area for nothing.
func TestLinkUpAgainUnmeasuredKeepsCost(t *testing.T) {
	m, rs := line(t, 2, nil)
	m.advance(time.Second, 10*time.Millisecond)
	r := rs[0]
	signed, cost := r.Stats().Originated, r.Record(r.ID()).Links[0].Cost
	if cost == LinkCost(Metrics{}) {
		t.Fatalf("the link's measured cost %d is the placeholder's: the test shows nothing", cost)
	}
	r.LinkUp(m.now, rs[1].ID(), Metrics{})
	m.advance(3*time.Second, 10*time.Millisecond)
	if got := r.Stats().Originated; got != signed {
		t.Fatalf("a new session on a measured link signed %d records", got-signed)
	}
	if got := r.Record(r.ID()).Links[0].Cost; got != cost {
		t.Fatalf("the link is advertised at %d, want its measured %d", got, cost)
	}
	// A measurement of it counts as before.
	r.UpdateMetrics(m.now, rs[1].ID(), Metrics{RTT: 200 * time.Millisecond})
	m.advance(3*time.Second, 10*time.Millisecond)
	if r.Stats().Originated == signed {
		t.Fatal("a new measurement beyond the hysteresis was not advertised")
	}
}

// A node that announces itself to a control plane at start does not sign a new record when the own
// record it kept says the same (its endpoints; not due for refresh): it is taken back when its
// links are up. With other endpoints it signs at once, as before.
func TestAnnounceWithKeptRecord(t *testing.T) {
	f := getFixture(t)
	eps := []Endpoint{{Addr: netip.MustParseAddrPort("192.0.2.1:4242"), Kind: EndpointLocal}}
	area := func(c *Config) { c.Area = 1 }
	first := f.router(t, 0, area)
	if err := first.SetEndpoints(f.now, eps); err != nil {
		t.Fatal(err)
	}
	first.Announce()
	first.Tick(f.now)
	cert, own := first.Own()
	if own == nil {
		t.Fatal("no record announced")
	}
	for _, tc := range []struct {
		name string
		eps  []Endpoint
		sign bool
	}{
		{"same endpoints", eps, false},
		{"another endpoint", []Endpoint{{Addr: netip.MustParseAddrPort("192.0.2.2:4242"), Kind: EndpointLocal}}, true},
	} {
		now := f.now.Add(10 * time.Second)
		r := f.router(t, 0, area)
		if err := r.Restore(now, cert, own); err != nil {
			t.Fatal(err)
		}
		if err := r.SetEndpoints(now, tc.eps); err != nil {
			t.Fatal(err)
		}
		r.Announce()
		r.Tick(now)
		if signed := r.Stats().Originated > 0; signed != tc.sign {
			t.Fatalf("%s: signed a record: %v, want %v", tc.name, signed, tc.sign)
		}
	}
}
