package node

// Connectivity across NATs (docs/connectivity.md): the node publishes where it can be dialled (its
// interface addresses, and the addresses its neighbours see its packets come from) in its signed
// link-state record, and makes direct links to the nodes it can reach only through relays by
// coordinated hole punching: it sends a link handshake initiation to every endpoint of the other
// node, and a punch message through the mesh that makes the other node do the same towards it at
// once. Until a punch succeeds, and when it never does (symmetric NATs on both sides), traffic
// follows the multi-hop routes through relays.

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/policy"
	"x0tta6bl4/internal/ratelimit"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/underlay"
)

const (
	// maxWanted bounds the nodes the node tries to reach directly at a time, closest first.
	maxWanted = 32
	// punchRate bounds the punch initiations (one per endpoint) the node sends per second, whatever
	// records say: the mesh must never become an amplifier against an address a record names.
	punchRate, punchBurst = 32, 32
	// punchFirstRetry and punchMaxRetry bound the back-off between attempts at one node.
	punchFirstRetry, punchMaxRetry = time.Second, 5 * time.Minute
	// punchRequestRate bounds the punch messages acted on per source.
	punchRequestRate, punchRequestBurst = 2, 2
	punchSources                        = 1024
	// localScanInterval is how often interface addresses are listed again (a laptop moves).
	localScanInterval = 30 * time.Second
	// observedInterval is how often a neighbour is told again where we see it.
	observedInterval = 30 * time.Second
	// maxLocalEndpoints leaves room among MaxEndpoints for observed addresses.
	maxLocalEndpoints = 4
	// punchTypeByte is the first byte of a punch message inside a routed frame (after handshake types
	// 1-3 and the unknown-session notice 8).
	punchTypeByte = 9
)

// connectivity is the node's endpoint and hole-punching state, guarded by Node.mu.
type connectivity struct {
	observed  map[routing.NodeID]netip.AddrPort // what each neighbour last told us it sees
	local     []netip.AddrPort
	lastScan  time.Time
	punches   map[routing.NodeID]*punchState
	budget    *ratelimit.Limiter[struct{}]   // punch initiations per second
	requests  *ratelimit.Limiter[netip.Addr] // punch messages acted on, per source
	lastCheck time.Time
}

// punchState is the attempts at a direct link to one node.
type punchState struct {
	attempts  int
	next      time.Time // next attempt
	endpoints []routing.Endpoint
	lastTry   time.Time
	failed    bool // the last attempt ended without a link
}

func newConnectivity() (*connectivity, error) {
	budget, err := ratelimit.New[struct{}](ratelimit.Config{Rate: punchRate, Burst: punchBurst, Max: 1})
	if err != nil {
		return nil, err
	}
	requests, err := ratelimit.New[netip.Addr](ratelimit.Config{Rate: punchRequestRate, Burst: punchRequestBurst, Max: punchSources})
	if err != nil {
		return nil, err
	}
	return &connectivity{observed: map[routing.NodeID]netip.AddrPort{}, punches: map[routing.NodeID]*punchState{},
		budget: budget, requests: requests}, nil
}

// interfaceAddrs lists the host's unicast addresses: the default of Options.LocalAddrs.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// localEndpointsLocked returns the addresses the node's socket can be dialled at on its own
// interfaces: the bound address itself, or with a wildcard bind every usable interface address.
func (n *Node) localEndpointsLocked(now time.Time) []netip.AddrPort {
	c := n.connect
	if !c.lastScan.IsZero() && now.Sub(c.lastScan) < localScanInterval {
		return c.local
	}
	c.lastScan = now
	bound := n.conn.LocalAddr()
	if !bound.Addr().IsUnspecified() {
		c.local = []netip.AddrPort{netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())}
		return c.local
	}
	addrs, err := n.opts.LocalAddrs()
	if err != nil {
		n.log.Debug("listing interface addresses", "err", err)
		return c.local
	}
	v4only := bound.Addr().Is4()
	c.local = c.local[:0]
	for _, a := range addrs {
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() ||
			identity.OverlayPrefix.Contains(a) || (v4only && !a.Is4()) {
			continue
		}
		c.local = append(c.local, netip.AddrPortFrom(a, bound.Port()))
		if len(c.local) == maxLocalEndpoints {
			break
		}
	}
	return c.local
}

// publishEndpointsLocked hands routing the endpoints the node can be dialled at now: its local ones,
// then the addresses neighbours observe that are not local (the NAT's), most agreed first.
func (n *Node) publishEndpointsLocked(now time.Time) {
	c := n.connect
	var eps []routing.Endpoint
	for _, a := range n.localEndpointsLocked(now) {
		eps = append(eps, routing.Endpoint{Addr: a, Kind: routing.EndpointLocal})
	}
	votes := map[netip.AddrPort]int{}
	for _, a := range c.observed {
		votes[a]++
	}
	observed := make([]netip.AddrPort, 0, len(votes))
	for a := range votes {
		if !slices.ContainsFunc(eps, func(e routing.Endpoint) bool { return e.Addr == a }) && usableEndpoint(a) {
			observed = append(observed, a)
		}
	}
	slices.SortFunc(observed, func(a, b netip.AddrPort) int {
		if d := votes[b] - votes[a]; d != 0 {
			return d
		}
		return a.Compare(b)
	})
	for _, a := range observed {
		if len(eps) == routing.MaxEndpoints {
			break
		}
		eps = append(eps, routing.Endpoint{Addr: a, Kind: routing.EndpointObserved})
	}
	if err := n.router.SetEndpoints(now, eps); err != nil {
		n.log.Warn("publishing endpoints", "err", err)
	}
}

