package node

import (
	"errors"
	"time"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/underlay"
)

// Opening a received batch in parallel (workers.go), as wireguard-go's decryption workers do. First
// the loop finds each datagram's sessions: the link session and, for a transit packet, the session
// its inner packet names, if it is one of ours. Then the loop and the helpers decrypt every datagram
// in place (session.Decrypt: pure AEAD work, no shared state written): a link data packet, a transit
// packet's head and, when the head says the packet is for us, the end-to-end packet inside. Then the
// loop handles the datagrams in their order, exactly as it would have after opening them itself,
// except that it has each session accept what was decrypted (the replay window, keypair
// confirmation) instead of opening it. What could not be decrypted before the AEAD ran (no session,
// or a keypair a handshake earlier in the same batch installs) is left for the loop to open. Bursts
// are reassembled and opened by the loop: a burst opens when its last piece arrives, in order.

// openState is how far a worker got with one session layer of a datagram.
type openState uint8

const (
	openNotTried openState = iota // the loop opens it (and counts what it finds)
	openDone                      // decrypted in place: the result is in preopened; the loop accepts it
	openFailed                    // the AEAD refused it; its bytes are spoilt
)

// preopened is one session layer of a datagram as a worker decrypted it.
type preopened struct {
	state openState
	t     *tunnel // the session: found by the loop, then decrypted in by a worker
	plain []byte  // a data packet's plaintext, or a transit packet's head
	inner []byte  // a transit packet's inner part
	d     session.Decrypted
}

// opened is what workers opened of a datagram: its link layer and, for a transit packet addressed to
// us, the end-to-end packet inside.
type opened struct{ outer, inner preopened }

// notOpened stands for a datagram nobody opened yet. It is never written.
var notOpened opened

// headOpenWeight is the work of opening a transit packet's 36-byte head, in bytes of bulk AEAD: a
// short message costs about a quarter of a full-sized one (docs/performance.md, "AES-GCM per packet
// costs more than per byte").
const headOpenWeight = 256

// rxOpener is the receive loop's parallel phase.
type rxOpener struct {
	n       *Node
	fan     *fanout
	now     time.Time
	ds      []underlay.Datagram
	res     []opened
	weights []int
	ends    [maxParts]int
}

// rxBatchHint sizes the opener's tables for the largest batch a reader returns on Linux (eight
// coalesced reads of at most 64 segments); a larger batch grows them once.
const rxBatchHint = 512

func newRxOpener(n *Node, w *workers) *rxOpener {
	o := &rxOpener{n: n, res: make([]opened, rxBatchHint), weights: make([]int, 0, rxBatchHint)}
	o.fan = newFanout(w, o.openPart)
	return o
}

// open opens ds in parallel when that pays and returns what was opened, one entry per datagram; it
// returns nil when the batch is too small to share, and the loop opens it as it goes.
func (r *rxOpener) open(now time.Time, ds []underlay.Datagram) []opened {
	total := 0
	for _, d := range ds { // a first guess, from the types alone
		total += headWeight(d.Data)
		if len(d.Data) > 0 && (d.Data[0] == session.TypeData || d.Data[0] == session.TypeTransit) {
			total += len(d.Data)
		}
	}
	if r.fan.partsFor(total) <= 1 {
		return nil
	}
	if cap(r.res) < len(ds) {
		r.res = make([]opened, len(ds))
	}
	r.res = r.res[:len(ds)]
	r.weights, total = r.weights[:0], 0
	for i, d := range ds {
		o := &r.res[i]
		r.n.findSessions(d.Data, o)
		// What a worker will decrypt: a transit packet's inner packet only if it is ours.
		w := 0
		if o.outer.t != nil {
			w = headWeight(d.Data)
			if d.Data[0] == session.TypeData || o.inner.t != nil {
				w += len(d.Data)
			}
		}
		r.weights = append(r.weights, w)
		total += w
	}
	parts := r.fan.partsFor(total)
	if parts <= 1 {
		return nil // mostly packets to relay: the loop opens their heads as it goes
	}
	r.now, r.ds = now, ds
	r.fan.run(cut(r.weights, parts, r.ends[:]))
	r.ds = nil
	return r.res
}

// headWeight is the AEAD work of opening a transit packet's head alone, in bytes of bulk AEAD; 0 for
// other packets.
func headWeight(pkt []byte) int {
	if len(pkt) > 0 && (pkt[0] == session.TypeTransit || pkt[0] == session.TypeFragment) {
		return headOpenWeight
	}
	return 0
}

// openPart opens the datagrams of part i.
func (r *rxOpener) openPart(i int) {
	lo := 0
	if i > 0 {
		lo = r.ends[i-1]
	}
	for j := lo; j < r.ends[i]; j++ {
		r.n.preopen(r.now, r.ds[j].Data, &r.res[j])
	}
}

// findSessions finds the sessions the datagram pkt names: the link session, and for a transit
// packet the end-to-end session of its inner packet if that is one of ours. Index lookups take the
// index table's read lock, which the loop takes alone rather than have the workers contend for it.
func (n *Node) findSessions(pkt []byte, o *opened) {
	*o = opened{}
	if len(pkt) == 0 {
		return
	}
	switch pkt[0] {
	case session.TypeData:
		if h, err := session.ParseDataHeader(pkt); err == nil {
			if t := n.idx.lookup(h.Receiver); t != nil && t.kind == kindLink {
				o.outer.t = t
			}
		}
	case session.TypeTransit, session.TypeFragment:
		h, err := session.ParseTransitHeader(pkt, overlay.RoutedHeaderSize)
		if err != nil {
			return
		}
		if t := n.idx.lookup(h.Receiver); t != nil && t.kind == kindLink {
			o.outer.t = t
		}
		if o.outer.t == nil || pkt[0] != session.TypeTransit {
			return
		}
		if h, err := session.ParseDataHeader(pkt[session.TransitOverhead+overlay.RoutedHeaderSize:]); err == nil {
			if t := n.idx.lookup(h.Receiver); t != nil && t.kind == kindE2E {
				o.inner.t = t
			}
		}
	}
}

// preopen decrypts what it can of the datagram pkt into o, whose sessions findSessions found. It
// counts nothing: the loop counts as it handles the datagram.
func (n *Node) preopen(now time.Time, pkt []byte, o *opened) {
	t := o.outer.t
	if t == nil {
		return
	}
	if pkt[0] == session.TypeData {
		preopenData(now, pkt, &o.outer)
		return
	}
	head, inner, d, err := t.sess.DecryptTransit(pkt, overlay.RoutedHeaderSize, now)
	if err != nil {
		o.outer.state = openStateAfter(err)
		return
	}
	o.outer = preopened{state: openDone, t: t, plain: head, inner: inner, d: d}
	if o.inner.t == nil {
		return // a piece of a burst, which the loop collects, or not for us
	}
	if rh, err := overlay.ParseRoutedHeader(head); err == nil && rh.Dst == n.addr {
		preopenData(now, inner, &o.inner)
	}
}

// preopenData decrypts the data packet pkt in o.t's session.
func preopenData(now time.Time, pkt []byte, o *preopened) {
	plain, d, err := o.t.sess.Decrypt(pkt, now)
	if err != nil {
		o.state = openStateAfter(err)
		return
	}
	o.state, o.plain, o.d = openDone, plain, d
}

// openStateAfter tells from a decrypt's error whether the loop may still open the packet: unless the
// AEAD refused it, its bytes are untouched, and the loop may have installed its keypair meanwhile.
func openStateAfter(err error) openState {
	if errors.Is(err, session.ErrAuth) {
		return openFailed
	}
	return openNotTried
}
