package meshtest

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/sim"
)

// BenchmarkMeshConverge: real nodes (handshakes, signed records, sessions, probes) on the simulator's
// topology, mean degree 6, from cold start until every node routes to every other. Compare with
// internal/sim's BenchmarkSim1000, which runs the routing core alone:
//
//	go test -run '^$' -bench MeshConverge -benchtime 1x ./internal/meshtest/
func BenchmarkMeshConverge(b *testing.B) {
	for _, n := range []int{50, 100, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				benchConverge(b, n)
			}
		})
	}
}

func benchConverge(b *testing.B, n int) {
	edges, err := sim.Topology(sim.Geometric, n, 6, 1)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	m, err := New(Config{Seed: 1, Heal: node.HealConfig{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := m.AddNode(fmt.Sprintf("n%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	for _, e := range edges {
		if err := m.Link(fmt.Sprintf("n%d", e.A), fmt.Sprintf("n%d", e.B), LinkParams{Delay: e.P.Delay}); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		b.Fatal(err)
	}
	built := time.Since(start)
	nodes := m.Nodes()
	var checked time.Time
	converged := func() bool {
		if m.Now().Sub(checked) < 10*time.Millisecond { // a full check costs more than most events
			return false
		}
		checked = m.Now()
		for _, nd := range nodes {
			if len(nd.Routes()) != n-1 {
				return false
			}
		}
		return true
	}
	virt, ok := m.RunUntil(converged, 2*time.Minute)
	if !ok {
		b.Fatalf("%d nodes did not converge in 2 min of mesh time", n)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(built.Seconds(), "s-setup")
	b.ReportMetric(time.Since(start).Seconds(), "s-to-converged")
	b.ReportMetric(virt.Seconds()*1000, "ms-virtual-convergence")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB-heap")
}
