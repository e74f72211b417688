package node

import (
	"net/netip"
	"sync"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/virtio"
)

// Bursts (docs/transport.md, "Bursts"). A kernel TUN hands the node whole TCP bursts of up to 64 KiB
// with a virtio-net header. The device loop seals such a burst once (a burst packet: end to end for a
// destination beyond a neighbour, in the link session for a neighbour) and cuts the sealed packet
// into pieces, each of which travels as a fragment transit packet: relays treat them like any transit
// packet. The destination collects the
// pieces in a fixed pool (session.Reassembler), opens the burst once, checks its header and hands it
// to its own kernel TUN in one write, or splits it in software for a userspace stack. Everything
// else read from the device is split in software (internal/virtio) and sent packet by packet.
//
// A sender uses bursts to a peer only while a recent burst probe (an empty burst packet) came back
// answered: that proves the peer and every relay on the path handle them (burstConfirmFor). One
// lost piece loses the whole burst, so the destination reports every burst it gave up on, and the
// sender then splits its bursts to that destination for a while (burstBackoffMin, doubling up to
// burstBackoffMax while losses go on).

const (
	// rawHeadroom is the room the device loop leaves before each raw read: the burst packet's header,
	// so that a burst can be sealed in place.
	rawHeadroom = session.HeaderSize
	// burstBackoffMin and burstBackoffMax bound how long a sender splits its bursts to a destination
	// that reported a lost burst.
	burstBackoffMin = time.Second
	burstBackoffMax = 64 * time.Second
	// burstLossReportEvery is the least time between two loss reports to one sender.
	burstLossReportEvery = 100 * time.Millisecond
	// burstConfirmFor is how long an answered burst probe lets a sender use bursts to a peer; while it
	// uses them it probes again once burstReprobeAfter has passed, and at most every burstProbeEvery.
	burstConfirmFor   = 30 * time.Second
	burstReprobeAfter = 10 * time.Second
	burstProbeEvery   = time.Second
	// ctlBurstLost is the end-to-end control message "a burst of yours was lost; send segments". An
	// end-to-end plaintext whose first byte's high nibble is 0 is a control message, never an IPv6
	// packet.
	ctlBurstLost = 0x01
	// ctlBurstOK is the end-to-end control message "your burst probe arrived".
	ctlBurstOK = 0x02
)

// rawReader is the device loop's state for device reads with virtio-net headers. One blocking read is
// followed by reads of what is already queued (at most readAhead frames in all), so that runs of
// small packets, such as ACKs or UDP datagrams, leave in one UDP_SEGMENT send.
type rawReader struct {
	// arena holds the frames of one batch back to back, each with rawHeadroom before it and room for
	// the burst packet's tag after it, so that a burst can be sealed in place.
	arena  []byte
	frames []rawFrame
	segs   [][]byte // segments of a frame split in software, each with txHeadroom in front
	sizes  []int
	head   []byte // routed header of the fragments of a burst
}

// rawFrame is a frame read into the arena: its room starts at off, the frame at off+rawHeadroom.
type rawFrame struct{ off, size int }

const (
	readAhead = 32
	// rawSlot is the room a read needs: a frame can be a 64 KiB burst.
	rawSlot = rawHeadroom + virtio.HeaderLen + netdev.MaxPacket + session.TagSize
)

func newRawReader(segs [][]byte, sizes []int) *rawReader {
	return &rawReader{
		arena: make([]byte, 2*rawSlot), frames: make([]rawFrame, 0, readAhead),
		segs: segs, sizes: sizes, head: make([]byte, 0, overlay.RoutedHeaderSize),
	}
}

// room is where a read into the arena at off goes.
func (r *rawReader) room(off int) []byte {
	return r.arena[off+rawHeadroom : off+rawHeadroom+virtio.HeaderLen+netdev.MaxPacket]
}

