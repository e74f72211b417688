package node

import (
	"errors"
	"net/netip"
	"time"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
)

// handleDatagram handles a datagram from the socket. o, when not nil, is what a worker already
// opened of it (open.go); nil opens it here.
func (n *Node) handleDatagram(now time.Time, from netip.AddrPort, pkt []byte, o *opened, rx *rxBatch) {
	if len(pkt) == 0 {
		n.stats.dropMalformed.Add(1)
		return
	}
	if o == nil {
		o = &notOpened
	}
	switch pkt[0] {
	case 1, 2, 3: // handshake initiation, response, cookie reply
		n.mu.Lock()
		out, err := n.linkHS.Handle(now, from, pkt)
		n.handleLinkOutputLocked(now, out, err)
		n.mu.Unlock()
	case session.TypeData:
		n.handleTransport(now, from, pkt, nil, &o.outer, rx)
	case session.TypeTransit, session.TypeFragment:
		n.handleTransit(now, from, pkt, o, rx)
	default:
		n.stats.dropMalformed.Add(1)
	}
}

// handleTransit opens the routed header of a transit packet from a neighbour (docs/transport.md) and
// delivers the end-to-end packet behind it, or relays it one hop closer without touching it.
func (n *Node) handleTransit(now time.Time, from netip.AddrPort, pkt []byte, o *opened, rx *rxBatch) {
	var t *tunnel
	var head, inner []byte
	switch o.outer.state {
	case openFailed:
		n.stats.dropAuth.Add(1)
		return
	case openDone:
		t, head, inner = o.outer.t, o.outer.plain, o.outer.inner
		if t.sess.Accept(o.outer.d, now) != nil {
			n.stats.dropAuth.Add(1) // a replay
			return
		}
	default:
		h, err := session.ParseTransitHeader(pkt, overlay.RoutedHeaderSize)
		if err != nil {
			n.stats.dropMalformed.Add(1)
			return
		}
		if t = n.idx.lookup(h.Receiver); t == nil || t.kind != kindLink {
			n.stats.dropNoSession.Add(1)
			return
		}
		if head, inner, err = t.sess.OpenTransit(pkt, overlay.RoutedHeaderSize, now); err != nil {
			n.stats.dropAuth.Add(1)
			return
		}
	}
	t.heard(now)
	t.rxBytes.Add(uint64(len(pkt)))
	if from != t.remoteAddr() {
		t.setRemote(from)
		n.sendObserved(now, t) // it moved, or its NAT gave it a new mapping
	}
	rh, err := overlay.ParseRoutedHeader(head)
	if err != nil {
		n.countRoutedError(err)
		return
	}
	if rh.Src != t.addr {
		t.transitIn.Add(1)
	}
	if rh.Dst == n.addr {
		if pkt[0] == session.TypeFragment {
			n.handleFragment(now, t, rh.Src, inner, rx)
		} else {
			n.handleTransport(now, netip.AddrPortFrom(rh.Src, 0), inner, t, &o.inner, rx)
		}
		return
	}
	n.stats.transitIn.Add(1)
	if n.dropTransit() { // a fault only tests can set (heal.go)
		return
	}
	e, ok := n.relayEntry(head, rh.Dst, t)
	if !ok {
		return
	}
	if e.level2 {
		n.forwardLevel2(now, encapTransit, head, inner)
		return
	}
	var sent bool
	if rx != nil {
		sent = rx.tx.addTransit(now, e.nextHop, head, inner)
	} else {
		sent = n.sendTransit(now, e.nextHop, head, inner)
	}
	if sent {
		n.stats.forwarded.Add(1)
		if e.nextHop.addr != rh.Dst {
			e.nextHop.transitOut.Add(1)
		}
	}
}

