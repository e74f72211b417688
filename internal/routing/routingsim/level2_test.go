package routingsim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/routing"
)

// quadrants builds an 8×8 grid split into four areas of 4×4 (area 1 top left, 2 top right, 3
// bottom left, 4 bottom right); every node with a link into another area is a gateway.
func quadrants(t *testing.T) (*Network, []NodeID) {
	t.Helper()
	n := newNet(t, Config{Seed: 23, DetectDelay: 100 * time.Millisecond, UpDelay: 10 * time.Millisecond})
	ids := make([]NodeID, 64)
	for i := range ids {
		r, c := i/8, i%8
		area := uint32(1 + r/4*2 + c/4)
		add := n.AddNodeInArea
		if r == 3 || r == 4 || c == 3 || c == 4 {
			add = n.AddGateway
		}
		id, err := add(fmt.Sprintf("q%d-%d", r, c), area)
		must(t, err)
		ids[i] = id
	}
	must(t, n.Grid(ids, 8, clean))
	return n, ids
}

// runBoth runs level 1 and level 2 for d, keeping their clocks together.
func runBoth(b *Backbone, d time.Duration) {
	b.L1.RunFor(d)
	b.L2.RunFor(d)
}

// checkAllPairs routes from every fifth node to every node of another area by the routers' own
// decisions (every proof check is an ML-DSA verification: all pairs would take a minute) and
// checks each path arrives, costs what the source's routers quoted, and is no shorter than the
// flat mesh's shortest path (areas may add stretch, never magic). It returns the paths.
func checkAllPairs(t *testing.T, b *Backbone, ids []NodeID) map[[2]NodeID]Path {
	t.Helper()
	paths := make(map[[2]NodeID]Path)
	var stretch, worst float64
	for i, s := range ids {
		for _, d := range ids {
			if i%5 != 0 || b.L1.Node(s).Area == b.L1.Node(d).Area {
				continue
			}
			p, err := b.Route(s, d)
			if err != nil {
				t.Fatal(err)
			}
			if p.Nodes[len(p.Nodes)-1] != d || p.Cost != p.Quoted {
				t.Fatalf("%s→%s: ends at %s, costs %d, quoted %d", b.L1.Node(s).Name, b.L1.Node(d).Name, b.L1.Node(p.Nodes[len(p.Nodes)-1]).Name, p.Cost, p.Quoted)
			}
			flat := b.L1.ShortestCost(s, d)
			if p.Cost < flat {
				t.Fatalf("%s→%s: %d, below the shortest path %d", b.L1.Node(s).Name, b.L1.Node(d).Name, p.Cost, flat)
			}
			x := float64(p.Cost) / float64(flat)
			stretch += x
			worst = max(worst, x)
			paths[[2]NodeID{s, d}] = p
		}
	}
	t.Logf("%d cross-area pairs: mean stretch %.3f, worst %.3f; level 2: %d messages, %d bytes (%d with relays)",
		len(paths), stretch/float64(len(paths)), worst, b.L2.Counters.Sent, b.L2.Counters.Bytes, b.RelayedBytes)
	return paths
}

// Every node reaches every node of every other area: to its nearest gateway, across the level-2
// graph towards a gateway the destination named, and inside the destination's area.
func TestBackboneRoutesAcrossAreas(t *testing.T) {
	n, ids := quadrants(t)
	converge(t, n, 10*time.Second)
	b, err := NewBackbone(n)
	must(t, err)
	runBoth(b, 2*time.Second)
	if got := len(b.L2.Nodes()); got != 28 {
		t.Fatalf("%d level-2 routers, want 28", got)
	}
	checkAllPairs(t, b, ids)
}

// An adversary of area 1 with a real link to a gateway of area 2 runs a level-2 router that claims
// area 4, and floods level-2 records with cost-1 links to every gateway of area 4, over and over.
// No destination of area 4 names it, its links are confirmed by nobody but its real neighbour, so no
// cross-area path changes and none goes through it.
func TestBackboneLiarAttractsNothing(t *testing.T) {
	n, ids := quadrants(t)
	liar, err := n.AddNodeInArea("liar", 1)
	must(t, err)
	must(t, n.Connect(liar, ids[0], clean))
	must(t, n.Connect(liar, ids[4], clean)) // q0-4: a gateway of area 2
	converge(t, n, 10*time.Second)
	b, err := NewBackbone(n)
	must(t, err)
	runBoth(b, 2*time.Second)
	before := checkAllPairs(t, b, ids)

	ln := n.Node(liar)
	_, err = b.L2.addKeyed(&Node{ID: liar, Name: "liar", Key: ln.Key, Cert: ln.Cert, Area: 4, Gateway: true})
	must(t, err)
	must(t, b.L2.Connect(liar, ids[4], clean))
	var links []routing.LinkInfo
	for i, id := range ids {
		if r, c := i/8, i%8; r >= 4 && c >= 4 && (r == 4 || c == 4) {
			links = append(links, routing.LinkInfo{Neighbour: id, Cost: 1})
		}
	}
	links = append(links, routing.LinkInfo{Neighbour: ids[4], Cost: 1})
	slices.SortFunc(links, func(x, y routing.LinkInfo) int { return cmpID(x.Neighbour, y.Neighbour) })
	cb := ln.Cert.Bytes()
	msg := append([]byte{routing.MsgRecord, 1, byte(len(cb) >> 8), byte(len(cb))}, cb...)
	seq := uint64(b.L2.Now().UnixNano())
	for range 20 {
		seq++
		raw, err := routing.SignRecord(ln.Key.Sign, &routing.Record{Origin: liar, Seq: seq, Expires: b.L2.Now().Add(time.Minute),
			CertFingerprint: ln.Cert.Fingerprint(), Area: 4, Level2: true, Links: links})
		must(t, err)
		_ = b.L2.Inject(liar, ids[4], append(slices.Clone(msg), raw...))
		runBoth(b, 100*time.Millisecond)
	}
	runBoth(b, time.Second)
	if b.L2.Router(ids[63-27]).Record(liar) == nil { // q4-4, a gateway of area 4
		t.Fatal("the liar's level-2 record did not spread: the test tests nothing")
	}
	after := checkAllPairs(t, b, ids)
	for k, p := range before {
		q := after[k]
		if !slices.Equal(p.Nodes, q.Nodes) || slices.Contains(q.Nodes, liar) {
			t.Fatalf("%s→%s moved: %d hops at %d, was %d at %d", n.Node(k[0]).Name, n.Node(k[1]).Name, len(q.Nodes), q.Cost, len(p.Nodes), p.Cost)
		}
	}
}
