package node

// The tunnel lifecycle: link and end-to-end sessions are created by handshakes, announced to
// routing when they come up, kept alive and rekeyed by the timer, and dropped when they go silent,
// idle or revoked.

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/handshake"
	"x0tta6bl4/internal/linkmon"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/session"
)

const (
	redialInterval     = 2 * time.Second  // a configured peer whose link is down is dialled this often
	forgetLinkAfter    = 3 * time.Minute  // an unconfigured neighbour silent this long is forgotten
	revalidateInterval = 10 * time.Second // peers' certificates are re-checked this often
)

func (n *Node) newTunnelLocked(kind tunnelKind, cert *meshca.Certificate, now time.Time) *tunnel {
	t := &tunnel{kind: kind, id: cert.SignPublicKey.ID(), addr: cert.Overlay}
	t.cert.Store(cert)
	t.sess = session.New(session.Config{Release: func(idx uint32) { n.idx.unbind(idx, t) }}, now)
	if kind == kindLink {
		t.mon = linkmon.New(linkmon.Config{ProbeInterval: n.opts.ProbeInterval, DeadAfter: n.opts.DeadAfter}, now)
	}
	return t
}

// dialLocked starts a link handshake with a configured peer.
func (n *Node) dialLocked(now time.Time, p *Peer) {
	id := p.Cert.SignPublicKey.ID()
	t := n.links[id]
	if t == nil {
		if id == n.selfID {
			return
		}
		t = n.newTunnelLocked(kindLink, p.Cert, now)
		n.links[id] = t
	}
	t.static, t.how = p, "configured"
	if !t.remoteAddr().IsValid() {
		t.setRemote(p.Addr)
	}
	t.lastDial = now
	out, err := n.linkHS.Initiate(now, p.Addr, p.Cert)
	n.handleLinkOutputLocked(now, out, err)
}

func (n *Node) handleLinkOutputLocked(now time.Time, out handshake.Output, err error) {
	if err != nil {
		n.stats.handshakeErrors.Add(1)
		n.log.Debug("link handshake", "err", err)
	}
	for _, p := range out.Packets {
		n.writeUDP(p.Data, p.To, nil, now)
	}
	for _, f := range out.Failed {
		n.log.Info("link handshake gave up", "peer", f.Peer.Name, "addr", f.To, "err", f.Err)
	}
	if out.Result != nil {
		countHandshake(out.Result, &n.stats.linkHSInitiated, &n.stats.linkHSAnswered)
		n.installLinkLocked(now, out.Result)
	}
}

// handleE2EOutputLocked sends what the end-to-end machine produced. via is the link a handshake
// packet being answered arrived on: when routing has no route back to its source yet (the initiator's
// record has not reached us), the answer goes back the way the question came, instead of being dropped
// until the initiator's retry 5 s later.
func (n *Node) handleE2EOutputLocked(now time.Time, out handshake.Output, err error, via *tunnel) {
	if err != nil {
		n.stats.handshakeErrors.Add(1)
		n.log.Debug("end-to-end handshake", "err", err)
	}
	for _, p := range out.Packets {
		dst := p.To.Addr()
		e, ok := n.fib.Load().byAddr[dst]
		if !ok && via != nil && via.up {
			e, ok = fibEntry{nextHop: via}, true
		}
		if !ok {
			n.stats.dropNoRoute.Add(1)
			continue
		}
		frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+len(p.Data)),
			overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: dst})
		n.sendOwnFrame(now, e, append(frame, p.Data...))
	}
	for _, f := range out.Failed {
		if t := n.e2e[f.To.Addr()]; t != nil && !t.installed {
			n.stats.dropQueueFull.Add(uint64(len(t.queue)))
			n.removeE2ELocked(t)
		}
	}
	if out.Result != nil {
		countHandshake(out.Result, &n.stats.e2eHSInitiated, &n.stats.e2eHSAnswered)
		n.installE2ELocked(now, out.Result)
	}
}

// countHandshake counts a completed handshake by our role in it.
func countHandshake(r *handshake.Result, initiated, answered *atomic.Uint64) {
	if r.Initiator {
		initiated.Add(1)
	} else {
		answered.Add(1)
	}
}

func keysOf(r *handshake.Result) session.Keys {
	k := session.Keys{LocalIndex: r.LocalIndex, RemoteIndex: r.RemoteIndex, SendKey: r.SendKey, RecvKey: r.RecvKey, Initiator: r.Initiator}
	r.Wipe()
	return k
}

