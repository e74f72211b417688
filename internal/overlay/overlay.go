// Package overlay defines the frames that travel inside a link session between two neighbours: IPv6
// packets for the neighbour itself, routed messages for a node further away, link-state records,
// probes that measure the link, revocation lists and access policies.
//
// It only encodes and decodes; it must never allocate on the decode path, never trust a length it has
// not checked, and never interpret the payload of a routed message (that belongs to the end-to-end
// session, whose keys the relays do not have).
package overlay

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Type is the first byte of every frame.
type Type uint8

// Frame types.
const (
	TypeDirect    Type = 1  // an IPv6 packet whose source or destination is the neighbour itself
	TypeRouted    Type = 2  // a message for another node: header + opaque end-to-end payload
	TypeLinkState Type = 3  // a routing message (internal/routing)
	TypeProbe     Type = 4  // link measurement request
	TypeProbeAck  Type = 5  // link measurement reply
	TypeCRL       Type = 6  // a revocation list being spread over the mesh
	TypeBurstLost Type = 7  // a burst the neighbour sent us whole was lost: split them for a while
	TypeBurstOK   Type = 8  // the neighbour's burst probe arrived: bursts work on this link
	TypeObserved  Type = 9  // the UDP address the neighbour sees our packets come from
	TypePolicy    Type = 10 // a signed access policy being spread over the mesh
	TypeDecision  Type = 11 // a governance quorum certificate being spread over the mesh
	TypePiece     Type = 12 // a piece of a larger frame, reassembled by the neighbour (internal/linkfrag)
)

// lastType is the highest frame type this build knows.
const lastType = TypePiece

// Sizes.
const (
	RoutedHeaderSize = 36 // type, hop limit, 2 reserved, source (16), destination (16)
	ProbeSize        = 14 // type, reserved, id (4), timestamp (8)
	ObservedSize     = 20 // type, reserved, port (2), address (16)
	// DefaultHopLimit is the hop limit a source puts on a routed message.
	DefaultHopLimit = 32
)

// Errors. Fixed values, so rejecting a frame never allocates.
var (
	ErrEmpty       = errors.New("overlay: empty frame")
	ErrUnknownType = errors.New("overlay: unknown frame type")
	ErrShort       = errors.New("overlay: frame too short")
	ErrReserved    = errors.New("overlay: reserved bits set")
	ErrHopLimit    = errors.New("overlay: hop limit exhausted")
	ErrAddress     = errors.New("overlay: address outside the overlay prefix")
	ErrLength      = errors.New("overlay: wrong frame length")
)

// FrameType returns the type of a frame after checking it is one this build knows.
func FrameType(frame []byte) (Type, error) {
	if len(frame) == 0 {
		return 0, ErrEmpty
	}
	t := Type(frame[0])
	if t < TypeDirect || t > lastType {
		return 0, ErrUnknownType
	}
	return t, nil
}

// RoutedHeader is the clear header of a routed message. Relays read it to forward; the payload is an
// end-to-end handshake or transport packet.
type RoutedHeader struct {
	HopLimit uint8
	Src, Dst netip.Addr // overlay addresses of the end-to-end session's two ends
}

// prefix is the overlay prefix fd74::/16 (internal/identity.OverlayPrefix), checked by byte compare.
const prefix0, prefix1 = 0xfd, 0x74

// ParseRouted splits a routed frame into its header and payload (a sub-slice of frame).
func ParseRouted(frame []byte) (RoutedHeader, []byte, error) {
	if len(frame) < RoutedHeaderSize+1 {
		return RoutedHeader{}, nil, ErrShort
	}
	h, err := ParseRoutedHeader(frame[:RoutedHeaderSize])
	if err != nil {
		return RoutedHeader{}, nil, err
	}
	return h, frame[RoutedHeaderSize:], nil
}

