package sim

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/telemetry"
)

func TestTopologies(t *testing.T) {
	for _, kind := range []string{Geometric, Grid, ScaleFree} {
		a, err := Run(Config{Nodes: 30, Topology: kind, Seed: 7, Duration: 3 * time.Second})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if c := components(30, a.Edges); c.count != 1 {
			t.Fatalf("%s: %d components", kind, c.count)
		}
		if a.Convergence <= 0 || a.ColdMessages == 0 {
			t.Fatalf("%s: no convergence figures", kind)
		}
		// Without faults delivery is high (only background loss of ≤1 % per link).
		var sent, recv int
		for _, iv := range a.Intervals {
			sent, recv = sent+iv.Sent, recv+iv.Recv
		}
		if float64(recv)/float64(sent) < 0.9 {
			t.Fatalf("%s: delivery %d/%d without faults", kind, recv, sent)
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Nodes: 25, Seed: 3, Duration: 8 * time.Second, Faults: []FaultSpec{{Blackhole, 1}, {Flapping, 1}}}
	a, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Intervals, b.Intervals) || !reflect.DeepEqual(a.Faults, b.Faults) {
		t.Fatal("same seed, different runs")
	}
	cfg.Seed = 4
	c, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.Intervals, c.Intervals) {
		t.Fatal("different seeds, same run")
	}
}

// TestFaultsVisible checks each fault has the effect it is meant to have on the traffic and the
// telemetry, so labels are not attached to invisible faults.
func TestFaultsVisible(t *testing.T) {
	cfg := Config{Nodes: 60, Seed: 11, Duration: 10 * time.Second, FaultFrom: 0.3, FaultTo: 0.31,
		Faults: []FaultSpec{{Blackhole, 2}, {GreyHole, 1}, {Crash, 1}, {Overload, 1}, {LinkDegradation, 1}, {Flapping, 1}}}
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r.Summary(&buf)
	t.Log(buf.String())
	lastIv := r.Intervals[len(r.Intervals)-1]
	firstIv := r.Intervals[0]
	for _, f := range r.Faults {
		if f.Start != 3*time.Second {
			t.Fatalf("fault start %s", f.Start)
		}
		if firstIv.Labels[f.Node] != Normal || lastIv.Labels[f.Node] != f.Kind {
			t.Fatalf("%s: labels %s → %s", f.Kind, firstIv.Labels[f.Node], lastIv.Labels[f.Node])
		}
		x := lastIv.X[f.Node]
		switch f.Kind {
		case Crash:
			if x[FMissing] != 1 {
				t.Fatal("crashed node still exports")
			}
		case Blackhole, GreyHole:
			if x[FDropped] != 0 || x[FForwarded] != x[FTransitIn] {
				t.Fatalf("%s does not lie: %v", f.Kind, x)
			}
		case Overload:
			if x[FCPU] < 0.9 {
				t.Fatalf("overload cpu %v", x[FCPU])
			}
		}
	}
	if lastIv.Recv >= firstIv.Recv {
		t.Fatalf("faults did not reduce delivery: %d → %d", firstIv.Recv, lastIv.Recv)
	}
}

