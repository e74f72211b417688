package meshtest

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/net/ipv6"

	"x0tta6bl4/internal/node"
)

// areaMesh builds three areas joined by gateways (names starting with g are gateways):
//
//	area 1: a1 - ga1 (near), a1 - ga2 (far)
//	area 2: gb1 - b1 - gb2, b1 - gb3
//	area 3: gc1 - c1 - c2
//	borders: ga1 - gb1, ga2 - gb2, gb3 - gc1
//
// x, if liar is set, is a node linked to ga1 and a1 that claims to be a gateway of area 3.
func areaMesh(t *testing.T, liar bool) *Mesh {
	t.Helper()
	area := map[string]uint32{"a1": 1, "ga1": 1, "ga2": 1, "gb1": 2, "gb2": 2, "gb3": 2, "b1": 2, "gc1": 3, "c1": 3, "c2": 3, "x": 3}
	gateway := map[string]bool{"ga1": true, "ga2": true, "gb1": true, "gb2": true, "gb3": true, "gc1": true, "x": true}
	m, err := New(Config{Seed: 22, Options: func(name string, o *node.Options) {
		o.RoutingArea, o.RoutingGateway = area[name], gateway[name]
	}})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a1", "ga1", "ga2", "gb1", "gb2", "gb3", "b1", "gc1", "c1", "c2"}
	if liar {
		names = append(names, "x")
	}
	if err := m.AddNodes(names...); err != nil {
		t.Fatal(err)
	}
	links := [][2]string{{"a1", "ga1"}, {"ga1", "gb1"}, {"ga2", "gb2"}, {"gb1", "b1"}, {"b1", "gb2"},
		{"b1", "gb3"}, {"gb3", "gc1"}, {"gc1", "c1"}, {"c1", "c2"}}
	if liar {
		links = append(links, [2]string{"ga1", "x"}, [2]string{"a1", "x"})
	}
	for _, l := range links {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	// ga2 is a1's second, slower way out.
	if err := m.Link("a1", "ga2", LinkParams{Delay: 8 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	return m
}

// exchangeProofs does what the directory does: it hands each of a and b the other's destination
// proof, once both have one.
func exchangeProofs(t *testing.T, m *Mesh, a, b *Node) {
	t.Helper()
	var pa, pb node.SignedRecord
	have := func() bool {
		var err error
		if pa, err = a.OwnDestinationProof(); err != nil {
			return false
		}
		pb, err = b.OwnDestinationProof()
		return err == nil
	}
	if _, ok := m.RunUntil(have, 10*time.Second); !ok {
		t.Fatalf("no destination proofs\n%s", dump(m))
	}
	if err := a.LearnProofs([]node.SignedRecord{pb}); err != nil {
		t.Fatal(err)
	}
	if err := b.LearnProofs([]node.SignedRecord{pa}); err != nil {
		t.Fatal(err)
	}
}

// TestLevel2AcrossAreas: a node of area 1 reaches a node of area 3 through area 2, by the gateways'
// level-2 routers and the destinations' proofs; when its nearest gateway dies, traffic heals to the
// other gateway of its area.
func TestLevel2AcrossAreas(t *testing.T) {
	m := areaMesh(t, false)
	a1, c2 := m.Node("a1"), m.Node("c2")
	m.Run(2 * time.Second)
	if s := m.Node("ga1").Level2(); !s.Gateway || s.Nodes != 6 || len(s.Neighbours) != 2 {
		t.Errorf("ga1's level 2: %+v, want 6 gateways known and 2 neighbours (gb1, ga2)", s)
	}
	// Without c2's proof a1 has no way to it: the proof is what routes across areas.
	if ping(m, a1, c2, 99, time.Second) {
		t.Fatal("a1 reached c2 without its destination proof")
	}
	exchangeProofs(t, m, a1, c2)
	if !ping(m, a1, c2, 1, 10*time.Second) {
		t.Fatalf("no echo reply a1 -> c2 across three areas\n%s", dump(m))
	}
	for _, g := range []string{"ga1", "gb1", "gb3", "gc1"} {
		if s := m.Node(g).Status().Stats; s.Level2Forwarded == 0 {
			t.Errorf("gateway %s carried nothing at level 2: %+v", g, s)
		}
	}
	if s := m.Node("ga2").Status().Stats; s.Level2Forwarded != 0 {
		t.Errorf("ga2, the farther gateway, carried %d packets while ga1 was up", s.Level2Forwarded)
	}

	if err := m.Kill("ga1"); err != nil {
		t.Fatal(err)
	}
	start := m.Now()
	if !ping(m, a1, c2, 2, 20*time.Second) {
		t.Fatalf("no echo reply a1 -> c2 after ga1 died\n%s", dump(m))
	}
	t.Logf("healed around the dead gateway in %s", m.Now().Sub(start))
	if s := m.Node("ga2").Status().Stats; s.Level2Forwarded == 0 {
		t.Errorf("ga2 carried nothing after ga1 died: %+v", s)
	}
}

// TestLevel2AreaLiarAttractsNothing: a node next to area 1's gateway claims to be a gateway of area 3
// (it runs level 2 and says so to its neighbours); traffic from area 1 to area 3 still goes by the
// gateways the destination named, and nothing crosses the liar.
func TestLevel2AreaLiarAttractsNothing(t *testing.T) {
	m := areaMesh(t, true)
	a1, c2, x := m.Node("a1"), m.Node("c2"), m.Node("x")
	m.Run(2 * time.Second)
	if s := m.Node("ga1").Level2(); !slices.Contains(s.Neighbours, x.ID()) {
		t.Fatalf("the liar is not ga1's level-2 neighbour, so this tests nothing: %+v", s)
	}
	exchangeProofs(t, m, a1, c2)
	// The liar pushes its own proof (it is a gateway of "area 3" that only it is in) to ga1.
	if p, err := x.OwnDestinationProof(); err == nil {
		_ = a1.LearnProofs([]node.SignedRecord{p})
	}
	for seq := 1; seq <= 5; seq++ {
		if !ping(m, a1, c2, seq, 10*time.Second) {
			t.Fatalf("no echo reply a1 -> c2 (seq %d)\n%s", seq, dump(m))
		}
	}
	if s := x.Status().Stats; s.Forwarded != 0 || s.TransitIn != 0 || s.Level2Forwarded != 0 {
		t.Errorf("the liar carried traffic: %+v", s)
	}
	if s := m.Node("gc1").Status().Stats; s.Level2Forwarded == 0 {
		t.Errorf("gc1, the gateway c2 named, carried nothing: %+v", s)
	}
}

// TestLevel2GatewayOwnTraffic: a gateway talks to nodes of other areas itself, not only for its
// area: its own packets go encapsulated along its level-2 route by the destination's proof. ga1 (a
// gateway of area 1) reaches c2 (a plain node of area 3) and gc1 (area 3's gateway, two areas away);
// gb3 (a gateway of area 2) reaches a1 (a plain node of area 1); and a1 reaches gc1.
func TestLevel2GatewayOwnTraffic(t *testing.T) {
	m := areaMesh(t, false)
	m.Run(2 * time.Second)
	for i, p := range [][2]string{{"ga1", "c2"}, {"ga1", "gc1"}, {"gb3", "a1"}, {"a1", "gc1"}} {
		from, to := m.Node(p[0]), m.Node(p[1])
		// Without the destination's proof even a gateway has no way there.
		if ping(m, from, to, 100+i, 500*time.Millisecond) {
			t.Fatalf("%s reached %s without its destination proof", p[0], p[1])
		}
		exchangeProofs(t, m, from, to)
		before := from.Status().Stats.Level2Forwarded
		if !ping(m, from, to, i+1, 10*time.Second) {
			t.Fatalf("no echo reply %s -> %s\n%s", p[0], p[1], dump(m))
		}
		if from.Level2().Gateway && from.Status().Stats.Level2Forwarded == before {
			t.Errorf("gateway %s's echo did not go by level 2", p[0])
		}
	}
}

// TestLevel2GatewayFailoverBothWays is the netns failover test (internal/node,
// TestNetnsLevel2GatewayFailover) on the virtual clock: two areas joined by two pairs of gateways,
//
//	area 1:  a - g1a, a - g1b
//	borders: g1a - g2a, g1b - g2b
//	area 2:  g2a - b, g2b - b
//
// The gateway of area 1 that a's echoes cross dies; echoes sent every 20 ms must come back, both
// ways, within a second. The way back rests on the proof of a that b pushed to its gateway, which that
// gateway verifies again when level 2 changes: the proof arrived in a receive buffer that later
// datagrams overwrite (the mesh's sockets reuse their buffers, as a real reader does), so a gateway
// that kept a reference into that buffer instead of a copy lost the proof and the replies with it.
func TestLevel2GatewayFailoverBothWays(t *testing.T) {
	area := map[string]uint32{"a": 1, "g1a": 1, "g1b": 1, "g2a": 2, "g2b": 2, "b": 2}
	m, err := New(Config{Seed: 23, Options: func(name string, o *node.Options) {
		o.RoutingArea, o.RoutingGateway = area[name], name[0] == 'g'
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "g1a", "g1b", "g2a", "g2b", "b"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "g1a"}, {"a", "g1b"}, {"g1a", "g2a"}, {"g1b", "g2b"}, {"g2a", "b"}, {"g2b", "b"}} {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, b := m.Node("a"), m.Node("b")
	m.Run(2 * time.Second)
	exchangeProofs(t, m, a, b)
	for seq := 1; seq <= 3; seq++ {
		if !ping(m, a, b, seq, 10*time.Second) {
			t.Fatalf("no echo reply a -> b (seq %d)\n%s", seq, dump(m))
		}
	}
	carrier := ""
	for _, r := range a.Routes() {
		if r.Name == "b" {
			carrier = r.NextHop
		}
	}
	if carrier != "g1a" && carrier != "g1b" {
		t.Fatalf("a's route to b goes to %q, not to a gateway of area 1", carrier)
	}
	// Send one echo every 20 ms and note when each went; healed at the send time of the earliest
	// echo answered.
	if err := m.Kill(carrier); err != nil {
		t.Fatal(err)
	}
	failed := m.Now()
	sent := map[int]time.Time{}
	answered := func() (time.Duration, bool) {
		best, ok := time.Duration(0), false
		for _, p := range a.Delivered() {
			typ, e, isEcho := ParseEcho(p.Data)
			if at, mine := sent[e.Seq]; isEcho && mine && typ == ipv6.ICMPTypeEchoReply && e.ID == 0x77 {
				if d := at.Sub(failed); !ok || d < best {
					best, ok = d, true
				}
			}
		}
		return best, ok
	}
	for seq := 100; m.Now().Sub(failed) < 5*time.Second; seq++ {
		sent[seq] = m.Now()
		a.Inject(EchoRequest(a.Addr(), b.Addr(), 0x77, seq, []byte("failover")))
		m.Run(20 * time.Millisecond)
		if _, ok := answered(); ok {
			break
		}
	}
	m.Run(time.Second) // an echo sent earlier may be answered a little later
	healed, ok := answered()
	if !ok {
		t.Fatalf("no echo a -> b came back within 5 s of %s dying\n%s", carrier, dump(m))
	}
	t.Logf("healed %s after %s died (send time of the earliest echo answered)", healed, carrier)
	if healed > time.Second {
		t.Errorf("echoes came back %s after %s died, want at most 1 s", healed, carrier)
	}
}

// TestLevel2LostProofPushResent: a node pushes a destination proof it learnt to its nearest gateway
// until the gateway acknowledges it. The first push is lost on the wire; the gateway holds the proof
// about one retransmission timeout (250 ms) later, not at the next periodic push (60 s), and once it
// has acknowledged, the node pushes no more.
func TestLevel2LostProofPushResent(t *testing.T) {
	area := map[string]uint32{"a": 1, "ga": 1, "gb": 2, "b": 2}
	var a, ga *Node
	armed, dropped, pushes := false, 0, 0
	// A proof push is the only message from a to ga this large once the mesh has converged: the
	// proof's certificate and record, about 9 KB (records flood without certificates by then, about
	// 3.7 KB). It goes in piece frames (docs/transport.md): a push is the only run of 5 or more
	// full-sized datagrams from a to ga, and losing its 5th piece loses it.
	run := 0 // consecutive full-sized datagrams from a to ga
	isPush := func(from, to *Node, d []byte) bool {
		if from != a || to != ga {
			return false
		}
		if len(d) != a.LinkDatagram() {
			run = 0
			return false
		}
		run++
		return run == 5
	}
	m, err := New(Config{Seed: 24, Options: func(name string, o *node.Options) {
		o.RoutingArea, o.RoutingGateway = area[name], name[0] == 'g'
	}, Drop: func(from, to *Node, d []byte) bool {
		if !armed || !isPush(from, to, d) {
			return false
		}
		pushes++
		if dropped == 0 {
			dropped++
			return true
		}
		return false
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "ga", "gb", "b"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "ga"}, {"ga", "gb"}, {"gb", "b"}} {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, ga = m.Node("a"), m.Node("ga")
	m.Run(3 * time.Second)
	var pb node.SignedRecord
	if _, ok := m.RunUntil(func() bool {
		var err error
		pb, err = m.Node("b").OwnDestinationProof()
		return err == nil
	}, 10*time.Second); !ok {
		t.Fatalf("b has no destination proof\n%s", dump(m))
	}
	if n := ga.Level2().Proofs; n != 0 {
		t.Fatalf("ga holds %d proofs before a learnt any", n)
	}
	armed = true
	if err := a.LearnProofs([]node.SignedRecord{pb}); err != nil {
		t.Fatal(err)
	}
	took, ok := m.RunUntil(func() bool { return ga.Level2().Proofs == 1 }, 70*time.Second)
	if !ok {
		t.Fatalf("ga never got the proof\n%s", dump(m))
	}
	t.Logf("ga holds the proof %s after a learnt it (first push lost; %d pushes)", took, pushes)
	switch {
	case dropped != 1:
		t.Fatalf("no push was lost (%d pushes seen): this tests nothing", pushes)
	case took < 200*time.Millisecond:
		t.Fatalf("ga held the proof after %s, before any retransmission: the lost datagram was not the push", took)
	case took > 600*time.Millisecond:
		t.Errorf("ga held the proof %s after a learnt it, want about one retransmission timeout (250 ms)", took)
	}
	// Acknowledged: no more pushes until the periodic one.
	before := pushes
	m.Run(10 * time.Second)
	if pushes != before {
		t.Errorf("a pushed the acknowledged proof %d more times in 10 s", pushes-before)
	}
}
