package routing

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestRecordEndpointsRoundTrip(t *testing.T) {
	rec := fakeRecord(1, 9, 2)
	rec.NoTransit = true
	rec.Endpoints = []Endpoint{
		{netip.MustParseAddrPort("192.0.2.7:7946"), EndpointLocal},
		{netip.MustParseAddrPort("[2001:db8::5]:7946"), EndpointLocal},
		{netip.MustParseAddrPort("198.51.100.3:40123"), EndpointObserved},
	}
	rec.raw = rec.encode()
	p, err := ParseRecord(bytes.Clone(rec.raw))
	if err != nil {
		t.Fatal(err)
	}
	if !p.NoTransit || !slices.Equal(p.Endpoints, rec.Endpoints) {
		t.Fatalf("parsed %v %v", p.NoTransit, p.Endpoints)
	}
	if !bytes.Equal(p.encode(), rec.raw) {
		t.Fatal("re-encoding differs")
	}
	if h, ok := peekRecord(rec.raw); !ok || h.seq != 9 {
		t.Fatal("peek fails with endpoints")
	}

	bad := map[string][]Endpoint{
		"duplicate":   {rec.Endpoints[0], rec.Endpoints[0]},
		"zero port":   {{netip.MustParseAddrPort("192.0.2.7:0"), EndpointLocal}},
		"unspecified": {{netip.MustParseAddrPort("[::]:7946"), EndpointLocal}},
		"multicast":   {{netip.MustParseAddrPort("[ff02::1]:7946"), EndpointLocal}},
		"mapped":      {{netip.MustParseAddrPort("[::ffff:192.0.2.7]:7946"), EndpointLocal}},
		"kind":        {{netip.MustParseAddrPort("192.0.2.7:7946"), 3}},
		"too many":    slices.Repeat([]Endpoint{rec.Endpoints[0]}, MaxEndpoints+1),
	}
	for name, eps := range bad {
		r := fakeRecord(1, 9, 0)
		r.Endpoints = eps
		if r.checkFields() == nil {
			t.Errorf("%s: accepted", name)
		}
		if name == "too many" || name == "mapped" {
			continue // not encodable as such / encodes as the unmapped form
		}
		if _, err := ParseRecord(r.encode()); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// Unknown flags are refused.
	b := bytes.Clone(rec.raw)
	b[recordHeaderSizeV1-2+8] |= 2
	if _, err := ParseRecord(b); err == nil {
		t.Error("unknown flag accepted")
	}
}

// Published endpoints reach every node; a change is re-advertised; bad ones are refused.
func TestSetEndpointsFloods(t *testing.T) {
	f := getFixture(t)
	m, rs := line(t, 3, nil)
	eps := []Endpoint{{netip.MustParseAddrPort("192.0.2.1:7946"), EndpointLocal}}
	if err := rs[0].SetEndpoints(m.now, eps); err != nil {
		t.Fatal(err)
	}
	m.advance(500*time.Millisecond, 10*time.Millisecond)
	if got := rs[2].Record(f.ids[0]).Endpoints; !slices.Equal(got, eps) {
		t.Fatalf("router 2 sees endpoints %v, want %v", got, eps)
	}
	// The first observed endpoint (the node just learnt its NAT's address) goes out at once.
	eps = append(eps, Endpoint{netip.MustParseAddrPort("203.0.113.9:1234"), EndpointObserved})
	if err := rs[0].SetEndpoints(m.now, eps); err != nil {
		t.Fatal(err)
	}
	m.advance(200*time.Millisecond, 10*time.Millisecond)
	if got := rs[2].Record(f.ids[0]).Endpoints; !slices.Equal(got, eps) {
		t.Fatalf("200 ms after its first observed endpoint router 2 sees %v, want %v", got, eps)
	}
	// Later changes wait for the metric throttle.
	eps = append(eps, Endpoint{netip.MustParseAddrPort("203.0.113.9:4321"), EndpointObserved})
	if err := rs[0].SetEndpoints(m.now, eps); err != nil {
		t.Fatal(err)
	}
	m.advance(200*time.Millisecond, 10*time.Millisecond)
	if got := rs[2].Record(f.ids[0]).Endpoints; slices.Equal(got, eps) {
		t.Fatal("a further change was not throttled")
	}
	m.advance(3*time.Second, 10*time.Millisecond)
	if got := rs[2].Record(f.ids[0]).Endpoints; !slices.Equal(got, eps) {
		t.Fatalf("after a change router 2 sees %v, want %v", got, eps)
	}
	if err := rs[0].SetEndpoints(m.now, []Endpoint{eps[0], eps[0]}); err == nil {
		t.Fatal("duplicate endpoints accepted")
	}
	if got := rs[0].Endpoints(); !slices.Equal(got, eps) {
		t.Fatalf("a refused set changed the endpoints to %v", got)
	}
}

// A node that does not relay is a destination but never a transit hop: on a line a-b-c with b
// marked, a and c cannot reach each other, and both reach b.
func TestNoTransit(t *testing.T) {
	f := getFixture(t)
	rs := []*Router{f.router(t, 0, nil), f.router(t, 1, func(c *Config) { c.NoTransit = true }), f.router(t, 2, nil)}
	noRelay := rs[1]
	m := newMesh(t, f.now, rs...)
	m.connect(rs[0], noRelay, fast)
	m.connect(noRelay, rs[2], fast)
	m.advance(time.Second, 10*time.Millisecond)
	if !noRelay.Record(noRelay.ID()).NoTransit {
		t.Fatal("own record does not carry the flag")
	}
	if _, ok := rs[0].NextHop(f.ids[1]); !ok {
		t.Fatal("the no-transit node is not reachable as a destination")
	}
	if rt, ok := rs[0].NextHop(f.ids[2]); ok {
		t.Fatalf("route through a no-transit node: %+v", rt)
	}
}
