package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// initiation is one initiator handshake with a peer, across its attempts.
type initiation struct {
	peer     *meshca.Certificate
	peerPub  []byte
	id       [32]byte
	macKeys  macKeys // of the peer's static key
	mac1     *macer
	to       netip.AddrPort
	started  time.Time
	attempts int

	// The current attempt.
	index     uint32
	nextRetry time.Time
	// nextResend is when the attempt's packets go out again (zero: no more resends in this attempt);
	// resends counts those already sent.
	nextResend time.Time
	resends    int
	sym        symmetricState // after the initiation was written
	esk        *identity.KEMPrivateKey
	frags      [][]byte // initiation packets with mac1 set and mac2 zero
	resp       *reassembly
	resent     bool // resent with mac2 after a cookie reply
}

// heldCookie is a cookie received from a responder, kept per responder key for CookieLifetime.
type heldCookie struct {
	cookie [cookieSize]byte
	at     time.Time
}

// Initiate starts a handshake with the peer whose certificate we hold, reached at to. It returns the
// initiation packets. If a handshake with that peer is already pending it does nothing: Tick drives
// the retries.
func (m *Machine) Initiate(now time.Time, to netip.AddrPort, peer *meshca.Certificate) (Output, error) {
	if err := m.checkPeer(peer, now); err != nil {
		return Output{}, err
	}
	pub := peer.KEMPublicKey.Bytes()
	id := peerID(pub)
	if _, ok := m.byPeer[id]; ok {
		return Output{}, nil
	}
	if len(m.byPeer) >= m.cfg.MaxPending {
		return Output{}, fmt.Errorf("%w: %d handshakes pending", ErrBusy, len(m.byPeer))
	}
	hs := &initiation{peer: peer, peerPub: pub, id: id, macKeys: deriveMACKeys(pub), to: to, started: now}
	hs.mac1 = newMACer(hs.macKeys.mac1[:])
	if err := m.newAttempt(now, hs, m.cfg.SendFingerprint); err != nil {
		return Output{}, err
	}
	m.byPeer[id] = hs
	return Output{Packets: m.initiationPackets(now, hs)}, nil
}

// Abandon forgets a pending handshake with peer, if any, so that the next Initiate starts afresh:
// its owner learnt that the peer restarted, and the pending attempt was sent to a process that no
// longer exists (its retry would come only RetryInterval later).
func (m *Machine) Abandon(peer *meshca.Certificate) {
	id := peerID(peer.KEMPublicKey.Bytes())
	if hs, ok := m.byPeer[id]; ok {
		m.dropInitiation(id, hs)
	}
}

// newAttempt writes a fresh initiation (new index, ephemeral key and ct1) into hs.
func (m *Machine) newAttempt(now time.Time, hs *initiation, fingerprint bool) error {
	idx, err := m.newIndex()
	if err != nil {
		return err
	}
	frags, sym, esk, err := m.writeInitiation(hs, idx, fingerprint)
	if err != nil {
		m.releaseIndex(idx)
		return fmt.Errorf("initiation to %q: %w", hs.peer.Name, err)
	}
	jitter, err := m.jitter()
	if err != nil {
		m.releaseIndex(idx)
		return err
	}
	retryAt := now.Add(RetryInterval + jitter)
	var resendAt time.Time
	if !m.cfg.DisableRetransmission && hs.attempts < RetransmitAttempts {
		if resendAt, err = m.resendAt(now, 0, retryAt); err != nil {
			m.releaseIndex(idx)
			return err
		}
	}
	m.endAttempt(hs, true)
	hs.index, hs.sym, hs.esk, hs.frags = idx, sym, esk, frags
	hs.resp = newReassembly(0, ResponseSize, now)
	hs.resent = false
	hs.attempts++
	hs.nextRetry = retryAt
	hs.resends, hs.nextResend = 0, resendAt
	m.pending[idx] = hs
	return nil
}

