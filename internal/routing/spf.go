package routing

import (
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"
)

// topo is the graph as the router sees it: unexpired records, with this node's own links limited to
// neighbours that are still up (a link the router knows is down is never used, even before its new
// record has reached anyone).
type topo struct {
	ids   []NodeID // sorted, so index order is ID order
	recs  []*Record
	links [][]LinkInfo
	idx   map[NodeID]int32
	self  int32
}

func (r *Router) buildTopo() *topo {
	n := len(r.entries) + 1
	t := &topo{idx: make(map[NodeID]int32, n), ids: make([]NodeID, 0, n), recs: make([]*Record, 0, n)}
	self := false
	for _, l := range r.sorted() {
		id := l.rec.Origin
		if !self && cmpID(id, r.self) >= 0 {
			self = true
			if id != r.self {
				t.ids, t.recs = append(t.ids, r.self), append(t.recs, nil)
			}
		}
		if id == r.self || l.rec.Expires.After(r.now) {
			t.ids, t.recs = append(t.ids, id), append(t.recs, l.rec)
		}
	}
	if !self {
		t.ids, t.recs = append(t.ids, r.self), append(t.recs, nil)
	}
	t.links = make([][]LinkInfo, len(t.ids))
	for i, id := range t.ids {
		t.idx[id] = int32(i)
		if t.recs[i] == nil {
			t.self = int32(i)
			continue
		}
		if id != r.self {
			t.links[i] = t.recs[i].Links
			continue
		}
		t.self = int32(i)
		for _, li := range t.recs[i].Links {
			if r.nbrs[li.Neighbour] != nil {
				t.links[i] = append(t.links[i], li)
			}
		}
	}
	return t
}

// confirm returns the far end of node i's link l and that end's report of the same link, if the far
// end reports it too.
func (t *topo) confirm(i int32, l LinkInfo) (int32, LinkInfo, bool) {
	j, ok := t.idx[l.Neighbour]
	if !ok {
		return 0, LinkInfo{}, false
	}
	back := t.links[j]
	k, found := slices.BinarySearchFunc(back, t.ids[i], func(x LinkInfo, id NodeID) int { return cmpID(x.Neighbour, id) })
	if !found {
		return 0, LinkInfo{}, false
	}
	return j, back[k], true
}

type heapItem struct {
	d uint64
	n int32
}

type minHeap []heapItem

func (h *minHeap) push(it heapItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].d <= s[i].d {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *minHeap) pop() heapItem {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(s) && s[l].d < s[m].d {
			m = l
		}
		if l+1 < len(s) && s[l+1].d < s[m].d {
			m = l + 1
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// spf runs Dijkstra from the router's own node. A link's cost is the larger of its two ends'
// reports. Among equal-cost paths the one whose first hop has the lowest ID wins, so the result is
// deterministic.
func (t *topo) spf() (dist []uint64, first, hops []int32) {
	n := len(t.ids)
	dist = make([]uint64, n)
	first = make([]int32, n)
	hops = make([]int32, n)
	done := make([]bool, n)
	for i := range dist {
		dist[i] = math.MaxUint64
		first[i] = -1
	}
	dist[t.self] = 0
	h := minHeap{{0, t.self}}
	for len(h) > 0 {
		it := h.pop()
		u := it.n
		if done[u] || it.d != dist[u] {
			continue
		}
		done[u] = true
		if u != t.self && t.recs[u] != nil && t.recs[u].NoTransit {
			continue // a destination, never a relay
		}
		for _, l := range t.links[u] {
			v, back, ok := t.confirm(u, l)
			if !ok || done[v] {
				continue
			}
			nd := dist[u] + uint64(max(l.Cost, back.Cost))
			fh := first[u]
			if u == t.self {
				fh = v
			}
			if nd < dist[v] || (nd == dist[v] && fh < first[v]) {
				if nd < dist[v] {
					h.push(heapItem{nd, v})
				}
				dist[v], first[v], hops[v] = nd, fh, hops[u]+1
			}
		}
	}
	return dist, first, hops
}

func (r *Router) compute() {
	if r.spfValid && r.spfGen == r.gen {
		return
	}
	t := r.buildTopo()
	dist, first, hops := t.spf()
	r.routes = make(map[NodeID]Route, len(t.ids))
	r.reach = make(map[NodeID]bool, len(t.ids))
	for i, id := range t.ids {
		if dist[i] == math.MaxUint64 {
			continue
		}
		r.reach[id] = true
		if int32(i) != t.self {
			r.routes[id] = Route{NextHop: t.ids[first[i]], Cost: dist[i], Hops: int(hops[i])}
		}
	}
	r.spfGen, r.spfValid = r.gen, true
}

// Routes returns a route to every reachable node (a fresh map the caller may keep).
func (r *Router) Routes() map[NodeID]Route {
	r.compute()
	return maps.Clone(r.routes)
}

// NextHop returns the neighbour to send traffic for dst to.
func (r *Router) NextHop(dst NodeID) (Route, bool) {
	r.compute()
	rt, ok := r.routes[dst]
	return rt, ok
}

// GraphNode is a node of the link-state graph.
type GraphNode struct {
	ID        NodeID
	Name      string
	SPIFFEID  string
	Overlay   netip.Addr
	Seq       uint64
	Expires   time.Time
	Self      bool
	Reachable bool
}

// GraphLink is a confirmed (both ends report it) link; A has the lower ID.
type GraphLink struct {
	A, B NodeID
	Cost uint32   // the larger of the two reports: what routing uses
	AB   LinkInfo // A's report
	BA   LinkInfo // B's report
}

// Graph is the whole mesh as this router knows it.
type Graph struct {
	Nodes []GraphNode // sorted by ID
	Links []GraphLink // sorted by (A, B)
}

// Graph returns the nodes of every unexpired record (reachable or not) and every confirmed link.
func (r *Router) Graph() Graph {
	r.compute()
	t := r.buildTopo()
	var g Graph
	g.Nodes = make([]GraphNode, len(t.ids))
	for i, id := range t.ids {
		n := GraphNode{ID: id, Self: int32(i) == t.self, Reachable: r.reach[id]}
		if rec := t.recs[i]; rec != nil {
			n.Seq, n.Expires = rec.Seq, rec.Expires
		}
		if c := r.Certificate(id); c != nil {
			n.Name, n.SPIFFEID, n.Overlay = c.Name, c.SPIFFEID().String(), c.Overlay
		}
		g.Nodes[i] = n
		for _, l := range t.links[i] {
			if cmpID(id, l.Neighbour) > 0 {
				continue
			}
			if _, back, ok := t.confirm(int32(i), l); ok {
				g.Links = append(g.Links, GraphLink{A: id, B: l.Neighbour, Cost: max(l.Cost, back.Cost), AB: l, BA: back})
			}
		}
	}
	return g
}
