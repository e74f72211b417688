package routing

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// syntheticLSDB fills r's LSDB with n unsigned records forming a connected random graph of mean
// degree about deg (SPF never looks at signatures), r's own node included.
func syntheticLSDB(tb testing.TB, r *Router, n int, deg int, seed uint64) []NodeID {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := make([]NodeID, n)
	ids[0] = r.self
	for i := 1; i < n; i++ {
		for j := range ids[i] {
			ids[i][j] = byte(rng.Uint32())
		}
	}
	adj := make([]map[int]uint32, n)
	for i := range adj {
		adj[i] = map[int]uint32{}
	}
	connect := func(a, b int) {
		if a == b {
			return
		}
		c := uint32(10 + rng.IntN(1000))
		adj[a][b], adj[b][a] = c, c
	}
	for i := 1; i < n; i++ {
		connect(i, rng.IntN(i))
	}
	for range n * deg / 2 {
		connect(rng.IntN(n), rng.IntN(n))
	}
	r.now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range ids {
		rec := &Record{Origin: id, Seq: 1, Expires: r.now.Add(time.Hour), cert: r.cert}
		for j, c := range adj[i] {
			rec.Links = append(rec.Links, LinkInfo{Neighbour: ids[j], Cost: c})
			if i == 0 {
				r.nbrs[ids[j]] = &neighbour{id: ids[j]}
			}
		}
		slices.SortFunc(rec.Links, func(a, b LinkInfo) int { return cmpID(a.Neighbour, b.Neighbour) })
		r.put(&lsa{rec: rec}, r.lsdb.get(rec.Origin))
	}
	r.gen++
	return ids
}

func TestSPFSynthetic(t *testing.T) {
	f := getFixture(t)
	r := f.router(t, 0, nil)
	ids := syntheticLSDB(t, r, 300, 4, 1)
	routes := r.Routes()
	if len(routes) != len(ids)-1 {
		t.Fatalf("%d routes for %d nodes", len(routes), len(ids))
	}
	// Compare with a straightforward O(n²) Dijkstra on the same records.
	tp := r.buildTopo()
	n := len(tp.ids)
	dist := make([]uint64, n)
	done := make([]bool, n)
	for i := range dist {
		dist[i] = 1 << 62
	}
	dist[tp.self] = 0
	for {
		u := -1
		for i := range dist {
			if !done[i] && (u < 0 || dist[i] < dist[u]) {
				u = i
			}
		}
		if u < 0 || dist[u] == 1<<62 {
			break
		}
		done[u] = true
		for _, l := range tp.links[u] {
			if v, back, ok := tp.confirm(int32(u), l); ok {
				dist[v] = min(dist[v], dist[u]+uint64(max(l.Cost, back.Cost)))
			}
		}
	}
	for i, id := range tp.ids {
		if int32(i) == tp.self {
			continue
		}
		if routes[id].Cost != dist[i] {
			t.Fatalf("cost to %d: %d, reference %d", i, routes[id].Cost, dist[i])
		}
		// The next hop starts a shortest path: its own distance plus the first link.
		nh := tp.idx[routes[id].NextHop]
		if nh != int32(i) {
			l, _ := tp.recs[tp.self].linkTo(routes[id].NextHop)
			back, _ := tp.recs[nh].linkTo(r.self)
			if dist[nh] != uint64(max(l.Cost, back.Cost)) {
				t.Fatalf("next hop to %d is not adjacent at its distance", i)
			}
		}
	}
}

func BenchmarkSPF1000(b *testing.B) {
	f := getFixture(b)
	r := f.router(b, 0, nil)
	syntheticLSDB(b, r, 1000, 4, 1)
	b.ReportAllocs()
	for b.Loop() {
		r.gen++
		r.compute()
	}
	if len(r.routes) != 999 {
		b.Fatalf("%d routes", len(r.routes))
	}
}

func BenchmarkHandleDuplicate(b *testing.B) {
	// The common case of flooding: a copy of a record already held.
	f := getFixture(b)
	_, rs := line(b, 2, nil)
	msg := rs[0].Record(f.ids[1]).message(false)
	now := f.now
	b.ReportAllocs()
	for b.Loop() {
		if err := rs[0].HandleMessage(now, f.ids[1], msg); err != nil {
			b.Fatal(err)
		}
		rs[0].Drain()
	}
}

// linkTo returns the originator's report of its link to n.
func (r *Record) linkTo(n NodeID) (LinkInfo, bool) {
	lo, hi := 0, len(r.Links)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cmpID(r.Links[m].Neighbour, n) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.Links) && r.Links[lo].Neighbour == n {
		return r.Links[lo], true
	}
	return LinkInfo{}, false
}
