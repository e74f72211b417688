package routing

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"time"

	"x0tta6bl4/internal/meshca"
)

// ErrNoAreaRoute means that no gateway a destination names is reachable in the level-2 graph.
var ErrNoAreaRoute = errors.New("routing: no level-2 route to the destination's area")

// AreaRoute is the way from a gateway's level-2 router to a node of another area.
type AreaRoute struct {
	// Entry is the gateway of the destination's area the traffic enters by: one the destination
	// itself named. It is this router's own ID when the destination is in reach of this gateway's
	// area without another level-2 hop (the level-1 router takes over).
	Entry NodeID
	// NextHop is the level-2 neighbour to send the traffic to (zero when Entry is this router):
	// a neighbour in another area, or a gateway of this router's area reached through level 1.
	NextHop NodeID
	// Cost is the level-2 distance to Entry plus the destination's own level-1 distance from it.
	Cost uint64
}

// RouteByProof returns the level-2 route to the originator of proof, a node of another area.
//
// proof is the destination's own level-2 record (docs/routing.md, Level 2), obtained on use: it
// proves the destination's area (signed by its key) and names the gateways of that area with its
// level-1 distance to each. It is verified here, against cert, the destination's certificate, which
// the router's verifier must accept. Traffic is only ever routed towards a gateway the destination
// named that is also a level-2 node of the named area (its own level-2 record says so), so a node
// that claims an area it is not part of, or signs links nobody confirms, is never an entry.
func (r *Router) RouteByProof(now time.Time, proof *Record, cert *meshca.Certificate) (AreaRoute, error) {
	r.setNow(now)
	switch {
	case !r.cfg.Level2:
		return AreaRoute{}, errors.New("routing: a destination proof is for a level-2 router")
	case proof == nil || !proof.Level2 || proof.Area == 0:
		return AreaRoute{}, errors.New("routing: a destination proof is a level-2 record of an area")
	case cert == nil || cert.SignPublicKey == nil || cert.SignPublicKey.ID() != proof.Origin:
		return AreaRoute{}, errors.New("routing: the certificate is not the destination's")
	case cert.Fingerprint() != proof.CertFingerprint:
		return AreaRoute{}, errors.New("routing: the proof names another certificate")
	case !proof.Expires.After(now):
		return AreaRoute{}, errors.New("routing: the destination proof has expired")
	}
	if err := r.checkCert(cert, now); err != nil {
		return AreaRoute{}, err
	}
	if err := proof.VerifySignature(cert); err != nil {
		return AreaRoute{}, err
	}
	r.compute()
	best := AreaRoute{Cost: math.MaxUint64}
	consider := func(entry NodeID, extra uint64) {
		var rt Route
		if entry != r.self {
			var ok bool
			if rt, ok = r.routes[entry]; !ok {
				return
			}
		}
		if c := rt.Cost + extra; c < best.Cost {
			best = AreaRoute{Entry: entry, NextHop: rt.NextHop, Cost: c}
		}
	}
	if l := r.lsdb.get(proof.Origin); l != nil && l.rec.Area == proof.Area {
		consider(proof.Origin, 0) // the destination is a gateway itself
	}
	for _, gw := range proof.Links {
		if gw.Neighbour == r.self {
			if r.cfg.Area == proof.Area {
				consider(r.self, uint64(gw.Cost))
			}
			continue
		}
		if l := r.lsdb.get(gw.Neighbour); l != nil && l.rec.Area == proof.Area {
			consider(gw.Neighbour, uint64(gw.Cost))
		}
	}
	if best.Cost == math.MaxUint64 {
		return AreaRoute{}, ErrNoAreaRoute
	}
	return best, nil
}

