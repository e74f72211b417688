// Package virtio handles the virtio-net header (struct virtio_net_hdr, include/uapi/linux/virtio_net.h)
// that a Linux TUN device opened with IFF_VNET_HDR puts in front of every packet, and splits an IPv6
// TCP or UDP super-packet ("GSO" burst) into MTU-sized packets in software.
//
// A frame is [10-byte header ‖ IPv6 packet]. ParseHeader decodes the header, Check validates it
// against the packet it precedes, Segments says how many packets the frame stands for, and Split
// writes those packets, each a complete IPv6 packet with its payload length and a complete, correct
// TCP or UDP checksum (pseudo-header included). Only IPv6 is supported; IPv4 packets and the IPv4 GSO
// type are rejected with ErrIPv4.
//
// What the package must never do:
//   - read or write beyond the buffers it is given: every offset comes from a header or a packet and is
//     bounds-checked before use, and Split checks all output buffers before it writes any byte;
//   - allocate per packet: ParseHeader, Check, Segments and Split allocate nothing, and their errors
//     are the package-level values below, never wrapped;
//   - trust a header that came from the wire (or from a kernel) without Check: hdr_len is only
//     range-checked, never used as a length (the header length is computed from the packet), and
//     Split runs Check itself.
//
// Split never modifies pkt, unless the caller hands pkt itself over as out[0] (see Split).
package virtio

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// HeaderLen is the size of the virtio-net header on the wire: sizeof(struct virtio_net_hdr).
const HeaderLen = 10

// gso_type values and flags of struct virtio_net_hdr.
const (
	GSONone  = 0 // VIRTIO_NET_HDR_GSO_NONE: a single packet
	GSOTCPv4 = 1 // VIRTIO_NET_HDR_GSO_TCPV4: rejected, the overlay is IPv6-only
	GSOUDPL4 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation
	GSOTCPv6 = 4 // VIRTIO_NET_HDR_GSO_TCPV6: TCP segmentation over IPv6

	FlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum is to be completed
)

// flagDataValid is VIRTIO_NET_HDR_F_DATA_VALID: the kernel sets it on a TUN read of a packet whose
// checksum it already verified (typically one forwarded from a NIC). It is accepted, and ignored,
// on GSONone only; the kernel ignores it on a TUN write.
const flagDataValid = 2

// Errors returned by ParseHeader, Check and Split. They are never wrapped, so that the per-packet
// functions do not allocate; compare with == or errors.Is.
var (
	ErrShortHeader     = errors.New("virtio: frame shorter than the virtio-net header")
	ErrShortPacket     = errors.New("virtio: packet too short for the headers it announces")
	ErrIPv4            = errors.New("virtio: IPv4 is not supported (IPv6-only overlay)")
	ErrNotIPv6         = errors.New("virtio: packet is not IPv6")
	ErrPayloadLength   = errors.New("virtio: IPv6 payload length does not match the packet length")
	ErrGSOType         = errors.New("virtio: unsupported virtio-net gso_type")
	ErrFlags           = errors.New("virtio: unsupported virtio-net flags for this gso_type")
	ErrNextHeader      = errors.New("virtio: transport protocol does not match the virtio-net header")
	ErrChecksumStart   = errors.New("virtio: csum_start is not the transport header offset")
	ErrChecksumOffset  = errors.New("virtio: csum_offset is not the transport checksum field")
	ErrTCPHeaderLen    = errors.New("virtio: TCP data offset out of range")
	ErrHdrLen          = errors.New("virtio: hdr_len out of range")
	ErrGSOSize         = errors.New("virtio: gso_size out of range")
	ErrNoPayload       = errors.New("virtio: GSO packet without payload")
	ErrTooFewBuffers   = errors.New("virtio: too few output buffers for the segments")
	ErrBufferTooSmall  = errors.New("virtio: output buffer too small for a segment")
	ErrNegativeOffset  = errors.New("virtio: negative output offset")
	errUnreachableKind = errors.New("virtio: internal error: unknown packet layout")
)

const (
	ipv6HeaderLen     = 40
	ipv6PayloadLenAt  = 4
	ipv6NextHeaderAt  = 6
	ipv6AddrsAt       = 8 // source then destination address, 16 bytes each
	ipv6AddrsEnd      = 40
	protoHopByHop     = 0
	protoTCP          = 6
	protoUDP          = 17
	protoRouting      = 43
	protoDestOptions  = 60
	tcpMinHeaderLen   = 20
	tcpMaxHeaderLen   = 60
	tcpSeqAt          = 4
	tcpDataOffsetAt   = 12
	tcpFlagsAt        = 13
	tcpChecksumAt     = 16
	udpHeaderLen      = 8
	udpLengthAt       = 4
	udpChecksumAt     = 6
	tcpFlagFIN        = 0x01
	tcpFlagPSH        = 0x08
	tcpFlagCWR        = 0x80
	maxIPv6PayloadLen = 0xffff
)

