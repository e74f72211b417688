package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := Header{Flags: FlagNeedsCsum, GSOType: GSOTCPv6, HdrLen: 0x0102, GSOSize: 0x0304, CsumStart: 0x0506, CsumOffset: 0x0708}
	b := make([]byte, HeaderLen+3)
	h.Put(b)
	want := []byte{1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("Put wrote % x, want % x (little-endian, only the first 10 bytes)", b, want)
	}
	got, err := ParseHeader(b)
	if err != nil || got != h {
		t.Fatalf("ParseHeader = %+v, %v; want %+v", got, err, h)
	}
	if _, err := ParseHeader(b[:HeaderLen-1]); err != ErrShortHeader {
		t.Fatalf("ParseHeader of 9 bytes: %v, want ErrShortHeader", err)
	}
}

func TestSplitTCP(t *testing.T) {
	ackPsh := header.TCPFlagAck | header.TCPFlagPsh
	all := header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin | header.TCPFlagCwr | header.TCPFlagEce
	for _, tc := range []struct {
		name               string
		tcpHeaderLen, size int // payload size
		gso, segments      int
		flags              header.TCPFlags
		seq                uint32
	}{
		{"exact multiple", 20, 4 * 1000, 1000, 4, ackPsh, 1000},
		{"one byte over", 20, 4*1000 + 1, 1000, 5, ackPsh, 1000},
		{"single segment", 20, 700, 1000, 1, ackPsh, 1000},
		{"payload equals gso_size", 20, 1000, 1000, 1, all, 1000},
		{"44 segments of 1312", 20, 44 * 1312, 1312, 44, ackPsh, 7},
		{"options, data offset 32", 32, 3000, 1400, 3, ackPsh, 1000},
		{"options, data offset 60", 60, 3000, 1400, 3, ackPsh, 1000},
		{"FIN PSH CWR ECE distribution", 32, 5000, 1200, 5, all, 1000},
		{"sequence number wraps", 20, 5000, 1200, 5, ackPsh, 0xffffff00},
		{"gso_size 1", 20, 9, 1, 9, all, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tcpPacket(tc.tcpHeaderLen, tc.size, tc.flags, tc.seq)
			h := tcpGSOHeader(pkt, tc.gso)
			if err := h.Check(pkt); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got := Segments(h, pkt); got != tc.segments {
				t.Fatalf("Segments = %d, want %d", got, tc.segments)
			}
			orig := append([]byte(nil), pkt...)
			for _, offset := range []int{0, 16} {
				out, sizes := outBuffers(tc.segments+1, offset, 40+tc.tcpHeaderLen+tc.gso)
				n, err := Split(h, pkt, out, sizes, offset)
				if err != nil || n != tc.segments {
					t.Fatalf("Split = %d, %v; want %d segments", n, err, tc.segments)
				}
				verifySplit(t, h, pkt, out, sizes, n, offset)
				if !bytes.Equal(pkt, orig) {
					t.Fatalf("Split modified its input")
				}
			}
		})
	}
}

// TestSplitTCPFlags spells out the flag distribution the verifier derives.
func TestSplitTCPFlags(t *testing.T) {
	pkt := tcpPacket(20, 3000, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin|header.TCPFlagCwr, 1)
	h := tcpGSOHeader(pkt, 1000)
	out, sizes := outBuffers(3, 0, 1060)
	n, err := Split(h, pkt, out, sizes, 0)
	if err != nil || n != 3 {
		t.Fatalf("Split = %d, %v", n, err)
	}
	want := []header.TCPFlags{
		header.TCPFlagAck | header.TCPFlagCwr,
		header.TCPFlagAck,
		header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin,
	}
	for i := range n {
		if got := header.TCP(out[i][40:]).Flags(); got != want[i] {
			t.Errorf("segment %d: flags %v, want %v", i, got, want[i])
		}
	}
}

