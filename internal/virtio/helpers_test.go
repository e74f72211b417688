package virtio

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	testSrc = tcpip.AddrFrom16([16]byte{0xfd, 0x00, 0x0a, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34})
	testDst = tcpip.AddrFrom16([16]byte{0xfd, 0x00, 0x0a, 0x0b, 0, 0, 0, 0, 0xde, 0xad, 0, 0, 0, 0, 0xbe, 0xef})
)

// tcpPacket builds an IPv6/TCP packet with the gvisor encoders: tcpHeaderLen bytes of TCP header
// (options: NOPs and a timestamp option when there is room), payloadLen bytes of payload, and in the
// checksum field the uncomplemented pseudo-header sum, as a kernel TUN hands over with NEEDS_CSUM.
func tcpPacket(tcpHeaderLen, payloadLen int, flags header.TCPFlags, seq uint32) []byte {
	transportLen := tcpHeaderLen + payloadLen
	pkt := make([]byte, header.IPv6MinimumSize+transportLen)
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(transportLen),
		TransportProtocol: header.TCPProtocolNumber,
		HopLimit:          64,
		SrcAddr:           testSrc,
		DstAddr:           testDst,
		TrafficClass:      0x02,
		FlowLabel:         0x12345,
	})
	tcp := header.TCP(pkt[header.IPv6MinimumSize:])
	tcp.Encode(&header.TCPFields{
		SrcPort:    40000,
		DstPort:    443,
		SeqNum:     seq,
		AckNum:     0x01020304,
		DataOffset: uint8(tcpHeaderLen),
		Flags:      flags,
		WindowSize: 512,
		Checksum:   header.PseudoHeaderChecksum(header.TCPProtocolNumber, testSrc, testDst, uint16(transportLen)),
	})
	options := tcp[header.TCPMinimumSize:tcpHeaderLen]
	for i := range options {
		options[i] = 1 // NOP
	}
	if len(options) >= 12 {
		options[2], options[3] = 8, 10 // timestamp
		binary.BigEndian.PutUint32(options[4:], 0xaabbccdd)
		binary.BigEndian.PutUint32(options[8:], 0x11223344)
	}
	fillPayload(pkt[header.IPv6MinimumSize+tcpHeaderLen:])
	return pkt
}

// udpPacket builds an IPv6/UDP packet like tcpPacket.
func udpPacket(payloadLen int) []byte {
	transportLen := header.UDPMinimumSize + payloadLen
	pkt := make([]byte, header.IPv6MinimumSize+transportLen)
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(transportLen),
		TransportProtocol: header.UDPProtocolNumber,
		HopLimit:          64,
		SrcAddr:           testSrc,
		DstAddr:           testDst,
	})
	header.UDP(pkt[header.IPv6MinimumSize:]).Encode(&header.UDPFields{
		SrcPort:  5353,
		DstPort:  4433,
		Length:   uint16(transportLen),
		Checksum: header.PseudoHeaderChecksum(header.UDPProtocolNumber, testSrc, testDst, uint16(transportLen)),
	})
	fillPayload(pkt[header.IPv6MinimumSize+header.UDPMinimumSize:])
	return pkt
}

func fillPayload(b []byte) {
	x := uint32(0x9e3779b9)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

func tcpGSOHeader(pkt []byte, gsoSize int) Header {
	return Header{
		Flags: FlagNeedsCsum, GSOType: GSOTCPv6,
		HdrLen:    uint16(40 + int(pkt[52]>>4)*4),
		GSOSize:   uint16(gsoSize),
		CsumStart: 40, CsumOffset: 16,
	}
}

func udpGSOHeader(gsoSize int) Header {
	return Header{
		Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: 48,
		GSOSize: uint16(gsoSize), CsumStart: 40, CsumOffset: 6,
	}
}

// outBuffers returns n buffers of offset+size bytes, each filled with 0xa5.
func outBuffers(n, offset, size int) ([][]byte, []int) {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{0xa5}, offset+size)
	}
	return out, make([]int, n)
}

