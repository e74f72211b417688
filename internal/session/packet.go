package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Wire format constants (docs/transport.md, "Data packet").
const (
	// TypeData is the message type byte of a transport data packet.
	TypeData = 4
	// TypeTransit is the message type byte of a transit packet: a sealed head followed by another
	// session's data packet, bound but not encrypted again (docs/transport.md, "Transit packet").
	TypeTransit = 5
	// TypeBurst is the message type byte of a burst packet: an end-to-end data packet whose plaintext
	// is a whole offloaded TCP burst with its virtio-net header (docs/transport.md, "Bursts").
	TypeBurst = 6
	// TypeFragment is the message type byte of a fragment transit packet: a sealed head followed by a
	// piece of a burst packet, bound but not encrypted again (docs/transport.md, "Bursts").
	TypeFragment = 7
	// HeaderSize is the size of the authenticated cleartext header.
	HeaderSize = 16
	// TagSize is the size of the AEAD authentication tag.
	TagSize = 16
	// MinPacketSize is the size of a keepalive (empty plaintext).
	MinPacketSize = HeaderSize + TagSize
	// MaxPacketSize is the largest data packet accepted or produced.
	MaxPacketSize = 65535
	// MaxPlaintextSize is the largest plaintext one packet can carry.
	MaxPlaintextSize = MaxPacketSize - HeaderSize - TagSize
	// TransitOverhead is what a transit packet adds to its head and inner packet: the header and the
	// head's tag.
	TransitOverhead = HeaderSize + TagSize
	// FragmentHeaderSize is the size of the header that places a piece in its burst packet.
	FragmentHeaderSize = 8
	// FragmentPrefixSize is what precedes a piece behind the sealed head of a fragment transit packet:
	// the burst packet's header and the fragment header.
	FragmentPrefixSize = HeaderSize + FragmentHeaderSize
	// MaxFragments is the most pieces a burst packet is cut into.
	MaxFragments = 64
	// FragmentUnit is the granularity of piece offsets: every piece but the last has a multiple of it
	// as its length.
	FragmentUnit = 8
)

// Counter and timer limits (WireGuard's values).
const (
	// RekeyAfterMessages: after sealing this many packets under one keypair, ask for a rekey.
	RekeyAfterMessages uint64 = 1 << 60
	// RejectAfterMessages: no packet is sealed or accepted with a counter at or above this.
	RejectAfterMessages uint64 = math.MaxUint64 - (1 << 13)
	// RekeyAfterTime: the initiator of a keypair asks for a rekey once it is this old.
	RekeyAfterTime = 120 * time.Second
	// RejectAfterTime: a keypair this old neither seals nor opens, and is wiped.
	RejectAfterTime = 180 * time.Second
	// KeepaliveTimeout: if data was received and nothing was sent for this long, send a keepalive.
	KeepaliveTimeout = 10 * time.Second
	// RekeyTimeout is WireGuard's handshake retry interval; data sent without any packet in return
	// for KeepaliveTimeout+RekeyTimeout asks for a new handshake (the peer may have lost its keys,
	// e.g. by restarting), and again every such period while nothing comes back.
	RekeyTimeout = 5 * time.Second
)

// Errors. All per-packet errors are package-level values so that rejecting a packet never allocates.
var (
	// ErrMalformed is wrapped by every header decoding error.
	ErrMalformed = errors.New("session: malformed data packet")
	// ErrUnknownIndex: the receiver index names no keypair of this session.
	ErrUnknownIndex = errors.New("session: unknown receiver index")
	// ErrReplay: the counter was already accepted or is older than the replay window.
	ErrReplay = errors.New("session: replayed or too old packet")
	// ErrAuth: the packet failed AEAD authentication.
	ErrAuth = errors.New("session: packet authentication failed")
	// ErrNoKey: there is no keypair to seal with.
	ErrNoKey = errors.New("session: no current keypair")
	// ErrKeyExpired: the keypair is older than RejectAfterTime or has been wiped.
	ErrKeyExpired = errors.New("session: keypair expired")
	// ErrCounterExhausted: the keypair has sealed RejectAfterMessages packets.
	ErrCounterExhausted = errors.New("session: send counter exhausted")
	// ErrTooLarge: the plaintext does not fit in MaxPacketSize.
	ErrTooLarge = errors.New("session: plaintext too large")
	// ErrClosed: the session has been closed.
	ErrClosed = errors.New("session: closed")

	errShort    = fmt.Errorf("%w: shorter than %d bytes", ErrMalformed, MinPacketSize)
	errLong     = fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxPacketSize)
	errType     = fmt.Errorf("%w: not a data packet", ErrMalformed)
	errTransit  = fmt.Errorf("%w: not a transit packet", ErrMalformed)
	errShortTr  = fmt.Errorf("%w: transit packet too short for its head and an inner packet", ErrMalformed)
	errInner    = fmt.Errorf("%w: transit packet's inner packet is not a data packet", ErrMalformed)
	errBurst    = fmt.Errorf("%w: not a burst packet", ErrMalformed)
	errFragment = fmt.Errorf("%w: fragment transit packet's piece is malformed", ErrMalformed)
	errReserved = fmt.Errorf("%w: reserved bytes not zero", ErrMalformed)
	errCounter  = fmt.Errorf("%w: counter beyond limit", ErrMalformed)
)