func TestSplitUDP(t *testing.T) {
	for _, tc := range []struct {
		name                string
		size, gso, segments int
	}{
		{"remainder", 3*1200 + 7, 1200, 4},
		{"exact multiple", 3 * 1200, 1200, 3},
		{"single", 100, 1200, 1},
		{"gso_size larger than any packet", 100, 65535, 1},
		{"shorter than a TCP header would be", 1, 1, 1}, // Split once read TCP fields here and panicked
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := udpPacket(tc.size)
			h := udpGSOHeader(tc.gso)
			if got := Segments(h, pkt); got != tc.segments {
				t.Fatalf("Segments = %d, want %d", got, tc.segments)
			}
			out, sizes := outBuffers(tc.segments, 16, len(pkt))
			n, err := Split(h, pkt, out, sizes, 16)
			if err != nil || n != tc.segments {
				t.Fatalf("Split = %d, %v; want %d segments", n, err, tc.segments)
			}
			verifySplit(t, h, pkt, out, sizes, n, 16)
		})
	}
}

// zeroSumPayload sets the two bytes at the end of an even-length transport payload so that the
// transport checksum computes to 0, which must go on the wire as 0xffff.
func zeroSumPayload(pkt []byte, proto tcpip.TransportProtocolNumber) {
	field := 40 + 6
	if proto == header.TCPProtocolNumber {
		field = 40 + 16
	}
	pkt[field], pkt[field+1] = 0, 0
	pkt[len(pkt)-2], pkt[len(pkt)-1] = 0, 0
	pseudo := header.PseudoHeaderChecksum(proto, testSrc, testDst, uint16(len(pkt)-40))
	s := checksum.Checksum(pkt[40:], pseudo)
	binary.BigEndian.PutUint16(pkt[len(pkt)-2:], ^s)
	if checksum.Checksum(pkt[40:], pseudo) != 0xffff {
		panic("zeroSumPayload")
	}
}

func TestSplitUDPZeroChecksumIsAllOnes(t *testing.T) {
	pkt := udpPacket(100)
	zeroSumPayload(pkt, header.UDPProtocolNumber)
	out, sizes := outBuffers(1, 0, len(pkt))

	n, err := Split(udpGSOHeader(1200), pkt, out, sizes, 0)
	if err != nil || n != 1 {
		t.Fatalf("Split = %d, %v", n, err)
	}
	if c := header.UDP(out[0][40:]).Checksum(); c != 0xffff {
		t.Fatalf("GSO UDP: checksum %#04x, want 0xffff", c)
	}
	verifySplit(t, udpGSOHeader(1200), pkt, out, sizes, n, 0)

	// The same packet as GSONone with NEEDS_CSUM and the pseudo-header sum in the field.
	pseudo := header.PseudoHeaderChecksum(header.UDPProtocolNumber, testSrc, testDst, uint16(len(pkt)-40))
	binary.BigEndian.PutUint16(pkt[46:], pseudo)
	h := Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 6}
	if n, err := Split(h, pkt, out, sizes, 0); err != nil || n != 1 {
		t.Fatalf("Split = %d, %v", n, err)
	}
	if c := header.UDP(out[0][40:]).Checksum(); c != 0xffff {
		t.Fatalf("GSONone UDP: checksum %#04x, want 0xffff", c)
	}
}

