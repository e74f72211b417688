package handshake

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/ratelimit"
)

// Errors returned by Machine methods. They are wrapped with context; test with errors.Is.
var (
	ErrNotHandshake   = errors.New("handshake: not a handshake packet")
	ErrMalformed      = errors.New("handshake: malformed packet")
	ErrUnsupported    = errors.New("handshake: unsupported version or suite")
	ErrMAC1           = errors.New("handshake: bad mac1")
	ErrCookieRequired = errors.New("handshake: under load, a valid mac2 is required")
	ErrRateLimited    = errors.New("handshake: source is rate-limited")
	ErrBusy           = errors.New("handshake: no room for another handshake")
	ErrReplay         = errors.New("handshake: replayed initiation")
	ErrAmplification  = errors.New("handshake: response would be larger than the request")
	ErrDecrypt        = errors.New("handshake: message authentication failed")
	ErrPeer           = errors.New("handshake: peer certificate rejected")
	ErrUnknownIndex   = errors.New("handshake: no pending handshake for this index")
	ErrTimeout        = errors.New("handshake: no response, gave up")
)

// IndexAllocator hands out local indices from the namespace the transport uses for its keypairs
// (docs/transport.md "Index allocation"). Allocate returns a non-zero index not in use; Release frees
// one. An index handed over in a Result belongs to the transport from then on; the Machine releases
// only the indices of handshakes that did not complete.
type IndexAllocator interface {
	Allocate() (uint32, error)
	Release(index uint32)
}

// Config configures a Machine. Key, Cert and Verifier are required.
type Config struct {
	Key      *identity.NodeKey   // our keys; only the KEM key is used
	Cert     *meshca.Certificate // our node certificate; its KEM key must be Key's
	Verifier *meshca.Verifier    // checks peers' certificates (CA, validity, groups, revocation)

	// Prologue binds the purpose into the transcript: PrologueLink or PrologueE2E. Both sides must
	// use the same one. Empty means PrologueLink.
	Prologue string
	// Authorize, if set, is a policy check on a verified peer certificate (groups, names).
	Authorize func(peer *meshca.Certificate) error
	// Rand supplies indices, cookie secrets, cookie-reply nonces and retry jitter; nil means
	// crypto/rand. KEM randomness always comes from crypto/rand (see docs/protocol.md §13).
	Rand io.Reader
	// Indices, if set, allocates local indices shared with the transport.
	Indices IndexAllocator
	// MaxPacketSize bounds the packets we send (default DefaultPacketSize, range MinPacketSize to
	// MaxPacketSize). An end-to-end machine sets the overlay's inner MTU here.
	MaxPacketSize int

	// SendFingerprint makes the first attempt of each handshake carry our certificate's fingerprint
	// instead of the certificate; retries carry the certificate.
	SendFingerprint bool
	// CertByFingerprint, if set, resolves fingerprints sent by initiators that the machine's own
	// cache of verified certificates does not hold.
	CertByFingerprint func(meshca.Fingerprint) *meshca.Certificate

	// DisableRetransmission makes the machine behave as nodes did before retransmission
	// (docs/protocol.md §12.4): an attempt is sent once, and a complete duplicate of an answered
	// initiation is dropped as a replay instead of being answered again. For compatibility tests
	// and before/after measurements; the wire is the same either way.
	DisableRetransmission bool

	MaxPending      int // initiator handshakes in progress (default 1024)
	MaxReassemblies int // incomplete initiations held for strangers (default 256)
	LoadThreshold   int // initiations per second reaching the KEM step that mean "under load" (default 128)
	RatePerSecond   int // initiations per second per source address (default 10)
	RateBurst       int // bucket size per source address (default 20)
}

// Result is a completed handshake: what the transport needs to carry the session.
//
// An initiator's Result is confirmed: the responder proved it holds its static key and saw our fresh
// ephemeral key. A responder's Result (Initiator == false) is not confirmed until a transport packet
// authenticates under RecvKey; the transport must keep it as its "next" keypair and must neither send
// data under it nor let it replace a live session before then (docs/protocol.md §8, §11).
type Result struct {
	LocalIndex  uint32
	RemoteIndex uint32
	SendKey     [32]byte
	RecvKey     [32]byte
	Initiator   bool
	Peer        *meshca.Certificate
	Established time.Time
	// Remote is the address the peer's handshake packets came from.
	Remote netip.AddrPort
	// HandshakeHash is the final transcript hash, usable for channel binding.
	HandshakeHash [32]byte
}

// Wipe clears the transport keys.
func (r *Result) Wipe() {
	clear(r.SendKey[:])
	clear(r.RecvKey[:])
}

// Packet is a packet to send.
type Packet struct {
	To   netip.AddrPort
	Data []byte
}

// Failure reports an initiator handshake that gave up.
type Failure struct {
	Peer *meshca.Certificate
	To   netip.AddrPort
	Err  error
}

// Output is what a Machine call produced. Packets are fresh slices the caller owns.
type Output struct {
	Packets []Packet
	Result  *Result   // a handshake completed
	Failed  []Failure // Tick: handshakes that gave up
}

