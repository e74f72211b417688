package routingsim

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"x0tta6bl4/internal/routing"
)

// Backbone is the level-2 network of a network of areas (docs/routing.md, Level 2): a level-2
// router for every gateway, with the gateway's key, linked to its neighbours in other areas over
// the same links and to the other gateways of its area that its level-1 router names
// (Router.VirtualLinks) over a virtual link at their level-1 distance (its delay the level-1 path's, its messages relayed by the level-1 nodes on the way).
type Backbone struct {
	L1, L2 *Network
	// relayHops[k] is how many level-1 links a virtual link's messages cross (1 for a real link).
	relayHops map[linkKey]int
	// relays[k] are the level-1 nodes strictly inside a virtual link's path, in both directions.
	relays map[linkKey][]NodeID
	// RelayedBytes counts level-2 bytes times the level-1 links they crossed: what level 2 costs
	// the nodes that carry it, relays included.
	RelayedBytes uint64
	// RelayedBy counts the level-2 bytes each level-1 node forwarded on a virtual link it lies on
	// (the ends' own bytes are the level-2 network's SentBytes).
	RelayedBy map[NodeID]uint64
}

// NewBackbone builds the level-2 network over l1, whose level-1 routes must have converged (the
// virtual links take their costs from them). The level-2 routers share l1's CA and caches.
func NewBackbone(l1 *Network) (*Backbone, error) {
	cfg := l1.cfg
	cfg.Router.Level2, cfg.Router.Gateway = true, false
	cfg.Router.MaxNodes = max(cfg.Router.MaxNodes, len(l1.order))
	l2, err := New(cfg)
	if err != nil {
		return nil, err
	}
	l2.ca, l2.verifier, l2.certs, l2.cache, l2.verdicts = l1.ca, l1.verifier, l1.certs, l1.cache, l1.verdicts
	l2.now = l1.now
	b := &Backbone{L1: l1, L2: l2, relayHops: make(map[linkKey]int), relays: make(map[linkKey][]NodeID), RelayedBy: make(map[NodeID]uint64)}
	l2.OnDeliver = func(from, to NodeID, msg []byte) {
		k := keyOf(from, to)
		b.RelayedBytes += uint64(len(msg) * b.relayHops[k])
		for _, id := range b.relays[k] {
			b.RelayedBy[id] += uint64(len(msg))
		}
	}
	byArea := make(map[uint32][]NodeID)
	for _, id := range l1.order {
		if nd := l1.nodes[id]; nd.Gateway && nd.Alive {
			if _, err := l2.addKeyed(&Node{ID: id, Name: nd.Name, Key: nd.Key, Cert: nd.Cert, Area: nd.Area, Gateway: true}); err != nil {
				return nil, err
			}
			byArea[nd.Area] = append(byArea[nd.Area], id)
		}
	}
	keys := slices.SortedFunc(maps.Keys(l1.links), func(x, y linkKey) int { // in order, as below
		if c := bytes.Compare(x.a[:], y.a[:]); c != 0 {
			return c
		}
		return bytes.Compare(x.b[:], y.b[:])
	})
	for _, k := range keys {
		l := l1.links[k]
		a, c := l1.nodes[l.key.a], l1.nodes[l.key.b]
		if a.Gateway && c.Gateway && a.Area != c.Area && l.up {
			b.relayHops[l.key] = 1
			if err := l2.Connect(a.ID, c.ID, l.p); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range slices.Sorted(maps.Keys(byArea)) { // in order: the same seed makes the same run
		gws := byArea[a]
		// Records flood over a virtual link where both ends' level-1 routers say so
		// (Router.VirtualLinks); every virtual link counts for routes.
		flood := make(map[linkKey]int)
		for _, g := range gws {
			for _, v := range l1.nodes[g].Router.VirtualLinks() {
				if v.Flood {
					flood[keyOf(g, v.Gateway)]++
				}
			}
		}
		for i, g := range gws {
			for _, h := range gws[i+1:] {
				p, inner, err := l1.pathParams(g, h)
				if err != nil {
					return nil, err
				}
				p.NoFlood = flood[keyOf(g, h)] != 2
				b.relayHops[keyOf(g, h)] = len(inner) + 1
				b.relays[keyOf(g, h)] = inner
				if err := l2.Connect(g, h, p); err != nil {
					return nil, err
				}
			}
		}
	}
	return b, nil
}

// pathParams returns the link parameters of a virtual link from a to b of one area along a's
// level-1 route: the route's cost, the sum of the delays, and the nodes strictly between a and b
// (one fewer than the links).
func (n *Network) pathParams(a, b NodeID) (LinkParams, []NodeID, error) {
	rt, ok := n.nodes[a].Router.NextHop(b)
	if !ok {
		return LinkParams{}, nil, fmt.Errorf("routingsim: no level-1 route %s→%s", n.nodes[a].Name, n.nodes[b].Name)
	}
	p := LinkParams{Cost: uint32(min(rt.Cost, routing.MaxLinkCost))}
	var inner []NodeID
	for cur := a; cur != b; {
		if cur != a {
			inner = append(inner, cur)
		}
		r, ok := n.nodes[cur].Router.NextHop(b)
		if !ok || len(inner) > len(n.order) {
			return LinkParams{}, nil, fmt.Errorf("routingsim: level-1 path %s→%s broken at %s", n.nodes[a].Name, n.nodes[b].Name, n.nodes[cur].Name)
		}
		p.Delay += n.links[keyOf(cur, r.NextHop)].p.Delay
		cur = r.NextHop
	}
	return p, inner, nil
}

// Path is the way a packet travels between two nodes of any areas, with what each step cost.
type Path struct {
	Nodes []NodeID // source first, destination last
	Cost  uint64   // sum of the links' costs
	// Quoted is what the routers promised: the source's level-1 cost to its gateway plus that
	// gateway's level-2 cost by the destination's proof (the level-1 cost within one area).
	Quoted uint64
}

// Route follows the routers' own decisions from src to dst, as a forwarding plane would: inside an
// area level-1 next hops; to another area, the nearest gateway, then at each gateway the level-2
// route by dst's destination proof (across a border link, or through level 1 to a gateway of the
// same area), and from the entry gateway level 1 to dst. It fails on a dead end or a loop.
func (b *Backbone) Route(src, dst NodeID) (Path, error) {
	l1 := b.L1
	s, d := l1.nodes[src], l1.nodes[dst]
	if s == nil || d == nil {
		return Path{}, errors.New("routingsim: unknown node")
	}
	p := Path{Nodes: []NodeID{src}}
	if s.Area == d.Area {
		rt, ok := s.Router.NextHop(dst)
		if !ok {
			return p, fmt.Errorf("%s has no route to %s", s.Name, d.Name)
		}
		p.Quoted = rt.Cost
		return p, b.walkL1(&p, dst)
	}
	proof, err := d.Router.DestinationProof(l1.now)
	if err != nil {
		return p, err
	}
	gws := s.Router.Gateways()
	if len(gws) == 0 {
		return p, fmt.Errorf("%s sees no gateway of area %d", s.Name, s.Area)
	}
	if gws[0] != src {
		rt, _ := s.Router.NextHop(gws[0])
		p.Quoted = rt.Cost
		if err := b.walkL1(&p, gws[0]); err != nil {
			return p, err
		}
	}
	seen := make(map[NodeID]bool)
	for first := true; ; first = false {
		cur := p.Nodes[len(p.Nodes)-1]
		if seen[cur] {
			return p, fmt.Errorf("%s→%s: level-2 loop at %s", s.Name, d.Name, l1.nodes[cur].Name)
		}
		seen[cur] = true
		g := b.L2.nodes[cur]
		if g == nil {
			return p, fmt.Errorf("%s→%s: %s has no level-2 router", s.Name, d.Name, l1.nodes[cur].Name)
		}
		ar, err := g.Router.RouteByProof(b.L2.now, proof, d.Cert)
		if err != nil {
			return p, fmt.Errorf("%s→%s at %s: %w", s.Name, d.Name, g.Name, err)
		}
		if first {
			p.Quoted += ar.Cost
		}
		if ar.Entry == cur {
			if cur == dst {
				return p, nil
			}
			return p, b.walkL1(&p, dst)
		}
		next := l1.nodes[ar.NextHop]
		if next.Area == g.Area {
			if err := b.walkL1(&p, ar.NextHop); err != nil {
				return p, err
			}
			continue
		}
		l := l1.links[keyOf(cur, ar.NextHop)]
		if l == nil || !l.up {
			return p, fmt.Errorf("%s→%s: %s forwards over a dead border link", s.Name, d.Name, g.Name)
		}
		p.Cost += MeasuredCost(cur, ar.NextHop, l.p)
		p.Nodes = append(p.Nodes, ar.NextHop)
	}
}

// walkL1 extends p along level-1 next hops from its last node to to (same area).
func (b *Backbone) walkL1(p *Path, to NodeID) error {
	l1 := b.L1
	for hops := 0; ; hops++ {
		cur := p.Nodes[len(p.Nodes)-1]
		if cur == to {
			return nil
		}
		if hops > len(l1.order) {
			return fmt.Errorf("level-1 loop towards %s", l1.nodes[to].Name)
		}
		rt, ok := l1.nodes[cur].Router.NextHop(to)
		if !ok {
			return fmt.Errorf("%s has no level-1 route to %s", l1.nodes[cur].Name, l1.nodes[to].Name)
		}
		l := l1.links[keyOf(cur, rt.NextHop)]
		if l == nil || !l.up || l1.nodes[rt.NextHop].Area != l1.nodes[cur].Area {
			return fmt.Errorf("%s forwards to %s over a dead or border link", l1.nodes[cur].Name, l1.nodes[to].Name)
		}
		p.Cost += MeasuredCost(cur, rt.NextHop, l.p)
		p.Nodes = append(p.Nodes, rt.NextHop)
	}
}

// ShortestCost is the cost of the shortest path from a to b in the whole mesh, ignoring areas:
// what a flat mesh would route at, to measure the stretch areas cost.
func (n *Network) ShortestCost(a, b NodeID) uint64 {
	idx := make(map[NodeID]int, len(n.order))
	for _, id := range n.order {
		idx[id] = len(idx)
	}
	adj := make([][]truthEdge, len(idx))
	for _, l := range n.links {
		if l.up && n.nodes[l.key.a].Alive && n.nodes[l.key.b].Alive {
			c := MeasuredCost(l.key.a, l.key.b, l.p)
			ia, ib := idx[l.key.a], idx[l.key.b]
			adj[ia] = append(adj[ia], truthEdge{ib, c})
			adj[ib] = append(adj[ib], truthEdge{ia, c})
		}
	}
	return truthDist(adj, idx[a])[idx[b]]
}

// Gateways lists the network's gateways in the order they were added.
func (n *Network) Gateways() []NodeID {
	return slices.DeleteFunc(slices.Clone(n.order), func(id NodeID) bool { return !n.nodes[id].Gateway })
}
