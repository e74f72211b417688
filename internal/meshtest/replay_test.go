package meshtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLossySeedReplaysTimeline: a chain a – b – c on lossy links, run twice from the same seed, puts
// the same datagrams on each link direction at the same virtual times, and loses the same ones. (The
// order in which a node serves different links within one tick follows map order and may differ.) Under loss the handshakes resend and
// retry after a random jitter; if that jitter came from anywhere but the seed, the two runs would
// drift apart, a lossy scenario's outcome would vary from run to run, and a test asserting it would
// be flaky (TestPieceFramesUnderLoss once failed for seed 14 at 5 % loss this way, in about 1 run
// in 100).
func TestLossySeedReplaysTimeline(t *testing.T) {
	run := func(seed uint64) string {
		var m *Mesh
		traces := make(map[string]*strings.Builder)
		loss := lossyDrop(seed, 0.05)
		cfg := Config{Seed: seed, Drop: func(from, to *Node, d []byte) bool {
			lost := loss(from, to, d)
			dir := from.Name + "->" + to.Name
			if traces[dir] == nil {
				traces[dir] = new(strings.Builder)
			}
			fmt.Fprintf(traces[dir], "%s %s type %d len %d lost %v\n", m.Now().Sub(Epoch), dir, d[0], len(d), lost)
			return lost
		}}
		var err error
		if m, err = New(cfg); err != nil {
			t.Fatal(err)
		}
		if err := m.AddNodes("a", "b", "c"); err != nil {
			t.Fatal(err)
		}
		for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
			if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		m.Run(6 * time.Second)
		var trace strings.Builder
		for _, dir := range []string{"a->b", "b->a", "b->c", "c->b"} {
			if traces[dir] != nil {
				trace.WriteString(traces[dir].String())
			}
		}
		fmt.Fprintf(&trace, "stats\n%s", dump(m))
		return trace.String()
	}
	for _, seed := range []uint64{14, 15, 16} {
		first, again := run(seed), run(seed)
		if first == again {
			continue
		}
		a, b := strings.Split(first, "\n"), strings.Split(again, "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("seed %d: the runs part at datagram %d:\n  first: %s\n  again: %s", seed, i, a[i], b[i])
			}
		}
		t.Fatalf("seed %d: one run put %d datagrams on the wire, the other %d", seed, len(a), len(b))
	}
}
