package meshtest

import (
	"testing"
	"time"

	"x0tta6bl4/internal/node"
)

// punchMesh is a line a - b - c of configured peers, where a and c can also reach each other in the
// underlay but were never introduced.
func punchMesh(t *testing.T, seed uint64, opts func(string, *node.Options)) *Mesh {
	t.Helper()
	m, err := New(Config{Seed: seed, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if err := m.Link(l[0], l[1], LinkParams{Delay: 5 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Reach("a", "c", LinkParams{Delay: 2 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPunchMakesDirectLink: a learns c's endpoint from c's record (flooded through b), punches, and
// within a second a and c have a direct link that routing prefers to the relay.
func TestPunchMakesDirectLink(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		m := punchMesh(t, seed, nil)
		a := m.Node("a")
		took, ok := m.RunUntil(hasRoute(a, "c", 1, "c"), 5*time.Second)
		if !ok {
			t.Fatalf("seed %d: no direct route a -> c\n%s", seed, dump(m))
		}
		t.Logf("seed %d: direct a-c after %s of virtual time", seed, took)
		if took > time.Second {
			t.Errorf("seed %d: direct path after %s, want within 1 s", seed, took)
		}
		st := a.Status().Stats
		if st.PunchDirect+m.Node("c").Status().Stats.PunchDirect == 0 {
			t.Errorf("seed %d: no punch counted as direct: %+v", seed, st)
		}
		// Traffic a -> c no longer crosses b.
		before := m.Node("b").Status().Stats.Forwarded
		if !ping(m, a, m.Node("c"), 1, time.Second) {
			t.Fatalf("seed %d: no echo reply over the direct link", seed)
		}
		if after := m.Node("b").Status().Stats.Forwarded; after != before {
			t.Errorf("seed %d: relay b forwarded %d packets after the punch", seed, after-before)
		}
		if p := peerPath(a, "c"); p.Path != "direct" || (p.Why != "punched" && p.Why != "dialled us") {
			t.Errorf("seed %d: a shows c as %+v", seed, p)
		}
	}
}

func peerPath(n *Node, name string) node.PeerStatus {
	for _, p := range n.PeerPaths() {
		if p.Name == name {
			return p
		}
	}
	return node.PeerStatus{}
}

// TestNoPunchKeepsRelaying: with punching off, a and c stay two hops apart.
func TestNoPunchKeepsRelaying(t *testing.T) {
	m := punchMesh(t, 1, func(_ string, o *node.Options) { o.NoPunch = true })
	a := m.Node("a")
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c\n%s", dump(m))
	}
	m.Run(3 * time.Second)
	if rt, _ := route(a, "c"); rt.Hops != 2 {
		t.Fatalf("route a -> c is %+v with punching off", rt)
	}
	if p := peerPath(a, "c"); p.Path != "relayed" || p.Via != "b" || p.Why != "punching off (punch: false)" {
		t.Fatalf("a shows c as %+v", p)
	}
}

// TestJoinFromRecords: a node with no configured peer, given the signed records a control plane
// would hand it, dials the nodes in them and joins the mesh.
func TestJoinFromRecords(t *testing.T) {
	m, err := New(Config{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "joiner"); err != nil {
		t.Fatal(err)
	}
	if err := m.Link("a", "b", LinkParams{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Reach("a", "joiner", LinkParams{Delay: 3 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, b, j := m.Node("a"), m.Node("b"), m.Node("joiner")
	if _, ok := m.RunUntil(hasRoute(a, "b", 1, "b"), 5*time.Second); !ok {
		t.Fatal("a and b did not link")
	}
	m.Run(time.Second)
	if err := j.LearnRecords([]node.SignedRecord{a.OwnRecord(), b.OwnRecord()}); err != nil {
		t.Fatal(err)
	}
	took, ok := m.RunUntil(hasRoute(j, "b", 2, "a"), 5*time.Second)
	if !ok {
		t.Fatalf("the joiner never reached b\n%s", dump(m))
	}
	t.Logf("joined and routed to b in %s", took)
	if !ping(m, j, b, 1, time.Second) {
		t.Fatal("no echo reply from b")
	}
}
