package routingsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

var (
	clean = LinkParams{Delay: 5 * time.Millisecond, Jitter: time.Millisecond}
	lossy = LinkParams{Delay: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: 0.1}
)

func newNet(t testing.TB, cfg Config) *Network {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func nodes(t testing.TB, n *Network, count int) []NodeID {
	t.Helper()
	ids, err := n.AddNodes("n", count)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func converge(t testing.TB, n *Network, limit time.Duration) time.Duration {
	t.Helper()
	d, err := n.RunUntilConverged(limit)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConvergence(t *testing.T) {
	cases := []struct {
		name  string
		count int
		build func(n *Network, ids []NodeID) error
		links int
	}{
		{"line8", 8, func(n *Network, ids []NodeID) error { return n.Line(ids, clean) }, 7},
		{"ring12", 12, func(n *Network, ids []NodeID) error { return n.Ring(ids, clean) }, 12},
		{"grid5x5", 25, func(n *Network, ids []NodeID) error { return n.Grid(ids, 5, clean) }, 40},
		{"grid5x5-lossy", 25, func(n *Network, ids []NodeID) error { return n.Grid(ids, 5, lossy) }, 40},
		{"random40", 40, func(n *Network, ids []NodeID) error {
			return n.Random(ids, 4, func(i int) LinkParams {
				return LinkParams{Delay: time.Duration(1+i%20) * time.Millisecond, Jitter: time.Millisecond, Loss: float64(i%4) * 0.03}
			})
		}, 80},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNet(t, Config{Seed: 1, UpDelay: 10 * time.Millisecond})
			ids := nodes(t, n, c.count)
			must(t, c.build(n, ids))
			d := converge(t, n, 10*time.Second)
			t.Logf("%s: converged after %s virtual (%d messages, %d KB, %d lost)", c.name, d, n.Counters.Sent, n.Counters.Bytes>>10, n.Counters.Lost)
			if d > 2*time.Second {
				t.Errorf("convergence took %s", d)
			}
			for _, id := range []NodeID{ids[0], ids[c.count-1]} {
				g := n.Router(id).Graph()
				if len(g.Nodes) != c.count || len(g.Links) != c.links {
					t.Fatalf("graph has %d nodes and %d links, want %d and %d", len(g.Nodes), len(g.Links), c.count, c.links)
				}
			}
		})
	}
}

// routeLink returns the first link on src's route to dst.
func routeLink(t testing.TB, n *Network, src, dst NodeID) (NodeID, NodeID) {
	rt, ok := n.Router(src).NextHop(dst)
	if !ok {
		t.Fatal("no route")
	}
	return src, rt.NextHop
}

func TestLinkFailureReroute(t *testing.T) {
	cases := []struct {
		name   string
		detect time.Duration
		p      LinkParams
	}{
		{"clean-instant-detection", 0, clean},
		{"clean-300ms-detection", 300 * time.Millisecond, clean},
		{"lossy-300ms-detection", 300 * time.Millisecond, lossy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNet(t, Config{Seed: 2, DetectDelay: c.detect, UpDelay: 10 * time.Millisecond})
			ids := nodes(t, n, 36)
			must(t, n.Grid(ids, 6, c.p))
			converge(t, n, 10*time.Second)
			n.RunFor(30 * time.Second) // let the origination throttles go idle
			var worst, total time.Duration
			const cuts = 5
			for i := range cuts {
				// Cut the first link of a long route, a different one each time.
				a, b := routeLink(t, n, ids[i], ids[35-i])
				n.Cut(a, b)
				d := converge(t, n, 10*time.Second)
				total += d
				worst = max(worst, d)
				n.RunFor(30 * time.Second)
			}
			t.Logf("%s: reroute after a link cut, detection included: mean %s, worst %s (detection %s)", c.name, total/cuts, worst, c.detect)
			if worst > c.detect+time.Second {
				t.Errorf("reroute took %s", worst)
			}
		})
	}
}