// DataHeader is the decoded cleartext header of a data packet.
type DataHeader struct {
	Receiver uint32 // the receiver's local index
	Counter  uint64 // per-keypair packet counter, also the AEAD nonce
}

// ParseDataHeader validates the framing of a whole data packet and decodes its header. It checks
// length bounds, type, reserved bytes and the counter limit; it does no cryptography.
func ParseDataHeader(packet []byte) (DataHeader, error) {
	return parseSealed(packet, TypeData, errType)
}

// ParseBurstHeader is ParseDataHeader for a burst packet (type 6).
func ParseBurstHeader(packet []byte) (DataHeader, error) {
	return parseSealed(packet, TypeBurst, errBurst)
}

// parseSealed checks the framing of a whole packet of type typ (one sealed plaintext: data or burst)
// and decodes its header; errWrongType is its error for another type.
func parseSealed(packet []byte, typ byte, errWrongType error) (DataHeader, error) {
	switch {
	case len(packet) < MinPacketSize:
		return DataHeader{}, errShort
	case len(packet) > MaxPacketSize:
		return DataHeader{}, errLong
	case packet[0] != typ:
		return DataHeader{}, errWrongType
	}
	return parseHeader(packet)
}

// ParseTransitHeader validates the framing of a whole transit packet (type 5) or fragment transit
// packet (type 7) whose sealed head is headSize bytes of plaintext, including what follows the head
// (an inner data packet's header, or a piece with its prefix), and decodes the outer header. It does
// no cryptography.
func ParseTransitHeader(packet []byte, headSize int) (DataHeader, error) {
	switch {
	case headSize < 0 || len(packet) < TransitOverhead+headSize+FragmentPrefixSize+1:
		// The shortest either kind can be: a piece of one byte (a type-5 inner packet is longer).
		return DataHeader{}, errShortTr
	case len(packet) > MaxPacketSize:
		return DataHeader{}, errLong
	}
	inner := packet[TransitOverhead+headSize:]
	switch packet[0] {
	case TypeTransit:
		if len(inner) < MinPacketSize {
			return DataHeader{}, errShortTr
		}
		if _, err := ParseDataHeader(inner); err != nil {
			return DataHeader{}, errInner
		}
	case TypeFragment:
		if _, _, err := ParseFragment(inner); err != nil {
			return DataHeader{}, err
		}
	default:
		return DataHeader{}, errTransit
	}
	return parseHeader(packet)
}

// Fragment places one piece in its burst packet (docs/transport.md, "Bursts").
type Fragment struct {
	Burst  DataHeader // the burst packet's header: its end-to-end receiver index and counter
	Total  int        // length of the whole burst packet
	Offset int        // where the piece starts in it, a multiple of FragmentUnit
	Index  int        // the piece's number, from 0
	Count  int        // how many pieces the burst packet has, 1 to MaxFragments
}

