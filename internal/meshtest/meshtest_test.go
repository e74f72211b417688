package meshtest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
)

// demoTopology is the demo's: two paths from alpha to delta, three hops through bravo and charlie,
// four through echo, foxtrot and golf; hotel hangs off golf. Each pair is (dialled, dialler).
var demoTopology = [][2]string{
	{"alpha", "bravo"}, {"bravo", "charlie"}, {"charlie", "delta"},
	{"alpha", "echo"}, {"echo", "foxtrot"}, {"foxtrot", "golf"}, {"delta", "golf"}, {"golf", "hotel"},
}

func demoMesh(t *testing.T, seed uint64) *Mesh { return demoMeshWith(t, Config{Seed: seed}) }

func demoMeshWith(t *testing.T, cfg Config) *Mesh {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"); err != nil {
		t.Fatal(err)
	}
	for _, l := range demoTopology {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	return m
}

// route returns from's route to the node called to, if it has one.
func route(n *Node, to string) (node.RouteStatus, bool) {
	for _, r := range n.Routes() {
		if r.Name == to {
			return r, true
		}
	}
	return node.RouteStatus{}, false
}

// hasRoute is a condition: from routes to to over hops hops through next (any next hop if "").
func hasRoute(n *Node, to string, hops int, next string) func() bool {
	return func() bool {
		r, ok := route(n, to)
		return ok && r.Hops == hops && (next == "" || r.NextHop == next)
	}
}

// received is a condition: n's host got a UDP packet carrying payload.
func received(n *Node, payload []byte) func() bool {
	return func() bool {
		for _, p := range n.Delivered() {
			if len(p.Data) >= 48 && bytes.Equal(p.Data[48:], payload) {
				return true
			}
		}
		return false
	}
}

// send has from's host send a UDP packet to to's, and runs the mesh until it arrives.
func send(t *testing.T, m *Mesh, from, to *Node, payload string, within time.Duration) time.Duration {
	t.Helper()
	from.Inject(UDPPacket(from.Addr(), to.Addr(), 40000, 7, []byte(payload)))
	took, ok := m.RunUntil(received(to, []byte(payload)), within)
	if !ok {
		t.Fatalf("%q from %s did not reach %s within %s\n%s", payload, from.Name, to.Name, within, dump(m))
	}
	return took
}

func dump(m *Mesh) string {
	var s string
	for _, n := range m.Nodes() {
		if n.Node != nil {
			s += fmt.Sprintf("%s: %+v\n  routes %+v\n", n.Name, n.Status().Stats, n.Routes())
		}
	}
	return s
}

// rerouteResult is what the demo scenario observes, all in virtual time.
type rerouteResult struct {
	Converged, FirstDelivery, Rerouted, Redelivered time.Duration
	Before, After                                   node.RouteStatus
}

func demoReroute(t *testing.T, seed uint64) rerouteResult {
	m := demoMesh(t, seed)
	alpha, delta := m.Node("alpha"), m.Node("delta")
	var r rerouteResult
	var ok bool
	if r.Converged, ok = m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
	}
	r.FirstDelivery = send(t, m, alpha, delta, "before", 5*time.Second)
	r.Before, _ = route(alpha, "delta")
	m.Run(time.Second)
	if err := m.Kill("bravo"); err != nil {
		t.Fatal(err)
	}
	if r.Rerouted, ok = m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 5*time.Second); !ok {
		t.Fatalf("alpha did not route around dead bravo\n%s", dump(m))
	}
	r.After, _ = route(alpha, "delta")
	r.Redelivered = send(t, m, alpha, delta, "after", 5*time.Second)
	if s := m.Node("echo").Status().Stats; s.Forwarded == 0 {
		t.Errorf("echo forwarded nothing after the reroute: %+v", s)
	}
	return r
}

// TestDemoReroute: the demo's scenario, eight nodes, a relay on the path killed, the mesh routes
// around it; the same seed gives the same virtual timings and routes.
func TestDemoReroute(t *testing.T) {
	start := time.Now()
	first := demoReroute(t, 1)
	t.Logf("seed 1: converged %s, first packet %s, rerouted %s after the kill, delivered again %s later (wall %s)",
		first.Converged, first.FirstDelivery, first.Rerouted, first.Redelivered, time.Since(start).Round(time.Millisecond))
	if first.Rerouted > time.Second {
		t.Errorf("reroute took %s of mesh time, want under 1 s (dead-after 400 ms)", first.Rerouted)
	}
	if again := demoReroute(t, 1); again != first {
		t.Fatalf("seed 1 twice gave different results:\n%+v\n%+v", first, again)
	}
}