func (n *Node) installLinkLocked(now time.Time, r *handshake.Result) {
	id := r.Peer.SignPublicKey.ID()
	t := n.links[id]
	if t == nil {
		if len(n.links) >= maxLinks || id == n.selfID {
			r.Wipe()
			n.idx.Release(r.LocalIndex)
			return
		}
		t = n.newTunnelLocked(kindLink, r.Peer, now)
		t.how = "dialled us"
		if _, punched := n.connect.punches[id]; punched && r.Initiator {
			t.how = "punched"
		} else if r.Initiator {
			t.how = "discovered" // we dialled a beacon's sender (discovery.go)
		}
		n.links[id] = t
	}
	t.cert.Store(r.Peer)
	t.setRemote(r.Remote)
	keys := keysOf(r)
	n.idx.bind(keys.LocalIndex, t)
	if err := t.sess.Install(&keys, now); err != nil {
		n.idx.unbind(keys.LocalIndex, t)
		n.log.Warn("install link keys", "peer", r.Peer.Name, "err", err)
		return
	}
	t.installed = true
	t.heard(now)
	if keys.Initiator {
		n.sendKeepalive(now, t) // confirms the keys to the responder at once
	}
	n.sendObserved(now, t)
	if !t.up {
		n.linkUpLocked(now, t)
		return
	}
	// A new handshake on a link that is up: the peer may have restarted before our link layer
	// noticed (it then holds nothing of this adjacency), so routing starts a new one and the two
	// databases are compared again by digest (docs/routing.md, Restarts inside an area). The
	// link's measurements and advertised cost stand.
	n.router.LinkUp(now, t.id, routing.Metrics{})
	n.flushRoutingLocked(now)
}

func (n *Node) linkUpLocked(now time.Time, t *tunnel) {
	t.up = true
	if _, punched := n.connect.punches[t.id]; punched {
		delete(n.connect.punches, t.id)
		n.stats.punchDirect.Add(1)
		n.log.Info("direct link punched", "peer", t.peer().Name, "addr", t.remoteAddr())
	}
	t.mon = linkmon.New(linkmon.Config{ProbeInterval: n.opts.ProbeInterval, DeadAfter: n.opts.DeadAfter}, now)
	n.router.LinkUp(now, t.id, routing.Metrics{})
	if n.l2 != nil {
		n.sendLevel2Hello(now, t)
	}
	n.log.Info("link up", "peer", t.peer().Name, "addr", t.remoteAddr())
	n.flushRoutingLocked(now)
}

func (n *Node) linkDownLocked(now time.Time, t *tunnel, why string) {
	t.up = false
	n.router.LinkDown(now, t.id)
	n.forgetPieces(t)
	if n.l2 != nil {
		delete(n.l2.hello, t.id)
		n.reconcileLevel2Locked(now)
	}
	n.log.Info("link down", "peer", t.peer().Name, "why", why)
	n.flushRoutingLocked(now)
}

func (n *Node) installE2ELocked(now time.Time, r *handshake.Result) {
	addr := r.Peer.Overlay
	t := n.e2e[addr]
	if t == nil {
		if len(n.e2e) >= maxE2E {
			r.Wipe()
			n.idx.Release(r.LocalIndex)
			return
		}
		t = n.newTunnelLocked(kindE2E, r.Peer, now)
		n.e2e[addr] = t
	}
	t.cert.Store(r.Peer)
	keys := keysOf(r)
	n.idx.bind(keys.LocalIndex, t)
	if err := t.sess.Install(&keys, now); err != nil {
		n.idx.unbind(keys.LocalIndex, t)
		n.log.Warn("install end-to-end keys", "peer", r.Peer.Name, "err", err)
		return
	}
	t.installed = true
	t.heard(now)
	n.e2eByDst.Store(addr, t)
	if keys.Initiator {
		if len(t.queue) == 0 {
			n.sendE2EKeepalive(now, t)
		}
		n.flushQueueLocked(now, t)
	}
}

func (n *Node) removeE2ELocked(t *tunnel) {
	t.sess.Close()
	t.queue = nil
	if n.e2e[t.addr] == t {
		delete(n.e2e, t.addr)
	}
	n.e2eByDst.CompareAndDelete(t.addr, t)
}

func (n *Node) removeLinkLocked(now time.Time, t *tunnel, why string) {
	wasUp := t.up
	if t.up {
		n.linkDownLocked(now, t, why)
	}
	t.sess.Close()
	delete(n.links, t.id)
	if wasUp || t.installed {
		n.fibDirty()
	}
}

func (n *Node) sendKeepalive(now time.Time, t *tunnel) {
	if out, err := t.sess.Seal(nil, nil, now); err == nil {
		n.writeUDP(out, t.remoteAddr(), t, now)
	}
}

func (n *Node) sendE2EKeepalive(now time.Time, t *tunnel) {
	if err := n.sendE2E(now, t, nil); err != nil && !errors.Is(err, session.ErrNoKey) {
		n.log.Debug("end-to-end keepalive", "peer", t.peer().Name, "err", err)
	}
}

