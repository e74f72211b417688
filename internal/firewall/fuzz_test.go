package firewall

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// FuzzParsePacket feeds arbitrary bytes to the parser and, through the firewall, to the conntrack
// and related-error paths. It checks that nothing panics, that every error is a parse error, that
// accepted packets satisfy the parser's invariants, and that the firewall's verdict agrees with the
// parser.
func FuzzParsePacket(f *testing.F) {
	a := peer("a")
	sent := out(a, udp(6000, 443, 64))
	for _, s := range [][]byte{
		in(a, tcp(22, 40000, TCPSyn|TCPAck)),
		in(a, udp(443, 6000, 16)),
		in(a, icmp(ICMPEchoReply, 0, 77, []byte("x"))),
		in(a, icmp(ICMPPacketTooBig, 0, 0, sent)),
		in(a, icmp(ICMPDestUnreachable, 4, 0, out(a, ext(ProtoDestOpts, 1), tcp(40000, 22, TCPSyn)))),
		in(a, ext(ProtoHopByHop, 1), ext(ProtoRouting, 2), ext(ProtoAH, 3), ext(ProtoDestOpts, 1), udp(1, 2, 3)),
		in(a, frag(0, true, 42), udp(443, 6000, 100)),
		in(a, frag(20, false, 42), layer{ProtoUDP, make([]byte, 9)}),
		in(a, layer{ProtoESP, make([]byte, 24)}),
		in(a),
		{0x60},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		} else {
			if len(b) < 40 || b[0]>>4 != 6 || int(b[4])<<8|int(b[5]) != len(b)-40 {
				t.Fatalf("accepted a packet with a bad fixed header: % x", b[:min(len(b), 40)])
			}
			if p.Src != netip.AddrFrom16([16]byte(b[8:24])) || p.Dst != netip.AddrFrom16([16]byte(b[24:40])) {
				t.Fatal("addresses not taken from the header")
			}
			if p.Fragment == LaterFragment && (p.SrcPort != 0 || p.DstPort != 0 || p.upper != 0 || p.HasPorts()) {
				t.Fatalf("later fragment with ports: %+v", p)
			}
			if p.Fragment != LaterFragment && (p.upper < 40 || p.upper > len(b)) {
				t.Fatalf("upper-layer offset %d outside the packet (%d bytes)", p.upper, len(b))
			}
			if !p.HasPorts() && (p.SrcPort != 0 || p.DstPort != 0) {
				t.Fatalf("ports on a packet without ports: %+v", p)
			}
			if q, ok := quotedPacket(b, &p); ok && q.IsICMPError() {
				t.Fatal("quoted an ICMPv6 error")
			}
		}

		// The same bytes through the firewall, as a packet from a (whatever its source says).
		fw, ferr := New(Config{
			Inbound:  []Rule{{Proto: "tcp", Port: "22", Any: true}, {Proto: "udp", Port: "any", Host: "a"}},
			Outbound: []Rule{{Proto: "any", Any: true}},
		}, t0)
		if ferr != nil {
			t.Fatal(ferr)
		}
		fw.Outbound(t0, sent, a)
		// A peer whose certified address is the packet's source (an IPv4-mapped address is not a
		// node address: the firewall answers no-identity before parsing, so keep the default then).
		cert := peer("a")
		if len(b) >= 40 && !netip.AddrFrom16([16]byte(b[8:24])).Is4In6() {
			cert.Overlay = netip.AddrFrom16([16]byte(b[8:24]))
		}
		v := fw.Inbound(t0, b, cert)
		_, perr := ParsePacket(b)
		if (v.Reason == ReasonMalformed) != (perr != nil) {
			t.Fatalf("verdict %v but parse error %v", v, perr)
		}
		if perr == nil && (v.Reason == ReasonSpoofedSource || v.Reason == ReasonNoIdentity) {
			t.Fatalf("source is the peer's address, yet %v", v)
		}
		dst := peer("a")
		if len(b) >= 40 && !netip.AddrFrom16([16]byte(b[24:40])).Is4In6() {
			dst.Overlay = netip.AddrFrom16([16]byte(b[24:40]))
		}
		rev := fw.Outbound(t0.Add(time.Second), b, dst)
		if (rev.Reason == ReasonMalformed) != (perr != nil) {
			t.Fatalf("outbound verdict %v but parse error %v", rev, perr)
		}
	})
}
