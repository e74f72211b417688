package node

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/routing"
)

// Status describes the node.
type Status struct {
	Name      string        `json:"name"`
	SPIFFEID  string        `json:"spiffe_id"`
	Overlay   netip.Addr    `json:"overlay_address"`
	UDP       string        `json:"udp"`
	Device    string        `json:"device"`
	Uptime    time.Duration `json:"uptime_ns"`
	Links     int           `json:"links_up"`
	Nodes     int           `json:"nodes_known"`
	Reachable int           `json:"nodes_reachable"`
	E2E       int           `json:"e2e_sessions"`
	Policy    uint64        `json:"policy_version"` // access policy in force; 0: none (local rules alone)
	Stats     Stats         `json:"stats"`
}

// PeerStatus describes one neighbour link.
type PeerStatus struct {
	Name     string        `json:"name"`
	SPIFFEID string        `json:"spiffe_id"`
	Overlay  netip.Addr    `json:"overlay_address"`
	Remote   string        `json:"remote"`
	Up       bool          `json:"up"`
	RTT      time.Duration `json:"rtt_ns"`
	Jitter   time.Duration `json:"jitter_ns"`
	Loss     float64       `json:"loss"`
	Silence  time.Duration `json:"silence_ns"`
	Static   bool          `json:"static"`
	// TransitOut counts transit packets handed to the neighbour for nodes beyond it; TransitIn,
	// transit packets it relayed to us from nodes beyond it.
	TransitOut uint64 `json:"transit_out"`
	TransitIn  uint64 `json:"transit_in"`
	// TxBytes and RxBytes count the UDP payload bytes sent to the neighbour and authenticated from
	// it over this link (everything it carries: our traffic, transit, control frames).
	TxBytes uint64 `json:"tx_bytes"`
	RxBytes uint64 `json:"rx_bytes"`
	// Path is "direct" (a link to the node itself is up), "relayed" (through Via) or "down"; Why
	// says how the link came to be, or why the node is not reached directly.
	Path string `json:"path"`
	Via  string `json:"via,omitempty"`
	Why  string `json:"why"`
}

// RouteStatus is one entry of the forwarding table.
type RouteStatus struct {
	Name    string     `json:"name"`
	Overlay netip.Addr `json:"overlay_address"`
	NextHop string     `json:"next_hop"`
	Hops    int        `json:"hops"`
	Cost    uint64     `json:"cost"`
	Direct  bool       `json:"direct"`
}

// Status returns the node's status.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Status{Name: n.self.Name, SPIFFEID: n.self.SPIFFEID().String(), Overlay: n.addr, UDP: n.UDPAddr().String(),
		Device: string(n.opts.Device), Uptime: n.now().Sub(n.start), E2E: len(n.e2e), Stats: n.stats.snapshot()}
	n.pieceStats(&s.Stats)
	if n.netdev != nil {
		s.Device += " " + n.netdev.Name
	}
	for _, t := range n.links {
		if t.up {
			s.Links++
		}
	}
	if p := n.policy.current.Load(); p != nil {
		s.Policy = p.Version
	}
	g := n.router.Graph()
	s.Nodes = len(g.Nodes)
	for _, gn := range g.Nodes {
		if gn.Reachable {
			s.Reachable++
		}
	}
	return s
}

// Peers returns the neighbour links, sorted by name.
func (n *Node) Peers() []PeerStatus {
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]PeerStatus, 0, len(n.links))
	for _, t := range n.links {
		c := t.peer()
		m := t.mon.Metrics(now)
		p := PeerStatus{Name: c.Name, SPIFFEID: c.SPIFFEID().String(), Overlay: c.Overlay,
			Remote: t.remoteAddr().String(), Up: t.up, RTT: m.RTT, Jitter: m.Jitter, Loss: m.Loss,
			Silence: now.Sub(time.Unix(0, t.lastHeard.Load())), Static: t.static != nil,
			TransitOut: t.transitOut.Load(), TransitIn: t.transitIn.Load(), TxBytes: t.txBytes.Load(), RxBytes: t.rxBytes.Load(),
			Path: "down", Why: t.how}
		if t.up {
			p.Path = "direct"
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// PeerPaths returns Peers and, for every other node routing reaches, the relay it is reached
// through and why not directly: what 'x0tta6bl4 peers' shows.
func (n *Node) PeerPaths() []PeerStatus {
	out := n.Peers()
	now := n.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range out {
		if !out[i].Up {
			if id, ok := n.router.NodeByAddr(out[i].Overlay); ok {
				out[i].Why = n.punchReasonLocked(now, id)
			}
		}
	}
	for addr, e := range n.fib.Load().byAddr {
		if e.direct {
			continue
		}
		i := slices.IndexFunc(out, func(p PeerStatus) bool { return p.Overlay == addr })
		if i < 0 {
			out = append(out, PeerStatus{Name: e.cert.Name, SPIFFEID: e.cert.SPIFFEID().String(), Overlay: addr})
			i = len(out) - 1
		}
		out[i].Path, out[i].Via, out[i].Why = "relayed", e.nextHop.peer().Name, n.punchReasonLocked(now, e.id)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Routes returns the forwarding table, sorted by name.
func (n *Node) Routes() []RouteStatus {
	f := n.fib.Load()
	out := make([]RouteStatus, 0, len(f.byAddr))
	for addr, e := range f.byAddr {
		out = append(out, RouteStatus{Name: e.cert.Name, Overlay: addr, NextHop: e.nextHop.peer().Name,
			Hops: e.hops, Cost: e.cost, Direct: e.direct})
	}
	slices.SortFunc(out, func(a, b RouteStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RoutingStats returns the level-1 router's counters: records installed, refused, asked for,
// signed and taken back.
func (n *Node) RoutingStats() routing.Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.router.Stats()
}

// Level2RoutingStats returns a gateway's level-2 router's counters; ok is false on a node that is
// not a gateway.
func (n *Node) Level2RoutingStats() (st routing.Stats, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.l2 == nil {
		return st, false
	}
	return n.l2.r.Stats(), true
}

// Graph returns the whole mesh as this node's routing knows it.
func (n *Node) Graph() routing.Graph {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.router.Graph()
}

// Resolve turns a node name or overlay address into an overlay address.
func (n *Node) Resolve(target string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(target); err == nil {
		return a, true
	}
	for addr, e := range n.fib.Load().byAddr {
		if e.cert.Name == target {
			return addr, true
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, gn := range n.router.Graph().Nodes {
		if gn.Name == target {
			return gn.Overlay, true
		}
	}
	return netip.Addr{}, false
}