// resendAt returns when resend number n (from 0) of an attempt goes out: RetransmitAfter after the
// previous sending, doubling with each resend, plus up to an eighth of that delay of jitter. It
// returns the zero time when there is no such resend: past RetransmitCount, or not before the
// attempt's retry at retryAt (docs/protocol.md §12.2).
func (m *Machine) resendAt(now time.Time, n int, retryAt time.Time) (time.Time, error) {
	if n >= RetransmitCount {
		return time.Time{}, nil
	}
	delay := RetransmitAfter << n
	jitter, err := m.randBelow(delay / 8)
	if err != nil {
		return time.Time{}, err
	}
	if at := now.Add(delay + jitter); at.Before(retryAt) {
		return at, nil
	}
	return time.Time{}, nil
}

// writeInitiation runs the initiator's half of message 1 (docs/protocol.md §4.1).
func (m *Machine) writeInitiation(hs *initiation, idx uint32, fingerprint bool) ([][]byte, symmetricState, *identity.KEMPrivateKey, error) {
	s := newSymmetric(m.prologue, hs.peerPub)
	fail := func(err error) ([][]byte, symmetricState, *identity.KEMPrivateKey, error) {
		s.wipe()
		return nil, symmetricState{}, nil, err
	}
	s.mixHash(hdr1(idx))
	ct1, ss1, err := hs.peer.KEMPublicKey.Encapsulate(s.h[:])
	if err != nil {
		return fail(err)
	}
	s.mixHash(ct1)
	err = s.mixKey(ss1)
	clear(ss1)
	if err != nil {
		return fail(err)
	}
	esk, err := identity.GenerateKEMKey()
	if err != nil {
		return fail(err)
	}
	epk := esk.PublicKey().Bytes()
	s.mixHash(epk)
	var payload []byte
	if fingerprint {
		fp := m.cfg.Cert.Fingerprint()
		payload = encodePayload(payloadKindFingerprint, fp[:])
	} else {
		payload = encodePayload(payloadKindCertificate, m.cfg.Cert.Bytes())
	}
	sealed, err := s.encryptAndHash(payload)
	if err != nil {
		return fail(err)
	}
	msg := make([]byte, 0, len(ct1)+len(epk)+len(sealed))
	msg = append(append(append(msg, ct1...), epk...), sealed...)
	frags, err := splitMessage(TypeInitiation, idx, msg, m.maxPacket-fragHeaderSize-initTrailerSize)
	if err != nil {
		return fail(err)
	}
	for _, p := range frags {
		end := len(p) - initTrailerSize
		hs.mac1.put(p[end:end+macSize], p[:end])
	}
	return frags, s, esk, nil
}

// initiationPackets returns copies of the current attempt's packets, with mac2 when we hold a cookie.
func (m *Machine) initiationPackets(now time.Time, hs *initiation) []Packet {
	c, useCookie := m.heldCookies[hs.id]
	if useCookie && expired(c.at, now, CookieLifetime) {
		delete(m.heldCookies, hs.id)
		useCookie = false
	}
	out := make([]Packet, 0, len(hs.frags))
	for _, f := range hs.frags {
		p := append([]byte(nil), f...)
		if useCookie {
			mac := mac2With(&c.cookie, p[:len(p)-macSize])
			copy(p[len(p)-macSize:], mac[:])
		}
		out = append(out, Packet{To: hs.to, Data: p})
	}
	return out
}

// retry starts a new attempt with the full certificate.
func (m *Machine) retry(now time.Time, hs *initiation) ([]Packet, error) {
	if err := m.newAttempt(now, hs, false); err != nil {
		return nil, err
	}
	return m.initiationPackets(now, hs), nil
}

func (m *Machine) jitter() (time.Duration, error) { return m.randBelow(RetryJitter) }

// randBelow draws a duration in [0, d) from Config.Rand; d must be positive and below 2^32 ns.
func (m *Machine) randBelow(d time.Duration) (time.Duration, error) {
	var b [4]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		return 0, fmt.Errorf("retry jitter: %w", err)
	}
	return time.Duration(binary.LittleEndian.Uint32(b[:]) % uint32(d)), nil
}

// endAttempt forgets the current attempt's secrets and, unless it was handed to the transport in a
// Result, releases its index.
func (m *Machine) endAttempt(hs *initiation, release bool) {
	if hs.index != 0 {
		delete(m.pending, hs.index)
		if release {
			m.releaseIndex(hs.index)
		}
	}
	hs.index = 0
	hs.sym.wipe()
	hs.esk = nil
	hs.frags = nil
	hs.resp = nil
}

