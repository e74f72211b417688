package node

// Level 2 (docs/routing.md, "Level 2"; docs/node.md, "Areas and gateways"): how nodes of different
// areas reach each other.
//
//   - A node of an area sends traffic for an address its area does not hold to its nearest gateway
//     (IS-IS's attached bit): its forwarding table's default route. A relay of the area does the
//     same, so the packet reaches a gateway whatever relay it crosses.
//   - A node learns where a destination of another area is from the destination's proof (its own
//     signed level-2 record naming its area's gateways, routing.Router.DestinationProof), handed to
//     it by the directory (LearnProofs; the control plane, as records are), and pushes that proof to
//     its nearest gateway.
//   - A gateway runs a second router, with routing.Config.Level2, whose neighbours are the gateways
//     of other areas it has a link to and the gateways of its own area, at their level-1 distance
//     (virtual links). Its messages travel as routed frames, so that a virtual link needs nothing
//     of the relays between the two gateways.
//   - A gateway that gets a packet for a destination of another area picks the entry gateway by the
//     destination's proof (routing.Router.RouteByProof) and sends the packet, encapsulated, to its
//     level-2 next hop; each gateway on the way forwards it towards the entry, which hands it to
//     level 1.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/session"
)

// Payload types of routed frames that carry level 2 (after the handshake types, the unknown-session
// notice and the punch request).
const (
	l2PayloadMessage  = 10 // a level-2 routing message between gateways; empty: "I run level 2"
	l2PayloadProof    = 11 // a destination proof pushed to a gateway
	l2PayloadEncap    = 12 // a packet carried between gateways towards its destination's area
	l2PayloadProofAck = 13 // a gateway holds a pushed proof: the destination's address and sequence
)

// Kinds of encapsulated packet: what the routed header inside was in front of.
const (
	encapRouted  = 0 // a routed frame's payload (end-to-end handshake, notice, punch)
	encapTransit = 1 // a transit packet's end-to-end packet (or fragment)
)

const (
	// l2EncapHeader: payload type, kind, entry gateway's address, then the routed header.
	l2EncapHeader = 2 + 16 + overlay.RoutedHeaderSize
	// maxProofs bounds the destination proofs a node holds: learnt from the directory, or pushed to a
	// gateway. A proof is keyed by its certificate's overlay address, so each key holds one slot.
	maxProofs = 4096
	// proofPushInterval: a proof the gateway acknowledged is pushed to the node's nearest gateway
	// again this often (and at once when the nearest gateway changes); a gateway forgets a proof at
	// its expiry.
	proofPushInterval = 60 * time.Second
	// proofPushRTO: a push not acknowledged is sent again after this long, doubling up to
	// proofPushInterval (a gateway of an earlier release never acknowledges: it gets a push per
	// interval, as before).
	proofPushRTO = 250 * time.Millisecond
	// l2ProofAckSize: type, the destination's overlay address, the proof's sequence number.
	l2ProofAckSize = 1 + 16 + 8
	// l2HelloInterval: a gateway tells a neighbour it runs level 2 again this often, until the
	// neighbour answers.
	l2HelloInterval = 10 * time.Second
	// ownProofMinInterval: the node's own proof is signed again at most this often when its area's
	// gateways or its distances to them change (and when it has aged by a third of its lifetime).
	ownProofMinInterval = time.Second
	ownProofMaxAge      = 60 * time.Second
)

// level2 is a gateway's level-2 state, guarded by the node's mu.
type level2 struct {
	r *routing.Router
	// hello: neighbours over a link that said they run level 2, and when.
	hello map[routing.NodeID]time.Time
	// nbrs: the level-2 router's neighbours, the cost announced for each and their overlay address.
	nbrs      map[routing.NodeID]l2Neighbour
	lastHello time.Time
	// dests: destination proofs of other areas' nodes, pushed by the nodes of this area or learnt.
	dests map[netip.Addr]*l2Dest
	// fibGen: the level-2 generation the forwarding table's routes to other areas were built at.
	fibGen uint64
}

type l2Neighbour struct {
	cost    uint32
	noFlood bool // a virtual link off the area's flooding topology (routing.Router.VirtualLinks)
	addr    netip.Addr
}

