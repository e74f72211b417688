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
	switch {
	case len(packet) < MinPacketSize:
		return DataHeader{}, errShort
	case len(packet) > MaxPacketSize:
		return DataHeader{}, errLong
	case packet[0] != TypeData:
		return DataHeader{}, errType
	}
	return parseHeader(packet)
}

// ParseTransitHeader validates the framing of a whole transit packet whose sealed head is headSize
// bytes of plaintext, including its inner packet's header, and decodes the outer header. It does
// no cryptography.
func ParseTransitHeader(packet []byte, headSize int) (DataHeader, error) {
	switch {
	case headSize < 0 || len(packet) < TransitOverhead+headSize+MinPacketSize:
		return DataHeader{}, errShortTr
	case len(packet) > MaxPacketSize:
		return DataHeader{}, errLong
	case packet[0] != TypeTransit:
		return DataHeader{}, errTransit
	}
	if _, err := ParseDataHeader(packet[TransitOverhead+headSize:]); err != nil {
		return DataHeader{}, errInner
	}
	return parseHeader(packet)
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
