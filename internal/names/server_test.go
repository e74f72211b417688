package names

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/meshca"
)

var loopback = netip.MustParsePrefix("127.0.0.0/8")

func newServer(t testing.TB, m *testMesh, cfg ServerConfig, names ...string) *Server {
	t.Helper()
	src := &source{}
	for _, n := range names {
		src.certs = append(src.certs, m.certs[n])
	}
	s, err := NewServer(newResponder(t, Config{}, src, m.verifier), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandle(t *testing.T) {
	m := newTestMesh(t, "n1")
	s := newServer(t, m, ServerConfig{Allow: netip.MustParsePrefix("fd74::/16"), Rate: 10, Burst: 3}, "n1")
	a, b := netip.MustParseAddr("fd74::a"), netip.MustParseAddr("fd74::b")
	q := pack(t, query("n1.mesh.", dns.TypeAAAA))
	now := epoch.Add(time.Minute)

	if s.handle(now, netip.MustParseAddr("192.0.2.1"), q) != nil {
		t.Fatal("a source outside the allowed prefix was answered")
	}
	for i := range 3 {
		if s.handle(now, a, q) == nil {
			t.Fatalf("query %d of a burst of 3 dropped", i+1)
		}
	}
	if s.handle(now, a, q) != nil {
		t.Fatal("a fourth query at once was answered; the burst is 3")
	}
	if s.handle(now, b, q) == nil {
		t.Fatal("another source was limited by the first one's rate")
	}
	if s.handle(now.Add(100*time.Millisecond), a, q) == nil {
		t.Fatal("no query allowed 100 ms later at 10 per second")
	}

	// Garbage with a query's header gets FORMERR with its id; shorter garbage, and garbage that
	// claims to be a response, get nothing.
	bad := append([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, 0xc0, 0x0c) // a question that points at itself
	c := netip.MustParseAddr("fd74::c")
	out := s.handle(now, c, bad)
	var resp dns.Msg
	if out == nil || resp.Unpack(out) != nil || resp.Id != 0x1234 || resp.Rcode != dns.RcodeFormatError || !resp.Response {
		t.Fatalf("malformed query answered %v (%x), want FORMERR with id 0x1234", resp, out)
	}
	if s.handle(now, c, bad[:11]) != nil {
		t.Fatal("11 bytes answered")
	}
	bad[2] |= 0x80
	if s.handle(now, c, bad) != nil {
		t.Fatal("a malformed response answered")
	}
	st := s.Stats()
	if st.Malformed != 3 || st.Limited != 2 || st.Answered != 6 {
		t.Fatalf("stats %+v, want 3 malformed, 2 limited, 6 answered", st)
	}
}

// TestTotalRate: sources that each stay under their own rate are stopped together by the total.
func TestTotalRate(t *testing.T) {
	m := newTestMesh(t, "n1")
	s := newServer(t, m, ServerConfig{Allow: netip.MustParsePrefix("fd74::/16"), Rate: 10, Burst: 2, TotalRate: 5}, "n1")
	q := pack(t, query("n1.mesh.", dns.TypeAAAA))
	answered := 0
	for i := range 10 {
		if s.handle(epoch, netip.AddrFrom16([16]byte{0xfd, 0x74, 15: byte(i)}), q) != nil {
			answered++
		}
	}
	if answered != 5 {
		t.Fatalf("10 sources at once: %d answered, want the total's 5", answered)
	}
}

// TestAnswerSize: the longest names we answer give answers that fit 512 bytes (maxAnswer).
func TestAnswerSize(t *testing.T) {
	m := newTestMesh(t, strings.Repeat("a", 63))
	domain := strings.Repeat(strings.Repeat("d", 62)+".", 3)[:maxDomain]
	r := newResponder(t, Config{Domain: domain}, &source{certs: []*meshca.Certificate{m.certs[strings.Repeat("a", 63)]}}, m.verifier)
	s, err := NewServer(r, ServerConfig{Allow: loopback})
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := dns.ReverseAddr(m.certs[strings.Repeat("a", 63)].Overlay.String())
	for _, q := range []*dns.Msg{query(strings.Repeat("a", 63)+"."+r.Domain(), dns.TypeANY), query(rev, dns.TypeANY)} {
		q.SetEdns0(4096, false)
		out := s.handle(epoch, netip.MustParseAddr("127.0.0.1"), pack(t, q))
		var resp dns.Msg
		if err := resp.Unpack(out); err != nil || len(resp.Answer) != 1 {
			t.Fatalf("%v: %v %v", q.Question, resp.Answer, err)
		}
		if len(out) > maxAnswer {
			t.Fatalf("%v: answer of %d bytes, over %d", q.Question, len(out), maxAnswer)
		}
	}
}

// startServer serves on loopback sockets and returns the UDP and TCP addresses.
func startServer(t testing.TB, s *Server) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s.Start(pc, ln)
	t.Cleanup(s.Close)
	return pc.LocalAddr().String(), ln.Addr().String()
}

// TestSockets: the same answers over UDP and TCP, several queries on one TCP connection.
func TestSockets(t *testing.T) {
	m := newTestMeshAt(t, time.Now(), "n1", "n2") // the server checks certificates at the wall clock's time
	s := newServer(t, m, ServerConfig{Allow: loopback}, "n1", "n2")
	udp, tcp := startServer(t, s)
	for _, c := range []struct{ net, addr string }{{"udp", udp}, {"tcp", tcp}} {
		cl := &dns.Client{Net: c.net, Timeout: 5 * time.Second}
		resp, _, err := cl.Exchange(query("n2.mesh.", dns.TypeAAAA), c.addr)
		if err != nil {
			t.Fatalf("%s: %v", c.net, err)
		}
		wantAAAA(t, resp, m.certs["n2"].Overlay)
		resp, _, err = cl.Exchange(query("example.com.", dns.TypeA), c.addr)
		if err != nil {
			t.Fatalf("%s: %v", c.net, err)
		}
		wantRcode(t, resp, dns.RcodeRefused)
	}
	conn, err := dns.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, name := range []string{"n1.mesh.", "n2.mesh.", "n9.mesh."} {
		if err := conn.WriteMsg(query(name, dns.TypeAAAA)); err != nil {
			t.Fatal(err)
		}
		resp, err := conn.ReadMsg()
		if err != nil {
			t.Fatalf("%s on a reused connection: %v", name, err)
		}
		if name == "n9.mesh." {
			wantRcode(t, resp, dns.RcodeNameError)
		} else {
			wantRcode(t, resp, dns.RcodeSuccess)
		}
	}
}

// TestTCPBounds: a connection over the limit takes the slot of the oldest one waiting for a
// query, and a silent connection is closed when its time is up.
func TestTCPBounds(t *testing.T) {
	m := newTestMeshAt(t, time.Now(), "n1")
	s := newServer(t, m, ServerConfig{Allow: loopback, MaxTCP: 1, Timeout: 200 * time.Millisecond}, "n1")
	_, tcp := startServer(t, s)

	first, err := dns.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.WriteMsg(query("n1.mesh.", dns.TypeAAAA)); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ReadMsg(); err != nil { // answered: the connection holds the only slot
		t.Fatal(err)
	}
	second, err := dns.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.WriteMsg(query("n1.mesh.", dns.TypeAAAA)); err != nil {
		t.Fatal(err)
	}
	second.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := second.ReadMsg(); err != nil {
		t.Fatalf("a connection over the limit, with the only slot waiting: %v, want an answer", err)
	}
	first.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := first.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the waiting connection: read %v, want EOF (evicted)", err)
	}
	if st := s.Stats(); st.TCPEvicted != 1 || st.TCPRefused != 0 {
		t.Fatalf("stats %+v, want one eviction", st)
	}

	// The second connection, now silent, is closed after its timeout.
	if _, err := second.ReadMsg(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent connection: read %v, want it closed by the server", err)
	}
	if st := s.Stats(); st.TCPOpen != 0 { // the slot is freed before the socket closes
		t.Fatalf("stats %+v after the timeout", st)
	}
}

// TestTCPOversize: a connection that announces a message over MaxQuery is closed at once (long
// before the server's timeout of a minute).
func TestTCPOversize(t *testing.T) {
	m := newTestMeshAt(t, time.Now(), "n1")
	s := newServer(t, m, ServerConfig{Allow: loopback, Timeout: time.Minute}, "n1")
	_, tcp := startServer(t, s)
	c, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var head [2]byte
	binary.BigEndian.PutUint16(head[:], MaxQuery+1)
	if _, err := c.Write(head[:]); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a frame over the limit: read %v, want EOF", err)
	}
}