// l2Dest is a destination proof a gateway holds, with the route it gave at a level-2 generation.
type l2Dest struct {
	proof *routing.Record
	cert  *meshca.Certificate
	route routing.AreaRoute
	gen   uint64 // level-2 generation route was computed at; 0: never
}

// remoteDest is a destination proof of another area a node learnt, to push to its nearest gateway.
type remoteDest struct {
	proof    *routing.Record
	cert     *meshca.Certificate
	push     []byte // the proof payload, encoded once
	pushedTo routing.NodeID
	// nextPush: when to push again (an acknowledgement moves it proofPushInterval on); rto: the wait
	// after the last push not yet acknowledged.
	nextPush time.Time
	rto      time.Duration
	acked    bool
}

// ownProof is the node's own destination proof, signed on use.
type ownProof struct {
	rec    *routing.Record
	signed time.Time
	gen    uint64 // level-1 generation it was signed at
}

func (n *Node) initLevel2(now time.Time) error {
	n.remote = make(map[netip.Addr]*remoteDest)
	if !n.opts.RoutingGateway {
		return nil
	}
	r, err := routing.New(routing.Config{Key: n.opts.Key.Sign, Certificate: n.opts.Cert, Verifier: n.verifier,
		Incarnation: uint64(now.UnixNano()), Area: n.opts.RoutingArea, Level2: true, MaxOriginationHold: maxOriginationHold})
	if err != nil {
		return fmt.Errorf("node: level-2 router: %w", err)
	}
	n.restoreKeptRecords(now, r, n.level2RecordsFile())
	n.l2 = &level2{r: r, hello: make(map[routing.NodeID]time.Time), nbrs: make(map[routing.NodeID]l2Neighbour),
		dests: make(map[netip.Addr]*l2Dest)}
	return nil
}

// ---- proofs ----

// OwnDestinationProof returns the node's destination proof with its certificate: what a directory
// hands to the nodes of other areas that may reach this one (LearnProofs). It is signed again when the
// node's area's gateways or its distances to them change, and before it is a third of its lifetime
// old. A node of area 0, or one that knows no gateway of its area, has none.
func (n *Node) OwnDestinationProof() (SignedRecord, error) {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.opts.RoutingArea == 0 {
		return SignedRecord{}, errors.New("node: a destination proof needs a routing_area")
	}
	p := &n.ownProof
	stale := p.rec == nil || now.Sub(p.signed) >= ownProofMaxAge ||
		(p.gen != n.router.Generation() && now.Sub(p.signed) >= ownProofMinInterval)
	if stale {
		rec, err := n.router.DestinationProof(now)
		if err != nil {
			return SignedRecord{}, err
		}
		if len(rec.Links) == 0 && !n.opts.RoutingGateway {
			return SignedRecord{}, errors.New("node: no gateway of this area is reachable yet")
		}
		p.rec, p.signed, p.gen = rec, now, n.router.Generation()
	}
	return SignedRecord{Cert: n.self.Bytes(), Record: p.rec.Bytes()}, nil
}

// LearnProofs installs the destination proofs of nodes of other areas (a directory's answer): the
// node then routes to them through its area's gateways. Each proof is checked as a gateway checks it
// (the certificate verifies and is the signer's, the signature, a level-2 record of an area other
// than this node's, not expired); one that is not newer than the proof held is ignored. It returns
// the errors of the proofs that were refused, joined.
func (n *Node) LearnProofs(recs []SignedRecord) error {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for i, r := range recs {
		if err := n.learnProofLocked(now, r.Cert, r.Record); err != nil {
			errs = append(errs, fmt.Errorf("proof %d: %w", i, err))
		}
	}
	n.fibDirty()
	n.flushRoutingLocked(now)
	return errors.Join(errs...)
}