func TestParseFaults(t *testing.T) {
	f, err := ParseFaults("blackhole:3, greyhole,crash:0")
	if err != nil || len(f) != 3 || f[0] != (FaultSpec{Blackhole, 3}) || f[1] != (FaultSpec{GreyHole, 1}) {
		t.Fatalf("%v %v", f, err)
	}
	for _, bad := range []string{"normal", "nope:1", "blackhole:x", "blackhole:-1"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// TestEdgeTelemetry: a blackhole's neighbours' link counters show frames handed to it to relay and
// none relayed by it, while its own links' counters (which it falsifies) show it handing frames on;
// an honest relay's neighbours see what it was handed come out again.
func TestEdgeTelemetry(t *testing.T) {
	r, err := Run(Config{Nodes: 40, Seed: 9, Duration: 8 * time.Second, FaultFrom: 0.25, FaultTo: 0.26, NoBackgroundLoss: true,
		Faults: []FaultSpec{{Blackhole, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Faults[0]
	iv := r.Intervals[len(r.Intervals)-1]
	in, out := make([]float64, len(iv.X)), make([]float64, len(iv.X))
	for u, links := range iv.E {
		if len(links) != len(r.Adj[u]) {
			t.Fatalf("node %d: %d edge vectors for %d links", u, len(links), len(r.Adj[u]))
		}
		for i, v := range r.Adj[u] {
			in[v] += float64(links[i][ETxTransit])
			out[v] += float64(links[i][ERxTransit])
			if links[i][EUp] != 1 || links[i][EProbeLoss] != 0 || links[i][EProbeRTT] <= 0 {
				t.Fatalf("link %d→%d: %v", u, v, links[i])
			}
		}
	}
	if in[f.Node] == 0 || out[f.Node] != 0 {
		t.Fatalf("blackhole: neighbours handed it %v, saw %v relayed", in[f.Node], out[f.Node])
	}
	var claimed float32
	for _, e := range iv.E[f.Node] {
		claimed += e[ETxTransit]
	}
	if claimed == 0 {
		t.Fatal("the blackhole's own link counters do not lie")
	}
	// (The blackhole's neighbours are skipped: it claims to have handed them what it dropped, so
	// by its counters they look like they lose frames — a liar can frame its neighbours.)
	honest := 0
	for v := range in {
		if v != f.Node && in[v] > 0 && !slices.Contains(r.Adj[f.Node], v) {
			honest++
			if out[v] != in[v] { // lossless links: an honest relay passes on all it is handed
				t.Fatalf("node %d: neighbours handed it %v, saw %v relayed", v, in[v], out[v])
			}
		}
	}
	if honest == 0 {
		t.Fatal("no honest relay")
	}
}

// The simulator's classes are the detector's (internal/telemetry), in the same order.
func TestKindsAreTelemetryClasses(t *testing.T) {
	if len(telemetry.Classes) != int(NumKinds) {
		t.Fatalf("%d telemetry classes, %d kinds", len(telemetry.Classes), NumKinds)
	}
	for k := range NumKinds {
		if k.String() != telemetry.Classes[k] {
			t.Fatalf("kind %d is %q, telemetry says %q", k, k, telemetry.Classes[k])
		}
	}
}

// Areas are connected, cover every node, and are about the size asked for.
func TestPartitionAreas(t *testing.T) {
	for _, n := range []int{300, 2000} {
		edges, err := Topology(Geometric, n, 6, 3)
		if err != nil {
			t.Fatal(err)
		}
		adj := make([][]int, n)
		for _, e := range edges {
			adj[e.A] = append(adj[e.A], e.B)
			adj[e.B] = append(adj[e.B], e.A)
		}
		area := partitionAreas(adj, 100)
		members := map[uint32][]int{}
		for v, a := range area {
			if a == 0 {
				t.Fatalf("node %d has no area", v)
			}
			members[a] = append(members[a], v)
		}
		if len(members) < n/200 || len(members) > n/25 {
			t.Fatalf("%d nodes: %d areas for size 100", n, len(members))
		}
		for a, vs := range members {
			seen := map[int]bool{vs[0]: true}
			queue := []int{vs[0]}
			for len(queue) > 0 {
				v := queue[0]
				queue = queue[1:]
				for _, u := range adj[v] {
					if area[u] == a && !seen[u] {
						seen[u] = true
						queue = append(queue, u)
					}
				}
			}
			if len(seen) != len(vs) {
				t.Fatalf("%d nodes: area %d is not connected (%d of %d reached)", n, a, len(seen), len(vs))
			}
		}
	}
	if a := partitionAreas([][]int{{1}, {0}}, 0); a[0] != 0 || a[1] != 0 {
		t.Fatal("size 0 must give one area, 0")
	}
}

// With areas, level 2 runs after the cold start: every gateway holds every level-2 record, and
// pairs of nodes in different areas are routed end to end by the routers' own decisions (RunLevel2
// fails on a dead end, a loop, a path that costs other than quoted or less than the flat shortest
// path).
func TestLevel2Sim(t *testing.T) {
	s, err := New(Config{Topology: Geometric, Nodes: 300, Degree: 6, Seed: 4, AreaSize: 60, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Converge(); err != nil {
		t.Fatal(err)
	}
	areas := map[uint32]bool{}
	adjacent := map[[2]uint32]int{}
	gateway := designateGateways(s.Edges, s.Area)
	for v, a := range s.Area {
		areas[a] = true
		if gateway[v] != s.Net.Node(s.IDs[v]).Gateway {
			t.Fatalf("node %d: gateway %v in the network, designated %v", v, s.Net.Node(s.IDs[v]).Gateway, gateway[v])
		}
	}
	for _, e := range s.Edges {
		if a, b := s.Area[e.A], s.Area[e.B]; a != b && gateway[e.A] && gateway[e.B] {
			adjacent[[2]uint32{min(a, b), max(a, b)}]++
		}
	}
	if len(areas) < 3 || len(adjacent) < len(areas)-1 {
		t.Fatalf("%d areas, %d adjacent pairs with a gateway link", len(areas), len(adjacent))
	}
	l2, err := s.RunLevel2(100)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Pairs != 100 || l2.Gateways == 0 || l2.Bytes == 0 || l2.StretchMean < 1 || l2.StretchMax < l2.StretchMean {
		t.Fatalf("level 2: %+v", l2)
	}
	t.Logf("%d areas: %+v", len(areas), *l2)
}