func TestSplitNone(t *testing.T) {
	t.Run("without NEEDS_CSUM copies as is", func(t *testing.T) {
		pkt := tcpPacket(20, 300, header.TCPFlagAck, 5)
		pkt[56], pkt[57] = 0xde, 0xad // a checksum Split must not touch
		for _, flags := range []uint8{0, flagDataValid} {
			h := Header{Flags: flags, HdrLen: 0, GSOSize: 1234, CsumStart: 1, CsumOffset: 2}
			out, sizes := outBuffers(1, 16, len(pkt))
			n, err := Split(h, pkt, out, sizes, 16)
			if err != nil || n != 1 || Segments(h, pkt) != 1 {
				t.Fatalf("flags %#x: Split = %d, %v", flags, n, err)
			}
			verifySplit(t, h, pkt, out, sizes, n, 16)
		}
	})
	for _, tc := range []struct {
		name string
		pkt  []byte
		h    Header
	}{
		{"NEEDS_CSUM TCP", tcpPacket(32, 999, header.TCPFlagAck|header.TCPFlagPsh, 5), Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}},
		{"NEEDS_CSUM UDP", udpPacket(333), Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 6}},
		{"NEEDS_CSUM TCP no payload", tcpPacket(20, 0, header.TCPFlagAck, 5), Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16, HdrLen: 60}},
		{"NEEDS_CSUM UDP after destination options", withDestOptions(udpPacket(50)), Header{Flags: FlagNeedsCsum, CsumStart: 48, CsumOffset: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, sizes := outBuffers(1, 16, len(tc.pkt))
			n, err := Split(tc.h, tc.pkt, out, sizes, 16)
			if err != nil || n != 1 {
				t.Fatalf("Split = %d, %v", n, err)
			}
			verifySplit(t, tc.h, tc.pkt, out, sizes, n, 16)
			// The field held the real pseudo-header sum, so the packet now verifies on its own.
			seg := out[0][16 : 16+sizes[0]]
			l4 := seg[tc.h.CsumStart:]
			proto := header.TCPProtocolNumber
			if tc.h.CsumOffset == 6 {
				proto = header.UDPProtocolNumber
			}
			pseudo := header.PseudoHeaderChecksum(proto, testSrc, testDst, uint16(len(l4)))
			if s := checksum.Checksum(l4, pseudo); s != 0xffff {
				t.Fatalf("completed checksum sums to %#04x", s)
			}
		})
	}
}

// withDestOptions inserts an 8-byte destination options header (PadN) between the IPv6 header and
// the UDP header of pkt, keeping the pseudo-header sum in the UDP checksum field.
func withDestOptions(pkt []byte) []byte {
	out := make([]byte, 0, len(pkt)+8)
	out = append(out, pkt[:40]...)
	out = append(out, protoUDP, 0, 1, 4, 0, 0, 0, 0)
	out = append(out, pkt[40:]...)
	out[6] = protoDestOptions
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

func TestSplitInPlace(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		h    func([]byte) Header
	}{
		{"TCP", tcpPacket(32, 5000, header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin|header.TCPFlagCwr, 9), func(p []byte) Header { return tcpGSOHeader(p, 1300) }},
		{"UDP", udpPacket(5000), func([]byte) Header { return udpGSOHeader(1300) }},
		{"GSONone NEEDS_CSUM", tcpPacket(20, 500, header.TCPFlagAck, 9), func([]byte) Header { return Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h(tc.pkt)
			// Reference: split into separate buffers.
			n := Segments(h, tc.pkt)
			want, wantSizes := outBuffers(n, 0, len(tc.pkt))
			if _, err := Split(h, tc.pkt, want, wantSizes, 0); err != nil {
				t.Fatal(err)
			}
			// In place: out[0][4:] is the input itself.
			buf := append([]byte{0xa5, 0xa5, 0xa5, 0xa5}, tc.pkt...)
			out, sizes := outBuffers(n, 4, len(tc.pkt))
			out[0] = buf
			got, err := Split(h, buf[4:], out, sizes, 4)
			if err != nil || got != n {
				t.Fatalf("in-place Split = %d, %v; want %d", got, err, n)
			}
			for i := range n {
				if !bytes.Equal(out[i][4:4+sizes[i]], want[i][:wantSizes[i]]) {
					t.Fatalf("segment %d differs from the out-of-place split", i)
				}
			}
		})
	}
}