func TestNodeFailure(t *testing.T) {
	n := newNet(t, Config{Seed: 3, DetectDelay: 300 * time.Millisecond, UpDelay: 10 * time.Millisecond})
	ids := nodes(t, n, 25)
	must(t, n.Grid(ids, 5, clean))
	converge(t, n, 10*time.Second)
	n.RunFor(30 * time.Second)
	center := ids[12]
	n.Kill(center)
	d := converge(t, n, 10*time.Second)
	t.Logf("node failure: rerouted after %s (detection 300ms)", d)
	if d > 1300*time.Millisecond {
		t.Errorf("reroute took %s", d)
	}
	g := n.Router(ids[0]).Graph()
	for _, node := range g.Nodes {
		if node.ID == center && node.Reachable {
			t.Fatal("dead node still reachable")
		}
	}
	// Its record ages out everywhere after the lifetime (180 s).
	n.RunFor(181 * time.Second)
	for _, id := range ids {
		if id == center {
			continue
		}
		if n.Router(id).Record(center) != nil {
			t.Fatalf("%s still holds the dead node's record", n.Node(id).Name)
		}
		if got := len(n.Router(id).Graph().Nodes); got != 24 {
			t.Fatalf("graph has %d nodes", got)
		}
	}
	must(t, n.CheckRoutes())

	// It comes back (restart: no state, same key) and is routed to again.
	must(t, n.Revive(center))
	d = converge(t, n, 10*time.Second)
	t.Logf("node restart: converged after %s", d)
}

func TestPartitionAndMerge(t *testing.T) {
	n := newNet(t, Config{Seed: 4, DetectDelay: 300 * time.Millisecond, UpDelay: 10 * time.Millisecond})
	ids := nodes(t, n, 24)
	must(t, n.Grid(ids, 6, clean))
	converge(t, n, 10*time.Second)
	var left []NodeID
	for i, id := range ids {
		if i%6 < 3 {
			left = append(left, id)
		}
	}
	n.Partition(left)
	d := converge(t, n, 10*time.Second)
	t.Logf("partition: converged after %s", d)
	if _, ok := n.Router(ids[0]).NextHop(ids[5]); ok {
		t.Fatal("route across the partition")
	}
	// Both halves change while apart: a link in each fails, and a node on the right restarts.
	n.Cut(ids[0], ids[1])
	n.Cut(ids[4], ids[5])
	n.Kill(ids[11])
	n.RunFor(2 * time.Second)
	must(t, n.Revive(ids[11]))
	converge(t, n, 10*time.Second)
	n.RunFor(20 * time.Second)

	n.Heal(left)
	d = converge(t, n, 10*time.Second)
	t.Logf("merge: converged after %s", d)
	if d > 2*time.Second {
		t.Errorf("merge took %s", d)
	}
	// Every node comes to hold the same, latest record of every node.
	sync, ok := n.RunUntil(func() bool { return n.CheckSynchronised() == nil }, time.Millisecond, 5*time.Second)
	if !ok {
		t.Fatal(n.CheckSynchronised())
	}
	t.Logf("merge: databases synchronised %s later", sync)
}

func TestFlappingLink(t *testing.T) {
	n := newNet(t, Config{Seed: 5, DetectDelay: 50 * time.Millisecond, UpDelay: 20 * time.Millisecond})
	ids := nodes(t, n, 10)
	must(t, n.Ring(ids, clean))
	converge(t, n, 10*time.Second)
	n.RunFor(30 * time.Second)
	a, b := ids[0], ids[1]
	before := map[NodeID]uint64{}
	for _, id := range ids {
		before[id] = n.Router(id).Stats().Originated
	}
	sent := n.Counters.Sent
	rng := n.Rand()
	flapFor := 10 * time.Second
	start := n.Now()
	flaps := 0
	for n.Now().Sub(start) < flapFor {
		n.Cut(a, b)
		n.RunFor(time.Duration(80+rng.IntN(200)) * time.Millisecond)
		n.Restore(a, b)
		n.RunFor(time.Duration(80+rng.IntN(200)) * time.Millisecond)
		flaps++
	}
	// Flap damping has suppressed the link: routes settle around it at once, and come back to it
	// at most MaxSuppress (60 s) after the last flap.
	damped := func() bool { return n.CheckRoutesWith(suppressedCost(a, b)) == nil }
	d, ok := n.RunUntil(damped, time.Millisecond, 20*time.Second)
	if !ok {
		t.Fatal(n.CheckRoutesWith(suppressedCost(a, b)))
	}
	orig := n.Router(a).Stats().Originated - before[a]
	others := uint64(0)
	for _, id := range ids[2:] {
		others += n.Router(id).Stats().Originated - before[id]
	}
	back := converge(t, n, time.Minute)
	t.Logf("flapping: %d flaps in %s; endpoint signed %d records (others %d); %d messages; stable around the suppressed link %s after the last flap, back on it %s later",
		flaps, flapFor, orig, others, n.Counters.Sent-sent, d, back)
	// Holds double from 100 ms to 5 s: at most ~9 records in 10 s, plus one at the end.
	if orig > 11 {
		t.Errorf("endpoint signed %d records while flapping", orig)
	}
	if others != 0 {
		t.Errorf("uninvolved nodes signed %d records", others)
	}
	if d > 6*time.Second {
		t.Errorf("routes took %s to settle", d)
	}
}

