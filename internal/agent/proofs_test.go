package agent

import (
	"context"
	"testing"
	"time"

	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/node"
)

// TestProofsFromControlPlane: nodes of two routing areas, joined by a gateway each, reach each other
// with the destination proofs the control plane hands out, and nothing else: each node's agent
// reports the node's own proof, and long-polls the proofs of the other area's nodes, which the node
// verifies and routes by. a1 (area 1) pings b2 (area 2) through g1 and g2, and the gateway g1 pings b2
// itself.
//
//	a1 - g1 | g2 - b2
func TestProofsFromControlPlane(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv, url, admin := startControlPlane(t, ctx, "proofs.test", nil)

	nodes := map[string]*node.Node{}
	bundles := map[string]*client.Bundle{}
	start := func(name string, area uint32, gateway bool, peers ...string) {
		t.Helper()
		n, b := startJoined(t, ctx, admin, url, name, 200*time.Millisecond, func(o *node.Options) {
			o.NoPunch = true // the nodes of the two areas must not link up on 127.0.0.1 by themselves
			o.Firewall = firewall.Config{Inbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
				Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}}}
			o.RoutingArea, o.RoutingGateway = area, gateway
			for _, p := range peers {
				o.Peers = append(o.Peers, node.Peer{Addr: nodes[p].UDPAddr(), Cert: bundles[p].Certificate})
			}
		})
		nodes[name], bundles[name] = n, b
	}
	start("a1", 1, false)
	start("g1", 1, true, "a1")
	start("g2", 2, true, "g1")
	start("b2", 2, false, "g2")

	waitFor(t, 30*time.Second, "the control plane holds a proof of every node", func() bool {
		rows, err := srv.Store().ListSigned(ctx, store.Proofs, store.AreaFilter{}, 0, 1<<62, time.Now(), 0)
		return err == nil && len(rows) == 4
	})
	waitFor(t, 30*time.Second, "a1 and b2 hold each other's proofs (and the gateways theirs)", func() bool {
		return nodes["a1"].Level2().Proofs >= 2 && nodes["b2"].Level2().Proofs >= 2
	})
	if raceEnabled {
		// Under the race detector the links flap on a loaded machine (seen: ten link handshakes on
		// one link in 40 s), and a route across both areas rarely holds: the proofs' way through the
		// control plane is what this run checks.
		t.Skip("the proofs reached every node; pings across the areas are not checked under the race detector")
	}
	ping := func(from, to string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := nodes[from].Ping(pctx, bundles[to].Certificate.Overlay)
		return err
	}
	defer func() {
		if t.Failed() {
			for _, name := range []string{"a1", "g1", "g2", "b2"} {
				t.Logf("%s: level 2 %+v\n  stats %+v\n  routes %+v", name, nodes[name].Level2(), nodes[name].Status().Stats, nodes[name].Routes())
			}
		}
	}()
	waitFor(t, 20*time.Second, "a1 pings b2 across the areas", func() bool { return ping("a1", "b2") == nil })
	if s := nodes["g1"].Status().Stats; s.Level2Forwarded == 0 {
		t.Errorf("g1 carried nothing by level 2: %+v", s)
	}
	for _, name := range []string{"a1", "b2"} {
		for _, p := range nodes[name].Peers() {
			if p.Overlay == bundles["a1"].Certificate.Overlay || p.Overlay == bundles["b2"].Certificate.Overlay {
				t.Fatalf("%s has a link to %s: the ping did not need level 2", name, p.Name)
			}
		}
	}
	waitFor(t, 20*time.Second, "the gateway g1 pings b2 itself", func() bool { return ping("g1", "b2") == nil })
}