// Machine runs handshakes as initiator and as responder. It is not safe for concurrent use.
type Machine struct {
	cfg       Config
	rand      io.Reader
	prologue  string
	maxPacket int
	staticPub []byte
	macKeys   macKeys // for our own static key: checks mac1, seals cookie replies
	mac1      *macer
	cookies   cookieJar
	reasm     *reassembler
	limiter   *ratelimit.Limiter[netip.Addr] // per source address, docs/protocol.md §7 step 4
	replays   *replayCache
	answered  *answeredCache // nil with DisableRetransmission
	certs     map[meshca.Fingerprint]*meshca.Certificate
	pending   map[uint32]*initiation // by the current attempt's index
	byPeer    map[[32]byte]*initiation
	// heldCookies are cookies responders gave us, by responder key (bounded by MaxPending).
	heldCookies map[[32]byte]heldCookie
	load        loadState
	lastExpire  time.Time
}

// New checks cfg and returns a Machine.
func New(cfg Config) (*Machine, error) {
	if cfg.Key == nil || cfg.Key.KEM == nil {
		return nil, errors.New("handshake: config has no KEM key")
	}
	if cfg.Cert == nil || cfg.Cert.Kind != meshca.KindNode || cfg.Cert.KEMPublicKey == nil {
		return nil, errors.New("handshake: config needs our node certificate")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("handshake: config has no certificate verifier")
	}
	if n := len(cfg.Cert.Bytes()); n == 0 || n > maxCertificateSize {
		return nil, fmt.Errorf("handshake: our certificate is %d bytes, want 1 to %d", n, maxCertificateSize)
	}
	pub := cfg.Key.KEM.PublicKey().Bytes()
	if !bytes.Equal(pub, cfg.Cert.KEMPublicKey.Bytes()) {
		return nil, fmt.Errorf("handshake: certificate %q is for another KEM key", cfg.Cert.Name)
	}
	m := &Machine{cfg: cfg, rand: cfg.Rand, prologue: cfg.Prologue, maxPacket: cfg.MaxPacketSize, staticPub: pub}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.prologue == "" {
		m.prologue = PrologueLink
	}
	if m.maxPacket == 0 {
		m.maxPacket = DefaultPacketSize
	}
	if m.maxPacket < MinPacketSize || m.maxPacket > MaxPacketSize {
		return nil, fmt.Errorf("handshake: MaxPacketSize %d outside %d..%d", m.maxPacket, MinPacketSize, MaxPacketSize)
	}
	orDefault := func(v *int, d int, name string) error {
		if *v < 0 {
			return fmt.Errorf("handshake: %s is negative", name)
		}
		if *v == 0 {
			*v = d
		}
		return nil
	}
	for _, e := range []error{
		orDefault(&m.cfg.MaxPending, defaultMaxPending, "MaxPending"),
		orDefault(&m.cfg.MaxReassemblies, defaultMaxReassemblies, "MaxReassemblies"),
		orDefault(&m.cfg.LoadThreshold, defaultLoadThreshold, "LoadThreshold"),
		orDefault(&m.cfg.RatePerSecond, defaultRate, "RatePerSecond"),
		orDefault(&m.cfg.RateBurst, defaultBurst, "RateBurst"),
	} {
		if e != nil {
			return nil, e
		}
	}
	m.macKeys = deriveMACKeys(pub)
	m.mac1 = newMACer(m.macKeys.mac1[:])
	m.reasm = newReassembler(m.cfg.MaxReassemblies)
	// A full table refuses new sources (and puts the machine under load, so strangers must prove
	// their address with a cookie) rather than sharing an overflow bucket among them.
	lim, err := ratelimit.New[netip.Addr](ratelimit.Config{Rate: float64(m.cfg.RatePerSecond), Burst: m.cfg.RateBurst,
		Max: rateTableSize, SweepEvery: 250 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	m.limiter = lim
	m.replays = newReplayCache(replayCacheSize)
	if !cfg.DisableRetransmission {
		m.answered = newAnsweredCache(answeredCacheSize)
	}
	m.certs = make(map[meshca.Fingerprint]*meshca.Certificate)
	m.pending = make(map[uint32]*initiation)
	m.byPeer = make(map[[32]byte]*initiation)
	m.heldCookies = make(map[[32]byte]heldCookie)
	return m, nil
}

// SetUnderLoad forces the under-load mode on or off (the caller knows its queue lengths); the
// machine also enters it by itself (docs/protocol.md §7).
func (m *Machine) SetUnderLoad(on bool) { m.load.manual = on }

// UnderLoad reports whether valid mac2 is currently required on initiations.
func (m *Machine) UnderLoad(now time.Time) bool {
	return m.load.manual || m.load.active(now) || m.reasm.len()*2 >= m.cfg.MaxReassemblies
}

// Pending returns the number of initiator handshakes in progress.
func (m *Machine) Pending() int { return len(m.byPeer) }

// Handle processes one received handshake packet (types 1, 2 and 3) from address from. An error
// explains why the packet was dropped; Output may still hold a packet (a cookie reply).
func (m *Machine) Handle(now time.Time, from netip.AddrPort, pkt []byte) (Output, error) {
	if len(pkt) == 0 {
		return Output{}, errShort
	}
	switch pkt[0] {
	case TypeInitiation:
		return m.handleInitiation(now, from, pkt)
	case TypeResponse:
		return m.handleResponse(now, from, pkt)
	case TypeCookieReply:
		return m.handleCookieReply(now, pkt)
	}
	return Output{}, ErrNotHandshake
}

// Tick drives timers: initiator resends, retries and give-ups, and expiry of reassemblies and of
// the answered cache. Call it at least every 100 ms (docs/protocol.md §12).
func (m *Machine) Tick(now time.Time) Output {
	var out Output
	for id, hs := range m.byPeer {
		if expired(hs.started, now, GiveUpAfter) {
			out.Failed = append(out.Failed, Failure{Peer: hs.peer, To: hs.to,
				Err: fmt.Errorf("%w: %s after %d attempts", ErrTimeout, hs.peer.Name, hs.attempts)})
			m.dropInitiation(id, hs)
			continue
		}
		switch {
		case !now.Before(hs.nextRetry):
			pkts, err := m.retry(now, hs)
			if err != nil {
				out.Failed = append(out.Failed, Failure{Peer: hs.peer, To: hs.to, Err: err})
				m.dropInitiation(id, hs)
				continue
			}
			out.Packets = append(out.Packets, pkts...)
		case !hs.nextResend.IsZero() && !now.Before(hs.nextResend):
			out.Packets = append(out.Packets, m.initiationPackets(now, hs)...)
			hs.resends++
			next, err := m.resendAt(now, hs.resends, hs.nextRetry)
			if err != nil {
				out.Failed = append(out.Failed, Failure{Peer: hs.peer, To: hs.to, Err: err})
				m.dropInitiation(id, hs)
				continue
			}
			hs.nextResend = next
		}
	}
	m.expire(now)
	return out
}

func (m *Machine) expire(now time.Time) {
	m.lastExpire = now
	m.reasm.expire(now)
	m.answered.expire(now)
	m.limiter.Sweep(now)
}

// maintain runs expiry at most every 100 ms from the packet path.
func (m *Machine) maintain(now time.Time) {
	if expired(m.lastExpire, now, 100*time.Millisecond) {
		m.expire(now)
	}
}

// newIndex returns a fresh non-zero local index.
func (m *Machine) newIndex() (uint32, error) {
	if m.cfg.Indices != nil {
		idx, err := m.cfg.Indices.Allocate()
		if err != nil {
			return 0, fmt.Errorf("allocate index: %w", err)
		}
		if idx == 0 {
			return 0, errors.New("allocate index: allocator returned 0")
		}
		return idx, nil
	}
	var b [4]byte
	for range 64 {
		if _, err := io.ReadFull(m.rand, b[:]); err != nil {
			return 0, fmt.Errorf("allocate index: %w", err)
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if _, used := m.pending[idx]; idx != 0 && !used {
			return idx, nil
		}
	}
	return 0, errors.New("allocate index: no free index found")
}

func (m *Machine) releaseIndex(idx uint32) {
	if m.cfg.Indices != nil {
		m.cfg.Indices.Release(idx)
	}
}

// checkPeer verifies a peer certificate at now.
func (m *Machine) checkPeer(c *meshca.Certificate, now time.Time) error {
	if c == nil || c.Kind != meshca.KindNode || c.KEMPublicKey == nil {
		return fmt.Errorf("%w: not a node certificate", ErrPeer)
	}
	if err := m.cfg.Verifier.Verify(c, now); err != nil {
		return fmt.Errorf("%w: %q: %w", ErrPeer, c.Name, err)
	}
	if bytes.Equal(c.KEMPublicKey.Bytes(), m.staticPub) {
		return fmt.Errorf("%w: %q has our own KEM key", ErrPeer, c.Name)
	}
	if m.cfg.Authorize != nil {
		if err := m.cfg.Authorize(c); err != nil {
			return fmt.Errorf("%w: %q: %w", ErrPeer, c.Name, err)
		}
	}
	return nil
}

// rememberCert caches a verified certificate by fingerprint (bounded; emptied when full).
func (m *Machine) rememberCert(c *meshca.Certificate) {
	if len(m.certs) >= certCacheSize {
		clear(m.certs)
	}
	m.certs[c.Fingerprint()] = c
}

func peerID(kemPub []byte) [32]byte { return sha256.Sum256(kemPub) }

// loadState tracks the machine's own under-load decision (docs/protocol.md §7).
type loadState struct {
	manual      bool
	until       time.Time
	windowStart time.Time
	count       int
}

func (l *loadState) active(now time.Time) bool { return now.Before(l.until) }

func (l *loadState) trigger(now time.Time) { l.until = now.Add(underLoadAfter) }

// countKEM records an initiation reaching the KEM step.
func (l *loadState) countKEM(now time.Time, threshold int) {
	if expired(l.windowStart, now, time.Second) {
		l.windowStart, l.count = now, 0
	}
	l.count++
	if l.count >= threshold {
		l.trigger(now)
	}
}
