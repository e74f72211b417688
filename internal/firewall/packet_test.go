package firewall

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestParsePacket(t *testing.T) {
	a := peer("a")
	cases := []struct {
		name string
		pkt  []byte
		want Packet // Src, Dst and upper are not compared
	}{
		{"tcp", out(a, tcp(1234, 443, TCPSyn|TCPAck)), Packet{Proto: ProtoTCP, SrcPort: 1234, DstPort: 443, TCPFlags: TCPSyn | TCPAck}},
		{"udp", out(a, udp(5353, 53, 12)), Packet{Proto: ProtoUDP, SrcPort: 5353, DstPort: 53}},
		{"echo", out(a, icmp(ICMPEchoRequest, 0, 0xbeef, []byte("ping"))), Packet{Proto: ProtoICMPv6, ICMPType: ICMPEchoRequest, ICMPID: 0xbeef}},
		{"neighbour solicitation", out(a, icmp(135, 0, 0, nil)), Packet{Proto: ProtoICMPv6, ICMPType: 135}},
		{"unreachable", out(a, icmp(ICMPDestUnreachable, 4, 0, nil)), Packet{Proto: ProtoICMPv6, ICMPType: ICMPDestUnreachable, ICMPCode: 4}},
		{"no next header", out(a), Packet{Proto: ProtoNoNext}},
		{"esp is opaque", out(a, layer{ProtoESP, make([]byte, 16)}), Packet{Proto: ProtoESP}},
		{"hop-by-hop, routing, destopts, AH", out(a, ext(ProtoHopByHop, 1), ext(ProtoRouting, 3), ext(ProtoDestOpts, 2), ext(ProtoAH, 3), udp(1, 2, 0)),
			Packet{Proto: ProtoUDP, SrcPort: 1, DstPort: 2}},
		{"8 extension headers", out(a, ext(ProtoHopByHop, 1), ext(ProtoDestOpts, 1), ext(ProtoRouting, 1), ext(ProtoDestOpts, 1),
			ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), tcp(1, 2, 0)),
			Packet{Proto: ProtoTCP, SrcPort: 1, DstPort: 2}},
		{"first fragment", out(a, ext(ProtoDestOpts, 1), frag(0, true, 7), udp(1, 2, 100)),
			Packet{Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Fragment: FirstFragment, FragmentID: 7}},
		{"atomic fragment", out(a, frag(0, false, 8), udp(1, 2, 0)),
			Packet{Proto: ProtoUDP, SrcPort: 1, DstPort: 2, Fragment: FirstFragment, FragmentID: 8, LastFragment: true}},
		{"later fragment", out(a, frag(3, true, 9), layer{ProtoTCP, []byte{1, 2, 3}}),
			Packet{Proto: ProtoTCP, Fragment: LaterFragment, FragmentID: 9}},
		{"last fragment, next header is an extension", out(a, frag(3, false, 9), layer{ProtoDestOpts, make([]byte, 8)}),
			Packet{Proto: ProtoDestOpts, Fragment: LaterFragment, FragmentID: 9, LastFragment: true}},
		{"tcp with options", out(a, layer{ProtoTCP, tcpWithOptions(10)}), Packet{Proto: ProtoTCP, SrcPort: 1, DstPort: 2}},
	}
	for _, c := range cases {
		got, err := ParsePacket(c.pkt)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.Src != self || got.Dst != a.Overlay {
			t.Errorf("%s: addresses %s -> %s", c.name, got.Src, got.Dst)
		}
		got.Src, got.Dst, got.upper = c.want.Src, c.want.Dst, 0
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
		if hasPorts := c.want.Proto == ProtoTCP || c.want.Proto == ProtoUDP; got.HasPorts() != (hasPorts && c.want.Fragment != LaterFragment) {
			t.Errorf("%s: HasPorts %v", c.name, got.HasPorts())
		}
	}
}

// tcpWithOptions returns a TCP header from port 1 to 2 with n words of options (data offset 5+n).
func tcpWithOptions(n int) []byte {
	d := make([]byte, 20+4*n)
	d[1], d[3] = 1, 2
	d[12] = byte(5+n) << 4
	return d
}