func (n *Node) learnProofLocked(now time.Time, certRaw, raw []byte) error {
	if n.opts.RoutingArea == 0 {
		return errors.New("node: level 2 needs a routing_area")
	}
	if len(certRaw) > 0xffff {
		return errors.New("node: the proof's certificate is too large")
	}
	cert, rec, err := checkProof(n.verifier, now, certRaw, raw)
	if err != nil {
		return err
	}
	if rec.Area == n.opts.RoutingArea {
		return errors.New("node: the proof is of this node's own area")
	}
	addr := cert.Overlay
	if cur := n.remote[addr]; cur != nil {
		if cur.proof.Seq >= rec.Seq {
			return nil
		}
	} else if len(n.remote) >= maxProofs {
		maps.DeleteFunc(n.remote, func(_ netip.Addr, d *remoteDest) bool { return !d.proof.Expires.After(now) })
		if len(n.remote) >= maxProofs {
			return errors.New("node: destination proof table full")
		}
	}
	n.remote[addr] = &remoteDest{proof: rec, cert: cert, push: appendProofPayload(nil, certRaw, raw)}
	if n.l2 != nil {
		n.storeDestLocked(now, cert, rec)
	}
	return nil
}

// checkProof parses and verifies a destination proof and its certificate. What it returns shares no
// memory with certRaw or raw: a pushed proof arrives in a receive buffer that the next datagram
// overwrites, and a gateway keeps the proof and verifies it again whenever level 2 changes.
func checkProof(v *meshca.Verifier, now time.Time, certRaw, raw []byte) (*meshca.Certificate, *routing.Record, error) {
	cert, err := meshca.ParseCertificate(certRaw) // shares no memory with certRaw
	if err != nil {
		return nil, nil, fmt.Errorf("node: proof certificate: %w", err)
	}
	rec, err := routing.ParseRecord(bytes.Clone(raw)) // keeps a reference to its argument
	if err != nil {
		return nil, nil, fmt.Errorf("node: proof: %w", err)
	}
	switch {
	case !rec.Level2 || rec.Area == 0:
		return nil, nil, errors.New("node: a destination proof is a level-2 record of an area")
	case cert.Kind != meshca.KindNode || cert.SignPublicKey == nil || cert.SignPublicKey.ID() != rec.Origin:
		return nil, nil, errors.New("node: the proof's certificate is not its signer's")
	case cert.Fingerprint() != rec.CertFingerprint:
		return nil, nil, errors.New("node: the proof names another certificate")
	case !rec.Expires.After(now):
		return nil, nil, errors.New("node: the proof has expired")
	}
	if err := v.Verify(cert, now); err != nil {
		return nil, nil, fmt.Errorf("node: proof certificate: %w", err)
	}
	if err := rec.VerifySignature(cert); err != nil {
		return nil, nil, err
	}
	return cert, rec, nil
}

// storeDestLocked keeps a verified proof at a gateway, unless a newer one is held.
func (n *Node) storeDestLocked(now time.Time, cert *meshca.Certificate, rec *routing.Record) {
	l2 := n.l2
	if cur := l2.dests[cert.Overlay]; cur != nil {
		if cur.proof.Seq >= rec.Seq {
			return
		}
	} else if len(l2.dests) >= maxProofs {
		maps.DeleteFunc(l2.dests, func(_ netip.Addr, d *l2Dest) bool { return !d.proof.Expires.After(now) })
		if len(l2.dests) >= maxProofs {
			return
		}
	}
	l2.dests[cert.Overlay] = &l2Dest{proof: rec, cert: cert}
}

// handleProofPush takes a proof a node (src) pushed to this gateway and acknowledges it once held.
// The proof speaks for itself (its signer's certificate and signature are checked), so who pushed it
// does not matter; one already held is not verified again.
func (n *Node) handleProofPush(now time.Time, src netip.Addr, certRaw, raw []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.l2 == nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	if cert, err := meshca.ParseCertificate(certRaw); err == nil {
		if cur := n.l2.dests[cert.Overlay]; cur != nil {
			if h, err := routing.ParseRecord(raw); err == nil && h.Seq <= cur.proof.Seq {
				n.sendProofAckLocked(now, src, cert.Overlay, cur.proof.Seq)
				return
			}
		}
	}
	cert, rec, err := checkProof(n.verifier, now, certRaw, raw)
	if err != nil || rec.Area == n.opts.RoutingArea {
		n.stats.dropMalformed.Add(1)
		return
	}
	n.storeDestLocked(now, cert, rec)
	if d := n.l2.dests[cert.Overlay]; d != nil && d.proof.Seq >= rec.Seq {
		n.sendProofAckLocked(now, src, cert.Overlay, d.proof.Seq)
	}
}