// read waits for a frame, then takes what else is queued while the arena has room for a whole burst.
// An error of a read that does not wait ends the batch; the next waiting read reports it.
func (r *rawReader) read(d RawDevice) error {
	r.frames = r.frames[:0]
	k, err := d.ReadRaw(r.room(0))
	if err != nil {
		return err
	}
	for off := 0; ; {
		r.frames = append(r.frames, rawFrame{off, k})
		off += (rawHeadroom + k + session.TagSize + 7) &^ 7
		if len(r.frames) == readAhead || len(r.arena)-off < rawSlot {
			return nil
		}
		if k, err = d.ReadRawNow(r.room(off)); err != nil || k == 0 {
			return nil
		}
	}
}

// sendRaw sends a frame of size bytes read into buf after rawHeadroom (buf reaches at least TagSize
// past the frame): a burst whole when it can, else packet by packet. With a sealer s it only routes
// the frame and plans its seals (seal.go).
func (n *Node) sendRaw(now time.Time, tx *txBatch, r *rawReader, s *txSealer, buf []byte, size int) {
	frame := buf[rawHeadroom : rawHeadroom+size]
	h, err := virtio.ParseHeader(frame)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	pkt := frame[virtio.HeaderLen:]
	if !isIPv6(pkt) {
		n.stats.dropNotOverlay.Add(1)
		return
	}
	if h.GSOType == virtio.GSOTCPv6 {
		if segments := virtio.Segments(h, pkt); segments > 0 { // it passes virtio.Header.Check
			if t := n.burstTunnel(now, pkt, len(frame)); t != nil {
				if e, ok := n.route(now, pkt); ok {
					if s != nil {
						s.addBurst(now, e, t, buf, size, segments)
					} else {
						n.sendBurst(now, tx, e, t, r, buf, size, segments)
					}
				}
				return
			}
		}
	}
	segs, sizes := r.segs, r.sizes
	if s != nil {
		// The segments of every frame of the batch wait in the read buffers for the seal.
		if s.segs+virtio.Segments(h, pkt) > len(r.segs) {
			s.flush(now, tx, r)
		}
		segs, sizes = r.segs[s.segs:], r.sizes[s.segs:]
	}
	k, err := virtio.Split(h, pkt, segs, sizes, txHeadroom)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		n.log.Debug("device packet not segmented", "err", err)
		return
	}
	if s != nil {
		s.segs += k
	}
	for i := range k {
		if s != nil {
			s.add(now, segs[i], sizes[i])
		} else {
			n.sendBuffered(now, tx, segs[i], sizes[i])
		}
	}
}

// burstTunnel returns the session a TCP burst pkt (frame bytes long with its virtio-net header) can
// travel whole in, or nil: the link session for a neighbour, else the end-to-end session, which must have
// keys. Bursts must be on, the peer must have reported no lost burst lately, and the burst packet
// must fit MaxFragments pieces.
func (n *Node) burstTunnel(now time.Time, pkt []byte, frame int) *tunnel {
	if n.opts.NoBursts || srcOf(pkt) != n.addr {
		return nil
	}
	dst := dstOf(pkt)
	e, ok := n.fib.Load().byAddr[dst]
	if !ok || e.l2 != nil {
		return nil // a gateway's own packets to another area are encapsulated one by one
	}
	t := e.nextHop
	if !e.direct {
		v, ok := n.e2eByDst.Load(dst)
		if !ok {
			return nil
		}
		t = v.(*tunnel)
	}
	if now.UnixNano() < t.burstOffUntil.Load() ||
		session.Pieces(frame+session.MinPacketSize, n.pieceSize) > session.MaxFragments {
		return nil
	}
	confirmed := t.burstConfirmedUntil.Load()
	if confirmed-now.UnixNano() < int64(burstConfirmFor-burstReprobeAfter) {
		n.probeBursts(now, t, e)
	}
	if now.UnixNano() >= confirmed {
		return nil
	}
	return t
}

