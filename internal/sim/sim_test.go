package sim

import (
	"bytes"
	"maps"
	"math"
	"math/rand/v2"
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
			// Its processor is taken: busy, and what it relays beyond what is left is dropped
			// and reported.
			if x[FCPU] < 0.9 || x[FDropped] == 0 {
				t.Fatalf("overload cpu %v, dropped %v", x[FCPU], x[FDropped])
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

// labelLeaks runs cfg twice, once labelled and once with every label hidden (the faults act the
// same), and returns the names of the features whose values differ between the two runs: a feature
// that differs was computed from the ground truth rather than from what the faults did.
func labelLeaks(t *testing.T, cfg Config) []string {
	t.Helper()
	a, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.hideLabels = true
	b, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	labelled := 0
	leaks := map[string]bool{}
	for i := range a.Intervals {
		for v := range a.Intervals[i].X {
			if a.Intervals[i].Labels[v] != Normal {
				labelled++
			}
			if b.Intervals[i].Labels[v] != Normal {
				t.Fatal("hidden labels still set")
			}
			for j := range NumFeatures {
				if a.Intervals[i].X[v][j] != b.Intervals[i].X[v][j] {
					leaks[FeatureNames[j]] = true
				}
			}
			if a.Intervals[i].Kernel != nil && !maps.Equal(a.Intervals[i].Kernel[v], b.Intervals[i].Kernel[v]) {
				leaks["kernel features"] = true
			}
			for k := range a.Intervals[i].E[v] {
				for j := range NumEdgeFeatures {
					if a.Intervals[i].E[v][k][j] != b.Intervals[i].E[v][k][j] {
						leaks["edge "+EdgeFeatureNames[j]] = true
					}
				}
			}
		}
	}
	if labelled == 0 {
		t.Fatal("no labelled node-interval: the check would be vacuous")
	}
	var out []string
	for n := range leaks {
		out = append(out, n)
	}
	return out
}

var leakConfig = Config{Nodes: 40, Seed: 5, Duration: 12 * time.Second, Transient: 0.5, KernelFraction: 1,
	Faults: []FaultSpec{{Blackhole, 1}, {GreyHole, 1}, {Crash, 1}, {Overload, 2}, {LinkDegradation, 1}, {Flapping, 1}}}

// TestNoFeatureFromLabels: every feature is computed from what the faults do, none from the labels.
func TestNoFeatureFromLabels(t *testing.T) {
	if leaks := labelLeaks(t, leakConfig); len(leaks) > 0 {
		t.Fatalf("features computed from the labels: %v", leaks)
	}
}

// legacyOverloadCPU is the earlier simulator's CPU model: load-driven, except that an overloaded
// node's CPU was drawn from the fault kind.
func legacyOverloadCPU(st *nodeState, _ float64, rng *rand.Rand) float64 {
	cpu := 0.05 + 0.6*math.Min(1, float64(st.load)/3000) + 0.03*rng.NormFloat64()
	if st.label == Overload {
		cpu = 0.9 + 0.1*rng.Float64()
	}
	return cpu
}

// TestLabelLeakCaught shows TestNoFeatureFromLabels can fail: with the earlier CPU model plugged in,
// the check names the cpu feature.
func TestLabelLeakCaught(t *testing.T) {
	cfg := leakConfig
	cfg.cpu = legacyOverloadCPU
	leaks := labelLeaks(t, cfg)
	if !slices.Contains(leaks, "cpu") {
		t.Fatalf("the label-derived CPU was not caught: leaks %v", leaks)
	}
	t.Logf("caught: %v", leaks)
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
	// Areas of 60 have gateways several hops apart, so some node relays level 2; the most one
	// node relayed bounds what the busiest node relayed.
	if l2.RelayedMax == 0 || l2.RelayedMaxNode == "" || l2.RelayedMax < l2.BusiestRelayed {
		t.Fatalf("level 2 relayed at most %d bytes by %q, the busiest node %d: %+v", l2.RelayedMax, l2.RelayedMaxNode, l2.BusiestRelayed, l2)
	}
	t.Logf("%d areas: %+v", len(areas), *l2)
}

// A restart that the neighbours do not notice floods nothing: only the node and its neighbours
// send; one they noticed floods their changed records through the area. Ten restarts take over
// 60 s of virtual time, so the periodic refresh falls in one of the windows: that one is measured
// again rather than counted as the restart's cost.
func TestMeasureRestarts(t *testing.T) {
	s, err := New(Config{Topology: Geometric, Nodes: 200, Degree: 6, Seed: 3, AreaSize: 50, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Converge(); err != nil {
		t.Fatal(err)
	}
	const k = 10
	start := s.Net.Elapsed()
	rs, err := s.MeasureRestarts(k)
	if err != nil {
		t.Fatal(err)
	}
	if s.Net.Elapsed()-start < 60*time.Second {
		t.Fatalf("the restarts took %s of virtual time: no refresh fell among them", s.Net.Elapsed()-start)
	}
	if len(rs) != 4*k {
		t.Fatalf("%d measurements, want %d restarts and %d crashes, each with and without the records kept", len(rs), k, k)
	}
	for i := 0; i < len(rs); i += 4 {
		quick, keptQuick, crash, keptCrash := rs[i], rs[i+1], rs[i+2], rs[i+3]
		if quick.Noticed || !crash.Noticed || keptQuick.Noticed || !keptCrash.Noticed ||
			quick.KeptRecords || crash.KeptRecords || !keptQuick.KeptRecords || !keptCrash.KeptRecords ||
			quick.Node != crash.Node || quick.Node != keptQuick.Node || quick.Node != keptCrash.Node {
			t.Fatalf("measurements out of order: %+v, %+v, %+v, %+v", quick, crash, keptQuick, keptCrash)
		}
		if quick.Senders > quick.Degree+1 || quick.Messages == 0 {
			t.Fatalf("%s (degree %d): a restart made %d nodes send %d messages", quick.Node, quick.Degree, quick.Senders, quick.Messages)
		}
		if crash.Senders <= crash.Degree+1 || crash.Messages <= quick.Messages {
			t.Fatalf("%s: a crash made %d nodes send %d messages, a restart %d", crash.Node, crash.Senders, crash.Messages, quick.Messages)
		}
		// With its records kept, a restart costs summaries, offers and acknowledgements on the
		// node's links (6 per link) and the few records signed while it was down (an offer, a
		// request, the record and its acknowledgement each): nothing per member of its area.
		if keptQuick.Senders > keptQuick.Degree+1 || keptQuick.Messages > 8*uint64(keptQuick.Degree) || keptQuick.Messages >= quick.Messages {
			t.Fatalf("%s (degree %d): a restart with the records kept made %d nodes send %d messages (%d with none kept)",
				keptQuick.Node, keptQuick.Degree, keptQuick.Senders, keptQuick.Messages, quick.Messages)
		}
		t.Logf("%s (degree %d): restart %d / kept %d messages; crash %d / kept %d", quick.Node, quick.Degree, quick.Messages, keptQuick.Messages, crash.Messages, keptCrash.Messages)
	}
}
