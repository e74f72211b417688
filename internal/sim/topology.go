package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"x0tta6bl4/internal/routing/routingsim"
)

// Topology names accepted by Config.Topology.
const (
	Geometric = "geometric" // random geometric graph in the unit square, made connected
	Grid      = "grid"      // a grid of seeded shape with some links missing and a few diagonals
	ScaleFree = "scalefree" // Barabási–Albert preferential attachment, m = 2
)

// Edge is an undirected link between node indices A < B, with its normal parameters.
type Edge struct {
	A, B int
	P    routingsim.LinkParams
}

// Topology returns the edges of the topology a simulation with this kind, size, mean degree and seed
// runs on, so that other harnesses (internal/meshtest) can run the same mesh.
func Topology(kind string, n int, degree float64, seed uint64) ([]Edge, error) {
	return generate(kind, n, degree, newRand(seed))
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x73696d)) }

// generate returns the edges of a topology on n nodes, deterministic for rng's state.
func generate(kind string, n int, degree float64, rng *rand.Rand) ([]Edge, error) {
	if n < 2 {
		return nil, fmt.Errorf("sim: need at least 2 nodes, have %d", n)
	}
	seen := map[[2]int]bool{}
	var edges []Edge
	add := func(a, b int, dist float64) {
		if a == b {
			return
		}
		if a > b {
			a, b = b, a
		}
		if seen[[2]int{a, b}] {
			return
		}
		seen[[2]int{a, b}] = true
		// delay 1–21 ms from distance (geometric) or uniform; jitter 1 ms; background loss 0–1 %.
		if dist < 0 {
			dist = rng.Float64() * 0.5
		}
		p := routingsim.LinkParams{
			Delay:  time.Millisecond + time.Duration(dist*40*float64(time.Millisecond)),
			Jitter: time.Millisecond,
			Loss:   rng.Float64() * 0.01,
		}
		edges = append(edges, Edge{A: a, B: b, P: p})
	}
	switch kind {
	case Geometric:
		xs, ys := make([]float64, n), make([]float64, n)
		for i := range n {
			xs[i], ys[i] = rng.Float64(), rng.Float64()
		}
		r := math.Sqrt(degree / (math.Pi * float64(n)))
		d := func(i, j int) float64 { return math.Hypot(xs[i]-xs[j], ys[i]-ys[j]) }
		for i := range n {
			for j := i + 1; j < n; j++ {
				if d(i, j) <= r {
					add(i, j, d(i, j))
				}
			}
		}
		// Join components: repeatedly link the closest pair between the first component and the rest.
		for {
			comp := components(n, edges)
			if comp.count == 1 {
				break
			}
			bi, bj, bd := -1, -1, math.Inf(1)
			for i := range n {
				if comp.id[i] != 0 {
					continue
				}
				for j := range n {
					if comp.id[j] != 0 && d(i, j) < bd {
						bi, bj, bd = i, j, d(i, j)
					}
				}
			}
			add(bi, bj, bd)
		}
	case Grid:
		// A grid whose shape varies with the seed: width 0.7–1.4 × √n, about one link in eight
		// missing (never one that would disconnect the mesh), and n/20 diagonal shortcuts.
		sq := math.Sqrt(float64(n))
		w := max(2, int(math.Round(sq*(0.7+0.7*rng.Float64()))))
		type pair struct{ a, b int }
		var cand []pair
		for i := range n {
			if (i+1)%w != 0 && i+1 < n {
				cand = append(cand, pair{i, i + 1})
			}
			if i+w < n {
				cand = append(cand, pair{i, i + w})
			}
		}
		for i := n / 20; i > 0; i-- {
			a := rng.IntN(n)
			if b := a + w + 1 - 2*rng.IntN(2); (a+1)%w != 0 && b < n && b != a {
				cand = append(cand, pair{a, b})
			}
		}
		keep := make([]bool, len(cand))
		for i := range keep {
			keep[i] = rng.Float64() >= 0.125
		}
		for i, c := range cand {
			if keep[i] {
				add(c.a, c.b, -1)
			}
		}
		// Put back dropped links until the mesh is connected.
		for i, c := range cand {
			if !keep[i] && components(n, edges).count > 1 {
				add(c.a, c.b, -1)
			}
		}
	case ScaleFree:
		const m = 2
		var ends []int // each node appears once per incident edge
		add(0, 1, -1)
		ends = append(ends, 0, 1)
		for v := 2; v < n; v++ {
			targets := map[int]bool{}
			for len(targets) < min(m, v) {
				targets[ends[rng.IntN(len(ends))]] = true
			}
			for u := range v { // deterministic iteration order
				if targets[u] {
					add(u, v, -1)
					ends = append(ends, u, v)
				}
			}
		}
	default:
		return nil, fmt.Errorf("sim: unknown topology %q (want %s, %s or %s)", kind, Geometric, Grid, ScaleFree)
	}
	return edges, nil
}

