package node

import (
	"errors"
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

// deviceLoop reads IPv6 packets from the device and sends them into the mesh.
func (n *Node) deviceLoop() {
	defer n.wg.Done()
	batch := n.dev.BatchSize()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, netdev.Offset+netdev.MaxPacket)
	}
	sizes := make([]int, batch)
	for {
		k, err := n.dev.Read(bufs, sizes, netdev.Offset)
		if err != nil {
			if n.isClosed() {
				return
			}
			n.log.Warn("device read", "err", err)
			if errors.Is(err, errDeviceGone) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a transient error must not spin a core
			continue
		}
		now := time.Now()
		for i := range k {
			n.sendPacket(now, bufs[i][netdev.Offset:netdev.Offset+sizes[i]])
		}
	}
}

var errDeviceGone = errors.New("device closed")

// sendPacket sends an IPv6 packet from this node into the mesh: straight to a neighbour under the link
// session (one layer of encryption), or under an end-to-end session through relays.
func (n *Node) sendPacket(now time.Time, pkt []byte) {
	if !isIPv6(pkt) || srcOf(pkt) != n.addr {
		// IPv4, or the host's link-local chatter (router solicitations, MLD): not overlay traffic.
		n.stats.dropNotOverlay.Add(1)
		return
	}
	dst := dstOf(pkt)
	e, ok := n.fib.Load().byAddr[dst]
	if !ok {
		n.stats.dropNoRoute.Add(1)
		return
	}
	if !n.fw.Outbound(now, pkt, e.cert).Allowed() {
		n.stats.dropFirewall.Add(1)
		return
	}
	n.stats.sent.Add(1)
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

// sendE2E seals pkt under the end-to-end session t and hands the routed frame to the next hop.
func (n *Node) sendE2E(now time.Time, t *tunnel, pkt []byte) error {
	e, ok := n.fib.Load().byAddr[t.addr]
	if !ok {
		n.stats.dropNoRoute.Add(1)
		return nil // counted; queueing would not help
	}
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+len(pkt)+session.HeaderSize+session.TagSize),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: t.addr})
	frame, err := t.sess.Seal(frame, pkt, now)
	if err != nil {
		return err
	}
	t.lastSent.Store(now.UnixNano())
	n.sendFrame(now, e.nextHop, frame)
	return nil
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
		n.handleE2EOutputLocked(now, out, err)
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

// deliver hands an IPv6 packet that arrived from peer t to the host, after the identity checks.
func (n *Node) deliver(now time.Time, t *tunnel, pkt []byte) {
	if !isIPv6(pkt) {
		n.stats.dropMalformed.Add(1)
		return
	}
	if dstOf(pkt) != n.addr {
		n.stats.dropNoRoute.Add(1)
		return
	}
	peer := t.peer()
	if srcOf(pkt) != peer.Overlay {
		n.stats.dropSpoofed.Add(1)
		return
	}
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
	buf := make([]byte, netdev.Offset+len(pkt))
	copy(buf[netdev.Offset:], pkt)
	if _, err := n.dev.Write([][]byte{buf}, netdev.Offset); err != nil {
		n.log.Debug("device write", "err", err)
		return
	}
	n.stats.delivered.Add(1)
}