// probeBursts sends t's peer a burst probe, an empty burst packet in one fragment transit packet, at
// most every burstProbeEvery. A peer and path that carry bursts answer it (burstProbeAnswered).
func (n *Node) probeBursts(now time.Time, t *tunnel, e fibEntry) {
	last := t.lastBurstProbe.Load()
	if now.UnixNano()-last < int64(burstProbeEvery) || !t.lastBurstProbe.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	probe, err := t.sess.SealBurst(make([]byte, 0, session.MinPacketSize), nil, now)
	if err != nil {
		return
	}
	bh, err := session.ParseBurstHeader(probe)
	if err != nil {
		return
	}
	f := session.Fragment{Burst: bh, Total: len(probe), Count: 1}
	head := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: t.addr})
	pkt, err := e.nextHop.sess.SealFragment(nil, head, f, probe, now)
	if err != nil {
		return
	}
	n.writeUDP(pkt, e.nextHop.remoteAddr(), e.nextHop, now)
}

// sendBurst seals the frame in buf (virtio-net header and a TCP burst of segments segments, after
// rawHeadroom) in place as one burst packet under the session t (end to end, or the next hop's link)
// and queues its pieces as fragment transit packets to e's next hop.
func (n *Node) sendBurst(now time.Time, tx *txBatch, e fibEntry, t *tunnel, r *rawReader, buf []byte, size, segments int) {
	start := rawHeadroom - session.HeaderSize
	sealed, err := t.sess.SealBurst(buf[start:start], buf[rawHeadroom:rawHeadroom+size], now)
	n.queueBurst(now, tx, e, t, r, sealed, err, segments)
}

// queueBurst queues the pieces of a burst packet sealed under t (or that failed to seal: err)
// as fragment transit packets to e's next hop.
func (n *Node) queueBurst(now time.Time, tx *txBatch, e fibEntry, t *tunnel, r *rawReader, sealed []byte, err error, segments int) {
	if err != nil {
		n.stats.dropNoSession.Add(1)
		return
	}
	bh, err := session.ParseBurstHeader(sealed)
	if err != nil {
		n.stats.dropMalformed.Add(1) // cannot happen: we just sealed it
		return
	}
	t.lastSent.Store(now.UnixNano())
	r.head = overlay.AppendRouted(r.head[:0], overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: t.addr})
	k := session.Pieces(len(sealed), n.pieceSize)
	for i := range k {
		f, end := session.Cut(bh, len(sealed), n.pieceSize, i)
		if !tx.addFragment(now, e.nextHop, r.head, f, sealed[f.Offset:end]) {
			return // counted; the rest of the burst is useless
		}
	}
	if !e.direct {
		e.nextHop.transitOut.Add(uint64(k))
	}
	n.stats.burstsSent.Add(1)
	n.stats.sent.Add(uint64(segments - 1)) // route counted the burst as one
}

// bursts is the destination's reassembly state. Pieces arrive on the receive loop; the timer expires
// stale bursts.
type bursts struct {
	mu    sync.Mutex
	reasm *session.Reassembler
	// Software split for a device without raw writes (carve; allocated on first use).
	arena []byte
	segs  [][]byte
	sizes []int
}

