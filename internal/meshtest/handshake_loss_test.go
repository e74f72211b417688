package meshtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/ipv6"

	"x0tta6bl4/internal/handshake"
	"x0tta6bl4/internal/node"
)

// timeToSession measures, on a chain a – b – c whose links lose each datagram with probability loss
// once routes are in place, how long a's host waits for its first echo reply from c when it pings
// every 100 ms: the end-to-end handshake a → c through b (8 + 2 fragments) plus the echo itself.
// legacy runs the nodes without handshake retransmission (docs/protocol.md §12.4). ok is false if no
// reply came within limit.
func timeToSession(tb testing.TB, seed uint64, loss float64, legacy bool, limit time.Duration) (time.Duration, bool) {
	tb.Helper()
	m, err := New(Config{Seed: seed, Delay: 10 * time.Millisecond, Options: func(_ string, o *node.Options) {
		o.NoHandshakeRetransmit = legacy
	}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "c"); err != nil {
		tb.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		tb.Fatal(err)
	}
	a, c := m.Node("a"), m.Node("c")
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 10*time.Second); !ok {
		tb.Fatalf("seed %d: no route a -> c\n%s", seed, dump(m))
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if err := m.SetLink(l[0], l[1], LinkParams{Loss: loss}); err != nil {
			tb.Fatal(err)
		}
	}
	replied := func() bool {
		return slices.ContainsFunc(a.Delivered(), func(p Packet) bool {
			typ, e, ok := ParseEcho(p.Data)
			return ok && typ == ipv6.ICMPTypeEchoReply && e.ID == 0x55
		})
	}
	start := m.Now()
	for seq := 0; m.Now().Sub(start) < limit; seq++ {
		a.Inject(EchoRequest(a.Addr(), c.Addr(), 0x55, seq, []byte("time to session")))
		if _, ok := m.RunUntil(replied, 100*time.Millisecond); ok {
			return m.Now().Sub(start), true
		}
	}
	return limit, false
}

type lossRun struct {
	times []time.Duration // sorted
	lost  int             // runs without a reply within the limit
}

func runLossy(tb testing.TB, seeds []uint64, loss float64, legacy bool, limit time.Duration) lossRun {
	var r lossRun
	for _, s := range seeds {
		d, ok := timeToSession(tb, s, loss, legacy, limit)
		if !ok {
			r.lost++
		}
		r.times = append(r.times, d)
	}
	slices.Sort(r.times)
	return r
}

func (r lossRun) over(d time.Duration) int {
	n := 0
	for _, t := range r.times {
		if t > d {
			n++
		}
	}
	return n
}

func (r lossRun) quantile(q float64) time.Duration {
	return r.times[min(len(r.times)-1, int(q*float64(len(r.times))))]
}

func (r lossRun) String() string {
	return fmt.Sprintf("p50 %s p90 %s max %s, %d/%d over 2 s, %d over 5 s", r.quantile(0.5), r.quantile(0.9),
		r.times[len(r.times)-1], r.over(2*time.Second), len(r.times), r.over(5*time.Second))
}

// TestHandshakeLossTimeToSession: with 2 % of datagrams lost on both links, an end-to-end session
// across a relay loses one of its 10 handshake fragments (each crossing two links) in about one run
// in three. Without retransmission some of those runs wait for the 5 s retry; with it, no run waits
// for a retry and at most one in 24 needs more than two resends (0 of these seeds on every run so
// far; 1 of 200 seeds in the benchmark below).
func TestHandshakeLossTimeToSession(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 2 × 24 meshes")
	}
	seeds := make([]uint64, 24)
	for i := range seeds {
		seeds[i] = uint64(100 + i)
	}
	before := runLossy(t, seeds, 0.02, true, 20*time.Second)
	after := runLossy(t, seeds, 0.02, false, 20*time.Second)
	t.Logf("2%% loss, %d seeds: before %s; after %s", len(seeds), before, after)
	if before.over(5*time.Second) == 0 {
		t.Fatal("without retransmission no run waited for a retry: the loss did not hit a handshake")
	}
	if n := after.over(2 * time.Second); n > 1 || after.over(handshake.RetryInterval) != 0 || after.lost != 0 {
		t.Fatalf("with retransmission %d of %d runs took over 2 s (%d without a reply): %s", n, len(seeds), after.lost, after)
	}
}

// BenchmarkHandshakeLossTimeToSession prints the distribution of time to the first echo reply across
// a relay (see timeToSession) at 1, 2 and 5 % loss per link, before and after retransmission, one
// seeded mesh per iteration: go test -run '^$' -bench HandshakeLoss -benchtime 100x ./internal/meshtest/
func BenchmarkHandshakeLossTimeToSession(b *testing.B) {
	for _, loss := range []float64{0.01, 0.02, 0.05} {
		for _, legacy := range []bool{true, false} {
			name := "retransmit"
			if legacy {
				name = "before"
			}
			b.Run(fmt.Sprintf("%s/loss=%g%%", name, 100*loss), func(b *testing.B) {
				seeds := make([]uint64, b.N)
				for i := range seeds {
					seeds[i] = uint64(1000 + i)
				}
				r := runLossy(b, seeds, loss, legacy, 30*time.Second)
				b.ReportMetric(float64(r.quantile(0.5).Milliseconds()), "p50-ms")
				b.ReportMetric(float64(r.quantile(0.9).Milliseconds()), "p90-ms")
				b.ReportMetric(float64(r.quantile(0.99).Milliseconds()), "p99-ms")
				b.ReportMetric(float64(r.times[len(r.times)-1].Milliseconds()), "max-ms")
				b.ReportMetric(100*float64(r.over(2*time.Second))/float64(len(r.times)), "pct-over-2s")
				b.ReportMetric(100*float64(r.over(5*time.Second))/float64(len(r.times)), "pct-over-5s")
			})
		}
	}
}