// sendProofAckLocked tells the node at to that this gateway holds the proof of dest up to seq.
func (n *Node) sendProofAckLocked(now time.Time, to, dest netip.Addr, seq uint64) {
	e, ok := n.fib.Load().byAddr[to]
	if !ok || e.nextHop == nil || e.level2 {
		return // the pusher is of this area; without a route it pushes again
	}
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+l2ProofAckSize),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: to})
	n.sendFrame(now, e.nextHop, appendProofAck(frame, dest, seq))
}

// handleProofAck takes a gateway's acknowledgement (from src) of a proof this node pushed: it is
// pushed again only at the next interval. An acknowledgement from any other address, or of an older
// proof, is ignored. Through relays the source address is not authenticated, so a member of the area
// can forge one; that delays the push to the gateway by up to proofPushInterval, which the member
// could do by dropping the push anyway.
func (n *Node) handleProofAck(now time.Time, src, dest netip.Addr, seq uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.remote[dest]
	if d == nil || d.acked || d.proof.Seq > seq || d.pushedTo == (routing.NodeID{}) {
		return
	}
	if c := n.router.Certificate(d.pushedTo); c == nil || c.Overlay != src {
		return
	}
	d.acked, d.nextPush = true, now.Add(proofPushInterval)
}

// pushProofsLocked pushes the learnt proofs to the node's nearest gateway when it changed, again
// after proofPushRTO (doubling) until the gateway acknowledges, and again every proofPushInterval
// after that; expired proofs are forgotten.
func (n *Node) pushProofsLocked(now time.Time) {
	if len(n.remote) == 0 || n.l2 != nil {
		return
	}
	gws := n.router.Gateways()
	if len(gws) == 0 {
		return
	}
	gw := gws[0]
	cert := n.router.Certificate(gw)
	e, ok := n.fib.Load().byAddr[cert.Overlay]
	if !ok {
		return
	}
	for addr, d := range n.remote {
		if !d.proof.Expires.After(now) {
			delete(n.remote, addr)
			n.fibDirty()
			continue
		}
		if d.pushedTo == gw && now.Before(d.nextPush) {
			continue
		}
		frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+len(d.push)),
			overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: cert.Overlay})
		if !n.sendFrame(now, e.nextHop, append(frame, d.push...)) {
			continue
		}
		if d.pushedTo != gw || d.acked {
			d.rto = proofPushRTO // a new gateway, or the refresh of an acknowledged push
		} else {
			d.rto = min(2*d.rto, proofPushInterval)
		}
		d.pushedTo, d.acked, d.nextPush = gw, false, now.Add(d.rto)
	}
}

// ---- the level-2 router's neighbours and messages ----

// reconcileLevel2Locked gives the level-2 router its neighbours: the gateways of this area at their
// level-1 distance (virtual links), and the neighbours over a link that run level 2 and are not of
// this area, at the link's cost. A changed distance is announced (with the router's hysteresis).
func (n *Node) reconcileLevel2Locked(now time.Time) {
	l2 := n.l2
	want := make(map[routing.NodeID]l2Neighbour)
	for _, v := range n.router.VirtualLinks() {
		want[v.Gateway] = l2Neighbour{cost: uint32(max(1, min(v.Cost, routing.MaxLinkCost))), noFlood: !v.Flood, addr: n.router.Certificate(v.Gateway).Overlay}
	}
	for id := range l2.hello {
		t := n.links[id]
		if t == nil || !t.up {
			delete(l2.hello, id)
			continue
		}
		if _, ok := want[id]; !ok {
			m := t.mon.Metrics(now)
			want[id] = l2Neighbour{cost: routing.LinkCost(routing.Metrics{RTT: m.RTT, Loss: m.Loss}), addr: t.addr}
		}
	}
	for id, w := range want {
		old, ok := l2.nbrs[id]
		switch {
		case !ok:
			l2.r.LinkUp(now, id, routing.Metrics{Cost: w.cost, NoFlood: w.noFlood})
		case old.cost != w.cost || old.noFlood != w.noFlood:
			l2.r.UpdateMetrics(now, id, routing.Metrics{Cost: w.cost, NoFlood: w.noFlood})
		}
		l2.nbrs[id] = w
	}
	for id := range l2.nbrs {
		if _, ok := want[id]; !ok {
			l2.r.LinkDown(now, id)
			delete(l2.nbrs, id)
		}
	}
}