// ParseFragment validates what follows the sealed head of a fragment transit packet — the burst
// packet's header, the fragment header and the piece — and returns the fragment and the piece. It
// checks that the piece lies inside the burst, that the last piece ends it and that no other piece
// does; the bytes themselves are authenticated only when the whole burst packet is opened.
func ParseFragment(inner []byte) (Fragment, []byte, error) {
	if len(inner) <= FragmentPrefixSize || inner[0] != TypeBurst {
		return Fragment{}, nil, errFragment
	}
	h, err := parseHeader(inner)
	if err != nil {
		return Fragment{}, nil, err
	}
	b := inner[HeaderSize:FragmentPrefixSize]
	f := Fragment{
		Burst:  h,
		Total:  int(binary.LittleEndian.Uint32(b[0:4])),
		Offset: int(binary.LittleEndian.Uint16(b[4:6])) * FragmentUnit,
		Index:  int(b[6]),
		Count:  int(b[7]),
	}
	piece := inner[FragmentPrefixSize:]
	if !f.fits(len(piece)) {
		return Fragment{}, nil, errFragment
	}
	return f, piece, nil
}

// fits reports whether a piece of size bytes can be the one f describes.
func (f Fragment) fits(size int) bool {
	end := f.Offset + size
	last := f.Index == f.Count-1
	return f.Total >= MinPacketSize && f.Total <= MaxPacketSize &&
		f.Count >= 1 && f.Count <= MaxFragments && f.Index >= 0 && f.Index < f.Count &&
		f.Offset >= 0 && f.Offset%FragmentUnit == 0 && f.Offset/FragmentUnit <= 0xffff &&
		size >= 1 && end <= f.Total && (end == f.Total) == last &&
		(f.Index == 0) == (f.Offset == 0) && (last || size%FragmentUnit == 0)
}

// put writes the burst packet's header and the fragment header into b[:FragmentPrefixSize].
func (f Fragment) put(b []byte) {
	_ = b[FragmentPrefixSize-1]
	f.Burst.putType(b, TypeBurst)
	binary.LittleEndian.PutUint32(b[16:20], uint32(f.Total))
	binary.LittleEndian.PutUint16(b[20:22], uint16(f.Offset/FragmentUnit))
	b[22], b[23] = byte(f.Index), byte(f.Count)
}

// parseHeader checks the reserved bytes and the counter of a header whose type and length are
// already checked, and decodes it.
func parseHeader(packet []byte) (DataHeader, error) {
	if packet[1]|packet[2]|packet[3] != 0 {
		return DataHeader{}, errReserved
	}
	h := DataHeader{
		Receiver: binary.LittleEndian.Uint32(packet[4:8]),
		Counter:  binary.LittleEndian.Uint64(packet[8:16]),
	}
	if h.Counter >= RejectAfterMessages {
		return DataHeader{}, errCounter
	}
	return h, nil
}

// put writes the header of a data packet into b[:HeaderSize].
func (h DataHeader) put(b []byte) { h.putType(b, TypeData) }

// putType writes the header with message type typ into b[:HeaderSize].
func (h DataHeader) putType(b []byte, typ byte) {
	_ = b[HeaderSize-1]
	b[0] = typ
	b[1], b[2], b[3] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[4:8], h.Receiver)
	binary.LittleEndian.PutUint64(b[8:16], h.Counter)
}

// AppendHeader appends the encoded header to b.
func (h DataHeader) AppendHeader(b []byte) []byte {
	var hdr [HeaderSize]byte
	h.put(hdr[:])
	return append(b, hdr[:]...)
}

// PieceSize returns the largest piece length, a multiple of FragmentUnit, that keeps a fragment
// transit packet with a head of headSize bytes within datagram bytes.
func PieceSize(datagram, headSize int) int {
	p := datagram - TransitOverhead - headSize - FragmentPrefixSize
	return p - p%FragmentUnit
}

// Pieces returns how many pieces of pieceSize bytes a burst packet of total bytes is cut into; more
// than MaxFragments means it cannot be sent whole.
func Pieces(total, pieceSize int) int { return (total + pieceSize - 1) / pieceSize }

// Cut describes piece i of a burst packet with header h and total bytes cut into pieces of pieceSize
// bytes (a multiple of FragmentUnit, see Pieces): the piece is packet[f.Offset:end].
func Cut(h DataHeader, total, pieceSize, i int) (f Fragment, end int) {
	f = Fragment{Burst: h, Total: total, Offset: i * pieceSize, Index: i, Count: Pieces(total, pieceSize)}
	return f, min(f.Offset+pieceSize, total)
}
