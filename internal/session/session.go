package session

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrIndexInUse: Install was given a local index that a live keypair of the session already uses.
var ErrIndexInUse = errors.New("session: local index already in use")

// Actions is the set of things Tick asks the owner to do.
type Actions uint8

const (
	// ActionKeepalive: seal and send an empty packet (Seal(dst, nil, now)).
	ActionKeepalive Actions = 1 << iota
	// ActionRekey: run a handshake with the peer and Install its keys.
	ActionRekey
)

// String returns a readable form such as "keepalive|rekey".
func (a Actions) String() string {
	switch a {
	case 0:
		return "none"
	case ActionKeepalive:
		return "keepalive"
	case ActionRekey:
		return "rekey"
	case ActionKeepalive | ActionRekey:
		return "keepalive|rekey"
	}
	return fmt.Sprintf("Actions(%#x)", uint8(a))
}

// Config configures a Session.
type Config struct {
	// Release, if non-nil, is called with the local index of every keypair the session discards
	// (replaced, expired or closed), so the owner can free it in its IndexTable. It is called
	// without any Session lock held, from the goroutine that called Install, Open, Tick or Close.
	Release func(localIndex uint32)
}

// Session is the transport state shared with one peer: up to three keypairs (previous, current,
// next) and the keepalive timer. Seal, Open and Tick are safe for concurrent use.
type Session struct {
	// Keypair slots. Writers hold mu and store in the order previous, current, next; readers
	// (lookup) load in the order next, current, previous. Together this guarantees that a
	// keypair moving between slots is always found by a concurrent reader.
	previous, current, next atomic.Pointer[keypair]

	mu     sync.Mutex // serialises Install, promote, Tick, Close
	closed atomic.Bool

	epoch time.Time
	// recvPending is 1 + nanoseconds since epoch at which data was first received after our
	// last send; 0 if nothing is pending.
	recvPending atomic.Int64
	// sendPending is 1 + nanoseconds since epoch at which data was first sent after the last
	// packet received; 0 if nothing is pending.
	sendPending atomic.Int64

	scratch sync.Pool // *scratch: interface calls make stack nonces and aads escape
	release func(uint32)
}

// New returns a session with no keypairs; Install the first handshake's keys before sealing.
// now anchors the session's timers.
func New(cfg Config, now time.Time) *Session {
	s := &Session{epoch: now, release: cfg.Release}
	s.scratch.New = func() any { return new(scratch) }
	return s
}

// Install adds the keys of a completed handshake (see docs/transport.md for the slot rules) and
// wipes *k. After installing as initiator, call Tick: it reports ActionKeepalive until a packet
// has been sealed under the new keys, so the responder can switch to them.
func (s *Session) Install(k *Keys, now time.Time) error {
	defer k.Wipe()
	kp, err := newKeypair(k, now)
	if err != nil {
		return fmt.Errorf("session: install: %w", err)
	}
	var drop [3]*keypair
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		kp.wipe()
		return ErrClosed
	}
	prev, cur, next := s.previous.Load(), s.current.Load(), s.next.Load()
	for _, old := range [...]*keypair{prev, cur, next} {
		if old != nil && old.localIndex == kp.localIndex {
			s.mu.Unlock()
			kp.wipe()
			return fmt.Errorf("session: install index %#08x: %w", kp.localIndex, ErrIndexInUse)
		}
	}
	if kp.initiator {
		if next != nil {
			// We had an unconfirmed responder keypair and completed our own handshake: the peer
			// is using next, so keep it for receiving (WireGuard's rule).
			s.previous.Store(next)
			s.current.Store(kp)
			s.next.Store(nil)
			drop = [3]*keypair{prev, cur}
		} else {
			s.previous.Store(cur)
			s.current.Store(kp)
			drop = [3]*keypair{prev}
		}
	} else {
		s.previous.Store(nil)
		s.next.Store(kp)
		drop = [3]*keypair{prev, next}
	}
	s.mu.Unlock()
	s.discard(drop[:])
	return nil
}

// discard wipes keypairs and reports their indices to the owner. Call without s.mu held.
func (s *Session) discard(kps []*keypair) {
	for _, kp := range kps {
		if kp == nil {
			continue
		}
		kp.wipe()
		if s.release != nil {
			s.release(kp.localIndex)
		}
	}
}