// tickLevel2Locked runs the level-2 router's timers and says hello to the neighbours that have not.
func (n *Node) tickLevel2Locked(now time.Time) {
	if n.l2 == nil {
		n.pushProofsLocked(now)
		return
	}
	if now.Sub(n.l2.lastHello) >= l2HelloInterval {
		n.l2.lastHello = now
		for id, t := range n.links {
			if _, ok := n.l2.hello[id]; !ok && t.up {
				n.sendLevel2Hello(now, t)
			}
		}
		n.reconcileLevel2Locked(now) // link costs move without a level-1 change
	}
	n.l2.r.Tick(now)
	n.flushLevel2Locked(now)
}

func (n *Node) sendLevel2Hello(now time.Time, t *tunnel) {
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+1),
		overlay.RoutedHeader{HopLimit: 1, Src: n.addr, Dst: t.addr})
	n.sendFrame(now, t, append(frame, l2PayloadMessage))
}

// flushLevel2Locked sends what the level-2 router queued, each message in a routed frame to its
// neighbour: over the link, or through level 1 to a gateway of this area.
func (n *Node) flushLevel2Locked(now time.Time) {
	n.l2.r.Restarts() // a level-2 neighbour's restart shows in its level-1 record, or in its link
	if len(n.remote) > 0 && n.l2.r.Generation() != n.l2.fibGen {
		n.fibDirty() // the gateway's own routes to other areas follow level 2
	}
	f := n.fib.Load()
	for _, o := range n.l2.r.Drain() {
		nb, ok := n.l2.nbrs[o.To]
		if !ok {
			continue
		}
		e, ok := f.byAddr[nb.addr]
		if !ok {
			n.stats.dropNoRoute.Add(1)
			continue
		}
		frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+1+len(o.Msg)),
			overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: nb.addr})
		frame = append(frame, l2PayloadMessage)
		n.sendFrame(now, e.nextHop, append(frame, o.Msg...))
	}
}

// handleLevel2Message takes a level-2 routing message from src that arrived over the link via. A
// neighbour over a link is known by its link; a gateway of this area by its level-1 record. An empty
// message is a hello: the sender runs level 2.
func (n *Node) handleLevel2Message(now time.Time, via *tunnel, src netip.Addr, msg []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.l2 == nil {
		return // not a gateway: a hello from a gateway next door
	}
	id := via.id
	if src == via.addr {
		if _, known := n.l2.hello[id]; !known {
			n.l2.hello[id] = now
			n.sendLevel2Hello(now, via)
			n.reconcileLevel2Locked(now)
		}
	} else {
		var ok bool
		if id, ok = n.router.NodeByAddr(src); !ok {
			n.stats.dropNoRoute.Add(1)
			return
		}
	}
	if len(msg) == 0 {
		return
	}
	if err := n.l2.r.HandleMessage(now, id, msg); err != nil {
		n.log.Debug("level-2 message refused", "from", src, "err", err)
	}
	n.flushLevel2Locked(now)
}

// ---- forwarding ----

// l2RouteLocked returns the level-2 route to d, computed again when the level-2 graph changed.
func (n *Node) l2RouteLocked(now time.Time, d *l2Dest) (routing.AreaRoute, bool) {
	if g := n.l2.r.Generation(); d.gen != g || !d.proof.Expires.After(now) {
		rt, err := n.l2.r.RouteByProof(now, d.proof, d.cert)
		if err != nil {
			if !errors.Is(err, routing.ErrNoAreaRoute) {
				delete(n.l2.dests, d.cert.Overlay) // expired, or its certificate stopped verifying
			}
			d.gen = 0
			return routing.AreaRoute{}, false
		}
		d.route, d.gen = rt, g
	}
	return d.route, true
}