// tick runs every timer: handshake retries, link probes and failure detection, session keepalives and
// rekeys, routing refreshes and retransmissions.
func (n *Node) tick(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.handleLinkOutputLocked(now, n.linkHS.Tick(now), nil)
	n.handleE2EOutputLocked(now, n.e2eHS.Tick(now), nil, nil)
	for _, t := range n.links {
		n.tickLinkLocked(now, t)
	}
	for i := range n.opts.Peers {
		p := &n.opts.Peers[i]
		if _, ok := n.links[p.Cert.SignPublicKey.ID()]; !ok {
			n.dialLocked(now, p)
		}
	}
	n.tickDiscoveryLocked(now)
	for _, t := range n.e2e {
		n.tickE2ELocked(now, t)
	}
	if now.Sub(n.lastRevalidate) >= revalidateInterval {
		n.lastRevalidate = now
		n.enforceCertificatesLocked(now)
	}
	n.tickConnectivityLocked(now)
	n.tickPolicyLocked(now)
	n.tickGovernanceLocked(now)
	n.router.Tick(now)
	n.flushRoutingLocked(now)
	n.tickLevel2Locked(now)
}

func (n *Node) tickLinkLocked(now time.Time, t *tunnel) {
	t.mon.Heard(time.Unix(0, t.lastHeard.Load()))
	alive := t.mon.Up(now)
	switch {
	case t.up && !alive:
		n.linkDownLocked(now, t, "silent for "+t.mon.Silence(now).Round(time.Millisecond).String())
	case !t.up && alive && t.installed:
		n.linkUpLocked(now, t)
	}
	if t.up && now.Sub(time.Unix(0, t.lastObserved.Load())) >= observedInterval {
		n.sendObserved(now, t)
	}
	if t.installed {
		if p, ok := t.mon.Probe(now); ok {
			n.sendFrame(now, t, overlay.AppendProbe(make([]byte, 0, overlay.ProbeSize), p, false))
		}
	}
	acts := t.sess.Tick(now)
	if acts&session.ActionKeepalive != 0 {
		n.sendKeepalive(now, t)
	}
	// A link that never had keys is dialled by its owner (dialLocked, punching), not rekeyed.
	if acts&session.ActionRekey != 0 && t.installed {
		t.lastDial = now
		out, err := n.linkHS.Initiate(now, t.remoteAddr(), t.peer())
		n.handleLinkOutputLocked(now, out, err)
	}
	if t.up && now.Sub(t.lastMetrics) >= metricsInterval {
		t.lastMetrics = now
		if m := t.mon.Metrics(now); m.Samples > 0 {
			n.router.UpdateMetrics(now, t.id, n.healMetrics(t.id, routing.Metrics{RTT: m.RTT, Loss: m.Loss}))
		}
	}
	if !t.up {
		switch {
		case t.static != nil && now.Sub(t.lastDial) >= redialInterval:
			n.dialLocked(now, t.static)
		case t.static == nil && t.mon.Silence(now) >= forgetLinkAfter:
			n.removeLinkLocked(now, t, "forgotten")
		}
	}
}

func (n *Node) tickE2ELocked(now time.Time, t *tunnel) {
	acts := t.sess.Tick(now)
	if acts&session.ActionKeepalive != 0 {
		n.sendE2EKeepalive(now, t)
	}
	if acts&session.ActionRekey != 0 {
		out, err := n.e2eHS.Initiate(now, netip.AddrPortFrom(t.addr, 0), t.peer())
		n.handleE2EOutputLocked(now, out, err, nil)
	}
	if len(t.queue) > 0 {
		n.flushQueueLocked(now, t)
	}
	idle := now.Sub(time.Unix(0, max(t.lastHeard.Load(), t.lastSent.Load())))
	if t.installed && idle >= e2eIdleTimeout {
		n.removeE2ELocked(t)
	}
}

// flushRoutingLocked sends what the router queued and rebuilds the forwarding table if routes changed.
func (n *Node) flushRoutingLocked(now time.Time) {
	n.peersRestartedLocked(now, n.router.Restarts())
	for _, o := range n.router.Drain() {
		t := n.links[o.To]
		if t == nil {
			continue
		}
		frame := make([]byte, 0, 1+len(o.Msg))
		n.sendFrame(now, t, append(append(frame, byte(overlay.TypeLinkState)), o.Msg...))
	}
	if g := n.router.Generation(); g != n.gen || n.dirty {
		n.gen, n.dirty = g, false
		n.rebuildFIBLocked(now)
		if n.l2 != nil {
			n.reconcileLevel2Locked(now)
			n.flushLevel2Locked(now)
		} else {
			n.pushProofsLocked(now)
		}
	}
}

func (n *Node) fibDirty() { n.dirty = true }