// Gateways returns the gateways of the router's area it can reach, the nearest first (ties: lowest
// ID), with its route to each; the router itself comes first, at cost 0, when it is a gateway. A
// gateway is a node whose own signed record of this area says so.
func (r *Router) Gateways() []NodeID {
	r.compute()
	type gw struct {
		id   NodeID
		cost uint64
	}
	var gws []gw
	for _, l := range r.entries {
		if !l.rec.Gateway {
			continue
		}
		if l.rec.Origin == r.self {
			gws = append(gws, gw{r.self, 0})
		} else if rt, ok := r.routes[l.rec.Origin]; ok {
			gws = append(gws, gw{l.rec.Origin, rt.Cost})
		}
	}
	slices.SortFunc(gws, func(a, b gw) int {
		if c := cmp.Compare(a.cost, b.cost); c != 0 {
			return c
		}
		return cmpID(a.id, b.id)
	})
	ids := make([]NodeID, len(gws))
	for i, g := range gws {
		ids[i] = g.id
	}
	return ids
}

// VirtualLink is a level-2 link a gateway keeps to another gateway of its area, at their level-1
// distance. Flood says whether level-2 records travel over it (docs/routing.md, Level 2, "Flooding
// topology"); every virtual link counts for routes either way.
type VirtualLink struct {
	Gateway NodeID
	Cost    uint64
	Flood   bool
}

// VirtualLinks returns the gateways of the router's area (the router being a gateway's level-1
// router) that its level-2 router links to: every gateway it reaches, at its level-1 distance.
// Records are flooded only over the links of the area's flooding tree (floodingTree): a spanning
// tree of the gateways, so flooding still reaches every gateway, which every gateway of the area
// computes alike from the same database (link costs are symmetric). It costs one shortest-path
// computation per gateway of the area and a walk along the path of every pair.
func (r *Router) VirtualLinks() []VirtualLink {
	gws := r.Gateways()
	if len(gws) < 2 || !slices.Contains(gws, r.self) {
		return nil
	}
	slices.SortFunc(gws, cmpID) // the same order at every gateway of the area
	me := slices.Index(gws, r.self)
	t := r.buildTopo()
	self := t.self
	from := make([][]uint64, len(gws)) // from[j][v]: level-1 distance from gateway j to node v
	for j, g := range gws {
		t.self = t.idx[g]
		from[j], _, _ = t.spf()
	}
	t.self = self
	dist := make([][]uint64, len(gws))    // dist[i][j]: from gateway i to gateway j
	relays := make([][][]int32, len(gws)) // relays[i][j]: the nodes between them, i to j
	for i, g := range gws {
		dist[i], relays[i] = make([]uint64, len(gws)), make([][]int32, len(gws))
		for j, h := range gws {
			dist[i][j] = from[j][t.idx[g]]
			if i < j && dist[i][j] != math.MaxUint64 {
				relays[i][j] = t.path(t.idx[g], t.idx[h], from[j])
			}
		}
	}
	tree := floodingTree(dist, relays)
	var out []VirtualLink
	for j, g := range gws {
		d := dist[me][j]
		if j == me || d == math.MaxUint64 {
			continue
		}
		out = append(out, VirtualLink{Gateway: g, Cost: d, Flood: tree[me][j]})
	}
	return out
}

// path returns the nodes strictly between a and b on the level-1 path from a to b, each node's
// next hop being the neighbour on a shortest path with the lowest ID, as spf chooses; dist holds
// the distances from b. It stops at a dead end or after as many steps as there are nodes.
func (t *topo) path(a, b int32, dist []uint64) []int32 {
	var inner []int32
	for u := a; u != b && len(inner) <= len(t.ids); {
		next := int32(-1)
		for _, l := range t.links[u] {
			v, back, ok := t.confirm(u, l)
			if !ok || dist[v] == math.MaxUint64 || (v != b && t.recs[v] != nil && t.recs[v].NoTransit) {
				continue
			}
			if dist[v]+uint64(max(l.Cost, back.Cost)) == dist[u] && (next < 0 || v < next) {
				next = v
			}
		}
		if next < 0 {
			break
		}
		if next != b {
			inner = append(inner, next)
		}
		u = next
	}
	return inner
}