// forwardLevel2 carries a packet for a destination this gateway's area does not hold: head is its
// routed header (hop limit already lowered), payload what followed it, kind which of the two it came
// as. It is encapsulated to the level-2 next hop towards the entry gateway the destination's proof
// gives.
func (n *Node) forwardLevel2(now time.Time, kind byte, head, payload []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.l2.dests[netip.AddrFrom16([16]byte(head[20:36]))]
	if d == nil {
		n.stats.dropNoRoute.Add(1)
		return
	}
	rt, ok := n.l2RouteLocked(now, d)
	if !ok || rt.Entry == n.selfID {
		n.stats.dropNoRoute.Add(1) // its own area does not reach it at level 1 either
		return
	}
	n.encapsulateLocked(now, rt.Entry, rt.NextHop, kind, head, payload)
}

// encapsulateLocked sends the packet (head, payload) to the level-2 neighbour next, towards the
// entry gateway entry, in a routed frame addressed to next.
func (n *Node) encapsulateLocked(now time.Time, entry, next routing.NodeID, kind byte, head, payload []byte) {
	entryCert, nb := n.l2.r.Certificate(entry), n.l2.nbrs[next]
	e, ok := n.fib.Load().byAddr[nb.addr]
	if entryCert == nil || !nb.addr.IsValid() || !ok {
		n.stats.dropNoRoute.Add(1)
		return
	}
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+l2EncapHeader+len(payload)),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: nb.addr})
	frame = appendEncap(frame, kind, entryCert.Overlay, head)
	if n.sendFrame(now, e.nextHop, append(frame, payload...)) {
		n.stats.level2Forwarded.Add(1)
	}
}

// handleEncap takes an encapsulated packet addressed to this gateway: at the entry gateway it goes on
// at level 1 (or is ours); elsewhere it goes on towards the entry at level 2.
func (n *Node) handleEncap(now time.Time, via *tunnel, p level2Payload, rx *rxBatch) {
	if !overlay.DecrementHopLimit(p.head) {
		n.stats.dropHopLimit.Add(1)
		return
	}
	rh, err := overlay.ParseRoutedHeader(p.head)
	if err != nil {
		n.countRoutedError(err)
		return
	}
	if p.entry != n.addr {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.l2 == nil {
			n.stats.dropNoRoute.Add(1)
			return
		}
		entry, ok := n.l2.r.NodeByAddr(p.entry)
		rt, found := n.l2.r.NextHop(entry)
		if !ok || !found {
			n.stats.dropNoRoute.Add(1)
			return
		}
		n.encapsulateLocked(now, entry, rt.NextHop, p.kind, p.head, p.payload)
		return
	}
	if rh.Dst == n.addr {
		n.deliverDecapsulated(now, via, rh, p, rx)
		return
	}
	e, ok := n.fib.Load().byAddr[rh.Dst]
	if !ok || e.nextHop == nil || e.level2 {
		n.stats.dropNoRoute.Add(1)
		return
	}
	var sent bool
	if p.kind == encapTransit {
		sent = n.sendTransit(now, e.nextHop, p.head, p.payload)
	} else {
		sent = n.sendFrame(now, e.nextHop, append(append(make([]byte, 0, len(p.head)+len(p.payload)), p.head...), p.payload...))
	}
	if sent {
		n.stats.level2Forwarded.Add(1)
	}
}

// deliverDecapsulated hands a packet for this node that arrived encapsulated to the code that would
// have taken it had it arrived unencapsulated over via.
func (n *Node) deliverDecapsulated(now time.Time, via *tunnel, rh overlay.RoutedHeader, p level2Payload, rx *rxBatch) {
	if p.kind == encapRouted {
		n.handleRouted(now, via, append(append(make([]byte, 0, len(p.head)+len(p.payload)), p.head...), p.payload...), rx)
		return
	}
	if len(p.payload) > 0 && p.payload[0] == session.TypeBurst {
		n.handleFragment(now, via, rh.Src, p.payload, rx)
		return
	}
	n.handleTransport(now, netip.AddrPortFrom(rh.Src, 0), p.payload, via, &notOpened.inner, rx)
}

// ---- wire ----

// level2Payload is a decoded level-2 payload of a routed frame.
type level2Payload struct {
	typ byte
	// l2PayloadMessage: the routing message (empty: hello).
	msg []byte
	// l2PayloadProof: the certificate and the record.
	cert, record []byte
	// l2PayloadEncap: what the packet was, the entry gateway, its routed header and what followed.
	kind    byte
	entry   netip.Addr
	head    []byte
	payload []byte
	// l2PayloadProofAck: the destination whose proof is held, and the proof's sequence number.
	dest netip.Addr
	seq  uint64
}