func usableEndpoint(a netip.AddrPort) bool {
	ip := a.Addr()
	return a.IsValid() && a.Port() != 0 && !ip.IsUnspecified() && !ip.IsMulticast() && ip.Zone() == "" && !ip.Is4In6()
}

// sendObserved tells the neighbour where we see its packets come from.
func (n *Node) sendObserved(now time.Time, t *tunnel) {
	a := t.remoteAddr()
	if !a.IsValid() {
		return
	}
	// The responder of a fresh handshake cannot seal until the initiator's first packet arrives:
	// only a frame that went counts, and the link's tick tries again until one does.
	if n.sendFrame(now, t, overlay.AppendObserved(make([]byte, 0, overlay.ObservedSize), netip.AddrPortFrom(a.Addr().Unmap(), a.Port()))) {
		t.lastObserved.Store(now.UnixNano())
	}
}

// handleObserved records what a neighbour told us it sees, and republishes our endpoints.
func (n *Node) handleObserved(now time.Time, t *tunnel, frame []byte) {
	a, err := overlay.ParseObserved(frame)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.links[t.id] != t || n.connect.observed[t.id] == a {
		return
	}
	n.connect.observed[t.id] = a
	n.publishEndpointsLocked(now)
	n.flushRoutingLocked(now)
}

// tickConnectivityLocked republishes endpoints and makes the punch attempts that are due.
func (n *Node) tickConnectivityLocked(now time.Time) {
	c := n.connect
	stale := false
	for id := range c.observed {
		if t := n.links[id]; t == nil || !t.up {
			delete(c.observed, id) // only live neighbours vouch for an address
			stale = true
		}
	}
	// Observations republish as they arrive (handleObserved); a tick has news only when one was
	// dropped or the interface addresses are due for another look.
	if stale || c.lastScan.IsZero() || now.Sub(c.lastScan) >= localScanInterval {
		n.publishEndpointsLocked(now)
	}
	if n.opts.NoPunch || now.Sub(c.lastCheck) < 4*n.opts.TickInterval {
		return
	}
	c.lastCheck = now
	// Without any link there is no mesh path for a punch message, and the nodes to dial are the
	// ones a control plane named: dial them at full TTL.
	bootstrap := !n.anyLinkUpLocked()
	wanted := n.wantedLocked()
	for id, st := range c.punches {
		if !slices.Contains(wanted, id) {
			if st.failed || !st.lastTry.IsZero() && now.Sub(st.lastTry) > punchMaxRetry {
				delete(c.punches, id)
			}
		}
	}
	for _, id := range wanted {
		rec, cert := n.router.Record(id), n.router.Certificate(id)
		if rec == nil || cert == nil {
			continue
		}
		st := c.punches[id]
		if st == nil {
			st = &punchState{}
			c.punches[id] = st
		}
		if !slices.Equal(st.endpoints, rec.Endpoints) {
			// New endpoints deserve a fresh try; the signer controls how often they change, and
			// routing accepts at most one record of it per 50 ms.
			st.endpoints, st.attempts, st.next = rec.Endpoints, 0, now
		}
		if now.Before(st.next) {
			continue
		}
		if st.attempts > 0 {
			st.failed = true
			n.stats.punchFailed.Add(1)
		}
		st.attempts++
		st.lastTry = now
		st.next = now.Add(min(punchFirstRetry<<min(st.attempts-1, 20), punchMaxRetry))
		if bootstrap {
			n.punchLocked(now, id, cert, rec.Endpoints, 0, false)
		} else {
			n.punchLocked(now, id, cert, rec.Endpoints, primeHops(st.attempts), true)
		}
	}
}

// wantedLocked returns the nodes to try direct links with: reachable, not linked, dialable
// (endpoints in their record), not configured peers (those are dialled anyway), closest first.
func (n *Node) wantedLocked() []routing.NodeID {
	type cand struct {
		id   routing.NodeID
		hops int
	}
	var cs []cand
	pol := n.Policy()
	for id, r := range n.router.Routes() {
		if t := n.links[id]; t != nil && t.up {
			continue
		}
		if t := n.links[id]; t != nil && t.static != nil {
			continue
		}
		if rec := n.router.Record(id); rec == nil || len(rec.Endpoints) == 0 {
			continue
		}
		if cert := n.router.Certificate(id); cert == nil || !policy.Connected(pol, n.self, cert) {
			continue // the access policy lets neither open a flow to the other
		}
		cs = append(cs, cand{id, r.Hops})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.hops != b.hops {
			return a.hops - b.hops
		}
		return bytes.Compare(a.id[:], b.id[:])
	})
	if len(cs) == 0 && !n.anyLinkUpLocked() {
		// No link yet (a node that joined with only a token): dial the nodes whose records a control
		// plane handed us, relays first. Once one link is up, routes take over.
		for _, g := range n.router.Graph().Nodes {
			rec := n.router.Record(g.ID)
			if g.Self || rec == nil || len(rec.Endpoints) == 0 {
				continue
			}
			hops := 1
			if rec.NoTransit {
				hops = 2
			}
			cs = append(cs, cand{g.ID, hops})
		}
	}
	out := make([]routing.NodeID, 0, min(len(cs), maxWanted))
	for _, c := range cs[:min(len(cs), maxWanted)] {
		out = append(out, c.id)
	}
	return out
}