type comps struct {
	id    []int
	count int
}

func components(n int, edges []Edge) comps {
	adj := make([][]int, n)
	for _, e := range edges {
		adj[e.A] = append(adj[e.A], e.B)
		adj[e.B] = append(adj[e.B], e.A)
	}
	c := comps{id: make([]int, n)}
	for i := range c.id {
		c.id[i] = -1
	}
	for s := range n {
		if c.id[s] >= 0 {
			continue
		}
		stack := []int{s}
		c.id[s] = c.count
		for len(stack) > 0 {
			u := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, v := range adj[u] {
				if c.id[v] < 0 {
					c.id[v] = c.count
					stack = append(stack, v)
				}
			}
		}
		c.count++
	}
	return c
}

// partitionAreas splits the nodes of a connected topology into routing areas of about size nodes,
// each connected: breadth-first regions grown from the lowest unassigned node, then every region
// smaller than size/4 merged into the neighbouring area it has most links to (merging adjacent
// regions keeps areas connected). Areas are numbered from 1; size < 1 or ≥ n gives one area, 0.
func partitionAreas(adj [][]int, size int) []uint32 {
	n := len(adj)
	area := make([]uint32, n)
	if size < 1 || size >= n {
		return area
	}
	next := uint32(0)
	queue := make([]int, 0, size)
	for s := range n {
		if area[s] != 0 {
			continue
		}
		next++
		area[s] = next
		queue = append(queue[:0], s)
		count := 1
		for h := 0; h < len(queue) && count < size; h++ {
			for _, u := range adj[queue[h]] {
				if area[u] == 0 && count < size {
					area[u] = next
					queue = append(queue, u)
					count++
				}
			}
		}
	}
	sizes := make([]int, next+1)
	for _, a := range area {
		sizes[a]++
	}
	for changed := true; changed; {
		changed = false
		for a := uint32(1); a <= next; a++ {
			if sizes[a] == 0 || sizes[a] >= max(size/4, 1) {
				continue
			}
			links := map[uint32]int{}
			for v := range n {
				if area[v] == a {
					for _, u := range adj[v] {
						if area[u] != a {
							links[area[u]]++
						}
					}
				}
			}
			best, bestLinks := uint32(0), 0
			for b, l := range links {
				if l > bestLinks || (l == bestLinks && b < best) {
					best, bestLinks = b, l
				}
			}
			if best == 0 {
				continue // an isolated region: nothing to merge into
			}
			for v := range n {
				if area[v] == a {
					area[v] = best
				}
			}
			sizes[best] += sizes[a]
			sizes[a] = 0
			changed = true
		}
	}
	// Renumber 1..k in order of first appearance, so that the numbering is dense.
	renum := map[uint32]uint32{}
	for v, a := range area {
		if renum[a] == 0 {
			renum[a] = uint32(len(renum) + 1)
		}
		area[v] = renum[a]
	}
	return area
}