// Close wipes all keypairs; afterwards Seal, Open and Install fail.
func (s *Session) Close() {
	s.mu.Lock()
	s.closed.Store(true)
	drop := [...]*keypair{s.previous.Load(), s.current.Load(), s.next.Load()}
	s.previous.Store(nil)
	s.current.Store(nil)
	s.next.Store(nil)
	s.mu.Unlock()
	s.discard(drop[:])
}

func (s *Session) lookup(index uint32) *keypair {
	if kp := s.next.Load(); kp != nil && kp.localIndex == index {
		return kp
	}
	if kp := s.current.Load(); kp != nil && kp.localIndex == index {
		return kp
	}
	if kp := s.previous.Load(); kp != nil && kp.localIndex == index {
		return kp
	}
	return nil
}

// scratch is per-operation memory that would escape to the heap if it lived on the stack.
type scratch struct {
	nonce [12]byte
	// aad is a transit packet's aad: its header, then what it binds — the inner packet's header, tag
	// and length (type 5), or the piece's prefix and the length of prefix and piece (type 7).
	aad [3*HeaderSize + 2]byte
}

// setNonce puts the nonce for counter in sc.
func (sc *scratch) setNonce(counter uint64) {
	sc.nonce[0], sc.nonce[1], sc.nonce[2], sc.nonce[3] = 0, 0, 0, 0
	binary.LittleEndian.PutUint64(sc.nonce[4:], counter)
}

// bindTransit writes what a transit packet binds, after the header room in sc.aad: its inner
// packet's header, tag and length (u16 LE; inner packets are at most MaxPacketSize bytes). It returns
// the aad's length.
func (sc *scratch) bindTransit(inner []byte) int {
	copy(sc.aad[HeaderSize:2*HeaderSize], inner[:HeaderSize])
	copy(sc.aad[2*HeaderSize:3*HeaderSize], inner[len(inner)-TagSize:])
	binary.LittleEndian.PutUint16(sc.aad[3*HeaderSize:], uint16(len(inner)))
	return 3*HeaderSize + 2
}

// bindFragment writes what a fragment transit packet binds, after the header room in sc.aad: the
// piece's prefix (burst packet header and fragment header), then the length of prefix and piece
// (u16 LE). It returns the aad's length.
func (sc *scratch) bindFragment(prefix []byte, innerLen int) int {
	copy(sc.aad[HeaderSize:HeaderSize+FragmentPrefixSize], prefix)
	binary.LittleEndian.PutUint16(sc.aad[HeaderSize+FragmentPrefixSize:], uint16(innerLen))
	return HeaderSize + FragmentPrefixSize + 2
}

// Seal encrypts plaintext under the current keypair and appends the whole data packet
// (header ‖ ciphertext ‖ tag) to dst, returning the extended slice. It does not allocate when
// dst has room for len(plaintext)+MinPacketSize more bytes. plaintext may alias
// dst[len(dst)+HeaderSize:] exactly (in-place sealing) but must not overlap dst otherwise.
// An empty plaintext makes a keepalive. On error dst is returned unchanged.
func (s *Session) Seal(dst, plaintext []byte, now time.Time) ([]byte, error) {
	return s.sealPlain(dst, TypeData, plaintext, now)
}

// SealBurst is Seal for a burst packet (type 6): the plaintext is a whole offloaded burst with its
// virtio-net header, and the packet travels cut into fragment transit packets (SealFragment).
func (s *Session) SealBurst(dst, plaintext []byte, now time.Time) ([]byte, error) {
	return s.sealPlain(dst, TypeBurst, plaintext, now)
}

func (s *Session) sealPlain(dst []byte, typ byte, plaintext []byte, now time.Time) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return dst, ErrTooLarge
	}
	sc := s.scratch.Get().(*scratch)
	out, err := s.seal(dst, typ, plaintext, sc, 0, now)
	s.scratch.Put(sc)
	return out, err
}

