package names

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

var epoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// testMesh is a CA, the certificates it issued, and the verifier a node would hold.
type testMesh struct {
	t        testing.TB
	ca       *meshca.CA
	verifier *meshca.Verifier
	crl      *meshca.RevocationList
	certs    map[string]*meshca.Certificate
}

func newTestMesh(t testing.TB, names ...string) *testMesh {
	t.Helper()
	return newTestMeshAt(t, epoch, names...)
}

// newTestMeshAt makes a mesh whose certificates are valid for an hour from at.
func newTestMeshAt(t testing.TB, at time.Time, names ...string) *testMesh {
	t.Helper()
	key, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(key, meshca.CAOptions{TrustDomain: "names.test", Name: "root", Duration: 24 * time.Hour}, at)
	if err != nil {
		t.Fatal(err)
	}
	v, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	m := &testMesh{t: t, ca: ca, verifier: v, certs: map[string]*meshca.Certificate{}}
	for _, n := range names {
		m.certs[n] = m.issue(n, at, time.Hour)
	}
	return m
}

func (m *testMesh) issue(name string, at time.Time, d time.Duration) *meshca.Certificate {
	m.t.Helper()
	k, err := identity.GenerateNodeKey()
	if err != nil {
		m.t.Fatal(err)
	}
	c, err := m.ca.Issue(meshca.IssueRequest{Name: name, PublicKey: k.Public(), Duration: d}, at)
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

func (m *testMesh) revoke(c *meshca.Certificate, now time.Time) {
	m.t.Helper()
	l, err := m.ca.SignRevocationList(m.crl, []meshca.Serial{c.Serial}, nil, now)
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := m.verifier.UpdateCRL(l); err != nil {
		m.t.Fatal(err)
	}
	m.crl = l
}

// source is a Source over a list of certificates that a test changes, as the node's changes when
// nodes join and leave.
type source struct {
	mu    sync.Mutex
	certs []*meshca.Certificate
	calls int
}

func (s *source) Certificates() []*meshca.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return slices.Clone(s.certs)
}

func (s *source) set(cs ...*meshca.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs = cs
}

