package firewall

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IP protocol numbers the firewall knows.
const (
	ProtoHopByHop = 0
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDestOpts = 60
)

// ICMPv6 message types the firewall treats specially.
const (
	ICMPDestUnreachable = 1
	ICMPPacketTooBig    = 2
	ICMPTimeExceeded    = 3
	ICMPParamProblem    = 4
	ICMPEchoRequest     = 128
	ICMPEchoReply       = 129
)

// TCP flag bits (byte 13 of the TCP header).
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPAck = 0x10
)

const (
	ipv6HeaderLen = 40
	// MaxExtensionHeaders bounds the extension headers walked before the upper-layer header.
	MaxExtensionHeaders = 8
)

// Parse errors. All are package-level values (so refusing garbage allocates nothing) and all wrap
// ErrMalformed.
var (
	ErrMalformed         = errors.New("malformed IPv6 packet")
	ErrShort             = wrap("shorter than an IPv6 header")
	ErrVersion           = wrap("IP version is not 6")
	ErrLength            = wrap("payload length does not match the packet size")
	ErrExtensionHeader   = wrap("truncated extension header")
	ErrHopByHopPosition  = wrap("hop-by-hop options header not first")
	ErrTooManyExtHeaders = wrap("more than 8 extension headers")
	ErrTwoFragmentHeader = wrap("more than one fragment header")
	ErrTransportHeader   = wrap("truncated TCP, UDP or ICMPv6 header")
	ErrTCPDataOffset     = wrap("TCP data offset below 5")
	ErrUDPLength         = wrap("UDP length does not match the packet")
)

type parseError struct{ msg string }

func (e *parseError) Error() string { return "malformed IPv6 packet: " + e.msg }
func (e *parseError) Unwrap() error { return ErrMalformed }

func wrap(msg string) error { return &parseError{msg} }

// Fragment says whether a packet is a fragment and which kind.
type Fragment uint8

// Fragment kinds.
const (
	NotFragment   Fragment = iota
	FirstFragment          // fragment offset 0: carries the upper-layer header
	LaterFragment          // fragment offset > 0: no upper-layer header, no ports
)

// Packet is what the firewall reads from an IPv6 packet.
type Packet struct {
	Src, Dst netip.Addr
	// Proto is the upper-layer protocol after the extension headers; for a later fragment, the
	// fragment header's next header (possibly an extension header of the fragmentable part).
	Proto uint8
	// SrcPort and DstPort are set for TCP and UDP (not for later fragments).
	SrcPort, DstPort uint16
	// TCPFlags is byte 13 of the TCP header.
	TCPFlags uint8
	// ICMPType and ICMPCode are set for ICMPv6; ICMPID for echo requests and replies.
	ICMPType, ICMPCode uint8
	ICMPID             uint16
	Fragment           Fragment
	FragmentID         uint32
	// LastFragment is true for a fragment whose more-fragments flag is clear.
	LastFragment bool
	// upper is the offset of the upper-layer header, 0 when there is none.
	upper int
}

// HasPorts reports whether the packet carries TCP or UDP ports.
func (p *Packet) HasPorts() bool {
	return (p.Proto == ProtoTCP || p.Proto == ProtoUDP) && p.Fragment != LaterFragment
}

// IsICMPError reports whether the packet is an ICMPv6 error message that quotes another packet.
func (p *Packet) IsICMPError() bool {
	return p.Proto == ProtoICMPv6 && p.Fragment != LaterFragment && p.ICMPType >= ICMPDestUnreachable && p.ICMPType <= ICMPParamProblem
}

// ParsePacket parses an IPv6 packet: the fixed header, the extension-header chain (at most
// MaxExtensionHeaders) and the first bytes of the TCP, UDP or ICMPv6 header. It checks that the
// payload length matches len(b) exactly. It never allocates and never reads outside b.
func ParsePacket(b []byte) (Packet, error) {
	return parse(b, false)
}