func TestForgedRecordsIgnored(t *testing.T) {
	n := newNet(t, Config{Seed: 6, UpDelay: 10 * time.Millisecond})
	ids := nodes(t, n, 9)
	must(t, n.Grid(ids, 3, clean))
	converge(t, n, 10*time.Second)
	n.RunFor(time.Second)
	victim, via, target := ids[4], ids[1], ids[8]
	accepted := func() uint64 {
		s := uint64(0)
		for _, id := range ids {
			s += n.Router(id).Stats().Accepted
		}
		return s
	}
	acc := accepted()

	// 1. A record "by" target whose signature does not match, injected by one of victim's neighbours.
	// The attacker raises the sequence number of target's genuine record (to override it).
	rec := n.Router(target).Record(target)
	bad := append([]byte(nil), rec.Bytes()...)
	binary.BigEndian.PutUint64(bad[37:], rec.Seq+1) // the sequence number field
	msg := append([]byte{routing.MsgRecord, 1, byte(len(n.Node(target).Cert.Bytes()) >> 8), byte(len(n.Node(target).Cert.Bytes()))}, n.Node(target).Cert.Bytes()...)
	msg = append(msg, bad...)
	if err := n.Inject(via, victim, msg); !errors.Is(err, routing.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}

	// 2. A member (node 0) signs a record claiming cheap links to every node; none confirms them.
	liar := n.Node(ids[0])
	var links []routing.LinkInfo
	for _, id := range ids[1:] {
		links = append(links, routing.LinkInfo{Neighbour: id, Cost: 1})
	}
	slices.SortFunc(links, func(x, y routing.LinkInfo) int { return cmpID(x.Neighbour, y.Neighbour) })
	lie := signed(t, liar.Key.Sign, liar.Cert, n.Router(ids[0]).Seq()+1, n.Now().Add(time.Minute), links)
	if err := n.Inject(ids[0], ids[1], lie); err != nil {
		t.Fatalf("a validly signed record was refused: %v", err)
	}
	n.RunFor(time.Second)
	if got := accepted() - acc; got != 8 {
		t.Fatalf("%d records installed, want the liar's record at each of the 8 others", got)
	}
	must(t, n.CheckRoutes())
	for _, id := range ids {
		for _, l := range n.Router(id).Graph().Links {
			if l.Cost == 1 {
				t.Fatalf("unconfirmed link in %s's graph", n.Node(id).Name)
			}
		}
	}

	// 3. A replay of an old record is ignored.
	old := n.Router(victim).Record(target)
	n.SetLinkParams(target, ids[5], LinkParams{Delay: 40 * time.Millisecond})
	converge(t, n, 5*time.Second)
	n.RunFor(time.Second)
	if err := n.Inject(via, victim, append([]byte{routing.MsgRecord, 0}, old.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	if got := n.Router(victim).Record(target).Seq; got == old.Seq {
		t.Fatalf("replayed record installed (seq %d, target at %d)", got, n.Router(target).Seq())
	}
	n.RunFor(time.Second)
	must(t, n.CheckRoutes())

	// 4. A certificate from a CA the mesh does not trust.
	evilCAKey, err := identity.GenerateSigningKey()
	must(t, err)
	evilCA, err := meshca.NewRootCA(evilCAKey, meshca.CAOptions{TrustDomain: "sim.mesh", Name: "evil", Duration: time.Hour}, n.Now())
	must(t, err)
	k, err := n.NewKey()
	must(t, err)
	c, err := evilCA.Issue(meshca.IssueRequest{Name: "mallory", PublicKey: k.Public(), Duration: time.Minute}, n.Now())
	must(t, err)
	m := signed(t, k.Sign, c, 1, n.Now().Add(time.Minute), nil)
	if err := n.Inject(via, victim, m); !errors.Is(err, routing.ErrBadCertificate) {
		t.Fatalf("untrusted CA: %v", err)
	}
}

// signed returns a Record message (with the certificate) signed by key.
func signed(t testing.TB, key *identity.SigningKey, cert *meshca.Certificate, seq uint64, expires time.Time, links []routing.LinkInfo) []byte {
	t.Helper()
	raw, err := routing.SignRecord(key, &routing.Record{
		Origin: cert.SignPublicKey.ID(), Seq: seq, Expires: expires, CertFingerprint: cert.Fingerprint(), Links: links,
	})
	must(t, err)
	cb := cert.Bytes()
	msg := append([]byte{routing.MsgRecord, 1, byte(len(cb) >> 8), byte(len(cb))}, cb...)
	return append(msg, raw...)
}

func TestDeterministic(t *testing.T) {
	run := func(noShared bool) string {
		n := newNet(t, Config{Seed: 7, DetectDelay: 100 * time.Millisecond, UpDelay: 10 * time.Millisecond, NoSharedCache: noShared})
		ids := nodes(t, n, 16)
		must(t, n.Random(ids, 3, func(int) LinkParams { return lossy }))
		d1 := converge(t, n, 10*time.Second)
		a, b := routeLink(t, n, ids[0], ids[15])
		n.Cut(a, b)
		d2 := converge(t, n, 10*time.Second)
		g := n.Router(ids[3]).Graph()
		return fmt.Sprintf("%s %s %+v %d %d", d1, d2, n.Counters, len(g.Nodes), len(g.Links))
	}
	first := run(false)
	if again := run(false); again != first {
		t.Fatalf("two runs with one seed differ:\n%s\n%s", first, again)
	}
	// The shared verification cache changes cost, not behaviour.
	if own := run(true); own != first {
		t.Fatalf("per-router caches behave differently:\n%s\n%s", first, own)
	}
	t.Log(first)
}

// BenchmarkConvergence50: a 50-node random graph (mean degree 4) from cold start to correct routes
// everywhere; "shared" is the simulator's set-up (one verification cache), "per-node" makes every
// router verify every record and certificate itself, as real nodes do.
func BenchmarkConvergence50(b *testing.B) {
	for _, mode := range []struct {
		name     string
		noShared bool
	}{{"shared", false}, {"per-node", true}} {
		b.Run(mode.name, func(b *testing.B) {
			var virt time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				n := newNet(b, Config{Seed: uint64(i), UpDelay: 10 * time.Millisecond, NoSharedCache: mode.noShared})
				ids := nodes(b, n, 50)
				must(b, n.Random(ids, 4, func(i int) LinkParams {
					return LinkParams{Delay: time.Duration(1+i%10) * time.Millisecond, Jitter: time.Millisecond}
				}))
				b.StartTimer()
				virt += converge(b, n, 10*time.Second)
			}
			b.ReportMetric(float64(virt.Milliseconds())/float64(b.N), "virtual-ms/op")
		})
	}
}

// BenchmarkConvergence1000 is the simulator's target: 1000 nodes from cold start to every node
// holding every record (then routes are checked once). Run it with -benchtime 1x.
func BenchmarkConvergence1000(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		n := newNet(b, Config{Seed: uint64(i), UpDelay: 10 * time.Millisecond})
		ids := nodes(b, n, 1000)
		must(b, n.Random(ids, 4, func(i int) LinkParams {
			return LinkParams{Delay: time.Duration(1+i%10) * time.Millisecond, Jitter: time.Millisecond}
		}))
		b.StartTimer()
		d, ok := n.RunUntil(func() bool { return n.CheckSynchronised() == nil }, 10*time.Millisecond, time.Minute)
		b.StopTimer()
		if !ok {
			b.Fatal(n.CheckSynchronised())
		}
		must(b, n.CheckRoutes())
		b.ReportMetric(float64(d.Milliseconds()), "virtual-ms")
		b.ReportMetric(float64(n.Counters.Sent), "messages")
		b.ReportMetric(float64(n.Cache().Verifications()), "verifications")
	}
}
