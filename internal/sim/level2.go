package sim

import (
	"fmt"
	"time"

	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/routing/routingsim"
)

// Level2 is what the level-2 cold start (docs/routing.md, Level 2) cost and what the cross-area
// checks found.
type Level2 struct {
	Gateways     int
	Convergence  time.Duration // from the start of level 2 to every gateway holding every level-2 record (virtual)
	Messages     uint64
	Bytes        uint64 // level-2 bytes sent by the gateways
	RelayedBytes uint64 // the same times the level-1 links each crossed: what level 2 costs all nodes
	StateMax     int    // bytes of level-2 records and certificates a gateway holds, the largest
	BytesMax     uint64 // level-2 bytes sent by one gateway, the largest
	// What the gateways' level-2 routers did, summed: records signed and sent again for lack of an
	// acknowledgement, records offered and asked for, certificates sent on request.
	Originated, Retransmitted, Offered, Requested, CertAnswers uint64
	// Busiest is the node that sent the most routing bytes over the whole cold start: its level-1
	// bytes, its level-2 bytes if it is a gateway, and the level-2 bytes it relayed on virtual links.
	Busiest                              string
	BusiestL1, BusiestL2, BusiestRelayed uint64
	BusiestL2Degree                      int // its level-2 neighbours (0: not a gateway)
	// RelayedMax is the most level-2 bytes one level-1 node relayed on virtual links, and
	// RelayedMaxNode that node.
	RelayedMax     uint64
	RelayedMaxNode string
	Pairs          int // cross-area pairs routed end to end and checked
	StretchMean    float64
	StretchMax     float64
}

// designateGateways marks, for every pair of adjacent areas, both ends of the cheapest link between
// them (ties: the lowest node indices) as gateways, as an operator configures them. One link per
// pair keeps level 2 at O(adjacent area pairs) records.
func designateGateways(edges []Edge, area []uint32) []bool {
	type best struct {
		edge int
		cost uint32
	}
	pairs := map[[2]uint32]best{}
	for i, e := range edges {
		a, b := area[e.A], area[e.B]
		if a == b {
			continue
		}
		k := [2]uint32{min(a, b), max(a, b)}
		c := routing.LinkCost(e.P.Metrics())
		if cur, ok := pairs[k]; !ok || c < cur.cost || (c == cur.cost && lessEdge(e, edges[cur.edge])) {
			pairs[k] = best{i, c}
		}
	}
	gw := make([]bool, len(area))
	for _, b := range pairs {
		gw[edges[b.edge].A], gw[edges[b.edge].B] = true, true
	}
	return gw
}

func lessEdge(x, y Edge) bool {
	return min(x.A, x.B) < min(y.A, y.B) || (min(x.A, x.B) == min(y.A, y.B) && max(x.A, x.B) < max(y.A, y.B))
}

// RunLevel2 builds the level-2 backbone over the converged level-1 mesh, runs its cold start until
// every gateway holds every level-2 record, and routes pairs cross-area pairs end to end by the
// routers' own decisions: each must arrive, cost what its source's routers quoted, and is compared
// with the flat mesh's shortest path (the stretch areas cost).
func (s *Sim) RunLevel2(pairs int) (*Level2, error) {
	b, err := routingsim.NewBackbone(s.Net)
	if err != nil {
		return nil, err
	}
	gws := b.L2.Nodes()
	res := &Level2{Gateways: len(gws)}
	if len(gws) == 0 {
		return res, nil
	}
	held := func() bool {
		for _, g := range gws {
			for _, h := range gws {
				if b.L2.Router(g).Record(h) == nil {
					return false
				}
			}
		}
		return true
	}
	d, ok := b.L2.RunUntil(held, 5*time.Millisecond, s.cfg.ConvergeLimit)
	if !ok {
		return nil, fmt.Errorf("sim: level 2 not synchronised after %s", d)
	}
	res.Convergence, res.Messages, res.Bytes, res.RelayedBytes = d, b.L2.Counters.Sent, b.L2.Counters.Bytes, b.RelayedBytes
	for _, g := range gws {
		r := b.L2.Router(g)
		res.StateMax = max(res.StateMax, r.DatabaseBytes())
		res.BytesMax = max(res.BytesMax, b.L2.SentBytes(g))
		st := r.Stats()
		res.Originated += st.Originated
		res.Retransmitted += st.Retransmitted
		res.Offered += st.Offered
		res.Requested += st.Requested
		res.CertAnswers += st.CertAnswers
	}
	for _, id := range s.IDs {
		l1, l2, relayed := s.Net.SentBytes(id), uint64(0), b.RelayedBy[id]
		deg := 0
		if b.L2.Node(id) != nil {
			l2, deg = b.L2.SentBytes(id), len(b.L2.Router(id).Neighbours())
		}
		if relayed > res.RelayedMax {
			res.RelayedMax, res.RelayedMaxNode = relayed, s.Net.Node(id).Name
		}
		if l1+l2+relayed > res.BusiestL1+res.BusiestL2+res.BusiestRelayed {
			res.Busiest, res.BusiestL1, res.BusiestL2, res.BusiestRelayed, res.BusiestL2Degree = s.Net.Node(id).Name, l1, l2, relayed, deg
		}
	}
	rng := newRand(s.cfg.Seed ^ 0x6c6576656c32) // its own draws: the run's faults and flows stay as without level 2
	for tries := 0; res.Pairs < pairs && tries < 100*pairs; tries++ {
		src, dst := rng.IntN(s.cfg.Nodes), rng.IntN(s.cfg.Nodes)
		if s.Area[src] == s.Area[dst] {
			continue
		}
		p, err := b.Route(s.IDs[src], s.IDs[dst])
		if err != nil {
			return nil, fmt.Errorf("sim: cross-area route n-%d → n-%d: %w", src, dst, err)
		}
		if p.Nodes[len(p.Nodes)-1] != s.IDs[dst] || p.Cost != p.Quoted {
			return nil, fmt.Errorf("sim: cross-area route n-%d → n-%d costs %d, quoted %d", src, dst, p.Cost, p.Quoted)
		}
		flat := s.Net.ShortestCost(s.IDs[src], s.IDs[dst])
		if p.Cost < flat {
			return nil, fmt.Errorf("sim: cross-area route n-%d → n-%d: %d below the shortest path %d", src, dst, p.Cost, flat)
		}
		x := float64(p.Cost) / float64(flat)
		res.StretchMean += x
		res.StretchMax = max(res.StretchMax, x)
		res.Pairs++
	}
	if res.Pairs > 0 {
		res.StretchMean /= float64(res.Pairs)
	}
	return res, nil
}
