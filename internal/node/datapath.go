package node

import (
	"net/netip"
	"slices"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
)

const ipv6HeaderLen = 40

func dstOf(pkt []byte) netip.Addr { return netip.AddrFrom16([16]byte(pkt[24:40])) }
func srcOf(pkt []byte) netip.Addr { return netip.AddrFrom16([16]byte(pkt[8:24])) }

func isIPv6(pkt []byte) bool { return len(pkt) >= ipv6HeaderLen && pkt[0]>>4 == 6 }

// sendBuffered is sendPacket for a packet at buf[txHeadroom:][:size] with room around it: the frame
// and session headers are written in front of the packet and the datagram is sealed straight into
// the send batch, so nothing is copied or allocated.
func (n *Node) sendBuffered(now time.Time, tx *txBatch, buf []byte, size int) {
	pkt := buf[txHeadroom : txHeadroom+size]
	e, ok := n.route(now, pkt)
	if !ok {
		return
	}
	if e.direct {
		buf[txHeadroom-1] = byte(overlay.TypeDirect)
		tx.add(now, e.nextHop, buf[txHeadroom-1:txHeadroom+size])
		return
	}
	if v, ok := n.e2eByDst.Load(dstOf(pkt)); ok {
		t := v.(*tunnel)
		// The end-to-end packet takes buf[start+RoutedHeaderSize:], its routed header buf[start:].
		start := txHeadroom - session.HeaderSize - overlay.RoutedHeaderSize
		sealed, err := t.sess.Seal(buf[start+overlay.RoutedHeaderSize:start+overlay.RoutedHeaderSize], pkt, now)
		if err == nil {
			n.sendSealedE2E(now, tx, e, t, buf[start:start+overlay.RoutedHeaderSize], sealed)
			return
		}
	}
	n.queueE2E(now, e, pkt)
}

// sendSealedE2E queues the end-to-end packet sealed under t as a transit packet to e's next hop,
// with its routed header written into head.
func (n *Node) sendSealedE2E(now time.Time, tx *txBatch, e fibEntry, t *tunnel, head, sealed []byte) {
	overlay.AppendRouted(head[:0], overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: t.addr})
	t.lastSent.Store(now.UnixNano())
	if e.l2 != nil {
		n.sendOwnTransit(now, e, head, sealed)
		return
	}
	if tx.addTransit(now, e.nextHop, head, sealed) {
		e.nextHop.transitOut.Add(1)
	}
}

// queueE2E holds pkt until an end-to-end session to its destination has keys.
func (n *Node) queueE2E(now time.Time, e fibEntry, pkt []byte) {
	n.mu.Lock()
	n.queueE2ELocked(now, dstOf(pkt), e, pkt)
	n.mu.Unlock()
}

// route applies the checks every packet from the device passes and finds its forwarding entry.
func (n *Node) route(now time.Time, pkt []byte) (fibEntry, bool) {
	if !isIPv6(pkt) || srcOf(pkt) != n.addr {
		// IPv4, or the host's link-local chatter (router solicitations, MLD): not overlay traffic.
		n.stats.dropNotOverlay.Add(1)
		return fibEntry{}, false
	}
	e, ok := n.fib.Load().byAddr[dstOf(pkt)]
	if !ok {
		n.stats.dropNoRoute.Add(1)
		return fibEntry{}, false
	}
	if !n.fw.Outbound(now, pkt, e.cert).Allowed() {
		n.stats.dropFirewall.Add(1)
		return fibEntry{}, false
	}
	n.stats.sent.Add(1)
	if e.direct {
		n.stats.sentDirectBytes.Add(uint64(len(pkt)))
	} else {
		n.stats.sentRelayedBytes.Add(uint64(len(pkt)))
	}
	return e, true
}

// sendPacket sends an IPv6 packet from this node into the mesh: straight to a neighbour under the link
// session (one layer of encryption), or under an end-to-end session through relays.
func (n *Node) sendPacket(now time.Time, pkt []byte) {
	e, ok := n.route(now, pkt)
	if !ok {
		return
	}
	dst := dstOf(pkt)
	if e.direct {
		frame := make([]byte, 0, 1+len(pkt))
		n.sendFrame(now, e.nextHop, append(append(frame, byte(overlay.TypeDirect)), pkt...))
		return
	}
	if v, ok := n.e2eByDst.Load(dst); ok {
		if err := n.sendE2E(now, v.(*tunnel), pkt); err == nil {
			return
		}
	}
	n.mu.Lock()
	n.queueE2ELocked(now, dst, e, pkt)
	n.mu.Unlock()
}