// primeHops is the hop limit of the initiations of attempt a at a direct link: low enough on the
// first attempts that they open our own NAT's mapping and die before they reach the other side's
// NAT, where they would leave a conntrack entry that makes that NAT give the other side's answer
// another port (docs/connectivity.md, "Hole punching"); a home router is one hop, a carrier-grade
// NAT behind it another. From the fourth attempt they go with the system's TTL. 0 means no limit.
func primeHops(a int) int {
	if a <= 3 {
		return 1 + a
	}
	return 0
}

// punchLocked sends one link handshake initiation to every endpoint of node id (within the punch
// budget), with hop limit prime if it is not 0. The side that asks also sends a punch message
// through the mesh, which makes the other node initiate towards us at once, at full TTL.
func (n *Node) punchLocked(now time.Time, id routing.NodeID, cert *meshca.Certificate, eps []routing.Endpoint, prime int, ask bool) {
	if len(eps) == 0 {
		return
	}
	// No tunnel until a handshake completes (installLinkLocked makes it): a tunnel that never came up
	// would be forgotten and rebuilt at every attempt, and each time the forwarding table with it.
	if t := n.links[id]; t != nil && t.up || len(n.links) >= maxLinks || id == n.selfID {
		return
	}
	n.linkHS.Abandon(cert)
	out, err := n.linkHS.Initiate(now, eps[0].Addr, cert)
	if err != nil {
		n.stats.handshakeErrors.Add(1)
		n.log.Debug("punch", "peer", cert.Name, "err", err)
		return
	}
	n.stats.punchAttempts.Add(1)
	limited, _ := n.conn.(underlay.HopLimitedSender)
	for _, e := range eps {
		if !n.connect.budget.Allow(now, struct{}{}).OK {
			n.stats.punchLimited.Add(1)
			break
		}
		for _, p := range out.Packets {
			if prime > 0 && limited != nil {
				if err := limited.SendHopLimited(p.Data, e.Addr, prime); err != nil {
					n.log.Debug("punch", "peer", cert.Name, "to", e.Addr, "err", err)
				}
				continue
			}
			n.writeUDP(p.Data, e.Addr, nil, now)
		}
	}
	if ask {
		n.sendPunchRequestLocked(now, cert.Overlay)
	}
}

// sendPunchRequestLocked asks dst, through the mesh, to punch towards us now.
func (n *Node) sendPunchRequestLocked(now time.Time, dst netip.Addr) {
	e, ok := n.fib.Load().byAddr[dst]
	if !ok || e.level2 {
		return // a node of another area: no endpoint of its is known to punch to
	}
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+1),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: dst})
	n.sendFrame(now, e.nextHop, append(frame, punchTypeByte))
}

// handlePunchRequest punches towards src, which asked through the mesh (rate limited per source).
func (n *Node) handlePunchRequest(now time.Time, src netip.Addr, msg []byte) {
	if len(msg) != 1 {
		n.stats.dropMalformed.Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.opts.NoPunch || !n.connect.requests.Allow(now, src).OK {
		return
	}
	id, ok := n.router.NodeByAddr(src)
	if !ok {
		return
	}
	rec, cert := n.router.Record(id), n.router.Certificate(id)
	if rec == nil || cert == nil {
		return
	}
	n.punchLocked(now, id, cert, rec.Endpoints, 0, false)
}

// punchReasonLocked says why node id is reached through relays rather than directly.
func (n *Node) punchReasonLocked(now time.Time, id routing.NodeID) string {
	rec := n.router.Record(id)
	switch st := n.connect.punches[id]; {
	case n.opts.NoPunch:
		return "punching off (punch: false)"
	case rec == nil || len(rec.Endpoints) == 0:
		return "it publishes no endpoint"
	case n.router.Certificate(id) != nil && !policy.Connected(n.Policy(), n.self, n.router.Certificate(id)):
		return "the access policy lets neither side reach the other"
	case st == nil:
		return "not tried: beyond the closest " + strconv.Itoa(maxWanted)
	case st.failed:
		return fmt.Sprintf("%d punches failed (symmetric NAT or UDP blocked?); next in %s", st.attempts, st.next.Sub(now).Round(time.Second))
	default:
		return fmt.Sprintf("punching (attempt %d)", st.attempts)
	}
}

func (n *Node) anyLinkUpLocked() bool {
	for _, t := range n.links {
		if t.up {
			return true
		}
	}
	return false
}
