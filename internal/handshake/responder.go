package handshake

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// handleInitiation runs the responder's checks in the order of docs/protocol.md §7. Everything before
// the reassembly lookup is allocation-free for a packet with a bad mac1.
func (m *Machine) handleInitiation(now time.Time, from netip.AddrPort, pkt []byte) (Output, error) {
	f, err := parseFragment(pkt)
	if err != nil {
		return Output{}, err
	}
	if !m.mac1.check(f.authed, f.mac1) {
		return Output{}, ErrMAC1
	}
	m.maintain(now)
	if err := m.cookies.refresh(now, m.rand); err != nil {
		return Output{}, err
	}
	proven := !isZero(f.mac2) && m.cookies.checkMAC2(from, &f)
	if !proven && m.UnderLoad(now) {
		if f.num != 0 || len(pkt) < CookieReplySize {
			return Output{}, ErrCookieRequired
		}
		cookie := cookieFor(&m.cookies.cur, from)
		reply, err := sealCookieReply(&m.macKeys.cookie, f.index, f.mac1, &cookie, m.rand)
		if err != nil {
			return Output{}, err
		}
		return Output{Packets: []Packet{{To: from, Data: reply}}}, ErrCookieRequired
	}

	key := reasmKey{src: from, index: f.index}
	r := m.reasm.get(now, key)
	if r == nil {
		lim := m.limiter.Allow(now, from.Addr())
		if lim.TableFull {
			m.load.trigger(now)
		}
		if !lim.OK {
			return Output{}, fmt.Errorf("%w: %s", ErrRateLimited, from.Addr())
		}
		if r, err = m.reasm.create(now, key, f.count, proven); err != nil {
			if !errors.Is(err, errSourceBusy) {
				m.load.trigger(now)
			}
			return Output{}, err
		}
	}
	r.proven = r.proven || proven
	msg, done, err := r.add(&f, len(pkt))
	if err != nil {
		if err == errReassemblyTooLarge {
			m.reasm.remove(key)
		}
		return Output{}, fmt.Errorf("%w: initiation fragment: %w", ErrMalformed, err)
	}
	if !done {
		return Output{}, nil
	}
	m.reasm.remove(key)
	return m.respond(now, from, f.index, msg, r)
}

// respond answers a complete initiation: a duplicate of one answered recently from the same source
// gets the same answer again without any asymmetric work (docs/protocol.md §12.3); anything else is
// processed and its answer remembered.
func (m *Machine) respond(now time.Time, from netip.AddrPort, indexI uint32, msg []byte, r *reassembly) (Output, error) {
	digest := initiationDigest(indexI, msg)
	if a := m.answered.lookup(now, digest, from); a != nil {
		return repeatAnswer(from, a, r)
	}
	out, refused, err := m.process(now, from, indexI, msg, r)
	switch {
	case err == nil:
		m.answered.add(now, digest, from, out.Packets)
	case refused:
		// The message itself was refused after the KEM work: a duplicate would be refused alike.
		m.answered.add(now, digest, from, nil)
	}
	return out, err
}

// repeatAnswer resends a cached answer, never more bytes or larger packets than this duplicate's.
func repeatAnswer(from netip.AddrPort, a *answer, r *reassembly) (Output, error) {
	if a.packets == nil {
		return Output{}, fmt.Errorf("%w: duplicate of an initiation refused before", ErrReplay)
	}
	if a.wire > r.wire || a.largest > r.largest {
		return Output{}, fmt.Errorf("%w: %d bytes in packets of up to %d answering %d bytes in packets of up to %d",
			ErrAmplification, a.wire, a.largest, r.wire, r.largest)
	}
	out := Output{Packets: make([]Packet, 0, len(a.packets))}
	for _, p := range a.packets {
		out.Packets = append(out.Packets, Packet{To: from, Data: append([]byte(nil), p...)})
	}
	return out, nil
}