var errLevel2Payload = errors.New("node: malformed level-2 payload")

// parseLevel2Payload decodes the payload of a routed frame of one of the level-2 types. Slices point
// into b.
func parseLevel2Payload(b []byte) (level2Payload, error) {
	if len(b) == 0 {
		return level2Payload{}, errLevel2Payload
	}
	p := level2Payload{typ: b[0]}
	switch b[0] {
	case l2PayloadMessage:
		p.msg = b[1:]
	case l2PayloadProof:
		if len(b) < 3 {
			return level2Payload{}, errLevel2Payload
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if n == 0 || len(b) < 3+n+1 {
			return level2Payload{}, errLevel2Payload
		}
		p.cert, p.record = b[3:3+n], b[3+n:]
	case l2PayloadEncap:
		if len(b) < l2EncapHeader || b[1] > encapTransit {
			return level2Payload{}, errLevel2Payload
		}
		p.kind = b[1]
		p.entry = netip.AddrFrom16([16]byte(b[2:18]))
		p.head, p.payload = b[18:l2EncapHeader], b[l2EncapHeader:]
		if _, err := overlay.ParseRoutedHeader(p.head); err != nil {
			return level2Payload{}, fmt.Errorf("%w: %w", errLevel2Payload, err)
		}
		if p.kind == encapRouted && len(p.payload) == 0 {
			return level2Payload{}, errLevel2Payload
		}
	case l2PayloadProofAck:
		if len(b) != l2ProofAckSize {
			return level2Payload{}, errLevel2Payload
		}
		p.dest = netip.AddrFrom16([16]byte(b[1:17]))
		p.seq = binary.BigEndian.Uint64(b[17:])
	default:
		return level2Payload{}, errLevel2Payload
	}
	return p, nil
}

func appendProofPayload(b, cert, record []byte) []byte {
	b = append(b, l2PayloadProof)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
	return append(append(b, cert...), record...)
}

func appendProofAck(b []byte, dest netip.Addr, seq uint64) []byte {
	a := dest.As16()
	b = append(append(b, l2PayloadProofAck), a[:]...)
	return binary.BigEndian.AppendUint64(b, seq)
}

func appendEncap(b []byte, kind byte, entry netip.Addr, head []byte) []byte {
	a := entry.As16()
	b = append(b, l2PayloadEncap, kind)
	return append(append(b, a[:]...), head...)
}

// handleLevel2Payload dispatches a level-2 payload of a routed frame addressed to this node.
func (n *Node) handleLevel2Payload(now time.Time, via *tunnel, src netip.Addr, payload []byte, rx *rxBatch) {
	p, err := parseLevel2Payload(payload)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	switch p.typ {
	case l2PayloadMessage:
		n.handleLevel2Message(now, via, src, p.msg)
	case l2PayloadProof:
		n.handleProofPush(now, src, p.cert, p.record)
	case l2PayloadEncap:
		n.handleEncap(now, via, p, rx)
	case l2PayloadProofAck:
		n.handleProofAck(now, src, p.dest, p.seq)
	}
}

// l2Hop is how a gateway sends its own packets to a node of another area: encapsulated (as it
// forwards others', forwardLevel2) to its level-2 next hop via, towards the entry gateway entry.
type l2Hop struct {
	entry, via netip.Addr
}

// sendOwnFrame sends a routed frame this node originates along e: to e's next hop, encapsulated
// towards the entry gateway when e is a gateway's route to another area.
func (n *Node) sendOwnFrame(now time.Time, e fibEntry, frame []byte) bool {
	if e.l2 == nil {
		return n.sendFrame(now, e.nextHop, frame)
	}
	return n.sendEncap(now, e, encapRouted, frame[:overlay.RoutedHeaderSize], frame[overlay.RoutedHeaderSize:])
}

// sendOwnTransit is sendOwnFrame for an end-to-end packet: its routed header head and the sealed
// packet inner.
func (n *Node) sendOwnTransit(now time.Time, e fibEntry, head, inner []byte) bool {
	if e.l2 == nil {
		return n.sendTransit(now, e.nextHop, head, inner)
	}
	return n.sendEncap(now, e, encapTransit, head, inner)
}

func (n *Node) sendEncap(now time.Time, e fibEntry, kind byte, head, payload []byte) bool {
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+l2EncapHeader+len(payload)),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: e.l2.via})
	frame = appendEncap(frame, kind, e.l2.entry, head)
	if !n.sendFrame(now, e.nextHop, append(frame, payload...)) {
		return false
	}
	n.stats.level2Forwarded.Add(1)
	return true
}