// ParseRoutedHeader decodes a routed header on its own: the sealed head of a transit packet
// (docs/transport.md), which carries its payload outside the frame.
func ParseRoutedHeader(head []byte) (RoutedHeader, error) {
	if len(head) != RoutedHeaderSize {
		return RoutedHeader{}, ErrShort
	}
	if Type(head[0]) != TypeRouted {
		return RoutedHeader{}, ErrUnknownType
	}
	if head[2] != 0 || head[3] != 0 {
		return RoutedHeader{}, ErrReserved
	}
	if head[4] != prefix0 || head[5] != prefix1 || head[20] != prefix0 || head[21] != prefix1 {
		return RoutedHeader{}, ErrAddress
	}
	h := RoutedHeader{
		HopLimit: head[1],
		Src:      netip.AddrFrom16([16]byte(head[4:20])),
		Dst:      netip.AddrFrom16([16]byte(head[20:36])),
	}
	if h.HopLimit == 0 {
		return RoutedHeader{}, ErrHopLimit
	}
	return h, nil
}

// AppendRouted appends a routed frame header to b; the caller appends the payload.
func AppendRouted(b []byte, h RoutedHeader) []byte {
	src, dst := h.Src.As16(), h.Dst.As16()
	b = append(b, byte(TypeRouted), h.HopLimit, 0, 0)
	b = append(b, src[:]...)
	return append(b, dst[:]...)
}

// DecrementHopLimit lowers the hop limit of a routed frame in place before it is relayed, and reports
// false when it has run out (the frame must then be dropped).
func DecrementHopLimit(frame []byte) bool {
	if len(frame) < RoutedHeaderSize || frame[1] <= 1 {
		return false
	}
	frame[1]--
	return true
}

// Probe is a link measurement: the sender's id and timestamp, echoed back unchanged in the ack.
type Probe struct {
	ID   uint32
	Sent int64 // sender's monotonic clock, nanoseconds; meaningful only to the sender
}

// AppendProbe appends a probe (ack false) or probe ack (ack true) frame.
func AppendProbe(b []byte, p Probe, ack bool) []byte {
	t := TypeProbe
	if ack {
		t = TypeProbeAck
	}
	b = append(b, byte(t), 0)
	b = binary.LittleEndian.AppendUint32(b, p.ID)
	return binary.LittleEndian.AppendUint64(b, uint64(p.Sent))
}

// ParseProbe decodes a probe or probe ack frame.
func ParseProbe(frame []byte) (p Probe, ack bool, err error) {
	if len(frame) != ProbeSize {
		return Probe{}, false, ErrLength
	}
	switch Type(frame[0]) {
	case TypeProbe:
	case TypeProbeAck:
		ack = true
	default:
		return Probe{}, false, ErrUnknownType
	}
	if frame[1] != 0 {
		return Probe{}, false, ErrReserved
	}
	p.ID = binary.LittleEndian.Uint32(frame[2:6])
	p.Sent = int64(binary.LittleEndian.Uint64(frame[6:14]))
	return p, ack, nil
}

// AppendObserved appends an observed-address frame: we see the neighbour's authenticated packets
// come from addr. It is how a node behind a NAT learns its public address (docs/connectivity.md).
func AppendObserved(b []byte, addr netip.AddrPort) []byte {
	a := addr.Addr().As16()
	b = append(b, byte(TypeObserved), 0)
	b = binary.BigEndian.AppendUint16(b, addr.Port())
	return append(b, a[:]...)
}

// ParseObserved decodes an observed-address frame. IPv4 addresses come back unmapped.
func ParseObserved(frame []byte) (netip.AddrPort, error) {
	switch {
	case len(frame) != ObservedSize:
		return netip.AddrPort{}, ErrLength
	case Type(frame[0]) != TypeObserved:
		return netip.AddrPort{}, ErrUnknownType
	case frame[1] != 0:
		return netip.AddrPort{}, ErrReserved
	}
	addr := netip.AddrFrom16([16]byte(frame[4:20])).Unmap()
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(frame[2:4])), nil
}

// Payload returns the body of a direct, link-state, CRL or policy frame.
func Payload(frame []byte) ([]byte, error) {
	t, err := FrameType(frame)
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeDirect, TypeLinkState, TypeCRL, TypePolicy, TypeDecision:
		if len(frame) < 2 {
			return nil, ErrShort
		}
		return frame[1:], nil
	}
	return nil, ErrUnknownType
}