// process checks a complete initiation and builds the response (docs/protocol.md §4.1). refused
// reports an error caused by the message's content and found after the KEM work (AEAD, payload,
// certificate, policy, ephemeral key).
func (m *Machine) process(now time.Time, from netip.AddrPort, indexI uint32, msg []byte, r *reassembly) (Output, bool, error) {
	body, err := parseInitiation(msg)
	if err != nil {
		return Output{}, false, err
	}
	replayKey := sha256.Sum256(body.ct1)
	if m.replays.seen(now, replayKey) {
		return Output{}, false, ErrReplay
	}
	// Amplification: the response may not be larger than what this source sent, nor use larger packets.
	chunk := min(m.maxPacket, r.largest) - fragHeaderSize
	if chunk < 1 {
		return Output{}, false, ErrAmplification
	}
	count := (ResponseSize + chunk - 1) / chunk
	if count > MaxFragments || ResponseSize+count*fragHeaderSize > r.wire {
		return Output{}, false, fmt.Errorf("%w: %d bytes in %d packets answering %d bytes", ErrAmplification,
			ResponseSize+count*fragHeaderSize, count, r.wire)
	}
	m.load.countKEM(now, m.cfg.LoadThreshold)

	s := newSymmetric(m.prologue, m.staticPub)
	defer s.wipe()
	s.mixHash(hdr1(indexI))
	ss1, err := m.cfg.Key.KEM.Decapsulate(body.ct1, s.h[:])
	if err != nil {
		return Output{}, false, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	s.mixHash(body.ct1)
	err = s.mixKey(ss1)
	clear(ss1)
	if err != nil {
		return Output{}, false, err
	}
	s.mixHash(body.epk)
	plain, err := s.decryptAndHash(body.sealed)
	if err != nil {
		return Output{}, true, fmt.Errorf("initiation from %s: %w", from, err)
	}
	payload, err := parsePayload(plain)
	if err != nil {
		return Output{}, true, err
	}
	peer, err := m.resolveCert(payload)
	if err != nil {
		return Output{}, true, err
	}
	if err := m.checkPeer(peer, now); err != nil {
		return Output{}, true, err
	}
	m.rememberCert(peer)
	epk, err := identity.ParseKEMPublicKey(body.epk)
	if err != nil {
		return Output{}, true, fmt.Errorf("%w: ephemeral key: %w", ErrMalformed, err)
	}

	indexR, err := m.newIndex()
	if err != nil {
		return Output{}, false, err
	}
	keep := false
	defer func() {
		if !keep {
			m.releaseIndex(indexR)
		}
	}()
	s.mixHash(hdr2(indexI, indexR))
	ct2, ss2, err := epk.Encapsulate(s.h[:])
	if err != nil {
		return Output{}, false, err
	}
	s.mixHash(ct2)
	err = s.mixKey(ss2)
	clear(ss2)
	if err != nil {
		return Output{}, false, err
	}
	ct3, ss3, err := peer.KEMPublicKey.Encapsulate(s.h[:])
	if err != nil {
		return Output{}, false, err
	}
	s.mixHash(ct3)
	err = s.mixKey(ss3)
	clear(ss3)
	if err != nil {
		return Output{}, false, err
	}
	tag, err := s.encryptAndHash(nil)
	if err != nil {
		return Output{}, false, err
	}
	i2r, r2i, err := s.split()
	if err != nil {
		return Output{}, false, err
	}

	resp := make([]byte, 0, ResponseSize)
	resp = binary.LittleEndian.AppendUint32(resp, indexR)
	resp = append(resp, ct2...)
	resp = append(resp, ct3...)
	resp = append(resp, tag...)
	frags, err := splitMessage(TypeResponse, indexI, resp, chunk)
	if err != nil {
		return Output{}, false, err
	}
	m.replays.add(now, replayKey)
	keep = true
	out := Output{Result: &Result{
		LocalIndex:    indexR,
		RemoteIndex:   indexI,
		SendKey:       r2i,
		RecvKey:       i2r,
		Initiator:     false,
		Peer:          peer,
		Established:   now,
		Remote:        from,
		HandshakeHash: s.h,
	}}
	for _, p := range frags {
		out.Packets = append(out.Packets, Packet{To: from, Data: p})
	}
	return out, false, nil
}

// resolveCert turns the initiator's payload into a certificate: parsed (with a cache of verified
// certificates) or looked up by fingerprint.
func (m *Machine) resolveCert(p initiatorPayload) (*meshca.Certificate, error) {
	switch p.kind {
	case payloadKindCertificate:
		if c, ok := m.certs[sha256.Sum256(p.data)]; ok {
			return c, nil
		}
		c, err := meshca.ParseCertificate(p.data)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPeer, err)
		}
		return c, nil
	case payloadKindFingerprint:
		fp := meshca.Fingerprint(p.data)
		if c, ok := m.certs[fp]; ok {
			return c, nil
		}
		if m.cfg.CertByFingerprint != nil {
			if c := m.cfg.CertByFingerprint(fp); c != nil && c.Fingerprint() == fp {
				return c, nil
			}
		}
		return nil, fmt.Errorf("%w: unknown certificate fingerprint %s", ErrPeer, fp)
	}
	return nil, fmt.Errorf("%w: payload kind %d", ErrMalformed, p.kind)
}

func isZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}
