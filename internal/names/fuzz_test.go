package names

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/meshca"
)

// fuzzServer is a server for n1 and n2 that limits nothing, so every input reaches the parser.
func fuzzServer(f *testing.F) *Server {
	m := newTestMesh(f, "n1", "n2")
	s, err := NewServer(newResponder(f, Config{}, &source{certs: []*meshca.Certificate{m.certs["n1"], m.certs["n2"]}}, m.verifier),
		ServerConfig{Allow: netip.MustParsePrefix("::/0"), Rate: 1e9, Burst: 1 << 30, TotalRate: 1e9})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, q := range []*dns.Msg{
		query("n1.mesh.", dns.TypeAAAA), query("N2.MESH.", dns.TypeA), query("x.n1.mesh.", dns.TypeANY),
		query("example.com.", dns.TypeA), query("4.7.d.f.ip6.arpa.", dns.TypePTR),
		query("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.7.d.f.ip6.arpa.", dns.TypePTR),
	} {
		q.SetEdns0(1232, true)
		seeds = append(seeds, pack(f, q))
	}
	return seeds
}

// checkAnswer: an answer is a response to the query's id that miekg/dns parses and that fits a UDP
// answer without EDNS.
func checkAnswer(t *testing.T, query, out []byte) {
	if out == nil {
		return
	}
	var m dns.Msg
	if err := m.Unpack(out); err != nil {
		t.Fatalf("our answer does not parse: %v (%x)", err, out)
	}
	if !m.Response || len(query) < 2 || m.Id != binary.BigEndian.Uint16(query) {
		t.Fatalf("answer %v to a query with id %x", m.MsgHdr, query[:min(2, len(query))])
	}
	if len(out) > maxAnswer {
		t.Fatalf("answer of %d bytes", len(out))
	}
}

// FuzzHandle feeds raw datagrams to the request path: dns.Msg.Unpack, the responder, packing.
func FuzzHandle(f *testing.F) {
	s := fuzzServer(f)
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c})
	src := netip.MustParseAddr("fd74::1")
	now := epoch.Add(time.Minute)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkAnswer(t, raw, s.handle(now, src, raw))
	})
}

// FuzzTCPStream feeds a raw TCP byte stream to the framing and the request path, as serveConn does.
func FuzzTCPStream(f *testing.F) {
	s := fuzzServer(f)
	var stream []byte
	for _, seed := range fuzzSeeds(f) {
		stream = binary.BigEndian.AppendUint16(stream, uint16(len(seed)))
		stream = append(stream, seed...)
		f.Add(stream)
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	src := netip.MustParseAddr("fd74::1")
	now := epoch.Add(time.Minute)
	buf := make([]byte, MaxQuery)
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		for range maxQueriesPerConn {
			q, err := readFrame(r, buf)
			if err != nil {
				return
			}
			if len(q) == 0 || len(q) > MaxQuery {
				t.Fatalf("frame of %d bytes", len(q))
			}
			out := s.handle(now, src, q)
			checkAnswer(t, q, out)
			var w bytes.Buffer
			if out != nil {
				if err := writeFrame(&w, out); err != nil || w.Len() != 2+len(out) {
					t.Fatalf("frame written: %d bytes, %v", w.Len(), err)
				}
			}
		}
	})
}