func TestSplitBufferErrors(t *testing.T) {
	pkt := tcpPacket(20, 3*1000+10, header.TCPFlagAck, 1)
	h := tcpGSOHeader(pkt, 1000) // 4 segments: 3 of 1060 bytes, 1 of 70

	expectUntouched := func(t *testing.T, out [][]byte) {
		t.Helper()
		for i := range out {
			for j, b := range out[i] {
				if b != 0xa5 {
					t.Fatalf("buffer %d byte %d written on error", i, j)
				}
			}
		}
	}
	t.Run("too few buffers", func(t *testing.T) {
		out, sizes := outBuffers(3, 16, 1060)
		if n, err := Split(h, pkt, out, sizes, 16); n != 0 || err != ErrTooFewBuffers {
			t.Fatalf("Split = %d, %v; want ErrTooFewBuffers", n, err)
		}
		expectUntouched(t, out)
	})
	t.Run("too few sizes", func(t *testing.T) {
		out, sizes := outBuffers(4, 16, 1060)
		if n, err := Split(h, pkt, out, sizes[:3], 16); n != 0 || err != ErrTooFewBuffers {
			t.Fatalf("Split = %d, %v; want ErrTooFewBuffers", n, err)
		}
		expectUntouched(t, out)
	})
	t.Run("middle buffer one byte short", func(t *testing.T) {
		out, sizes := outBuffers(4, 16, 1060)
		out[2] = out[2][:16+1059]
		if n, err := Split(h, pkt, out, sizes, 16); n != 0 || err != ErrBufferTooSmall {
			t.Fatalf("Split = %d, %v; want ErrBufferTooSmall", n, err)
		}
		expectUntouched(t, out)
	})
	t.Run("last buffer one byte short", func(t *testing.T) {
		out, sizes := outBuffers(4, 16, 1060)
		out[3] = out[3][:16+69]
		if n, err := Split(h, pkt, out, sizes, 16); n != 0 || err != ErrBufferTooSmall {
			t.Fatalf("Split = %d, %v; want ErrBufferTooSmall", n, err)
		}
		expectUntouched(t, out)
		out[3] = out[3][:16+70] // exactly enough
		if n, err := Split(h, pkt, out, sizes, 16); n != 4 || err != nil {
			t.Fatalf("Split with exact buffers = %d, %v", n, err)
		}
		verifySplit(t, h, pkt, out, sizes, 4, 16)
	})
	t.Run("offset beyond buffer", func(t *testing.T) {
		out, sizes := outBuffers(4, 0, 1060)
		if n, err := Split(h, pkt, out, sizes, 2000); n != 0 || err != ErrBufferTooSmall {
			t.Fatalf("Split = %d, %v; want ErrBufferTooSmall", n, err)
		}
		expectUntouched(t, out)
	})
	t.Run("negative offset", func(t *testing.T) {
		out, sizes := outBuffers(4, 0, 1060)
		if n, err := Split(h, pkt, out, sizes, -1); n != 0 || err != ErrNegativeOffset {
			t.Fatalf("Split = %d, %v; want ErrNegativeOffset", n, err)
		}
	})
	t.Run("GSONone buffer too small", func(t *testing.T) {
		out, sizes := outBuffers(1, 16, len(pkt)-1)
		if n, err := Split(Header{}, pkt, out, sizes, 16); n != 0 || err != ErrBufferTooSmall {
			t.Fatalf("Split = %d, %v; want ErrBufferTooSmall", n, err)
		}
		expectUntouched(t, out)
		if n, err := Split(Header{}, pkt, nil, nil, 16); n != 0 || err != ErrTooFewBuffers {
			t.Fatalf("Split into nothing = %d, %v; want ErrTooFewBuffers", n, err)
		}
	})
}