// dropInitiation abandons a handshake.
func (m *Machine) dropInitiation(id [32]byte, hs *initiation) {
	m.endAttempt(hs, true)
	delete(m.byPeer, id)
}

// handleResponse reassembles and processes a response for one of our pending attempts.
func (m *Machine) handleResponse(now time.Time, from netip.AddrPort, pkt []byte) (Output, error) {
	f, err := parseFragment(pkt)
	if err != nil {
		return Output{}, err
	}
	hs, ok := m.pending[f.index]
	if !ok {
		return Output{}, ErrUnknownIndex
	}
	if hs.resp.count == 0 {
		hs.resp = newReassembly(f.count, ResponseSize, now)
	}
	msg, done, err := hs.resp.add(&f, len(pkt))
	if err != nil {
		if errors.Is(err, errReassemblyTooLarge) {
			hs.resp = newReassembly(0, ResponseSize, now)
		}
		return Output{}, fmt.Errorf("%w: response fragment: %w", ErrMalformed, err)
	}
	if !done {
		return Output{}, nil
	}
	hs.resp = newReassembly(0, ResponseSize, now)
	res, err := m.finish(now, from, hs, msg)
	if err != nil {
		return Output{}, err
	}
	return Output{Result: res}, nil
}

// finish runs the initiator's half of message 2. A response that does not authenticate leaves the
// attempt pending: the genuine response may still arrive.
func (m *Machine) finish(now time.Time, from netip.AddrPort, hs *initiation, msg []byte) (*Result, error) {
	body, err := parseResponse(msg)
	if err != nil {
		return nil, err
	}
	s := hs.sym // a fork: the attempt's state stays untouched unless this response authenticates
	defer s.wipe()
	s.mixHash(hdr2(hs.index, body.indexR))
	ss2, err := hs.esk.Decapsulate(body.ct2, s.h[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.mixHash(body.ct2)
	err = s.mixKey(ss2)
	clear(ss2)
	if err != nil {
		return nil, err
	}
	ss3, err := m.cfg.Key.KEM.Decapsulate(body.ct3, s.h[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.mixHash(body.ct3)
	err = s.mixKey(ss3)
	clear(ss3)
	if err != nil {
		return nil, err
	}
	if _, err := s.decryptAndHash(body.tag); err != nil {
		return nil, fmt.Errorf("response from %s: %w", from, err)
	}
	if err := m.checkPeer(hs.peer, now); err != nil {
		m.dropInitiation(hs.id, hs)
		return nil, err
	}
	i2r, r2i, err := s.split()
	if err != nil {
		return nil, err
	}
	res := &Result{
		LocalIndex:    hs.index,
		RemoteIndex:   body.indexR,
		SendKey:       i2r,
		RecvKey:       r2i,
		Initiator:     true,
		Peer:          hs.peer,
		Established:   now,
		Remote:        from,
		HandshakeHash: s.h,
	}
	// The index now belongs to the transport: forget the attempt without releasing it.
	m.endAttempt(hs, false)
	m.dropInitiation(hs.id, hs)
	return res, nil
}

// handleCookieReply stores a cookie for a pending attempt and resends the attempt once with mac2.
func (m *Machine) handleCookieReply(now time.Time, pkt []byte) (Output, error) {
	r, err := parseCookieReply(pkt)
	if err != nil {
		return Output{}, err
	}
	hs, ok := m.pending[r.index]
	if !ok {
		return Output{}, ErrUnknownIndex
	}
	first := hs.frags[0]
	end := len(first) - initTrailerSize
	cookie, err := openCookieReply(&hs.macKeys.cookie, &r, first[end:end+macSize])
	if err != nil {
		return Output{}, err
	}
	if len(m.heldCookies) >= m.cfg.MaxPending {
		clear(m.heldCookies)
	}
	m.heldCookies[hs.id] = heldCookie{cookie: cookie, at: now}
	if hs.resent {
		return Output{}, nil
	}
	hs.resent = true
	return Output{Packets: m.initiationPackets(now, hs)}, nil
}