// SealTransit appends a transit packet to dst: head sealed under the current keypair, bound to
// the inner packet, then the inner packet unchanged. The inner packet is another session's data
// packet (type 5 results: its header and tag are in the aad), or a piece of a burst packet with its
// prefix as a relay received it (type 7: the prefix is in the aad). It does not allocate when dst has
// room for TransitOverhead+len(head)+len(inner) more bytes; neither head nor inner may overlap that
// room. On error dst is returned unchanged.
func (s *Session) SealTransit(dst, head, inner []byte, now time.Time) ([]byte, error) {
	if TransitOverhead+len(head)+len(inner) > MaxPacketSize {
		return dst, ErrTooLarge
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	var typ byte
	var aadLen int
	if len(inner) > 0 && inner[0] == TypeBurst {
		if _, _, err := ParseFragment(inner); err != nil {
			return dst, err
		}
		typ, aadLen = TypeFragment, sc.bindFragment(inner[:FragmentPrefixSize], len(inner))
	} else {
		if _, err := ParseDataHeader(inner); err != nil {
			return dst, errInner
		}
		typ, aadLen = TypeTransit, sc.bindTransit(inner)
	}
	out, err := s.seal(dst, typ, head, sc, aadLen, now)
	if err != nil {
		return dst, err
	}
	return append(out, inner...), nil
}

// SealFragment appends a fragment transit packet to dst: head sealed under the current keypair,
// bound to the piece's place f in its burst packet, then that prefix and the piece. The burst packet
// was sealed by another session (SealBurst); f.Burst is its header. It does not allocate when dst has
// room for TransitOverhead+len(head)+FragmentPrefixSize+len(piece) more bytes. On error dst is
// returned unchanged.
func (s *Session) SealFragment(dst, head []byte, f Fragment, piece []byte, now time.Time) ([]byte, error) {
	if !f.fits(len(piece)) || f.Burst.Counter >= RejectAfterMessages {
		return dst, errFragment
	}
	innerLen := FragmentPrefixSize + len(piece)
	if TransitOverhead+len(head)+innerLen > MaxPacketSize {
		return dst, ErrTooLarge
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	prefix := sc.aad[HeaderSize : HeaderSize+FragmentPrefixSize]
	f.put(prefix)
	aadLen := sc.bindFragment(prefix, innerLen)
	out, err := s.seal(dst, TypeFragment, head, sc, aadLen, now)
	if err != nil {
		return dst, err
	}
	return append(append(out, prefix...), piece...), nil
}

// seal appends a packet of type typ sealing plaintext: a data or burst packet, or (aadLen > 0) the
// sealed head of a transit packet, whose aad is the header followed by what sc.aad already binds.
func (s *Session) seal(dst []byte, typ byte, plaintext []byte, sc *scratch, aadLen int, now time.Time) ([]byte, error) {
	kp, c, ctr, err := s.reserve(now)
	if err != nil {
		return dst, err
	}
	out := sealWith(c.send, kp.remoteIndex, ctr, dst, typ, plaintext, sc, aadLen)
	s.sent(len(plaintext) > 0 || aadLen > 0, now)
	return out, nil
}

// reserve takes the next send counter of the current keypair.
func (s *Session) reserve(now time.Time) (*keypair, *aeads, uint64, error) {
	kp := s.current.Load()
	if kp == nil {
		if s.closed.Load() {
			return nil, nil, 0, ErrClosed
		}
		return nil, nil, 0, ErrNoKey
	}
	c := kp.ciphers.Load()
	if c == nil || kp.expired(now) {
		return nil, nil, 0, ErrKeyExpired
	}
	// Load first so that a flood of Seal calls on an exhausted keypair cannot wrap the counter.
	if kp.sendCounter.Load() >= RejectAfterMessages {
		return nil, nil, 0, ErrCounterExhausted
	}
	ctr := kp.sendCounter.Add(1) - 1
	if ctr >= RejectAfterMessages {
		return nil, nil, 0, ErrCounterExhausted
	}
	return kp, c, ctr, nil
}

// sealWith appends the packet of type typ with counter ctr to the peer's index remote, sealing
// plaintext under send. It is pure AEAD work.
func sealWith(send cipher.AEAD, remote uint32, ctr uint64, dst []byte, typ byte, plaintext []byte, sc *scratch, aadLen int) []byte {
	n := len(dst)
	dst = slices.Grow(dst, MinPacketSize+len(plaintext))[:n+HeaderSize]
	hdr := dst[n : n+HeaderSize]
	DataHeader{Receiver: remote, Counter: ctr}.putType(hdr, typ)
	sc.setNonce(ctr)
	aad := hdr
	if aadLen > 0 {
		copy(sc.aad[:HeaderSize], hdr)
		aad = sc.aad[:aadLen]
	}
	return send.Seal(dst, sc.nonce[:], plaintext, aad)
}

// sent runs the keepalive timers for a packet sealed at now (data: not a keepalive).
func (s *Session) sent(data bool, now time.Time) {
	if s.recvPending.Load() != 0 {
		s.recvPending.Store(0)
	}
	if data && s.sendPending.Load() == 0 {
		s.sendPending.CompareAndSwap(0, s.stamp(now))
	}
}

// Open authenticates and decrypts a data packet in place and returns the plaintext, which
// aliases packet[HeaderSize:]; an empty plaintext is a keepalive. After an error the contents of
// packet are unspecified. Only packets that authenticate change the session's state.
func (s *Session) Open(packet []byte, now time.Time) ([]byte, error) {
	h, err := ParseDataHeader(packet)
	if err != nil {
		return nil, err
	}
	return s.openPlain(h, packet, now)
}

// OpenBurst is Open for a burst packet (type 6), reassembled from its pieces.
func (s *Session) OpenBurst(packet []byte, now time.Time) ([]byte, error) {
	h, err := ParseBurstHeader(packet)
	if err != nil {
		return nil, err
	}
	return s.openPlain(h, packet, now)
}

func (s *Session) openPlain(h DataHeader, packet []byte, now time.Time) ([]byte, error) {
	sc := s.scratch.Get().(*scratch)
	pt, err := s.open(h, packet[:HeaderSize], packet[HeaderSize:], sc, 0, now)
	s.scratch.Put(sc)
	return pt, err
}

// OpenTransit authenticates a transit or fragment transit packet whose head is headSize bytes,
// decrypts the head in place and returns it (aliasing packet[HeaderSize:]) and the inner part (the
// tail of packet): an inner data packet still sealed under its own session, or a piece with its
// prefix (ParseFragment). What the packet binds of the inner part is authenticated; the rest only
// by the inner part's own session. After an error the contents of packet are unspecified.
func (s *Session) OpenTransit(packet []byte, headSize int, now time.Time) (head, inner []byte, err error) {
	h, err := ParseTransitHeader(packet, headSize)
	if err != nil {
		return nil, nil, err
	}
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)
	inner, aadLen := sc.bindInner(packet, headSize)
	head, err = s.open(h, packet[:HeaderSize], packet[HeaderSize:TransitOverhead+headSize], sc, aadLen, now)
	if err != nil {
		return nil, nil, err
	}
	return head, inner, nil
}

// bindInner writes what the transit packet binds of its inner part into sc.aad and returns the inner
// part and the aad's length.
func (sc *scratch) bindInner(packet []byte, headSize int) ([]byte, int) {
	inner := packet[TransitOverhead+headSize:]
	if packet[0] == TypeFragment {
		return inner, sc.bindFragment(inner[:FragmentPrefixSize], len(inner))
	}
	return inner, sc.bindTransit(inner)
}

// Fresh reports whether a packet with header h could still be opened at now: its receiver index
// names a live keypair of the session and the replay window would accept its counter. It changes
// nothing; pieces of a burst packet are collected only while their burst is fresh.
func (s *Session) Fresh(h DataHeader, now time.Time) bool {
	kp := s.lookup(h.Receiver)
	if kp == nil || kp.ciphers.Load() == nil || kp.expired(now) {
		return false
	}
	kp.replayMu.Lock()
	fresh := kp.replay.check(h.Counter)
	kp.replayMu.Unlock()
	return fresh
}

// open authenticates and decrypts body (ciphertext ‖ tag) in place: a data or burst packet's, or
// (aadLen > 0) a transit packet's head, whose aad is its header followed by what sc.aad binds.
func (s *Session) open(h DataHeader, hdr, body []byte, sc *scratch, aadLen int, now time.Time) ([]byte, error) {
	kp, c, err := s.keypairFor(h, now)
	if err != nil {
		return nil, err
	}
	kp.replayMu.Lock()
	fresh := kp.replay.check(h.Counter)
	kp.replayMu.Unlock()
	if !fresh {
		return nil, ErrReplay
	}
	pt, err := decryptWith(c.recv, h.Counter, hdr, body, sc, aadLen)
	if err != nil {
		return nil, err
	}
	if err := s.accept(kp, h.Counter, len(pt) > 0 || aadLen > 0, now); err != nil {
		return nil, err
	}
	return pt, nil
}

// keypairFor finds the live keypair a packet with header h was sealed for.
func (s *Session) keypairFor(h DataHeader, now time.Time) (*keypair, *aeads, error) {
	kp := s.lookup(h.Receiver)
	if kp == nil {
		return nil, nil, ErrUnknownIndex
	}
	c := kp.ciphers.Load()
	if c == nil || kp.expired(now) {
		return nil, nil, ErrKeyExpired
	}
	return kp, c, nil
}

// decryptWith authenticates and decrypts body in place under recv with counter ctr. It is pure AEAD
// work.
func decryptWith(recv cipher.AEAD, ctr uint64, hdr, body []byte, sc *scratch, aadLen int) ([]byte, error) {
	sc.setNonce(ctr)
	aad := hdr
	if aadLen > 0 {
		copy(sc.aad[:HeaderSize], hdr)
		aad = sc.aad[:aadLen]
	}
	pt, err := recv.Open(body[:0], sc.nonce[:], body, aad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// accept takes an authenticated packet with counter ctr into kp's replay window, confirms kp and
// runs the keepalive timers (data: not a keepalive).
func (s *Session) accept(kp *keypair, ctr uint64, data bool, now time.Time) error {
	kp.replayMu.Lock()
	fresh := kp.replay.update(ctr)
	kp.replayMu.Unlock()
	if !fresh {
		return ErrReplay // a concurrent Open accepted the same packet first
	}
	if s.next.Load() == kp {
		s.promote(kp)
	}
	if data && s.recvPending.Load() == 0 {
		s.recvPending.CompareAndSwap(0, s.stamp(now))
	}
	if s.sendPending.Load() != 0 {
		s.sendPending.Store(0)
	}
	return nil
}

// promote makes next current once the peer has proven it uses it.
func (s *Session) promote(kp *keypair) {
	s.mu.Lock()
	if s.next.Load() != kp {
		s.mu.Unlock()
		return
	}
	old := s.previous.Load()
	s.previous.Store(s.current.Load())
	s.current.Store(kp)
	s.next.Store(nil)
	s.mu.Unlock()
	s.discard([]*keypair{old})
}

func (s *Session) stamp(now time.Time) int64 {
	d := int64(now.Sub(s.epoch))
	if d < 0 {
		d = 0
	}
	return d + 1
}

// Tick runs the session's timers at now: it wipes keypairs older than RejectAfterTime and reports
// what the owner should do. Call it about once a second and right after Install.
func (s *Session) Tick(now time.Time) Actions {
	var drop [3]*keypair
	var a Actions
	s.mu.Lock()
	for i, slot := range [...]*atomic.Pointer[keypair]{&s.previous, &s.current, &s.next} {
		if kp := slot.Load(); kp != nil && kp.expired(now) {
			slot.Store(nil)
			drop[i] = kp
		}
	}
	cur := s.current.Load()
	switch {
	case s.closed.Load():
	case cur == nil:
		if s.next.Load() == nil {
			a |= ActionRekey // nothing to send with and nothing on the way
		}
	default:
		sent := cur.sendCounter.Load()
		if sent >= RekeyAfterMessages || (cur.initiator && now.Sub(cur.created) >= RekeyAfterTime) {
			a |= ActionRekey
		}
		if cur.initiator && sent == 0 {
			a |= ActionKeepalive // confirm fresh keys to the responder
		}
		if p := s.recvPending.Load(); p != 0 && s.stamp(now)-p >= int64(KeepaliveTimeout) {
			a |= ActionKeepalive
		}
		if p := s.sendPending.Load(); p != 0 && s.stamp(now)-p >= int64(KeepaliveTimeout+RekeyTimeout) {
			a |= ActionRekey
			s.sendPending.Store(s.stamp(now)) // ask again only after another period of silence
		}
	}
	s.mu.Unlock()
	s.discard(drop[:])
	return a
}