// handleFragment collects a piece of a burst packet addressed to us, which arrived over the link via
// in a fragment transit packet from src (inner: the piece with its prefix), and delivers the burst
// when it is whole. The burst is sealed in our end-to-end session with src, or, from a neighbour, in
// the session of the link it came over.
func (n *Node) handleFragment(now time.Time, via *tunnel, src netip.Addr, inner []byte, rx *rxBatch) {
	f, piece, err := session.ParseFragment(inner)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	t := n.idx.lookup(f.Burst.Receiver)
	if t == nil || (t.kind == kindLink && t != via) || t.addr != src {
		n.stats.dropNoSession.Add(1)
		if t == nil && src != via.addr {
			n.noticeUnknownSession(now, via, src, f.Burst)
		}
		return
	}
	if !t.sess.Fresh(f.Burst, now) {
		n.stats.dropAuth.Add(1) // a replayed or expired burst
		return
	}
	var answer bool
	b := &n.bursts
	b.mu.Lock()
	packet, dropped, err := b.reasm.Add(now, f, piece)
	if err != nil {
		b.mu.Unlock()
		n.stats.dropMalformed.Add(1)
		return
	}
	if packet != nil {
		// The packet lives in the reassembly pool until the next piece: open and deliver it now.
		plain, err := t.sess.OpenBurst(packet, now)
		switch {
		case err != nil:
			n.stats.dropAuth.Add(1)
		case len(plain) == 0: // a burst probe
			t.heard(now)
			answer = true
		default:
			t.heard(now)
			n.deliverBurst(now, t, plain, rx)
		}
	}
	b.mu.Unlock()
	if dropped.Why != session.LossNone {
		n.burstLost(now, dropped)
	}
	if answer {
		n.answerBurstProbe(now, t)
	}
}

// answerBurstProbe tells the peer of t that its burst probe arrived: bursts work on the path.
func (n *Node) answerBurstProbe(now time.Time, t *tunnel) {
	if t.kind == kindLink {
		n.sendFrame(now, t, []byte{byte(overlay.TypeBurstOK)})
		return
	}
	if err := n.sendE2E(now, t, []byte{ctlBurstOK}); err != nil {
		n.log.Debug("burst probe not answered", "peer", t.peer().Name, "err", err)
	}
}

// burstProbeAnswered takes the answer to our burst probe from the peer of t: bursts may go to it
// for burstConfirmFor.
func (n *Node) burstProbeAnswered(now time.Time, t *tunnel, body []byte) {
	if len(body) != 0 {
		n.stats.dropMalformed.Add(1)
		return
	}
	t.burstConfirmedUntil.Store(now.Add(burstConfirmFor).UnixNano())
}

// deliverBurst hands a burst from peer t (virtio-net header and TCP burst) to the host, after the
// checks every delivered packet passes: to the kernel TUN in one write, or split in software.
func (n *Node) deliverBurst(now time.Time, t *tunnel, plain []byte, rx *rxBatch) {
	h, err := virtio.ParseHeader(plain)
	if err != nil || h.GSOType != virtio.GSOTCPv6 {
		n.stats.dropMalformed.Add(1)
		return
	}
	pkt := plain[virtio.HeaderLen:]
	segments := virtio.Segments(h, pkt) // 0 when the header does not pass virtio.Header.Check
	if segments == 0 {
		n.stats.dropMalformed.Add(1)
		return
	}
	if !n.fromPeer(t, pkt) {
		return
	}
	if !n.fw.Inbound(now, pkt, t.peer()).Allowed() {
		n.stats.dropFirewall.Add(1)
		return
	}
	if n.dev == nil {
		return // a relay-only node has no host to give TCP to
	}
	if rx != nil && rx.dev != nil {
		rx.dev.flush() // what came before the burst goes first
	}
	if n.raw != nil {
		if err := n.raw.WriteRaw(plain); err != nil {
			n.log.Debug("device write", "err", err)
			return
		}
		n.stats.delivered.Add(uint64(segments))
		n.stats.burstsDelivered.Add(1)
		return
	}
	segs, ok := n.bursts.carve(segments, netdev.Offset+min(len(pkt), maxHeaders+int(h.GSOSize)))
	if !ok {
		n.stats.dropMalformed.Add(1)
		return
	}
	k, err := virtio.Split(h, pkt, segs, n.bursts.sizes, netdev.Offset)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	for i := range k {
		segs[i] = segs[i][:netdev.Offset+n.bursts.sizes[i]]
	}
	if _, err := n.dev.Write(segs[:k], netdev.Offset); err != nil {
		n.log.Debug("device write", "err", err)
		return
	}
	n.stats.delivered.Add(uint64(k))
	n.stats.burstsDelivered.Add(1)
}