func TestSplitDNSWithoutResolved(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := SplitDNS("x6l0", netip.MustParseAddr("fd74::1"), "mesh.")
	if !errors.Is(err, ErrNoResolved) {
		t.Fatalf("without resolvectl: %v, want ErrNoResolved", err)
	}
}

func BenchmarkHandle(b *testing.B) {
	m := newTestMesh(b)
	var certs []*meshca.Certificate
	for i := range 1000 {
		c := m.issue("n"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), epoch, time.Hour)
		certs = append(certs, c)
	}
	s, err := NewServer(newResponder(b, Config{}, &source{certs: certs}, m.verifier), ServerConfig{Allow: netip.MustParsePrefix("::/0"), Rate: 1e9, Burst: 1 << 30, TotalRate: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	q := pack(b, query(certs[500].Name+".mesh.", dns.TypeAAAA))
	src := netip.MustParseAddr("fd74::1")
	now := epoch.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		if s.handle(now, src, q) == nil {
			b.Fatal("no answer")
		}
	}
}

// TestTCPExhaustion: silent connections, from one mesh member or from several, used to take every
// TCP slot and lock everyone else out of DNS over TCP until their timeout (and then the holder
// reconnected). Now one source holds at most its share, and a newcomer takes the slot of the
// oldest connection that is not being answered.
func TestTCPExhaustion(t *testing.T) {
	for _, c := range []struct {
		name           string
		sources, conns int // silent connections from each of sources addresses
	}{{"one source", 1, 3 * DefaultMaxTCP}, {"every slot from several sources", 4, DefaultMaxTCP / 4}} {
		t.Run(c.name, func(t *testing.T) {
			m := newTestMeshAt(t, time.Now(), "n1")
			s := newServer(t, m, ServerConfig{Allow: loopback, Timeout: time.Minute}, "n1")
			_, tcp := startServer(t, s)
			dial := func(src string) net.Conn {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
				conn, err := d.Dial("tcp", tcp)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			var held []net.Conn
			for i := range c.sources {
				for range c.conns {
					held = append(held, dial(fmt.Sprintf("127.0.0.%d", 10+i)))
				}
			}
			// The server accepts in order, so it has dealt with every silent connection before
			// this one; with a minute's timeout none of them has timed out.
			cl := &dns.Client{Net: "tcp", Timeout: 10 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.99")}}}
			resp, _, err := cl.Exchange(query("n1.mesh.", dns.TypeAAAA), tcp)
			if err != nil {
				t.Fatalf("a query from another member after %d silent connections: %v", len(held), err)
			}
			wantAAAA(t, resp, m.certs["n1"].Overlay)

			// Of the silent connections, each source keeps at most its share open.
			open := make(chan bool, len(held))
			for _, h := range held {
				go func() {
					h.SetReadDeadline(time.Now().Add(time.Second))
					_, err := h.Read(make([]byte, 1))
					open <- errors.Is(err, os.ErrDeadlineExceeded)
				}()
			}
			n := 0
			for range held {
				if <-open {
					n++
				}
			}
			if limit := c.sources * DefaultMaxTCP / 4; n > limit {
				t.Errorf("%d silent connections still open, want at most %d (%d per source)", n, limit, DefaultMaxTCP/4)
			}
			t.Logf("%d silent connections from %d sources: %d still open; stats %+v", len(held), c.sources, n, s.Stats())
		})
	}
}