func newResponder(t testing.TB, cfg Config, src Source, v Verifier) *Responder {
	t.Helper()
	r, err := NewResponder(cfg, src, v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// ask sends one question through the wire format both ways, as a client would see it.
func ask(t testing.TB, r *Responder, now time.Time, name string, qtype uint16) *dns.Msg {
	t.Helper()
	return exchange(t, r, now, query(name, qtype))
}

func exchange(t testing.TB, r *Responder, now time.Time, req *dns.Msg) *dns.Msg {
	t.Helper()
	raw, err := req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	parsed := new(dns.Msg)
	if err := parsed.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	resp := r.Answer(now, parsed)
	if resp == nil {
		t.Fatalf("no answer to %v", req.Question)
	}
	out, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	got := new(dns.Msg)
	if err := got.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if got.Id != req.Id || !got.Response {
		t.Fatalf("answer id %d response %v, want id %d and a response", got.Id, got.Response, req.Id)
	}
	return got
}

func wantRcode(t testing.TB, m *dns.Msg, rcode int) {
	t.Helper()
	if m.Rcode != rcode {
		t.Fatalf("%v: rcode %s, want %s", m.Question, dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode])
	}
}

// wantAAAA checks m is an authoritative answer of exactly addr for the question's name.
func wantAAAA(t testing.TB, m *dns.Msg, addr netip.Addr) {
	t.Helper()
	wantRcode(t, m, dns.RcodeSuccess)
	if len(m.Answer) != 1 {
		t.Fatalf("%v: %d answers, want 1: %v", m.Question, len(m.Answer), m.Answer)
	}
	a, ok := m.Answer[0].(*dns.AAAA)
	if !ok {
		t.Fatalf("answer %v is not AAAA", m.Answer[0])
	}
	got, _ := netip.AddrFromSlice(a.AAAA)
	if got != addr {
		t.Fatalf("%v: AAAA %s, want %s", m.Question, got, addr)
	}
	if a.Hdr.Name != m.Question[0].Name || a.Hdr.Ttl != 10 || !m.Authoritative || m.RecursionAvailable {
		t.Fatalf("answer %v (aa %v, ra %v): want the question's name, TTL 10, authoritative, no recursion", a, m.Authoritative, m.RecursionAvailable)
	}
}

func wantNoData(t testing.TB, m *dns.Msg) {
	t.Helper()
	wantRcode(t, m, dns.RcodeSuccess)
	if len(m.Answer) != 0 || !m.Authoritative {
		t.Fatalf("%v: answers %v, authoritative %v; want none, authoritative", m.Question, m.Answer, m.Authoritative)
	}
}

func TestAnswers(t *testing.T) {
	m := newTestMesh(t, "n1", "n2", "n3")
	r := newResponder(t, Config{}, &source{certs: []*meshca.Certificate{m.certs["n1"], m.certs["n2"], m.certs["n3"]}}, m.verifier)
	now := epoch.Add(time.Minute)
	n2 := m.certs["n2"].Overlay

	wantAAAA(t, ask(t, r, now, "n2.mesh.", dns.TypeAAAA), n2)
	wantAAAA(t, ask(t, r, now, "n2.mesh.", dns.TypeANY), n2)
	// Lookups ignore case; the answer keeps the question's spelling (resolvers that randomise the
	// case check it).
	wantAAAA(t, ask(t, r, now, "N2.MeSh.", dns.TypeAAAA), n2)
	// A known name without that type: NODATA, so that a stub asking A and AAAA takes the AAAA.
	wantNoData(t, ask(t, r, now, "n2.mesh.", dns.TypeA))
	wantNoData(t, ask(t, r, now, "n2.mesh.", dns.TypeMX))
	wantNoData(t, ask(t, r, now, "mesh.", dns.TypeSOA))
	for _, name := range []string{"n9.mesh.", "www.n2.mesh.", "n2.n3.mesh.", "-n2.mesh."} {
		wantRcode(t, ask(t, r, now, name, dns.TypeAAAA), dns.RcodeNameError)
	}
	for _, name := range []string{"example.com.", "n2.", "n2.xmesh.", "mesh.example.", "n2.mesh.example.", "."} {
		m := ask(t, r, now, name, dns.TypeAAAA)
		wantRcode(t, m, dns.RcodeRefused)
		if m.Authoritative || len(m.Answer) > 0 {
			t.Fatalf("%s: refused answer must not be authoritative or hold records: %v", name, m)
		}
	}
	chaos := query("n2.mesh.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	wantRcode(t, exchange(t, r, now, chaos), dns.RcodeRefused)
	wantRcode(t, ask(t, r, now, "mesh.", dns.TypeAXFR), dns.RcodeRefused)
}

func TestDomain(t *testing.T) {
	m := newTestMesh(t, "db")
	r := newResponder(t, Config{Domain: "Corp.Example.", TTL: 30 * time.Second}, &source{certs: []*meshca.Certificate{m.certs["db"]}}, m.verifier)
	m2 := ask(t, r, epoch, "db.corp.example.", dns.TypeAAAA)
	if len(m2.Answer) != 1 || m2.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answer %v: want one record, TTL 30", m2.Answer)
	}
	wantRcode(t, ask(t, r, epoch, "db.mesh.", dns.TypeAAAA), dns.RcodeRefused)
	for _, bad := range []string{".", "a..b", "-a", "a_b", "arpa", "ip6.arpa", "4.7.d.f.ip6.arpa", "é"} {
		if _, err := CheckDomain(bad); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
	if _, err := NewResponder(Config{TTL: time.Millisecond}, &source{}, m.verifier); err == nil {
		t.Error("a TTL under a second was accepted")
	}
}

func TestReverse(t *testing.T) {
	m := newTestMesh(t, "n1", "n2")
	r := newResponder(t, Config{}, &source{certs: []*meshca.Certificate{m.certs["n1"], m.certs["n2"]}}, m.verifier)
	if r.ReverseZone() != "4.7.d.f.ip6.arpa." {
		t.Fatalf("reverse zone %q", r.ReverseZone())
	}
	rev := func(a netip.Addr) string {
		s, err := dns.ReverseAddr(a.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	got := ask(t, r, epoch, rev(m.certs["n2"].Overlay), dns.TypePTR)
	wantRcode(t, got, dns.RcodeSuccess)
	if len(got.Answer) != 1 || got.Answer[0].(*dns.PTR).Ptr != "n2.mesh." || !got.Authoritative {
		t.Fatalf("PTR answer %v, want n2.mesh.", got.Answer)
	}
	wantNoData(t, ask(t, r, epoch, rev(m.certs["n2"].Overlay), dns.TypeAAAA))
	wantRcode(t, ask(t, r, epoch, "7.d.f.ip6.arpa.", dns.TypePTR), dns.RcodeRefused) // above the zone
	// fd74::1 has no certificate; the zone's apex and the names on the way down exist, empty.
	wantRcode(t, ask(t, r, epoch, rev(netip.MustParseAddr("fd74::1")), dns.TypePTR), dns.RcodeNameError)
	wantNoData(t, ask(t, r, epoch, "4.7.d.f.ip6.arpa.", dns.TypePTR))
	wantNoData(t, ask(t, r, epoch, "0.0.4.7.d.f.ip6.arpa.", dns.TypePTR))
	for _, bad := range []string{"g.4.7.d.f.ip6.arpa.", "00.4.7.d.f.ip6.arpa.", "0." + rev(netip.MustParseAddr("fd74::1"))} {
		wantRcode(t, ask(t, r, epoch, bad, dns.TypePTR), dns.RcodeNameError)
	}
	// Another prefix's reverse names are not ours.
	wantRcode(t, ask(t, r, epoch, rev(netip.MustParseAddr("fd75::1")), dns.TypePTR), dns.RcodeRefused)
	wantRcode(t, ask(t, r, epoch, "1.0.0.127.in-addr.arpa.", dns.TypePTR), dns.RcodeRefused)
}

// TestRevoked: a name is answered only while its certificate verifies, whatever the source says.
func TestRevoked(t *testing.T) {
	m := newTestMesh(t, "n1", "n2")
	src := &source{certs: []*meshca.Certificate{m.certs["n1"], m.certs["n2"]}}
	r := newResponder(t, Config{}, src, m.verifier)
	now := epoch.Add(time.Minute)
	n2 := m.certs["n2"]
	wantAAAA(t, ask(t, r, now, "n2.mesh.", dns.TypeAAAA), n2.Overlay)
	m.revoke(n2, now)
	wantRcode(t, ask(t, r, now, "n2.mesh.", dns.TypeAAAA), dns.RcodeNameError)
	rev, _ := dns.ReverseAddr(n2.Overlay.String())
	wantRcode(t, ask(t, r, now, rev, dns.TypePTR), dns.RcodeNameError)
	wantAAAA(t, ask(t, r, now, "n1.mesh.", dns.TypeAAAA), m.certs["n1"].Overlay)
	// Expiry too: n1's certificate runs out an hour after the epoch.
	wantRcode(t, ask(t, r, m.certs["n1"].NotAfter.Add(time.Second), "n1.mesh.", dns.TypeAAAA), dns.RcodeNameError)
}

// TestNewestWins: two certificates with one name (a node re-enrolled with new keys): the newest
// that verifies is the answer.
func TestNewestWins(t *testing.T) {
	m := newTestMesh(t)
	old := m.issue("db", epoch, time.Hour)
	renewed := m.issue("db", epoch.Add(10*time.Minute), time.Hour)
	r := newResponder(t, Config{}, &source{certs: []*meshca.Certificate{renewed, old}}, m.verifier)
	now := epoch.Add(20 * time.Minute)
	wantAAAA(t, ask(t, r, now, "db.mesh.", dns.TypeAAAA), renewed.Overlay)
	m.revoke(renewed, now)
	wantAAAA(t, ask(t, r, now, "db.mesh.", dns.TypeAAAA), old.Overlay)
}

// TestSourceChanges: a node that joins is answered on the first query 100 ms after the index was
// built; one that leaves is gone once the index is a second old.
func TestSourceChanges(t *testing.T) {
	m := newTestMesh(t, "n1", "n2")
	src := &source{certs: []*meshca.Certificate{m.certs["n1"]}}
	r := newResponder(t, Config{}, src, m.verifier)
	now := epoch.Add(time.Minute)
	wantRcode(t, ask(t, r, now, "n2.mesh.", dns.TypeAAAA), dns.RcodeNameError)
	src.set(m.certs["n1"], m.certs["n2"])
	wantRcode(t, ask(t, r, now.Add(50*time.Millisecond), "n2.mesh.", dns.TypeAAAA), dns.RcodeNameError)
	wantAAAA(t, ask(t, r, now.Add(100*time.Millisecond), "n2.mesh.", dns.TypeAAAA), m.certs["n2"].Overlay)
	src.set(m.certs["n1"])
	now = now.Add(100 * time.Millisecond)
	wantAAAA(t, ask(t, r, now.Add(999*time.Millisecond), "n2.mesh.", dns.TypeAAAA), m.certs["n2"].Overlay)
	wantRcode(t, ask(t, r, now.Add(time.Second), "n2.mesh.", dns.TypeAAAA), dns.RcodeNameError)
	// Hits do not rebuild the index.
	before := src.calls
	for range 100 {
		ask(t, r, now.Add(time.Second), "n1.mesh.", dns.TypeAAAA)
	}
	if src.calls != before {
		t.Fatalf("100 queries within the refresh interval read the source %d times", src.calls-before)
	}
}

// acceptAll accepts every certificate; it isolates the responder's own rule on names from the
// verifier's.
type acceptAll struct{}

func (acceptAll) Verify(*meshca.Certificate, time.Time) error { return nil }

// TestInvalidLabelsSkipped: a certificate whose name is not a host name label is never answered,
// even when the verifier accepts it.
func TestInvalidLabelsSkipped(t *testing.T) {
	m := newTestMesh(t, "n1", "n2")
	var certs []*meshca.Certificate
	for _, name := range []string{"n_2", "-web", "db-"} {
		c := *m.certs["n2"]
		c.Name = name
		certs = append(certs, &c)
	}
	r := newResponder(t, Config{}, &source{certs: append(certs, m.certs["n1"])}, acceptAll{})
	wantAAAA(t, ask(t, r, epoch, "n1.mesh.", dns.TypeAAAA), m.certs["n1"].Overlay)
	for _, name := range []string{"n_2.mesh.", "-web.mesh.", "db-.mesh."} {
		wantRcode(t, ask(t, r, epoch, name, dns.TypeAAAA), dns.RcodeNameError)
	}
	rev, _ := dns.ReverseAddr(m.certs["n2"].Overlay.String())
	wantRcode(t, ask(t, r, epoch, rev, dns.TypePTR), dns.RcodeNameError)
}

func TestValidLabel(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"n1", true}, {"a", true}, {"0", true}, {"web-1", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"-a", false}, {"a-", false}, {"A", false}, {"a_b", false}, {"a.b", false}, {"ä", false},
		{strings.Repeat("a", 64), false},
	} {
		if got := ValidLabel(tc.s); got != tc.ok {
			t.Errorf("ValidLabel(%q) = %v, want %v", tc.s, got, tc.ok)
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	m := newTestMesh(t, "n1")
	r := newResponder(t, Config{}, &source{certs: []*meshca.Certificate{m.certs["n1"]}}, m.verifier)

	edns := query("n1.mesh.", dns.TypeAAAA)
	edns.SetEdns0(4096, true)
	got := exchange(t, r, epoch, edns)
	wantAAAA(t, got, m.certs["n1"].Overlay)
	if opt := got.IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
		t.Fatalf("EDNS query answered without our OPT: %v", got)
	}

	v1 := query("n1.mesh.", dns.TypeAAAA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	wantRcode(t, exchange(t, r, epoch, v1), dns.RcodeBadVers)

	notify := query("mesh.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	wantRcode(t, exchange(t, r, epoch, notify), dns.RcodeNotImplemented)

	two := query("n1.mesh.", dns.TypeAAAA)
	two.Question = append(two.Question, two.Question[0])
	wantRcode(t, exchange(t, r, epoch, two), dns.RcodeFormatError)

	none := query("n1.mesh.", dns.TypeAAAA)
	none.Question = nil
	wantRcode(t, exchange(t, r, epoch, none), dns.RcodeFormatError)

	reply := query("n1.mesh.", dns.TypeAAAA)
	reply.Response = true
	if r.Answer(epoch, reply) != nil {
		t.Fatal("a response was answered")
	}
}
