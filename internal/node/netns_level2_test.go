package node

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/netnstest"
)

// TestNetnsLevel2GatewayFailover: two routing areas joined by two pairs of gateways, each node in its
// own network namespace, every link a veth pair and every packet real UDP between namespaces:
//
//	area 1:  a - g1a, a - g1b
//	borders: g1a - g2a, g1b - g2b
//	area 2:  g2a - b, g2b - b
//
// a pings b across the areas by level 2 (the nodes hold each other's destination proofs, handed over
// as a directory would). Then the gateway of area 1 that carries the traffic fails (its veths go down
// at once, then it stops: to its neighbours, a crash), and the test measures how long a's pings to b
// take to come back through the other gateway.
//
// The nodes run in this process: each is created on a thread inside its namespace, so that its UDP
// socket is bound there, and driven by its own Run.
func TestNetnsLevel2GatewayFailover(t *testing.T) {
	requireRoot(t)
	tag := netnstest.Tag("x6l2")
	names := []string{"a", "g1a", "g1b", "g2a", "g2b", "b"}
	area := map[string]uint32{"a": 1, "g1a": 1, "g1b": 1, "g2a": 2, "g2b": 2, "b": 2}
	links := [][2]string{{"a", "g1a"}, {"a", "g1b"}, {"g1a", "g2a"}, {"g1b", "g2b"}, {"g2a", "b"}, {"g2b", "b"}}

	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "level2.test", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		netnstest.Namespace(t, tag+name)
	}
	underlay := map[string]netip.Addr{} // the dialling end's view of its peer, per link
	veths := map[string][]string{}      // namespace -> its veths
	for k, l := range links {
		va, vb := fmt.Sprintf("v%da", k), fmt.Sprintf("v%db", k)
		netnstest.Veth(t, tag+l[0], va, tag+l[1], vb)
		for _, side := range []struct{ ns, dev, addr string }{{l[0], va, fmt.Sprintf("10.98.%d.1/30", k)}, {l[1], vb, fmt.Sprintf("10.98.%d.2/30", k)}} {
			netnstest.IP(t, "-n", tag+side.ns, "addr", "add", side.addr, "dev", side.dev)
			netnstest.IP(t, "-n", tag+side.ns, "link", "set", side.dev, "up")
			veths[side.ns] = append(veths[side.ns], side.dev)
		}
		underlay[l[0]+"-"+l[1]] = netip.MustParseAddr(fmt.Sprintf("10.98.%d.1", k))
	}

	allowAll := firewall.Config{Inbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
		Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}}}
	nodes := map[string]*Node{}
	certs := map[string]*meshca.Certificate{}
	stop := map[string]context.CancelFunc{}
	done := map[string]chan struct{}{}
	for _, name := range names {
		key, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(meshca.IssueRequest{Name: name, PublicKey: key.Public(), Duration: 50 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = cert
		opts := Options{Key: key, Cert: cert, CA: []*meshca.Certificate{ca.Certificate()}, Listen: netip.MustParseAddrPort("0.0.0.0:7946"),
			Firewall: allowAll, NoPunch: true, RoutingArea: area[name], RoutingGateway: name[0] == 'g',
			Logger: slog.New(slog.DiscardHandler)}
		// The later end of each link dials the earlier one, as the process lab does.
		for _, l := range links {
			if l[1] == name {
				opts.Peers = append(opts.Peers, Peer{Addr: netip.AddrPortFrom(underlay[l[0]+"-"+l[1]], 7946), Cert: certs[l[0]]})
			}
		}
		var n *Node
		netnstest.In(t, tag+name, func() { n, err = New(opts) })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nodes[name], stop[name], done[name] = n, cancel, make(chan struct{})
		go func(ch chan struct{}) { defer close(ch); n.Run(ctx) }(done[name])
	}
	t.Cleanup(func() {
		for name, cancel := range stop {
			cancel()
			<-done[name]
		}
	})

	waitUntil := func(within time.Duration, what string, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > within {
				for _, name := range names {
					t.Logf("%s: %+v %+v\n  routes %+v", name, nodes[name].Level2(), nodes[name].Status().Stats, nodes[name].Routes())
				}
				t.Fatalf("not within %s: %s", within, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	// Level 2 is up when every gateway holds the four gateways' level-2 records.
	conv := waitUntil(30*time.Second, "level 2 converges", func() bool {
		for _, g := range []string{"g1a", "g1b", "g2a", "g2b"} {
			if nodes[g].Level2().Nodes != 4 {
				return false
			}
		}
		return true
	})
	t.Logf("level 2 converged %s after the links came up", conv.Round(time.Millisecond))

	// The directory's part: a and b learn each other's destination proof.
	var pa, pb SignedRecord
	waitUntil(10*time.Second, "a and b have destination proofs", func() bool {
		var ea, eb error
		pa, ea = nodes["a"].OwnDestinationProof()
		pb, eb = nodes["b"].OwnDestinationProof()
		return ea == nil && eb == nil
	})
	if err := nodes["a"].LearnProofs([]SignedRecord{pb}); err != nil {
		t.Fatal(err)
	}
	if err := nodes["b"].LearnProofs([]SignedRecord{pa}); err != nil {
		t.Fatal(err)
	}
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := nodes["a"].Ping(ctx, certs["b"].Overlay)
		return err
	}
	waitUntil(20*time.Second, "a pings b across the areas", func() bool { return ping(time.Second) == nil })
	for range 5 {
		if err := ping(time.Second); err != nil {
			t.Fatalf("ping a -> b across the areas: %v", err)
		}
	}

	// The gateway of area 1 that a sends its pings to fails.
	nextHop := func() string {
		for _, r := range nodes["a"].Routes() {
			if r.Name == "b" {
				return r.NextHop
			}
		}
		return ""
	}
	carrier, other := nextHop(), ""
	switch carrier {
	case "g1a":
		other = "g1b"
	case "g1b":
		other = "g1a"
	default:
		t.Fatalf("a's route to b goes to %q, not to a gateway of area 1", carrier)
	}
	if nodes[carrier].Status().Stats.Level2Forwarded == 0 {
		t.Fatalf("%s, a's way to b, carried nothing by level 2", carrier)
	}
	before := nodes[other].Status().Stats.Level2Forwarded
	failed := time.Now()
	for _, dev := range veths[carrier] {
		netnstest.IP(t, "-n", tag+carrier, "link", "set", dev, "down")
	}
	stop[carrier]()
	<-done[carrier]
	// A ping every 20 ms, each waiting up to a second for its answer; healed at the send time of the
	// earliest ping answered.
	pctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	answered := make(chan time.Duration, 2000)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			sent := time.Now()
			go func() {
				ctx, cancel := context.WithTimeout(pctx, time.Second)
				defer cancel()
				if _, err := nodes["a"].Ping(ctx, certs["b"].Overlay); err == nil {
					answered <- sent.Sub(failed)
				}
			}()
		}
	}()
	// Apart from the echoes: when a's own route to b moved to the other gateway (the way there; the
	// way back is b's gateways' level 2).
	rerouted := make(chan time.Duration, 1)
	go func() {
		for pctx.Err() == nil {
			if nextHop() == other {
				rerouted <- time.Since(failed)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var healed time.Duration
	select {
	case healed = <-answered:
	case <-pctx.Done():
		t.Fatalf("a's pings to b did not come back within 20 s of %s failing", carrier)
	}
	// A ping sent earlier may be answered a little later: take the earliest of the first second.
	for end := time.After(time.Second); ; {
		select {
		case d := <-answered:
			healed = min(healed, d)
			continue
		case <-end:
		}
		break
	}
	cancel()
	var moved string
	select {
	case d := <-rerouted:
		moved = d.Round(time.Millisecond).String()
	default:
		moved = "not yet"
	}
	t.Logf("healed to %s %s after %s failed (first echo answered; a's route moved after %s)", other, healed.Round(time.Millisecond), carrier, moved)
	if nh := nextHop(); nh != other {
		t.Errorf("a's route to b goes to %q after %s failed, want %s", nh, carrier, other)
	}
	if after := nodes[other].Status().Stats.Level2Forwarded; after == before {
		t.Errorf("%s carried nothing after %s failed", other, carrier)
	}
	for range 5 {
		if err := ping(time.Second); err != nil {
			t.Fatalf("ping a -> b after the failover: %v", err)
		}
	}
}
