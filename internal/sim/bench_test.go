package sim

import (
	"testing"
	"time"
)

// BenchmarkSim1000 is the scale goal: 1000 nodes (random geometric, mean degree 6) from cold
// start to every LSDB complete, then 10 s of traffic and telemetry. Run it alone, once:
//
//	go test -run '^$' -bench Sim1000 -benchtime 1x ./internal/sim/
func BenchmarkSim1000(b *testing.B) {
	for range b.N {
		start := time.Now()
		s, err := New(Config{Nodes: 1000, Seed: 1, Duration: 10 * time.Second, Faults: []FaultSpec{{Kind: Blackhole, Count: 5}}})
		if err != nil {
			b.Fatal(err)
		}
		built := time.Since(start)
		conv, err := s.Converge()
		if err != nil {
			b.Fatal(err)
		}
		converged := time.Since(start)
		if err := s.PlanFaults(); err != nil {
			b.Fatal(err)
		}
		for range 10 {
			s.RunInterval()
		}
		b.ReportMetric(built.Seconds(), "s-setup")
		b.ReportMetric(converged.Seconds(), "s-to-converged")
		b.ReportMetric((converged - built).Seconds(), "s-cold-start")
		b.ReportMetric(conv.Seconds()*1000, "ms-virtual-convergence")
		b.ReportMetric(float64(s.Net.Counters.Sent), "routing-msgs")
	}
}