// rebuildFIBLocked recomputes the forwarding table from the router's routes and the links that are up.
func (n *Node) rebuildFIBLocked(now time.Time) {
	f := &fib{byAddr: make(map[netip.Addr]fibEntry)}
	for id, r := range n.router.Routes() {
		cert := n.router.Certificate(id)
		nh := n.links[r.NextHop]
		if cert == nil || nh == nil || !nh.up {
			continue
		}
		f.byAddr[cert.Overlay] = fibEntry{id: id, cert: cert, nextHop: nh, direct: r.NextHop == id, hops: r.Hops, cost: r.Cost}
	}
	// A neighbour is reachable over its link before routing has confirmed the link from both ends.
	for id, t := range n.links {
		if _, ok := f.byAddr[t.addr]; !ok && t.up {
			f.byAddr[t.addr] = fibEntry{id: id, cert: t.peer(), nextHop: t, direct: true, hops: 1}
		}
	}
	n.addLevel2RoutesLocked(now, f)
	n.fib.Store(f)
	n.stats.routeChanges.Add(1)
}

// UpdateCRL installs a newer revocation list, spreads it to every neighbour and drops the sessions of
// peers it revokes. It reports whether the list was new.
// When revocation is governed, every list after the one the node started with is refused
// (governance.ErrGoverned): only a quorum certificate (ApplyDecision) revokes.
func (n *Node) UpdateCRL(l *meshca.RevocationList) (bool, error) {
	if n.governs(governance.ActionRevoke) {
		return false, fmt.Errorf("node: revocation list %d: %w", l.Number, governance.ErrGoverned)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.updateCRLLocked(n.now(), l, nil)
}

func (n *Node) handleCRLLocked(now time.Time, raw []byte, from *tunnel) {
	l, err := meshca.ParseRevocationList(raw)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	if n.governs(governance.ActionRevoke) {
		return
	}
	if _, err := n.updateCRLLocked(now, l, from); err != nil && !errors.Is(err, meshca.ErrCRLRollback) {
		n.log.Debug("revocation list refused", "from", from.peer().Name, "err", err)
	}
}

func (n *Node) updateCRLLocked(now time.Time, l *meshca.RevocationList, from *tunnel) (bool, error) {
	changed, err := n.verifier.UpdateCRL(l)
	if err != nil || !changed {
		return false, err
	}
	n.log.Info("revocation list installed", "number", l.Number, "serials", len(l.Serials), "keys", len(l.Keys))
	frame := append([]byte{byte(overlay.TypeCRL)}, l.Bytes()...)
	for _, t := range n.links {
		if t != from && t.up {
			n.sendFrame(now, t, frame)
		}
	}
	n.enforceCertificatesLocked(now)
	return true, nil
}

// enforceCertificatesLocked drops every session whose peer certificate no longer verifies (revoked or
// expired) and tells routing to re-check the certificates it holds.
func (n *Node) enforceCertificatesLocked(now time.Time) {
	for _, t := range n.links {
		if err := n.verifier.Verify(t.peer(), now); err != nil {
			n.log.Warn("dropping neighbour", "peer", t.peer().Name, "err", err)
			t.static = nil
			n.removeLinkLocked(now, t, err.Error())
		}
	}
	for _, t := range n.e2e {
		if err := n.verifier.Verify(t.peer(), now); err != nil {
			n.log.Warn("dropping end-to-end session", "peer", t.peer().Name, "err", err)
			n.removeE2ELocked(t)
		}
	}
	n.router.Revalidate(now)
	n.fibDirty()
}

// SetCertificate replaces the node's own certificate with a renewed one for the same keys. Sessions
// keep running; new handshakes present the new certificate and routing re-originates with it.
func (n *Node) SetCertificate(cert *meshca.Certificate) error {
	now := n.now()
	if cert.Kind != meshca.KindNode || cert.SignPublicKey.ID() != n.selfID || cert.Overlay != n.addr {
		return errors.New("node: renewed certificate is not for this node's keys")
	}
	if err := n.verifier.Verify(cert, now); err != nil {
		return fmt.Errorf("node: renewed certificate: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	linkHS, err := handshake.New(n.handshakeConfig(cert, handshake.PrologueLink, 0))
	if err != nil {
		return err
	}
	e2eHS, err := handshake.New(n.handshakeConfig(cert, handshake.PrologueE2E, e2eHandshakePacket))
	if err != nil {
		return err
	}
	if err := n.router.SetCertificate(now, cert); err != nil {
		return err
	}
	// Handshakes in flight under the old machines are abandoned; their peers retry.
	n.self, n.linkHS, n.e2eHS = cert, linkHS, e2eHS
	n.log.Info("certificate renewed", "serial", cert.Serial, "not_after", cert.NotAfter)
	n.flushRoutingLocked(now)
	return nil
}