// parse parses b. quoted is set for the packet quoted inside an ICMPv6 error: it may be truncated
// anywhere after the ports (or echo identifier), so lengths are not checked against the packet.
func parse(b []byte, quoted bool) (Packet, error) {
	var p Packet
	if len(b) < ipv6HeaderLen {
		return p, ErrShort
	}
	if b[0]>>4 != 6 {
		return p, ErrVersion
	}
	if !quoted && int(binary.BigEndian.Uint16(b[4:6])) != len(b)-ipv6HeaderLen {
		return p, ErrLength
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	off := ipv6HeaderLen
	exts := 0
walk:
	for {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts, ProtoAH:
			if next == ProtoHopByHop && off != ipv6HeaderLen {
				return p, ErrHopByHopPosition
			}
			if len(b)-off < 8 {
				return p, ErrExtensionHeader
			}
			n := (int(b[off+1]) + 1) * 8
			if next == ProtoAH {
				n = (int(b[off+1]) + 2) * 4
			}
			if len(b)-off < n {
				return p, ErrExtensionHeader
			}
			next = b[off]
			off += n
		case ProtoFragment:
			if p.Fragment != NotFragment {
				return p, ErrTwoFragmentHeader
			}
			if len(b)-off < 8 {
				return p, ErrExtensionHeader
			}
			fo := binary.BigEndian.Uint16(b[off+2 : off+4])
			p.FragmentID = binary.BigEndian.Uint32(b[off+4 : off+8])
			p.LastFragment = fo&1 == 0
			next = b[off]
			off += 8
			if fo>>3 != 0 {
				p.Fragment = LaterFragment
				p.Proto = next
				return p, nil
			}
			p.Fragment = FirstFragment
		default:
			break walk
		}
		exts++
		if exts > MaxExtensionHeaders {
			return p, ErrTooManyExtHeaders
		}
	}
	p.Proto = next
	rest := b[off:]
	switch next {
	case ProtoTCP:
		need := 20
		if quoted {
			need = 4
		}
		if len(rest) < need {
			return p, ErrTransportHeader
		}
		p.SrcPort = binary.BigEndian.Uint16(rest[0:2])
		p.DstPort = binary.BigEndian.Uint16(rest[2:4])
		if !quoted {
			doff := int(rest[12]>>4) * 4
			if doff < 20 {
				return p, ErrTCPDataOffset
			}
			if len(rest) < doff {
				return p, ErrTransportHeader
			}
			p.TCPFlags = rest[13]
		}
	case ProtoUDP:
		need := 8
		if quoted {
			need = 4
		}
		if len(rest) < need {
			return p, ErrTransportHeader
		}
		p.SrcPort = binary.BigEndian.Uint16(rest[0:2])
		p.DstPort = binary.BigEndian.Uint16(rest[2:4])
		if !quoted && p.Fragment == NotFragment && int(binary.BigEndian.Uint16(rest[4:6])) != len(rest) {
			return p, ErrUDPLength
		}
	case ProtoICMPv6:
		if len(rest) < 4 {
			return p, ErrTransportHeader
		}
		p.ICMPType, p.ICMPCode = rest[0], rest[1]
		switch {
		case p.ICMPType == ICMPEchoRequest || p.ICMPType == ICMPEchoReply:
			if len(rest) < 8 {
				return p, ErrTransportHeader
			}
			p.ICMPID = binary.BigEndian.Uint16(rest[4:6])
		case p.ICMPType >= ICMPDestUnreachable && p.ICMPType <= ICMPParamProblem:
			if !quoted && len(rest) < 8 {
				return p, ErrTransportHeader
			}
		}
	}
	p.upper = off
	return p, nil
}

// quotedPacket parses the packet quoted by an ICMPv6 error p taken from b. It reports false when
// there is none that can be matched (truncated, itself an ICMPv6 error, or a later fragment).
func quotedPacket(b []byte, p *Packet) (Packet, bool) {
	if !p.IsICMPError() || p.upper == 0 || len(b) < p.upper+8 {
		return Packet{}, false
	}
	q, err := parse(b[p.upper+8:], true)
	if err != nil || q.Fragment == LaterFragment || q.IsICMPError() {
		return Packet{}, false
	}
	return q, true
}
