package node

import (
	"net/netip"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/underlay"
)

// The batched packet path (docs/performance.md). The device loop reads a batch of packets from the
// device (with TUN offloads one TCP super-packet arrives already cut into MTU-sized segments), seals
// each one in place in its read buffer and then into one contiguous UDP send buffer, and hands runs of
// equal-sized datagrams for the same neighbour to the kernel in one sendmsg with UDP_SEGMENT (UDP
// GSO). A packet for a node that is not a neighbour is sealed end to end in place and leaves as a
// transit packet: only its routed header is sealed again in the link session (docs/transport.md).
// The receive loop reads with UDP_GRO, so one recvmsg returns up to 64 KiB of datagrams of one
// size, opens each in place, and writes the delivered packets to the device as one batch (the TUN
// device coalesces TCP segments, GRO). A relay opens a transit packet's header, seals it again for
// the next link and copies the end-to-end packet behind it into the same kind of send batch.
// Nothing on this path allocates; every buffer belongs to one loop goroutine.

const (
	// txHeadroom is the room the device loop leaves before each packet it reads: the link session
	// header, then for an end-to-end packet the routed header and the end-to-end session header, so
	// that both can be written in front of the packet without moving it.
	txHeadroom = session.HeaderSize + overlay.RoutedHeaderSize + session.HeaderSize + 12 // 80, ≥ netdev.Offset
	// txTailroom holds the end-to-end tag after the packet.
	txTailroom = session.TagSize
	// gsoMaxBytes and gsoMaxSegments bound one send of a run of datagrams.
	gsoMaxBytes    = underlay.MaxSendBytes
	gsoMaxSegments = underlay.MaxSendSegments
	// devBatch bounds the packets handed to the device in one Write.
	devBatch = 128
)

// e2eOverhead is what a packet to a non-neighbour gains on the way: the link session around a routed
// header, the routed header and the end-to-end session (docs/transport.md, "Transit packet").
const e2eOverhead = session.TransitOverhead + overlay.RoutedHeaderSize + session.MinPacketSize

// segmentsPerSend is how many full-sized packets of a device with the given MTU one UDP_SEGMENT send
// carries, sealed end to end (the larger overhead).
func segmentsPerSend(mtu int) int {
	return max(1, min(gsoMaxSegments, gsoMaxBytes/(mtu+e2eOverhead)))
}

// txBatch collects sealed datagrams for one neighbour in one contiguous buffer and hands them to the
// Conn in one Send, which the kernel takes in as few syscalls as it can. It belongs to one goroutine.
type txBatch struct {
	n     *Node
	buf   []byte // the datagrams back to back
	t     *tunnel
	to    netip.AddrPort
	seg   int  // size of every datagram but possibly the last
	count int  // datagrams in buf
	short bool // the last datagram is shorter than seg: nothing more may join
}

func newTxBatch(n *Node) *txBatch {
	return &txBatch{n: n, buf: make([]byte, 0, gsoMaxBytes+session.MaxPacketSize)}
}

// add seals frame under the link session of t and queues the datagram; it flushes first when the
// datagram cannot join the queued run. It reports whether the frame was sealed.
func (b *txBatch) add(now time.Time, t *tunnel, frame []byte) bool {
	size := len(frame) + session.MinPacketSize
	if !b.reserve(now, t, size) {
		return false
	}
	out, err := t.sess.Seal(b.buf, frame, now)
	return b.commit(out, err, size)
}

// addSealed queues a datagram sealed under the link session of t elsewhere (seal.go).
func (b *txBatch) addSealed(now time.Time, t *tunnel, datagram []byte) bool {
	if !b.reserve(now, t, len(datagram)) {
		return false
	}
	return b.commit(append(b.buf, datagram...), nil, len(datagram))
}

// addTransit queues a transit packet (docs/transport.md): the routed header head sealed under the
// link session of t, followed by the end-to-end packet (or the burst piece with its prefix) inner,
// copied as it is.
func (b *txBatch) addTransit(now time.Time, t *tunnel, head, inner []byte) bool {
	size := session.TransitOverhead + len(head) + len(inner)
	if !b.reserve(now, t, size) {
		return false
	}
	out, err := t.sess.SealTransit(b.buf, head, inner, now)
	return b.commit(out, err, size)
}

// addFragment queues a fragment transit packet: head sealed under the link session of t, bound to
// the piece's place f in its burst packet, then the piece.
func (b *txBatch) addFragment(now time.Time, t *tunnel, head []byte, f session.Fragment, piece []byte) bool {
	size := session.TransitOverhead + len(head) + session.FragmentPrefixSize + len(piece)
	if !b.reserve(now, t, size) {
		return false
	}
	out, err := t.sess.SealFragment(b.buf, head, f, piece, now)
	return b.commit(out, err, size)
}

