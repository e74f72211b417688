package node

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
)

// receiveLoop reads UDP datagrams until the socket is closed.
func (n *Node) receiveLoop() {
	defer n.wg.Done()
	buf := make([]byte, maxUDPPayload)
	for {
		size, from, err := n.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if n.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.Warn("udp read", "err", err)
			continue
		}
		n.stats.rxPackets.Add(1)
		n.stats.rxBytes.Add(uint64(size))
		n.handleDatagram(time.Now(), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), buf[:size])
	}
}

func (n *Node) handleDatagram(now time.Time, from netip.AddrPort, pkt []byte) {
	if len(pkt) == 0 {
		n.stats.dropMalformed.Add(1)
		return
	}
	switch pkt[0] {
	case 1, 2, 3: // handshake initiation, response, cookie reply
		n.mu.Lock()
		out, err := n.linkHS.Handle(now, from, pkt)
		n.handleLinkOutputLocked(now, out, err)
		n.mu.Unlock()
	case 4:
		n.handleTransport(now, from, pkt, nil)
	default:
		n.stats.dropMalformed.Add(1)
	}
}

// handleTransport opens a transport packet: a link packet straight off UDP (via == nil), or an
// end-to-end packet that arrived inside a routed frame over the link via.
func (n *Node) handleTransport(now time.Time, from netip.AddrPort, pkt []byte, via *tunnel) {
	h, err := session.ParseDataHeader(pkt)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	t := n.idx.lookup(h.Receiver)
	if t == nil || (via == nil) != (t.kind == kindLink) {
		n.stats.dropNoSession.Add(1)
		return
	}
	plain, err := t.sess.Open(pkt, now)
	if err != nil {
		n.stats.dropAuth.Add(1)
		return
	}
	t.heard(now)
	if t.kind == kindLink {
		if from != t.remoteAddr() {
			// An authenticated packet from a new address: the neighbour moved (WireGuard's roaming).
			t.setRemote(from)
		}
		if len(plain) > 0 {
			n.handleFrame(now, t, plain)
		}
		return
	}
	if t.queued.Load() {
		n.mu.Lock()
		n.flushQueueLocked(now, t)
		n.mu.Unlock()
	}
	if len(plain) > 0 {
		n.deliver(now, t, plain)
	}
}

// handleFrame dispatches a frame that arrived over the link t.
func (n *Node) handleFrame(now time.Time, t *tunnel, frame []byte) {
	typ, err := overlay.FrameType(frame)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	switch typ {
	case overlay.TypeDirect:
		n.deliver(now, t, frame[1:])
	case overlay.TypeRouted:
		n.handleRouted(now, t, frame)
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
	}
}

// handleRouted delivers a routed frame addressed to us, or relays it one hop closer.
func (n *Node) handleRouted(now time.Time, via *tunnel, frame []byte) {
	h, payload, err := overlay.ParseRouted(frame)
	if err != nil {
		if errors.Is(err, overlay.ErrHopLimit) {
			n.stats.dropHopLimit.Add(1)
		} else {
			n.stats.dropMalformed.Add(1)
		}
		return
	}
	if h.Dst == n.addr {
		src := netip.AddrPortFrom(h.Src, 0)
		switch payload[0] {
		case 1, 2, 3:
			n.mu.Lock()
			out, err := n.e2eHS.Handle(now, src, payload)
			n.handleE2EOutputLocked(now, out, err)
			n.mu.Unlock()
		case 4:
			n.handleTransport(now, src, payload, via)
		default:
			n.stats.dropMalformed.Add(1)
		}
		return
	}
	if !overlay.DecrementHopLimit(frame) {
		n.stats.dropHopLimit.Add(1)
		return
	}
	e, ok := n.fib.Load().byAddr[h.Dst]
	if !ok || e.nextHop == via {
		n.stats.dropNoRoute.Add(1)
		return
	}
	if n.sendFrame(now, e.nextHop, frame) {
		n.stats.forwarded.Add(1)
	}
}

// sendFrame seals a frame into the link session t and sends it. It reports whether it was sent.
func (n *Node) sendFrame(now time.Time, t *tunnel, frame []byte) bool {
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
	if _, err := n.udp.WriteToUDPAddrPort(pkt, to); err != nil {
		if !n.isClosed() {
			n.log.Debug("udp write", "to", to, "err", err)
		}
		return false
	}
	n.stats.txPackets.Add(1)
	n.stats.txBytes.Add(uint64(len(pkt)))
	if t != nil {
		t.lastSent.Store(now.UnixNano())
	}
	return true
}