// addLevel2RoutesLocked completes a forwarding table being built: a gateway carries what its area does
// not hold by level 2, and reaches the destinations whose proofs it learnt itself by their routes by
// proof; another node of an area sends it towards its nearest gateway, and reaches the destinations
// whose proofs it learnt that way.
func (n *Node) addLevel2RoutesLocked(now time.Time, f *fib) {
	if n.opts.RoutingArea == 0 {
		return
	}
	if n.l2 != nil {
		f.level2 = true
		n.addOwnLevel2RoutesLocked(now, f)
		return
	}
	gws := n.router.Gateways()
	if len(gws) == 0 {
		return
	}
	rt, ok := n.router.NextHop(gws[0])
	nh := n.links[rt.NextHop]
	if !ok || nh == nil || !nh.up {
		return
	}
	f.dflt = nh
	for addr, d := range n.remote {
		if _, held := f.byAddr[addr]; !held {
			f.byAddr[addr] = fibEntry{id: d.proof.Origin, cert: d.cert, nextHop: nh, hops: rt.Hops + 1, cost: rt.Cost}
		}
	}
}

// addOwnLevel2RoutesLocked gives a gateway a route to each destination of another area whose proof it
// learnt itself: its level-2 route by that proof, as the level-1 route to the level-2 next hop (a
// neighbour over a link, or a gateway of this area) and what to encapsulate towards. Packets it
// relays for its area find their route at forwarding time instead (forwardLevel2); these routes are
// built only for the proofs the gateway's own directory gave it, and computed again when level 2
// changes (flushLevel2Locked).
func (n *Node) addOwnLevel2RoutesLocked(now time.Time, f *fib) {
	n.l2.fibGen = n.l2.r.Generation()
	for addr := range n.remote {
		d := n.l2.dests[addr]
		if _, held := f.byAddr[addr]; held || d == nil {
			continue
		}
		rt, ok := n.l2RouteLocked(now, d)
		if !ok || rt.Entry == n.selfID {
			continue
		}
		entry, nb := n.l2.r.Certificate(rt.Entry), n.l2.nbrs[rt.NextHop]
		l1, ok := f.byAddr[nb.addr]
		if entry == nil || !nb.addr.IsValid() || !ok || l1.level2 || l1.nextHop == nil {
			continue
		}
		f.byAddr[addr] = fibEntry{id: d.proof.Origin, cert: d.cert, nextHop: l1.nextHop, level2: true,
			l2: &l2Hop{entry: entry.Overlay, via: nb.addr}, hops: l1.hops + 1, cost: rt.Cost}
	}
}

// Level2Status is what a node knows of level 2.
type Level2Status struct {
	Gateway bool
	// Neighbours are a gateway's level-2 neighbours: gateways of other areas over a link, and the
	// gateways of its area.
	Neighbours []routing.NodeID
	// Nodes is how many level-2 records (gateways of all areas) a gateway holds.
	Nodes int
	// Proofs is how many destination proofs the node holds: learnt, or pushed to it as a gateway.
	Proofs int
}

// Level2 reports the node's level-2 state.
func (n *Node) Level2() Level2Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Level2Status{Proofs: len(n.remote)}
	if n.l2 != nil {
		s.Gateway, s.Neighbours, s.Nodes = true, n.l2.r.Neighbours(), len(n.l2.r.Graph().Nodes)
		s.Proofs = max(s.Proofs, len(n.l2.dests))
	}
	return s
}

// RoutingArea is the node's routing area (0: a mesh of one area, no level 2).
func (n *Node) RoutingArea() uint32 { return n.opts.RoutingArea }