func TestParsePacketErrors(t *testing.T) {
	a := peer("a")
	good := out(a, udp(1, 2, 4))
	mutate := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	setLen := func(b []byte) []byte { // a copy of b with the payload length fixed up
		b = append([]byte(nil), b...)
		binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-40))
		return b
	}
	cases := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"39 bytes", good[:39], ErrShort},
		{"IPv4", mutate(func(b []byte) []byte { b[0] = 0x45; return b }), ErrVersion},
		{"payload length too big", mutate(func(b []byte) []byte { b[5]++; return b }), ErrLength},
		{"payload length too small", mutate(func(b []byte) []byte { b[5]--; return b }), ErrLength},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrLength},
		{"jumbogram", mutate(func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), ErrLength},
		{"udp length", mutate(func(b []byte) []byte { b[40+5]++; return b }), ErrUDPLength},
		{"udp truncated", setLen(good[:45:45]), ErrTransportHeader},
		{"tcp truncated", setLen(out(a, tcp(1, 2, 0))[:59]), ErrTransportHeader},
		{"tcp data offset 4", out(a, layer{ProtoTCP, func() []byte { d := tcpWithOptions(0); d[12] = 4 << 4; return d }()}), ErrTCPDataOffset},
		{"tcp options truncated", setLen(out(a, layer{ProtoTCP, tcpWithOptions(10)})[:40+40]), ErrTransportHeader},
		{"icmp truncated", out(a, layer{ProtoICMPv6, []byte{128, 0, 0}}), ErrTransportHeader},
		{"echo truncated", out(a, layer{ProtoICMPv6, []byte{128, 0, 0, 0, 0, 0}}), ErrTransportHeader},
		{"error without the unused word", out(a, layer{ProtoICMPv6, []byte{1, 0, 0, 0}}), ErrTransportHeader},
		{"hop-by-hop second", out(a, ext(ProtoDestOpts, 1), ext(ProtoHopByHop, 1), udp(1, 2, 0)), ErrHopByHopPosition},
		{"extension header overruns", setLen(out(a, ext(ProtoRouting, 4), udp(1, 2, 0))[:40+16]), ErrExtensionHeader},
		{"extension header cut in its fixed part", setLen(out(a, ext(ProtoRouting, 1))[:44]), ErrExtensionHeader},
		{"9 extension headers", out(a, ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1),
			ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), ext(ProtoDestOpts, 1), udp(1, 2, 0)), ErrTooManyExtHeaders},
		{"two fragment headers", out(a, frag(0, true, 1), frag(0, true, 1), udp(1, 2, 0)), ErrTwoFragmentHeader},
		{"first fragment without the whole udp header", out(a, frag(0, true, 1), layer{ProtoUDP, []byte{0, 1, 0, 2}}), ErrTransportHeader},
		{"first fragment without the whole tcp header", out(a, frag(0, true, 1), layer{ProtoTCP, make([]byte, 19)}), ErrTransportHeader},
	}
	fw := newFW(t, mustYAML(t, "outbound: [{proto: any, any: true}]"))
	for _, c := range cases {
		_, err := ParsePacket(c.pkt)
		if !errors.Is(err, c.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
		v := fw.Outbound(at(0), c.pkt, a)
		if v.Reason != ReasonMalformed || v.Err != err || v.Allowed() {
			t.Errorf("%s: verdict %v", c.name, v)
		}
	}
}

// TestMalformedNeverPanics cuts and corrupts valid packets of every kind at every position.
func TestMalformedNeverPanics(t *testing.T) {
	a := peer("a")
	fw := newFW(t, mustYAML(t, "inbound: [{proto: any, any: true}]\noutbound: [{proto: any, any: true}]"))
	sent := out(a, udp(1, 2, 30))
	seeds := [][]byte{
		in(a, tcp(1, 2, TCPSyn)), in(a, udp(1, 2, 3)), in(a, icmp(ICMPEchoReply, 0, 1, nil)),
		in(a, icmp(ICMPPacketTooBig, 0, 0, sent)),
		in(a, ext(ProtoHopByHop, 2), ext(ProtoAH, 2), frag(0, true, 5), udp(1, 2, 10)),
		in(a, frag(9, false, 5), layer{ProtoUDP, make([]byte, 10)}),
	}
	fw.Outbound(at(0), sent, a)
	for _, s := range seeds {
		for n := 0; n <= len(s); n++ {
			fw.Inbound(at(0), s[:n], a)
			for i := range n {
				b := append([]byte(nil), s[:n]...)
				b[i] ^= 0xff
				fw.Inbound(at(time.Duration(i)), b, a)
				fw.Outbound(at(time.Duration(i)), b, a)
			}
		}
	}
}