// verifySplit checks the n packets Split wrote into out[:n][offset:] for the frame [h ‖ pkt] that
// passed Check, from what the input says alone (not from the package's own computations).
func verifySplit(t testing.TB, h Header, pkt []byte, out [][]byte, sizes []int, n, offset int) {
	t.Helper()
	for i := range n {
		for j := range offset {
			if out[i][j] != 0xa5 {
				t.Fatalf("segment %d: headroom byte %d overwritten", i, j)
			}
		}
	}
	if h.GSOType == GSONone {
		if n != 1 {
			t.Fatalf("GSONone: %d packets, want 1", n)
		}
		got := out[0][offset : offset+sizes[0]]
		if h.Flags&FlagNeedsCsum == 0 {
			if !bytes.Equal(got, pkt) {
				t.Fatalf("GSONone without NEEDS_CSUM: packet not copied as is")
			}
			return
		}
		field := int(h.CsumStart + h.CsumOffset)
		if len(got) != len(pkt) || !bytes.Equal(got[:field], pkt[:field]) || !bytes.Equal(got[field+2:], pkt[field+2:]) {
			t.Fatalf("GSONone with NEEDS_CSUM: bytes other than the checksum field changed")
		}
		// The field held the pseudo-header sum P; the completed packet must sum, with P, to 0xffff.
		partial := binary.BigEndian.Uint16(pkt[field:])
		if s := checksum.Checksum(got[h.CsumStart:], partial); s != 0xffff {
			t.Fatalf("GSONone with NEEDS_CSUM: checksum does not verify against the partial sum (%#04x)", s)
		}
		if binary.BigEndian.Uint16(got[field:]) == 0 {
			t.Fatalf("GSONone with NEEDS_CSUM: zero checksum stored")
		}
		return
	}

	proto := pkt[6]
	headerLen := 40 + 8
	if h.GSOType == GSOTCPv6 {
		headerLen = 40 + int(pkt[52]>>4)*4
	}
	payload := pkt[headerLen:]
	gso := int(h.GSOSize)
	if want := (len(payload) + gso - 1) / gso; n != want {
		t.Fatalf("%d segments, want %d", n, want)
	}
	src, dst := tcpip.AddrFrom16Slice(pkt[8:24]), tcpip.AddrFrom16Slice(pkt[24:40])
	var joined []byte
	for i := range n {
		seg := out[i][offset : offset+sizes[i]]
		last := i == n-1
		if len(seg) < headerLen {
			t.Fatalf("segment %d: %d bytes, shorter than the headers", i, len(seg))
		}
		segPayload := seg[headerLen:]
		if !last && len(segPayload) != gso || last && (len(segPayload) == 0 || len(segPayload) > gso) {
			t.Fatalf("segment %d: payload of %d bytes with gso_size %d", i, len(segPayload), gso)
		}
		ip := header.IPv6(seg)
		if !ip.IsValid(len(seg)) || int(ip.PayloadLength()) != len(seg)-40 {
			t.Fatalf("segment %d: invalid IPv6 header or payload length %d for %d bytes", i, ip.PayloadLength(), len(seg))
		}
		if ip.NextHeader() != proto || ip.SourceAddress() != src || ip.DestinationAddress() != dst {
			t.Fatalf("segment %d: IPv6 next header or addresses changed", i)
		}
		// Apart from the fields segmentation owns, the headers are pkt's.
		mask := func(b []byte) []byte {
			c := append([]byte(nil), b[:headerLen]...)
			c[4], c[5] = 0, 0
			if proto == protoTCP {
				copy(c[44:48], []byte{0, 0, 0, 0})
				c[53] = 0
				c[56], c[57] = 0, 0
			} else {
				c[44], c[45], c[46], c[47] = 0, 0, 0, 0
			}
			return c
		}
		if !bytes.Equal(mask(seg), mask(pkt)) {
			t.Fatalf("segment %d: header bytes differ from the input's beyond the segmentation fields", i)
		}
		payloadSum := checksum.Checksum(segPayload, 0)
		if proto == protoTCP {
			tcp := header.TCP(seg[40:])
			in := header.TCP(pkt[40:])
			if want := in.SequenceNumber() + uint32(i*gso); tcp.SequenceNumber() != want {
				t.Fatalf("segment %d: seq %d, want %d", i, tcp.SequenceNumber(), want)
			}
			wantFlags := in.Flags()
			if !last {
				wantFlags &^= header.TCPFlagFin | header.TCPFlagPsh
			}
			if i != 0 {
				wantFlags &^= header.TCPFlagCwr
			}
			if tcp.Flags() != wantFlags {
				t.Fatalf("segment %d: flags %v, want %v", i, tcp.Flags(), wantFlags)
			}
			if !tcp.IsChecksumValid(src, dst, payloadSum, uint16(len(segPayload))) {
				t.Fatalf("segment %d: TCP checksum %#04x does not verify", i, tcp.Checksum())
			}
		} else {
			udp := header.UDP(seg[40:])
			if int(udp.Length()) != len(seg)-40 {
				t.Fatalf("segment %d: UDP length %d, want %d", i, udp.Length(), len(seg)-40)
			}
			if udp.Checksum() == 0 {
				t.Fatalf("segment %d: zero UDP checksum over IPv6", i)
			}
			if !udp.IsChecksumValid(src, dst, payloadSum) {
				t.Fatalf("segment %d: UDP checksum %#04x does not verify", i, udp.Checksum())
			}
		}
		// The same from scratch: pseudo-header + transport bytes sum to 0xffff.
		pseudo := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(len(seg)-40))
		if s := checksum.Checksum(seg[40:], pseudo); s != 0xffff {
			t.Fatalf("segment %d: transport checksum sums to %#04x", i, s)
		}
		joined = append(joined, segPayload...)
	}
	if !bytes.Equal(joined, payload) {
		t.Fatalf("concatenated segment payloads (%d bytes) differ from the input payload (%d bytes)", len(joined), len(payload))
	}
}