// TestBlackholeRelayAvoided: bravo keeps its links and routing alive but drops every packet it
// should relay. alpha's self-healing probes through bravo go unanswered while the links explain no
// loss; alpha penalises the link, routes to delta through echo, and traffic flows again. The same
// seed gives the same decision at the same virtual time. (The fault comes after the grace period
// that follows the links' start: a relay that drops from its first second is caught when the
// grace ends.)
func TestBlackholeRelayAvoided(t *testing.T) {
	run := func() (time.Duration, node.HealDecision) {
		m := demoMesh(t, 7)
		alpha, delta := m.Node("alpha"), m.Node("delta")
		if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
			t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
		}
		send(t, m, alpha, delta, "before", 5*time.Second)
		if _, ok := m.RunUntil(outOfGrace(m.Nodes()...), 30*time.Second); !ok {
			t.Fatalf("the nodes did not get past their grace periods: %+v", alpha.Heal())
		}
		m.Node("bravo").SetTransitFault(1)
		faulted := m.Elapsed()
		took, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 30*time.Second)
		if !ok {
			t.Fatalf("alpha still routes through blackhole bravo\nheal %+v\n%s", alpha.Heal(), dump(m))
		}
		h := alpha.Heal()
		if h.Penalties == 0 || len(h.Decisions) == 0 {
			t.Fatalf("alpha rerouted without a heal decision: %+v", h)
		}
		d := h.Decisions[0]
		if d.Peer != "bravo" || d.Action != "penalise" {
			t.Fatalf("first decision %+v, want bravo penalised", d)
		}
		send(t, m, alpha, delta, "after", 5*time.Second)
		if at := d.Time.Sub(Epoch); at < faulted {
			t.Fatalf("decision at %s, before the fault at %s", at, faulted)
		}
		d.Time = d.Time.UTC()
		return took, d
	}
	start := time.Now()
	took, d := run()
	t.Logf("blackhole bravo avoided %s after the fault: %s %s (%s, confidence %.4f) (wall %s)",
		took, d.Action, d.Peer, d.Class, d.Confidence, time.Since(start).Round(time.Millisecond))
	took2, d2 := run()
	if took2 != took || fmt.Sprint(d2) != fmt.Sprint(d) {
		t.Fatalf("same seed, different result:\n%s %+v\n%s %+v", took, d, took2, d2)
	}
}

// TestGreyholeRelayAvoidedAndRestored: bravo drops half of what it should relay. alpha routes around
// it; when bravo recovers, the loop re-probes it at the end of the hold, restores the link, and the
// route comes back. No node acts against anyone else.
func TestGreyholeRelayAvoidedAndRestored(t *testing.T) {
	m := demoMeshWith(t, Config{Seed: 5, Heal: node.HealConfig{Hold: 5 * time.Second}})
	alpha, bravo, delta := m.Node("alpha"), m.Node("bravo"), m.Node("delta")
	if _, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 10*time.Second); !ok {
		t.Fatalf("no 3-hop route alpha -> delta\n%s", dump(m))
	}
	send(t, m, alpha, delta, "before", 5*time.Second)
	if _, ok := m.RunUntil(outOfGrace(m.Nodes()...), 30*time.Second); !ok {
		t.Fatalf("the nodes did not get past their grace periods: %+v", alpha.Heal())
	}
	bravo.SetTransitFault(0.5)
	avoided, ok := m.RunUntil(hasRoute(alpha, "delta", 4, "echo"), 30*time.Second)
	if !ok {
		t.Fatalf("alpha still routes through grey hole bravo\nheal %+v", alpha.Heal())
	}
	bravo.SetTransitFault(0)
	back, ok := m.RunUntil(hasRoute(alpha, "delta", 3, "bravo"), 30*time.Second)
	if !ok {
		t.Fatalf("the route never came back through recovered bravo\nheal %+v", alpha.Heal())
	}
	m.Run(10 * time.Second)
	var penalisers []string
	for _, n := range m.Nodes() {
		h := n.Heal()
		for _, d := range h.Decisions {
			if d.Peer != "bravo" {
				t.Errorf("false action: %s %s %s (%s p=%.4f)", n.Name, d.Action, d.Peer, d.Class, d.Confidence)
			}
		}
		if h.Penalties > 0 {
			penalisers = append(penalisers, n.Name)
		}
		if h.Penalties > 1 || h.Restores != h.Penalties {
			t.Errorf("%s: %d penalties, %d restores: %+v", n.Name, h.Penalties, h.Restores, h.Decisions)
		}
	}
	if len(penalisers) == 0 {
		t.Fatal("nobody penalised bravo")
	}
	send(t, m, alpha, delta, "after", time.Second)
	t.Logf("grey hole bravo (drops 1/2) avoided %s after the fault by %v; route back %s after it recovered (hold 5 s)",
		avoided, penalisers, back)
}
