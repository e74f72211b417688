package node

import (
	"time"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
)

// Sealing a device batch in parallel (workers.go), as wireguard-go's encryption workers do. First the
// device loop routes every packet of the batch: the firewall, the forwarding table and the choice
// of session, which decide where a packet goes and must see the packets in order, and it takes each
// packet's send counter (session.Reserve), the one step that writes to the session. Then the loop
// and the helpers seal the packets in place in their read buffers, each once: a packet to a
// neighbour in the link session, a packet to a farther node end to end, a TCP burst as one burst
// packet. Then the loop queues the sealed datagrams in the batch's order, as the inline path does: a
// neighbour's packet is copied into the send batch, a transit packet gets its routed header sealed
// into the link (a short seal), a burst is cut into its pieces. The copy is the price of sealing
// before the send batch has a place for the datagram; it is small beside the seal.

// sealKind is what the parallel phase does to a routed packet.
type sealKind uint8

const (
	sealDirect sealKind = iota + 1 // a packet to a neighbour: seal it in the link session
	sealE2E                        // a packet to a farther node: seal it end to end
	sealBurst                      // a TCP burst: seal it as one burst packet
	sealQueue                      // no end-to-end session: nothing to seal; queue it for the handshake
)

// sealJob is one routed packet of a batch.
type sealJob struct {
	kind     sealKind
	buf      []byte // the packet at buf[txHeadroom:][:size]; a burst's frame at buf[rawHeadroom:][:size]
	size     int
	segments int // a burst's TCP segments
	e        fibEntry
	t        *tunnel             // the session it is sealed in
	r        session.Reservation // its send counter
	out      []byte              // the sealed packet, in buf
	err      error
}

// txSealer is the device loop's batch when it has helpers.
type txSealer struct {
	n       *Node
	fan     *fanout
	jobs    []sealJob
	weights []int
	segs    int // read buffers of a software split already holding packets of the batch (burst.go)
	ends    [maxParts]int
}

func newTxSealer(n *Node, w *workers, batch int) *txSealer {
	s := &txSealer{n: n, jobs: make([]sealJob, 0, batch+readAhead), weights: make([]int, 0, batch+readAhead)}
	s.fan = newFanout(w, s.sealPart)
	return s
}

// use returns s when a batch with total bytes to seal is worth sharing, else nil: the loop seals
// each packet as it routes it.
func (s *txSealer) use(total int) *txSealer {
	if s == nil || s.fan.partsFor(total) <= 1 {
		return nil
	}
	return s
}

// add routes the packet at buf[txHeadroom:][:size], as sendBuffered does, and plans its seal.
func (s *txSealer) add(now time.Time, buf []byte, size int) {
	n := s.n
	pkt := buf[txHeadroom : txHeadroom+size]
	e, ok := n.route(now, pkt)
	if !ok {
		return
	}
	j := sealJob{kind: sealQueue, buf: buf, size: size, e: e}
	if e.direct {
		buf[txHeadroom-1] = byte(overlay.TypeDirect)
		j.kind, j.t = sealDirect, e.nextHop
	} else if v, ok := n.e2eByDst.Load(dstOf(pkt)); ok {
		j.kind, j.t = sealE2E, v.(*tunnel)
	}
	if j.t != nil {
		j.r, j.err = j.t.sess.Reserve(false, now)
	}
	s.jobs = append(s.jobs, j)
}

// addBurst plans the seal of the burst frame in buf (after rawHeadroom, size bytes) under the
// session t, to go to e's next hop (sendBurst).
func (s *txSealer) addBurst(now time.Time, e fibEntry, t *tunnel, buf []byte, size, segments int) {
	j := sealJob{kind: sealBurst, buf: buf, size: size, segments: segments, e: e, t: t}
	j.r, j.err = t.sess.Reserve(true, now)
	s.jobs = append(s.jobs, j)
}

// flush seals what is planned, in parallel when that pays, and queues it in tx in order. The read
// buffers are free again afterwards.
func (s *txSealer) flush(now time.Time, tx *txBatch, r *rawReader) {
	if s == nil || len(s.jobs) == 0 {
		return
	}
	s.weights = s.weights[:0]
	total := 0
	for i := range s.jobs {
		w := 0
		if s.jobs[i].kind != sealQueue {
			w = s.jobs[i].size
		}
		s.weights = append(s.weights, w)
		total += w
	}
	s.fan.run(cut(s.weights, s.fan.partsFor(total), s.ends[:]))
	n := s.n
	for i := range s.jobs {
		j := &s.jobs[i]
		switch j.kind {
		case sealDirect:
			if j.err != nil {
				n.stats.dropNoSession.Add(1)
				continue
			}
			tx.addSealed(now, j.t, j.out)
		case sealE2E:
			if j.err != nil {
				n.queueE2E(now, j.e, j.buf[txHeadroom:txHeadroom+j.size])
				continue
			}
			start := txHeadroom - session.HeaderSize - overlay.RoutedHeaderSize
			n.sendSealedE2E(now, tx, j.e, j.t, j.buf[start:start+overlay.RoutedHeaderSize], j.out)
		case sealBurst:
			n.queueBurst(now, tx, j.e, j.t, r, j.out, j.err, j.segments)
		case sealQueue:
			n.queueE2E(now, j.e, j.buf[txHeadroom:txHeadroom+j.size])
		}
	}
	clear(s.jobs) // drop the references to buffers and sessions
	s.jobs, s.segs = s.jobs[:0], 0
}

// sealPart seals the packets of part i in place.
func (s *txSealer) sealPart(i int) {
	lo := 0
	if i > 0 {
		lo = s.ends[i-1]
	}
	for k := lo; k < s.ends[i]; k++ {
		j := &s.jobs[k]
		if j.err != nil {
			continue
		}
		switch j.kind {
		case sealDirect: // the frame type byte is in the headroom, the session header goes before it
			start := txHeadroom - 1 - session.HeaderSize
			j.out, j.err = j.r.Seal(j.buf[start:start], j.buf[txHeadroom-1:txHeadroom+j.size])
		case sealE2E: // as sendBuffered: room for the routed header before the session header
			start := txHeadroom - session.HeaderSize
			j.out, j.err = j.r.Seal(j.buf[start:start], j.buf[txHeadroom:txHeadroom+j.size])
		case sealBurst:
			start := rawHeadroom - session.HeaderSize
			j.out, j.err = j.r.Seal(j.buf[start:start], j.buf[rawHeadroom:rawHeadroom+j.size])
		}
	}
}