// Bounds of a software split on delivery: at most devBatch segments, each with the device's
// headroom and at most maxHeaders of IPv6 and TCP headers. The segments' payloads add up to at most
// 64 KiB plus one segment's, so all of them fit splitArena whatever the sender's segment size (and
// MTU) was.
const (
	maxHeaders = ipv6HeaderLen + 60
	splitArena = devBatch*(netdev.Offset+maxHeaders) + 2*netdev.MaxPacket
)

// carve cuts k buffers of size bytes out of the split arena (allocated on first use); it refuses
// what does not fit, which a burst that passed virtio.Header.Check never asks for.
func (b *bursts) carve(k, size int) ([][]byte, bool) {
	if b.arena == nil {
		b.arena = make([]byte, splitArena)
		b.segs = make([][]byte, devBatch)
		b.sizes = make([]int, devBatch)
	}
	if k > len(b.segs) || k*size > len(b.arena) {
		return nil, false
	}
	for i := range k {
		b.segs[i] = b.arena[i*size : (i+1)*size]
	}
	return b.segs[:k], true
}

// burstLost tells the sender of a burst we gave up on to split its bursts for a while.
func (n *Node) burstLost(now time.Time, d session.Dropped) {
	n.stats.burstsLost.Add(1)
	t := n.idx.lookup(d.Receiver)
	if t == nil {
		return
	}
	last := t.lastLossReport.Load()
	if now.UnixNano()-last < int64(burstLossReportEvery) || !t.lastLossReport.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	n.log.Debug("burst lost; asking the sender to split", "peer", t.peer().Name, "why", d.Why)
	if t.kind == kindLink {
		n.sendFrame(now, t, []byte{byte(overlay.TypeBurstLost)})
		return
	}
	if err := n.sendE2E(now, t, []byte{ctlBurstLost}); err != nil {
		n.log.Debug("burst loss report not sent", "peer", t.peer().Name, "err", err)
	}
}

// expireBursts discards the bursts that stayed incomplete too long (timer).
func (n *Node) expireBursts(now time.Time) {
	b := &n.bursts
	var lost [session.ReassemblySlots]session.Dropped
	k := 0
	b.mu.Lock()
	b.reasm.Expire(now, func(d session.Dropped) {
		if k < len(lost) {
			lost[k] = d
			k++
		}
	})
	b.mu.Unlock()
	for _, d := range lost[:k] {
		n.burstLost(now, d)
	}
}

// handleControl acts on an end-to-end control message from peer t.
func (n *Node) handleControl(now time.Time, t *tunnel, msg []byte) {
	switch msg[0] {
	case ctlBurstLost:
		n.burstLossReported(now, t, msg[1:])
	case ctlBurstOK:
		n.burstProbeAnswered(now, t, msg[1:])
	default:
		n.stats.dropMalformed.Add(1)
	}
}

// burstLossReported takes a loss report from the peer of t (end-to-end, or a neighbour's link frame);
// both have an empty body.
func (n *Node) burstLossReported(now time.Time, t *tunnel, body []byte) {
	if len(body) != 0 {
		n.stats.dropMalformed.Add(1)
		return
	}
	n.stats.burstBackoffs.Add(1)
	t.backOffBursts(now)
}

// backOffBursts makes the sender split its bursts to t's peer: for burstBackoffMin, or twice as long
// as last time if bursts were lost again soon after they resumed. Reports of bursts sent before the
// back-off began are ignored.
func (t *tunnel) backOffBursts(now time.Time) {
	t.burstMu.Lock()
	defer t.burstMu.Unlock()
	off := t.burstOffUntil.Load()
	if now.UnixNano() < off {
		return
	}
	if t.burstBackoff == 0 || now.Sub(time.Unix(0, off)) > 2*t.burstBackoff {
		t.burstBackoff = burstBackoffMin
	} else {
		t.burstBackoff = min(2*t.burstBackoff, burstBackoffMax)
	}
	t.burstOffUntil.Store(now.Add(t.burstBackoff).UnixNano())
}