// reserve makes room for a datagram of size bytes to the neighbour t: it flushes first when the
// datagram cannot join the queued run. It reports false when t has no address yet.
func (b *txBatch) reserve(now time.Time, t *tunnel, size int) bool {
	if b.count > 0 && (t != b.t || size > b.seg || b.short || len(b.buf)+size > gsoMaxBytes ||
		b.count >= gsoMaxSegments) {
		b.flush(now)
	}
	if b.count == 0 {
		b.to = t.remoteAddr()
		if !b.to.IsValid() {
			return false
		}
		b.t, b.seg = t, size
	}
	return true
}

// commit takes the batch buffer with the datagram of size bytes sealed onto it.
func (b *txBatch) commit(out []byte, err error, size int) bool {
	if err != nil {
		b.n.stats.dropNoSession.Add(1)
		if b.count == 0 {
			b.t = nil
		}
		return false
	}
	b.buf = out
	b.count++
	if size < b.seg {
		b.short = true
	}
	return true
}

// flush sends what is queued.
func (b *txBatch) flush(now time.Time) {
	if b.count == 0 {
		return
	}
	n := b.n
	sent, err := n.conn.Send(b.buf, b.seg, b.to)
	if err != nil && !n.isClosed() {
		n.log.Debug("udp write", "to", b.to, "err", err)
	}
	if sent > 0 {
		n.stats.txPackets.Add(uint64(sent))
		n.stats.txBytes.Add(uint64(len(b.buf)))
		b.t.lastSent.Store(now.UnixNano())
		if b.t.kind == kindLink {
			b.t.txBytes.Add(uint64(len(b.buf)))
		}
	}
	b.buf, b.t, b.count, b.short = b.buf[:0], nil, 0, false
}

// devWriter collects packets for the device and writes them as one batch. It belongs to the receive
// loop. Each buffer has room for the device to coalesce a whole TCP burst into (64 KiB), so the
// buffers are made as batches need them, up to devBatch, and at the end of every devShrinkEvery the
// writer keeps twice as many as the largest batch of that period needed: a node whose batches hold a
// few packets keeps a few buffers instead of 8 MiB, a burst of traffic or a stalled loop leaves none
// behind for long (an idle node's receive loop still wakes for link probes), and batches whose size
// wavers do not make and drop buffers over and over.
type devWriter struct {
	n     *Node
	bufs  [][]byte // views handed to Write
	mem   [][]byte // the full buffers behind bufs, at most devBatch
	k     int
	peak  int       // the largest batch of this period
	since time.Time // when this period began
}

const devShrinkEvery = 10 * time.Second

func newDevWriter(n *Node) *devWriter {
	return &devWriter{n: n, bufs: make([][]byte, devBatch), mem: make([][]byte, 0, devBatch)}
}

// add copies pkt into the next buffer (the plaintext lives in the receive buffer, which the device
// must not coalesce into).
func (w *devWriter) add(pkt []byte) {
	if w.k == devBatch {
		w.flush()
	}
	if w.k == len(w.mem) {
		w.mem = append(w.mem, make([]byte, netdev.Offset+netdev.MaxPacket))
	}
	b := w.mem[w.k][:netdev.Offset+len(pkt)]
	copy(b[netdev.Offset:], pkt)
	w.bufs[w.k] = b
	w.k++
}

func (w *devWriter) flush() {
	if w.k == 0 {
		return
	}
	k := w.k
	w.k = 0
	w.peak = max(w.peak, k)
	if _, err := w.n.dev.Write(w.bufs[:k], netdev.Offset); err != nil {
		w.n.log.Debug("device write", "err", err)
		return
	}
	w.n.stats.delivered.Add(uint64(k))
}

// shrink ends the period at now once it has lasted devShrinkEvery; if its largest batch used fewer
// than half the buffers, it drops those beyond twice that batch (and the views of them from earlier
// batches, which would keep them alive).
func (w *devWriter) shrink(now time.Time) {
	if now.Sub(w.since) < devShrinkEvery {
		return
	}
	if keep := 2 * w.peak; keep < len(w.mem) {
		clear(w.mem[keep:])
		clear(w.bufs[keep:])
		w.mem = w.mem[:keep]
	}
	w.peak, w.since = 0, now
}

// rxBatch is the receive loop's state for one read: device writes and relayed frames to flush.
type rxBatch struct {
	dev *devWriter // nil without a device
	tx  *txBatch
}

func (r *rxBatch) flush(now time.Time) {
	if r == nil {
		return
	}
	if r.dev != nil {
		r.dev.flush()
		r.dev.shrink(now)
	}
	r.tx.flush(now)
}