// Header is a decoded struct virtio_net_hdr.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // a hint only: never trusted, see Check
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// ParseHeader decodes the header at the front of b (fields little-endian, as a TUN device on a
// little-endian host writes them). It needs len(b) >= HeaderLen and does not validate anything:
// call Check before using the header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShortHeader
	}
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}, nil
}

// Put encodes h into b[:HeaderLen]. It panics if len(b) < HeaderLen, like binary.LittleEndian.PutUint16.
func (h Header) Put(b []byte) {
	_ = b[HeaderLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// layoutKind says how Split handles a packet that passed Check.
type layoutKind uint8

const (
	kindCopy     layoutKind = iota + 1 // GSONone, copied as it is
	kindComplete                       // GSONone with FlagNeedsCsum: complete the checksum
	kindTCP                            // GSOTCPv6
	kindUDP                            // GSOUDPL4
)

// layout is what Check learnt about a packet.
type layout struct {
	kind       layoutKind
	headerLen  int // GSO: IPv6 header + transport header, computed from the packet
	checksumAt int // kindComplete, kindTCP, kindUDP: offset of the transport checksum field
}

// Check validates h against the IPv6 packet pkt that it precedes, for a frame received from the
// network (or read from a kernel TUN) that will be written to a kernel TUN or split. It accepts:
//
//   - GSONone without flags, or with FlagNeedsCsum only, or with the kernel's DATA_VALID flag only.
//     With FlagNeedsCsum, csum_start must be the offset of the TCP or UDP header (after any hop-by-hop,
//     routing and destination options headers) and csum_offset 16 (TCP) or 6 (UDP), with the minimal
//     transport header inside pkt.
//   - GSOTCPv6 with FlagNeedsCsum only: TCP directly after the IPv6 header (csum_start 40,
//     csum_offset 16), a TCP data offset of 20..60 bytes within pkt, hdr_len between the real header
//     length (40 + TCP header length) and len(pkt), 1 <= gso_size <= 65535 - header length, and at
//     least one byte of payload.
//   - GSOUDPL4 with FlagNeedsCsum only: UDP directly after the IPv6 header (csum_start 40,
//     csum_offset 6), hdr_len <= len(pkt), gso_size >= 1, and at least one byte of payload.
//
// In every case pkt must be an IPv6 packet whose payload length field equals len(pkt) - 40 and
// hdr_len must not exceed len(pkt) (a kernel TUN write refuses it). Everything else is an error:
// IPv4, GSOTCPv4, the ECN bit (0x80) in gso_type, unknown types or flags, short packets.
func (h Header) Check(pkt []byte) error {
	_, err := h.check(pkt)
	return err
}

func (h Header) check(pkt []byte) (layout, error) {
	switch h.GSOType {
	case GSONone, GSOTCPv6, GSOUDPL4:
	case GSOTCPv4:
		return layout{}, ErrIPv4
	default:
		return layout{}, ErrGSOType
	}
	if len(pkt) < 1 {
		return layout{}, ErrShortPacket
	}
	switch pkt[0] >> 4 {
	case 6:
	case 4:
		return layout{}, ErrIPv4
	default:
		return layout{}, ErrNotIPv6
	}
	if len(pkt) < ipv6HeaderLen {
		return layout{}, ErrShortPacket
	}
	if int(binary.BigEndian.Uint16(pkt[ipv6PayloadLenAt:])) != len(pkt)-ipv6HeaderLen {
		return layout{}, ErrPayloadLength
	}
	if int(h.HdrLen) > len(pkt) {
		return layout{}, ErrHdrLen
	}
	if h.GSOType == GSONone {
		return h.checkSingle(pkt)
	}
	if h.Flags != FlagNeedsCsum {
		return layout{}, ErrFlags
	}
	if h.CsumStart != ipv6HeaderLen {
		return layout{}, ErrChecksumStart
	}
	if h.GSOSize == 0 {
		return layout{}, ErrGSOSize
	}
	if h.GSOType == GSOUDPL4 {
		if pkt[ipv6NextHeaderAt] != protoUDP {
			return layout{}, ErrNextHeader
		}
		if h.CsumOffset != udpChecksumAt {
			return layout{}, ErrChecksumOffset
		}
		headerLen := ipv6HeaderLen + udpHeaderLen
		if len(pkt) < headerLen {
			return layout{}, ErrShortPacket
		}
		if len(pkt) == headerLen {
			return layout{}, ErrNoPayload
		}
		return layout{kind: kindUDP, headerLen: headerLen, checksumAt: ipv6HeaderLen + udpChecksumAt}, nil
	}
	if pkt[ipv6NextHeaderAt] != protoTCP {
		return layout{}, ErrNextHeader
	}
	if h.CsumOffset != tcpChecksumAt {
		return layout{}, ErrChecksumOffset
	}
	if len(pkt) < ipv6HeaderLen+tcpMinHeaderLen {
		return layout{}, ErrShortPacket
	}
	// hdr_len is only a hint (for a forwarded packet the kernel may set it to the whole first
	// segment): the header length is the TCP data offset.
	tcpHeaderLen := int(pkt[ipv6HeaderLen+tcpDataOffsetAt]>>4) * 4
	if tcpHeaderLen < tcpMinHeaderLen || tcpHeaderLen > tcpMaxHeaderLen {
		return layout{}, ErrTCPHeaderLen
	}
	headerLen := ipv6HeaderLen + tcpHeaderLen
	if len(pkt) < headerLen {
		return layout{}, ErrShortPacket
	}
	if int(h.HdrLen) < headerLen {
		return layout{}, ErrHdrLen
	}
	if int(h.GSOSize) > maxIPv6PayloadLen-headerLen {
		return layout{}, ErrGSOSize
	}
	if len(pkt) == headerLen {
		return layout{}, ErrNoPayload
	}
	return layout{kind: kindTCP, headerLen: headerLen, checksumAt: ipv6HeaderLen + tcpChecksumAt}, nil
}

// checkSingle checks a GSONone header against pkt, an IPv6 packet of the right length.
func (h Header) checkSingle(pkt []byte) (layout, error) {
	switch h.Flags {
	case 0, flagDataValid:
		return layout{kind: kindCopy}, nil
	case FlagNeedsCsum:
	default:
		return layout{}, ErrFlags
	}
	proto, l4At, err := transportHeader(pkt)
	if err != nil {
		return layout{}, err
	}
	if int(h.CsumStart) != l4At {
		return layout{}, ErrChecksumStart
	}
	minHeader, checksumAt := tcpMinHeaderLen, tcpChecksumAt
	if proto == protoUDP {
		minHeader, checksumAt = udpHeaderLen, udpChecksumAt
	}
	if int(h.CsumOffset) != checksumAt {
		return layout{}, ErrChecksumOffset
	}
	if len(pkt)-l4At < minHeader {
		return layout{}, ErrShortPacket
	}
	return layout{kind: kindComplete, checksumAt: l4At + checksumAt}, nil
}

// transportHeader finds the TCP or UDP header of the IPv6 packet pkt (len(pkt) >= 40), skipping
// hop-by-hop, routing and destination options headers. Any other next header is ErrNextHeader.
func transportHeader(pkt []byte) (proto uint8, at int, err error) {
	next, at := pkt[ipv6NextHeaderAt], ipv6HeaderLen
	for {
		switch next {
		case protoTCP, protoUDP:
			return next, at, nil
		case protoHopByHop, protoRouting, protoDestOptions:
			// Each of these is at least 8 bytes, so the loop ends within len(pkt)/8 rounds.
			if len(pkt)-at < 8 {
				return 0, 0, ErrShortPacket
			}
			extLen := 8 * (int(pkt[at+1]) + 1)
			if len(pkt)-at < extLen {
				return 0, 0, ErrShortPacket
			}
			next, at = pkt[at], at+extLen
		default:
			return 0, 0, ErrNextHeader
		}
	}
}

// Segments returns how many packets Split produces for pkt: 1 for GSONone, ceil(payload/gso_size)
// for GSOTCPv6 and GSOUDPL4. It is meant for a frame that passed Check, and returns 0 for one that
// does not.
func Segments(h Header, pkt []byte) int {
	l, err := h.check(pkt)
	if err != nil {
		return 0
	}
	return l.segments(h, len(pkt))
}

func (l layout) segments(h Header, pktLen int) int {
	if l.kind == kindCopy || l.kind == kindComplete {
		return 1
	}
	payload, size := pktLen-l.headerLen, int(h.GSOSize)
	return (payload + size - 1) / size
}

// Split writes the packets that the frame [h ‖ pkt] stands for into out[i][offset:], sets sizes[i]
// to each packet's length, and returns their number. Each packet is a complete IPv6 packet with a
// correct payload length and a complete, correct TCP or UDP checksum:
//
//   - GSONone without FlagNeedsCsum: pkt is copied as it is, checksum included.
//   - GSONone with FlagNeedsCsum: pkt is copied and its checksum completed the way the kernel does:
//     the field holds the (uncomplemented) pseudo-header sum, the checksum is computed over
//     pkt[csum_start:] with that field as it is, and its complement stored (0 is sent as 0xffff).
//   - GSOTCPv6 and GSOUDPL4: each segment gets the IPv6 and transport headers of pkt and at most
//     gso_size bytes of its payload, its own IPv6 payload length, and a checksum computed from
//     scratch (pseudo-header with the segment's length, header, payload). TCP: the sequence number
//     advances by gso_size per segment, FIN and PSH stay on the last segment only, CWR on the first
//     only. UDP: the length field is the segment's.
//
// Split calls Check first and returns its error. It returns ErrTooFewBuffers if out or sizes has
// fewer than Segments(h, pkt) elements, ErrBufferTooSmall if an out[i] has fewer than offset plus the
// segment's size bytes; it checks them all before writing anything, and on error returns 0 and writes
// nothing. Only out[i][offset:offset+sizes[i]] and sizes[:n] are written; pkt is only read. The out
// buffers must not overlap pkt, except that out[0][offset:] may start at pkt[0] (splitting in place
// into the first buffer). Split does not allocate.
func Split(h Header, pkt []byte, out [][]byte, sizes []int, offset int) (int, error) {
	l, err := h.check(pkt)
	if err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, ErrNegativeOffset
	}
	n := l.segments(h, len(pkt))
	if len(out) < n || len(sizes) < n {
		return 0, ErrTooFewBuffers
	}
	switch l.kind {
	case kindCopy, kindComplete:
		if len(out[0])-offset < len(pkt) {
			return 0, ErrBufferTooSmall
		}
		dst := out[0][offset : offset+len(pkt)]
		copy(dst, pkt)
		if l.kind == kindComplete {
			storeChecksum(dst[l.checksumAt:], checksum.Checksum(dst[h.CsumStart:], 0))
		}
		sizes[0] = len(pkt)
		return 1, nil
	case kindTCP, kindUDP:
		return l.splitGSO(h, pkt, out[:n], sizes[:n], offset)
	}
	return 0, errUnreachableKind
}

// splitGSO splits a GSO packet that passed Check into out, which has exactly the number of segments.
func (l layout) splitGSO(h Header, pkt []byte, out [][]byte, sizes []int, offset int) (int, error) {
	segmentPayload := int(h.GSOSize)
	lastPayload := len(pkt) - l.headerLen - (len(out)-1)*segmentPayload
	for i := range out {
		need := l.headerLen + segmentPayload
		if i == len(out)-1 {
			need = l.headerLen + lastPayload
		}
		if len(out[i])-offset < need {
			return 0, ErrBufferTooSmall
		}
	}

	// Everything read from pkt's headers is read before the first write: out[0] may alias pkt.
	proto := uint8(protoTCP)
	if l.kind == kindUDP {
		proto = protoUDP
	}
	addressSum := checksum.Checksum(pkt[ipv6AddrsAt:ipv6AddrsEnd], 0)
	pseudoSum := checksum.Combine(addressSum, uint16(proto))
	var firstSeq uint32
	var flags uint8
	if l.kind == kindTCP { // a UDP packet may end before where TCP's fields would be
		firstSeq = binary.BigEndian.Uint32(pkt[ipv6HeaderLen+tcpSeqAt:])
		flags = pkt[ipv6HeaderLen+tcpFlagsAt]
	}

	payloadAt := l.headerLen
	for i := range out {
		payloadLen := segmentPayload
		if i == len(out)-1 {
			payloadLen = lastPayload
		}
		size := l.headerLen + payloadLen
		seg := out[i][offset : offset+size]
		copy(seg[:l.headerLen], pkt[:l.headerLen])
		copy(seg[l.headerLen:], pkt[payloadAt:payloadAt+payloadLen])
		payloadAt += payloadLen

		transportLen := size - ipv6HeaderLen // <= 65535: Check bounded len(pkt) and gso_size
		binary.BigEndian.PutUint16(seg[ipv6PayloadLenAt:], uint16(transportLen))
		transport := seg[ipv6HeaderLen:]
		if l.kind == kindTCP {
			binary.BigEndian.PutUint32(transport[tcpSeqAt:], firstSeq+uint32(i)*uint32(segmentPayload))
			segFlags := flags
			if i != len(out)-1 {
				segFlags &^= tcpFlagFIN | tcpFlagPSH
			}
			if i != 0 {
				segFlags &^= tcpFlagCWR
			}
			transport[tcpFlagsAt] = segFlags
		} else {
			binary.BigEndian.PutUint16(transport[udpLengthAt:], uint16(transportLen))
		}
		field := seg[l.checksumAt:]
		field[0], field[1] = 0, 0
		sum := checksum.Checksum(transport, checksum.Combine(pseudoSum, uint16(transportLen)))
		storeChecksum(field, sum)
		sizes[i] = size
	}
	return len(out), nil
}

// storeChecksum stores the complement of the one's-complement sum in field. A result of 0 is stored
// as 0xffff, as the kernel does: the same value for TCP, and required for UDP over IPv6, where a
// zero checksum means "none" and is dropped.
func storeChecksum(field []byte, sum uint16) {
	c := ^sum
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(field, c)
}