// floodingTree chooses the virtual links of an area's gateways that level-2 records are flooded
// over, from their level-1 distances (dist, symmetric) and the level-1 nodes on each link's path
// (relays[i][j], i < j): a spanning forest, built by Kruskal's rule, shortest link first (ties:
// lowest indices), first of links whose paths share no node with a link already chosen; then, while
// parts remain apart, the link joining two parts whose busiest node carries the fewest chosen links
// (then the shortest). A record crosses each link of a tree about once, so every link costs each
// level-1 node on its path one copy of every level-2 record; a node on the paths of two links of a
// tree relays every record twice. The tree avoids that while another choice keeps it connected
// (docs/routing.md, Level 2, "Flooding topology").
func floodingTree(dist [][]uint64, relays [][][]int32) [][]bool {
	n := len(dist)
	type pair struct{ i, j int }
	var pairs []pair
	for i := range n {
		for j := i + 1; j < n; j++ {
			if dist[i][j] != math.MaxUint64 {
				pairs = append(pairs, pair{i, j})
			}
		}
	}
	slices.SortStableFunc(pairs, func(a, b pair) int { return cmp.Compare(dist[a.i][a.j], dist[b.i][b.j]) })
	part := make([]int, n) // union-find
	for i := range part {
		part[i] = i
	}
	find := func(i int) int {
		for part[i] != i {
			part[i] = part[part[i]]
			i = part[i]
		}
		return i
	}
	load := make(map[int32]int) // links chosen whose path crosses the node
	busiest := func(p pair) int {
		m := 0
		for _, v := range relays[p.i][p.j] {
			m = max(m, load[v])
		}
		return m
	}
	tree := make([][]bool, n)
	for i := range tree {
		tree[i] = make([]bool, n)
	}
	choose := func(p pair) {
		part[find(p.i)] = find(p.j)
		tree[p.i][p.j], tree[p.j][p.i] = true, true
		for _, v := range relays[p.i][p.j] {
			load[v]++
		}
	}
	for _, p := range pairs {
		if find(p.i) != find(p.j) && busiest(p) == 0 {
			choose(p)
		}
	}
	for {
		best, bestLoad := -1, 0
		for k, p := range pairs {
			if find(p.i) == find(p.j) {
				continue
			}
			if l := busiest(p); best < 0 || l < bestLoad {
				best, bestLoad = k, l
			}
		}
		if best < 0 {
			return tree
		}
		choose(pairs[best])
	}
}

// DestinationProof signs the router's destination proof (docs/routing.md, Level 2): a level-2
// record of its area whose links are the gateways of its area it reaches (at most MaxLinks, the
// nearest), at its level-1 distance from each. A source's
// gateway routes only towards gateways a destination named this way; the proof is handed out on
// use (by the control plane or the destination), never flooded.
func (r *Router) DestinationProof(now time.Time) (*Record, error) {
	r.setNow(now)
	if r.cfg.Area == 0 || r.cfg.Level2 {
		return nil, errors.New("routing: a destination proof is signed by a level-1 router of an area other than 0")
	}
	var links []LinkInfo
	for _, id := range r.Gateways() {
		if len(links) == MaxLinks {
			break
		}
		if id != r.self { // a record never links its origin: a gateway is found by its level-2 record
			links = append(links, LinkInfo{Neighbour: id, Cost: uint32(min(r.routes[id].Cost, MaxLinkCost))})
		}
	}
	slices.SortFunc(links, func(a, b LinkInfo) int { return cmpID(a.Neighbour, b.Neighbour) })
	rec := &Record{
		Origin:          r.self,
		Seq:             uint64(max(now.UnixNano(), 1)),
		Expires:         now.Add(r.cfg.Lifetime),
		CertFingerprint: r.certFP,
		Incarnation:     r.cfg.Incarnation,
		Area:            r.cfg.Area,
		Level2:          true,
		Links:           links,
	}
	raw, err := SignRecord(r.cfg.Key, rec)
	if err != nil {
		return nil, err
	}
	return ParseRecord(raw)
}