// handleTransport opens a transport packet, unless o says a worker decrypted it: a link packet
// straight off UDP (via == nil), or an end-to-end packet that arrived inside a routed frame over the
// link via.
func (n *Node) handleTransport(now time.Time, from netip.AddrPort, pkt []byte, via *tunnel, o *preopened, rx *rxBatch) {
	var t *tunnel
	var plain []byte
	switch o.state {
	case openFailed:
		n.stats.dropAuth.Add(1)
		return
	case openDone:
		t, plain = o.t, o.plain
		if t.sess.Accept(o.d, now) != nil {
			n.stats.dropAuth.Add(1) // a replay
			return
		}
	default:
		h, err := session.ParseDataHeader(pkt)
		if err != nil {
			n.stats.dropMalformed.Add(1)
			return
		}
		if t = n.idx.lookup(h.Receiver); t == nil || (via == nil) != (t.kind == kindLink) {
			n.stats.dropNoSession.Add(1)
			if t == nil && via != nil {
				n.noticeUnknownSession(now, via, from.Addr(), h)
			}
			return
		}
		if plain, err = t.sess.Open(pkt, now); err != nil {
			n.stats.dropAuth.Add(1)
			return
		}
	}
	t.heard(now)
	if via == nil && t.kind == kindLink {
		t.rxBytes.Add(uint64(len(pkt)))
	}
	if t.kind == kindLink {
		if from != t.remoteAddr() {
			// An authenticated packet from a new address: the neighbour moved (WireGuard's roaming).
			t.setRemote(from)
			n.sendObserved(now, t)
		}
		if len(plain) > 0 {
			n.handleFrame(now, t, plain, rx)
		}
		return
	}
	if t.queued.Load() {
		n.mu.Lock()
		n.flushQueueLocked(now, t)
		n.mu.Unlock()
	}
	switch {
	case len(plain) == 0: // keepalive
	case plain[0]>>4 == 0:
		n.handleControl(now, t, plain)
	default:
		n.deliver(now, t, plain, rx)
	}
}

// handleFrame dispatches a frame that arrived over the link t.
func (n *Node) handleFrame(now time.Time, t *tunnel, frame []byte, rx *rxBatch) {
	typ, err := overlay.FrameType(frame)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	switch typ {
	case overlay.TypeDirect:
		n.deliver(now, t, frame[1:], rx)
	case overlay.TypeRouted:
		n.handleRouted(now, t, frame, rx)
	case overlay.TypeLinkState:
		n.mu.Lock()
		if err := n.router.HandleMessage(now, t.id, frame[1:]); err != nil {
			n.log.Debug("link-state message refused", "from", t.peer().Name, "err", err)
		}
		n.flushRoutingLocked(now)
		n.mu.Unlock()
	case overlay.TypeProbe, overlay.TypeProbeAck:
		p, ack, err := overlay.ParseProbe(frame)
		if err != nil {
			n.stats.dropMalformed.Add(1)
			return
		}
		if !ack {
			n.sendFrame(now, t, overlay.AppendProbe(make([]byte, 0, overlay.ProbeSize), p, true))
			return
		}
		n.mu.Lock()
		if t.mon != nil {
			t.mon.Ack(now, p)
		}
		n.mu.Unlock()
	case overlay.TypeCRL:
		n.mu.Lock()
		n.handleCRLLocked(now, frame[1:], t)
		n.mu.Unlock()
	case overlay.TypeBurstLost:
		n.burstLossReported(now, t, frame[1:])
	case overlay.TypeBurstOK:
		n.burstProbeAnswered(now, t, frame[1:])
	case overlay.TypeObserved:
		n.handleObserved(now, t, frame)
	case overlay.TypePolicy:
		n.handlePolicyFrame(now, t, frame[1:])
	case overlay.TypeDecision:
		n.handleDecisionFrame(now, t, frame[1:])
	case overlay.TypePiece:
		n.handlePiece(now, t, frame, rx)
	}
}