// sendE2E seals pkt under the end-to-end session t and sends it to the next hop as a transit packet.
func (n *Node) sendE2E(now time.Time, t *tunnel, pkt []byte) error {
	e, ok := n.fib.Load().byAddr[t.addr]
	if !ok {
		n.stats.dropNoRoute.Add(1)
		return nil // counted; queueing would not help
	}
	if e.l2 != nil {
		head, inner, err := n.sealE2E(now, t, pkt)
		if err == nil {
			n.sendOwnTransit(now, e, head, inner)
		}
		return err
	}
	_, err := n.sendE2EVia(now, t, e.nextHop, pkt)
	return err
}

// sendE2EVia seals pkt under the end-to-end session t and hands it to the neighbour link as a
// transit packet, whatever the forwarding table says (self-healing probes choose their relay). It
// reports whether the packet was sent; an error means it could not be sealed.
func (n *Node) sendE2EVia(now time.Time, t, link *tunnel, pkt []byte) (bool, error) {
	head, inner, err := n.sealE2E(now, t, pkt)
	if err != nil {
		return false, err
	}
	if !n.sendTransit(now, link, head, inner) {
		return false, nil
	}
	if link.addr != t.addr {
		link.transitOut.Add(1)
	}
	return true, nil
}

// sealE2E seals pkt under the end-to-end session t: the routed header to t's peer and the sealed
// packet.
func (n *Node) sealE2E(now time.Time, t *tunnel, pkt []byte) (head, inner []byte, err error) {
	inner, err = t.sess.Seal(make([]byte, 0, len(pkt)+session.MinPacketSize), pkt, now)
	if err != nil {
		return nil, nil, err
	}
	t.lastSent.Store(now.UnixNano())
	head = overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: t.addr})
	return head, inner, nil
}

// queueE2ELocked holds pkt until an end-to-end session to dst has keys, starting the handshake.
func (n *Node) queueE2ELocked(now time.Time, dst netip.Addr, e fibEntry, pkt []byte) {
	t := n.e2e[dst]
	if t == nil {
		if len(n.e2e) >= maxE2E {
			n.stats.dropQueueFull.Add(1)
			return
		}
		t = n.newTunnelLocked(kindE2E, e.cert, now)
		n.e2e[dst] = t
	}
	if len(t.queue) >= maxQueuedPerPeer {
		n.stats.dropQueueFull.Add(1)
		return
	}
	t.queue = append(t.queue, slices.Clone(pkt))
	t.queued.Store(true)
	if !t.installed {
		out, err := n.e2eHS.Initiate(now, netip.AddrPortFrom(dst, 0), t.peer())
		n.handleE2EOutputLocked(now, out, err, nil)
	}
}

// flushQueueLocked sends what waited for the session's keys; what still cannot be sealed stays.
func (n *Node) flushQueueLocked(now time.Time, t *tunnel) {
	for len(t.queue) > 0 {
		if err := n.sendE2E(now, t, t.queue[0]); err != nil {
			return
		}
		t.queue = t.queue[1:]
	}
	t.queue = nil
	t.queued.Store(false)
}

// fromPeer reports whether the IPv6 packet pkt, which arrived in t's session, is for us and from t's
// peer, the identity its session proved; it counts the drop when not.
func (n *Node) fromPeer(t *tunnel, pkt []byte) bool {
	if dstOf(pkt) != n.addr {
		n.stats.dropNoRoute.Add(1)
		return false
	}
	if srcOf(pkt) != t.peer().Overlay {
		n.stats.dropSpoofed.Add(1)
		return false
	}
	return true
}

// deliver hands an IPv6 packet that arrived from peer t to the host, after the identity checks. With
// a receive batch rx the packet joins the batch's device write; without one it is written at once.
func (n *Node) deliver(now time.Time, t *tunnel, pkt []byte, rx *rxBatch) {
	if !isIPv6(pkt) {
		n.stats.dropMalformed.Add(1)
		return
	}
	if !n.fromPeer(t, pkt) {
		return
	}
	peer := t.peer()
	if n.consumePingReply(now, pkt) {
		return
	}
	if !n.fw.Inbound(now, pkt, peer).Allowed() {
		n.stats.dropFirewall.Add(1)
		return
	}
	if n.dev == nil {
		n.answerEcho(now, pkt)
		return
	}
	if rx != nil && rx.dev != nil {
		rx.dev.add(pkt)
		return
	}
	buf := make([]byte, netdev.Offset+len(pkt))
	copy(buf[netdev.Offset:], pkt)
	if _, err := n.dev.Write([][]byte{buf}, netdev.Offset); err != nil {
		n.log.Debug("device write", "err", err)
		return
	}
	n.stats.delivered.Add(1)
}
