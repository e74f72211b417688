package session

import (
	"errors"
	"time"
)

// Sealing and opening in two steps, for a caller that seals or opens a batch of packets on several
// goroutines, as wireguard-go's encryption and decryption workers do. The step that changes the
// session's shared state (taking a send counter; the replay window, keypair confirmation and
// timers) runs on the caller's goroutine, and only the AEAD work runs in parallel. Seal and Open
// are safe for concurrent use too, but every call writes to the keypair (its counter, its replay
// window's lock), and with two cores taking turns at those cache lines a packet costs more than
// the AEAD the second core saved.

var errReservationUsed = errors.New("session: reservation already sealed or empty")

// Reservation is a send counter of the current keypair taken for one packet (Reserve).
type Reservation struct {
	s   *Session
	kp  *keypair
	c   *aeads // nil once sealed
	ctr uint64
	typ byte
}

// Reserve is the first half of Seal (burst false) or SealBurst (burst true): it takes the next
// send counter of the current keypair and runs the keepalive timers as sealing a data packet does.
// It fails as Seal fails. A reservation that is never sealed leaves a gap in the counters, which the
// peer's replay window ignores.
func (s *Session) Reserve(burst bool, now time.Time) (Reservation, error) {
	kp, c, ctr, err := s.reserve(now)
	if err != nil {
		return Reservation{}, err
	}
	s.sent(true, now)
	typ := byte(TypeData)
	if burst {
		typ = TypeBurst
	}
	return Reservation{s: s, kp: kp, c: c, ctr: ctr, typ: typ}, nil
}

// Seal is the second half: it appends the packet sealing plaintext to dst exactly as Seal or
// SealBurst would have (plaintext may alias dst[len(dst)+HeaderSize:] exactly, and nothing is
// allocated when dst has room for len(plaintext)+MinPacketSize more bytes). It is pure AEAD work, safe
// on any goroutine. A reservation seals once: the counter is never used twice, so a second call
// fails, as does a call after the keypair was wiped. On error dst is returned unchanged.
func (r *Reservation) Seal(dst, plaintext []byte) ([]byte, error) {
	c := r.c
	if c == nil {
		return dst, errReservationUsed
	}
	r.c = nil
	if len(plaintext) > MaxPlaintextSize {
		return dst, ErrTooLarge
	}
	if r.kp.ciphers.Load() == nil {
		return dst, ErrKeyExpired
	}
	sc := r.s.scratch.Get().(*scratch)
	out := sealWith(c.send, r.kp.remoteIndex, r.ctr, dst, r.typ, plaintext, sc, 0)
	r.s.scratch.Put(sc)
	return out, nil
}

// Decrypted is a packet that Decrypt or DecryptTransit authenticated, and that the session has not
// taken in yet (Accept).
type Decrypted struct {
	s       *Session
	kp      *keypair
	counter uint64
	data    bool // not a keepalive
}

// Decrypt is the first half of Open: it authenticates and decrypts a data packet in place and
// returns the plaintext, but changes nothing in the session, and does not consult the replay window.
// It is pure AEAD work, safe on any goroutine. The packet must not be acted on before Accept took it.
func (s *Session) Decrypt(packet []byte, now time.Time) ([]byte, Decrypted, error) {
	h, err := ParseDataHeader(packet)
	if err != nil {
		return nil, Decrypted{}, err
	}
	kp, c, err := s.keypairFor(h, now)
	if err != nil {
		return nil, Decrypted{}, err
	}
	sc := s.scratch.Get().(*scratch)
	pt, err := decryptWith(c.recv, h.Counter, packet[:HeaderSize], packet[HeaderSize:], sc, 0)
	s.scratch.Put(sc)
	if err != nil {
		return nil, Decrypted{}, err
	}
	return pt, Decrypted{s: s, kp: kp, counter: h.Counter, data: len(pt) > 0}, nil
}

// DecryptTransit is Decrypt for a transit or fragment transit packet: the first half of
// OpenTransit.
func (s *Session) DecryptTransit(packet []byte, headSize int, now time.Time) (head, inner []byte, d Decrypted, err error) {
	h, err := ParseTransitHeader(packet, headSize)
	if err != nil {
		return nil, nil, Decrypted{}, err
	}
	kp, c, err := s.keypairFor(h, now)
	if err != nil {
		return nil, nil, Decrypted{}, err
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	inner, aadLen := sc.bindInner(packet, headSize)
	head, err = decryptWith(c.recv, h.Counter, packet[:HeaderSize], packet[HeaderSize:TransitOverhead+headSize], sc, aadLen)
	if err != nil {
		return nil, nil, Decrypted{}, err
	}
	return head, inner, Decrypted{s: s, kp: kp, counter: h.Counter, data: true}, nil
}

// Accept is the second half of an open: it takes a packet this session decrypted into the replay
// window, confirms its keypair and runs the keepalive timers, as Open does. It fails with ErrReplay
// for a packet accepted before (or too old): drop it then.
func (s *Session) Accept(d Decrypted, now time.Time) error {
	if d.s != s || d.kp == nil {
		return ErrUnknownIndex
	}
	return s.accept(d.kp, d.counter, d.data, now)
}