// handleRouted delivers a routed frame addressed to us, or relays it one hop closer. Routed frames
// inside a link data packet carry end-to-end handshake messages only; end-to-end data packets travel
// as transit packets (handleTransit).
func (n *Node) handleRouted(now time.Time, via *tunnel, frame []byte, rx *rxBatch) {
	h, payload, err := overlay.ParseRouted(frame)
	if err != nil {
		n.countRoutedError(err)
		return
	}
	// Handshake initiation, response and cookie reply, unknown-session notices, punch messages and
	// level 2's messages, proofs, encapsulated packets and proof acknowledgements (level2.go).
	isLevel2 := payload[0] >= l2PayloadMessage && payload[0] <= l2PayloadProofAck
	if (payload[0] < 1 || payload[0] > 3) && payload[0] != session.TypeUnknownSession && payload[0] != punchTypeByte && !isLevel2 {
		n.stats.dropMalformed.Add(1)
		return
	}
	if h.Dst == n.addr {
		if isLevel2 {
			n.handleLevel2Payload(now, via, h.Src, payload, rx)
			return
		}
		switch payload[0] {
		case session.TypeUnknownSession:
			n.handleNotice(now, h.Src, payload)
			return
		case punchTypeByte:
			n.handlePunchRequest(now, h.Src, payload)
			return
		}
		n.mu.Lock()
		out, err := n.e2eHS.Handle(now, netip.AddrPortFrom(h.Src, 0), payload)
		n.handleE2EOutputLocked(now, out, err, via)
		n.mu.Unlock()
		return
	}
	e, ok := n.relayEntry(frame, h.Dst, via)
	if !ok {
		return
	}
	if e.level2 {
		n.forwardLevel2(now, encapRouted, frame[:overlay.RoutedHeaderSize], payload)
		return
	}
	if rx != nil {
		if rx.tx.add(now, e.nextHop, frame) {
			n.stats.forwarded.Add(1)
		}
		return
	}
	if n.sendFrame(now, e.nextHop, frame) {
		n.stats.forwarded.Add(1)
	}
}

// countRoutedError counts a routed header that did not parse: an exhausted hop limit, or malformed.
func (n *Node) countRoutedError(err error) {
	if errors.Is(err, overlay.ErrHopLimit) {
		n.stats.dropHopLimit.Add(1)
	} else {
		n.stats.dropMalformed.Add(1)
	}
}

// relayEntry decrements the hop limit of the routed header at the start of head and finds the
// forwarding entry to dst for a frame that came over the link via; it counts the drop when there
// is none (hop limit exhausted, no route, or a route back where the frame came from).
func (n *Node) relayEntry(head []byte, dst netip.Addr, via *tunnel) (fibEntry, bool) {
	if !overlay.DecrementHopLimit(head) {
		n.stats.dropHopLimit.Add(1)
		return fibEntry{}, false
	}
	f := n.fib.Load()
	e, ok := f.byAddr[dst]
	if !ok {
		// Not of this area: to the nearest gateway, or, at a gateway, by level 2 (level2.go).
		switch {
		case f.level2:
			return fibEntry{level2: true}, true
		case f.dflt != nil:
			e, ok = fibEntry{nextHop: f.dflt}, true
		}
	}
	if !ok || (e.nextHop == via && !e.level2) {
		n.stats.dropNoRoute.Add(1)
		return fibEntry{}, false
	}
	return e, true
}

// sendTransit seals the routed header head into the link session t, appends the end-to-end packet
// inner and sends the transit packet. It reports whether it was sent.
func (n *Node) sendTransit(now time.Time, t *tunnel, head, inner []byte) bool {
	out, err := t.sess.SealTransit(make([]byte, 0, session.TransitOverhead+len(head)+len(inner)), head, inner, now)
	if err != nil {
		n.stats.dropNoSession.Add(1)
		return false
	}
	return n.writeUDP(out, t.remoteAddr(), t, now)
}

// sendWholeFrame seals frame in one link data packet of t and sends it. It reports whether it was
// sent.
func (n *Node) sendWholeFrame(now time.Time, t *tunnel, frame []byte) bool {
	out, err := t.sess.Seal(make([]byte, 0, len(frame)+session.HeaderSize+session.TagSize), frame, now)
	if err != nil {
		n.stats.dropNoSession.Add(1)
		return false
	}
	return n.writeUDP(out, t.remoteAddr(), t, now)
}

func (n *Node) writeUDP(pkt []byte, to netip.AddrPort, t *tunnel, now time.Time) bool {
	if !to.IsValid() {
		return false
	}
	if _, err := n.conn.Send(pkt, len(pkt), to); err != nil {
		if !n.isClosed() {
			n.log.Debug("udp write", "to", to, "err", err)
		}
		return false
	}
	n.stats.txPackets.Add(1)
	n.stats.txBytes.Add(uint64(len(pkt)))
	if t != nil {
		t.lastSent.Store(now.UnixNano())
		if t.kind == kindLink {
			t.txBytes.Add(uint64(len(pkt)))
		}
	}
	return true
}