func TestCheckAccepts(t *testing.T) {
	burst := tcpPacket(32, 5000, header.TCPFlagAck, 1)
	tcp := tcpGSOHeader(burst, 1300)
	with := func(h Header, f func(*Header)) Header { f(&h); return h }
	for _, tc := range []struct {
		name string
		h    Header
		pkt  []byte
	}{
		{"TCP hdr_len exactly the headers", tcp, burst},
		{"TCP hdr_len a whole first segment", with(tcp, func(h *Header) { h.HdrLen = 72 + 1300 }), burst},
		{"TCP hdr_len the whole packet", with(tcp, func(h *Header) { h.HdrLen = uint16(len(burst)) }), burst},
		{"TCP largest gso_size", with(tcp, func(h *Header) { h.GSOSize = 65535 - 72 }), burst},
		{"UDP hdr_len 0", with(udpGSOHeader(1000), func(h *Header) { h.HdrLen = 0 }), udpPacket(3000)},
		{"GSONone", Header{}, burst},
		{"GSONone DATA_VALID", Header{Flags: flagDataValid}, burst},
		{"GSONone any IPv6 next header", Header{}, withNextHeader(burst, 58)},
		{"GSONone TCP header-only NEEDS_CSUM", Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}, tcpPacket(20, 0, header.TCPFlagAck, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.h.Check(tc.pkt); err != nil {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

func withNextHeader(pkt []byte, next uint8) []byte {
	c := append([]byte(nil), pkt...)
	c[6] = next
	return c
}

func TestCheckRejects(t *testing.T) {
	burst := tcpPacket(32, 5000, header.TCPFlagAck, 1) // headers 72 bytes
	tcp := tcpGSOHeader(burst, 1300)
	udpBurst := udpPacket(3000)
	udp := udpGSOHeader(1000)
	single := tcpPacket(20, 100, header.TCPFlagAck, 1)
	singleCsum := Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}
	singleUDP := udpPacket(100)
	singleUDPCsum := Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 6}

	out, sizes := outBuffers(100, 16, 1500)
	with := func(h Header, f func(*Header)) Header { f(&h); return h }
	mut := func(pkt []byte, f func([]byte)) []byte { c := append([]byte(nil), pkt...); f(c); return c }
	ipv4 := mut(burst, func(p []byte) { p[0] = 0x45 })

	for _, tc := range []struct {
		name string
		h    Header
		pkt  []byte
		want error
	}{
		// Types and flags.
		{"GSOTCPv4", with(tcp, func(h *Header) { h.GSOType = GSOTCPv4 }), burst, ErrIPv4},
		{"TCPv6 with ECN bit", with(tcp, func(h *Header) { h.GSOType = GSOTCPv6 | 0x80 }), burst, ErrGSOType},
		{"UDP (UFO, type 3)", with(tcp, func(h *Header) { h.GSOType = 3 }), burst, ErrGSOType},
		{"unknown type", with(tcp, func(h *Header) { h.GSOType = 0x42 }), burst, ErrGSOType},
		{"TCPv6 without NEEDS_CSUM", with(tcp, func(h *Header) { h.Flags = 0 }), burst, ErrFlags},
		{"TCPv6 with DATA_VALID too", with(tcp, func(h *Header) { h.Flags = FlagNeedsCsum | flagDataValid }), burst, ErrFlags},
		{"UDP_L4 without NEEDS_CSUM", with(udp, func(h *Header) { h.Flags = 0 }), udpBurst, ErrFlags},
		{"GSONone unknown flag", Header{Flags: 4}, single, ErrFlags},
		{"GSONone NEEDS_CSUM and DATA_VALID", with(singleCsum, func(h *Header) { h.Flags |= flagDataValid }), single, ErrFlags},
		// IP version and length.
		{"IPv4 packet, GSONone", Header{}, ipv4, ErrIPv4},
		{"IPv4 packet, TCPv6", tcp, ipv4, ErrIPv4},
		{"version 0", Header{}, mut(burst, func(p []byte) { p[0] = 0x05 }), ErrNotIPv6},
		{"empty packet", Header{}, nil, ErrShortPacket},
		{"39-byte packet", Header{}, burst[:39], ErrShortPacket},
		{"payload length too small", tcp, mut(burst, func(p []byte) { binary.BigEndian.PutUint16(p[4:], uint16(len(p)-41)) }), ErrPayloadLength},
		{"payload length too large", tcp, burst[:len(burst)-1], ErrPayloadLength},
		{"GSONone payload length wrong", Header{}, single[:len(single)-1], ErrPayloadLength},
		{"GSONone hdr_len beyond packet", Header{HdrLen: uint16(len(single) + 1)}, single, ErrHdrLen},
		// TCPv6 GSO.
		{"TCP extension header", tcp, withNextHeader(burst, protoDestOptions), ErrNextHeader},
		{"TCP header says UDP", tcp, withNextHeader(burst, protoUDP), ErrNextHeader},
		{"TCP csum_start 0", with(tcp, func(h *Header) { h.CsumStart = 0 }), burst, ErrChecksumStart},
		{"TCP csum_start 48", with(tcp, func(h *Header) { h.CsumStart = 48 }), burst, ErrChecksumStart},
		{"TCP csum_offset 6", with(tcp, func(h *Header) { h.CsumOffset = 6 }), burst, ErrChecksumOffset},
		{"TCP csum_offset huge", with(tcp, func(h *Header) { h.CsumOffset = 0xfff0 }), burst, ErrChecksumOffset},
		{"TCP data offset 16", tcp, mut(burst, func(p []byte) { p[52] = 4 << 4 }), ErrTCPHeaderLen},
		{"TCP data offset 0", tcp, mut(burst, func(p []byte) { p[52] = 0 }), ErrTCPHeaderLen},
		{"truncated TCP packet", with(tcp, func(h *Header) { h.HdrLen = 40 }), tcpPacket(20, 0, header.TCPFlagAck, 1)[:50], ErrPayloadLength},
		{"TCP header cut", tcp, mut(tcpPacket(20, 40, header.TCPFlagAck, 1)[:99], func(p []byte) { p[52] = 15 << 4; binary.BigEndian.PutUint16(p[4:], 59) }), ErrShortPacket},
		{"TCP short of minimal header", with(tcp, func(h *Header) { h.HdrLen = 40 }), mut(burst[:59], func(p []byte) { binary.BigEndian.PutUint16(p[4:], 19) }), ErrShortPacket},
		{"TCP hdr_len below headers", with(tcp, func(h *Header) { h.HdrLen = 71 }), burst, ErrHdrLen},
		{"TCP hdr_len 0", with(tcp, func(h *Header) { h.HdrLen = 0 }), burst, ErrHdrLen},
		{"TCP hdr_len beyond packet", with(tcp, func(h *Header) { h.HdrLen = uint16(len(burst) + 1) }), burst, ErrHdrLen},
		{"TCP gso_size 0", with(tcp, func(h *Header) { h.GSOSize = 0 }), burst, ErrGSOSize},
		{"TCP gso_size too large", with(tcp, func(h *Header) { h.GSOSize = 65535 - 72 + 1 }), burst, ErrGSOSize},
		{"TCP no payload", with(tcp, func(h *Header) { h.HdrLen = 72 }), tcpPacket(32, 0, header.TCPFlagAck, 1), ErrNoPayload},
		// UDP_L4.
		{"UDP header says TCP", udp, burst, ErrNextHeader},
		{"UDP csum_start 42", with(udp, func(h *Header) { h.CsumStart = 42 }), udpBurst, ErrChecksumStart},
		{"UDP csum_offset 16", with(udp, func(h *Header) { h.CsumOffset = 16 }), udpBurst, ErrChecksumOffset},
		{"UDP gso_size 0", with(udp, func(h *Header) { h.GSOSize = 0 }), udpBurst, ErrGSOSize},
		{"UDP hdr_len beyond packet", with(udp, func(h *Header) { h.HdrLen = uint16(len(udpBurst) + 1) }), udpBurst, ErrHdrLen},
		{"UDP header cut", with(udp, func(h *Header) { h.HdrLen = 0 }), mut(udpBurst[:47], func(p []byte) { binary.BigEndian.PutUint16(p[4:], 7) }), ErrShortPacket},
		{"UDP no payload", udp, udpPacket(0), ErrNoPayload},
		{"UDP extension header", udp, withDestOptions(udpBurst), ErrNextHeader},
		// GSONone with NEEDS_CSUM.
		{"single csum_start 0", with(singleCsum, func(h *Header) { h.CsumStart = 0 }), single, ErrChecksumStart},
		{"single csum_start past L4", with(singleCsum, func(h *Header) { h.CsumStart = 60 }), single, ErrChecksumStart},
		{"single TCP csum_offset 6", with(singleCsum, func(h *Header) { h.CsumOffset = 6 }), single, ErrChecksumOffset},
		{"single UDP csum_offset 16", with(singleUDPCsum, func(h *Header) { h.CsumOffset = 16 }), singleUDP, ErrChecksumOffset},
		{"single csum_offset beyond packet", with(singleCsum, func(h *Header) { h.CsumOffset = 0xffff }), single, ErrChecksumOffset},
		{"single ICMPv6", singleCsum, withNextHeader(single, 58), ErrNextHeader},
		{"single fragment header", singleCsum, withNextHeader(single, 44), ErrNextHeader},
		{"single TCP header cut", singleCsum, mut(single[:59], func(p []byte) { binary.BigEndian.PutUint16(p[4:], 19) }), ErrShortPacket},
		{"single UDP header cut", singleUDPCsum, mut(singleUDP[:47], func(p []byte) { binary.BigEndian.PutUint16(p[4:], 7) }), ErrShortPacket},
		{"single extension header cut", singleCsum, mut(withNextHeader(single[:44], protoDestOptions), func(p []byte) { binary.BigEndian.PutUint16(p[4:], 4) }), ErrShortPacket},
		{"single extension header runs past packet", with(singleUDPCsum, func(h *Header) { h.CsumStart = 48 }), mut(withDestOptions(singleUDP), func(p []byte) { p[41] = 200 }), ErrShortPacket},
		{"single UDP after ext header but csum_start 40", singleUDPCsum, withDestOptions(singleUDP), ErrChecksumStart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.h.Check(tc.pkt); err != tc.want {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if n := Segments(tc.h, tc.pkt); n != 0 {
				t.Fatalf("Segments = %d for a rejected frame, want 0", n)
			}
			if n, err := Split(tc.h, tc.pkt, out, sizes, 16); n != 0 || err != tc.want {
				t.Fatalf("Split = %d, %v; want 0, %v", n, err, tc.want)
			}
		})
	}
}

func TestErrorsAreDistinct(t *testing.T) {
	all := []error{ErrShortHeader, ErrShortPacket, ErrIPv4, ErrNotIPv6, ErrPayloadLength, ErrGSOType, ErrFlags,
		ErrNextHeader, ErrChecksumStart, ErrChecksumOffset, ErrTCPHeaderLen, ErrHdrLen, ErrGSOSize, ErrNoPayload,
		ErrTooFewBuffers, ErrBufferTooSmall, ErrNegativeOffset}
	for i, a := range all {
		for _, b := range all[i+1:] {
			if errors.Is(a, b) || a.Error() == b.Error() {
				t.Fatalf("%v and %v are not distinct", a, b)
			}
		}
	}
}

func burst44x1312() (Header, []byte) {
	pkt := tcpPacket(32, 44*1312, header.TCPFlagAck|header.TCPFlagPsh, 1)
	return tcpGSOHeader(pkt, 1312), pkt
}

func TestNoAllocations(t *testing.T) {
	h, pkt := burst44x1312()
	out, sizes := outBuffers(44, 16, 40+32+1312)
	frame := make([]byte, HeaderLen+len(pkt))
	h.Put(frame)
	copy(frame[HeaderLen:], pkt)
	bad := Header{GSOType: GSOTCPv4}
	none := Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}
	single := tcpPacket(20, 1000, header.TCPFlagAck, 1)
	for name, f := range map[string]func(){
		"Split 44x1312": func() {
			if n, err := Split(h, pkt, out, sizes, 16); n != 44 || err != nil {
				panic(err)
			}
		},
		"Split GSONone NEEDS_CSUM": func() {
			if _, err := Split(none, single, out, sizes, 16); err != nil {
				panic(err)
			}
		},
		"ParseHeader+Check+Segments": func() {
			g, err := ParseHeader(frame)
			if err != nil || g.Check(frame[HeaderLen:]) != nil || Segments(g, frame[HeaderLen:]) != 44 {
				panic("parse")
			}
		},
		"error paths": func() {
			_, _ = ParseHeader(frame[:3])
			_ = bad.Check(pkt)
			_, _ = Split(h, pkt, out[:3], sizes, 16)
			_, _ = Split(h, pkt[:100], out, sizes, 16)
		},
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, a)
		}
	}
	if n, err := Split(h, pkt, out, sizes, 16); n != 44 || err != nil {
		t.Fatalf("Split = %d, %v", n, err)
	}
	verifySplit(t, h, pkt, out, sizes, 44, 16)
}

func BenchmarkSplit44x1312(b *testing.B) {
	h, pkt := burst44x1312()
	out, sizes := outBuffers(44, 16, 40+32+1312)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if n, err := Split(h, pkt, out, sizes, 16); n != 44 || err != nil {
			b.Fatal(n, err)
		}
	}
}
