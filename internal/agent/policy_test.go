package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/policy"
)

// TestPolicyFromControlPlane: an admin sets the access policy on a control plane on 127.0.0.1; the
// agents of alpha (ops) and bravo (web) long-poll it and apply it at once, without a restart, and
// charlie (web), whose agent never runs, gets it from bravo over the mesh. The first version lets
// ops ping web; the second takes that away.
func TestPolicyFromControlPlane(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	_, url, admin := startControlPlane(t, ctx, "agent.test", nil)

	allowAll := firewall.Config{
		Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
		Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
	}
	nodes := map[string]*node.Node{}
	certs := map[string]*meshca.Certificate{}
	for _, nd := range []struct{ name, group, dials string }{{"alpha", "ops", ""}, {"bravo", "web", "alpha"}, {"charlie", "web", "bravo"}} {
		tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: nd.name, Groups: []string{nd.group}})
		if err != nil {
			t.Fatal(err)
		}
		key, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.Enroll(ctx, url, tok.Token, key, nd.name, client.EnrollOptions{})
		if err != nil {
			t.Fatalf("enroll %s: %v", nd.name, err)
		}
		opts := node.Options{Key: key, Cert: b.Certificate, CA: []*meshca.Certificate{b.CA}, CRL: b.CRL,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quiet, Firewall: allowAll,
			PolicyFile: filepath.Join(t.TempDir(), "policy.pem")}
		if nd.dials != "" {
			opts.Peers = []node.Peer{{Addr: nodes[nd.dials].UDPAddr(), Cert: certs[nd.dials]}}
		}
		n, err := node.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go n.Run(ctx)
		nodes[nd.name], certs[nd.name] = n, b.Certificate
		if nd.name == "charlie" {
			continue // its control plane is "down": it has only the mesh
		}
		cl, err := client.NewNode(url, key, b, client.NodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		go Run(ctx, Config{Node: n, Client: cl, ReportInterval: time.Second, CRLWait: 5 * time.Second, Logger: quiet})
	}
	ping := func(from, to string) bool {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := nodes[from].Ping(pctx, certs[to].Overlay)
		return err == nil
	}
	version := func(name string) uint64 {
		if p := nodes[name].Policy(); p != nil {
			return p.Version
		}
		return 0
	}
	everywhere := func(v uint64) func() bool {
		return func() bool { return version("alpha") == v && version("bravo") == v && version("charlie") == v }
	}
	waitFor(t, 15*time.Second, "alpha pings charlie with no policy", func() bool { return ping("alpha", "charlie") })

	grant := func(ports ...string) *policy.Source {
		return &policy.Source{Grants: []policy.GrantSource{{Src: []string{"group:ops"}, Dst: []string{"group:web"}, Ports: ports}}}
	}
	set := time.Now()
	if doc, err := admin.SetPolicy(ctx, grant("icmp", "tcp:22")); err != nil || doc.Version != 1 {
		t.Fatalf("set version 1: %+v %v", doc, err)
	}
	waitFor(t, 10*time.Second, "every node applies version 1", everywhere(1))
	t.Logf("version 1 applied on every node %s after it was set", time.Since(set).Round(time.Millisecond))
	// Asked again until it answers: on a loaded machine one ping may time out (the negative
	// checks below cannot be fooled that way: a refused ping never answers).
	waitFor(t, 15*time.Second, "version 1 lets ops ping web", func() bool { return ping("alpha", "bravo") && ping("alpha", "charlie") })
	if ping("bravo", "alpha") {
		t.Fatal("version 1 grants web nothing towards ops")
	}

	if doc, err := admin.SetPolicy(ctx, grant("tcp:22")); err != nil || doc.Version != 2 {
		t.Fatalf("set version 2: %+v %v", doc, err)
	}
	waitFor(t, 10*time.Second, "every node applies version 2", everywhere(2))
	if ping("alpha", "bravo") || ping("alpha", "charlie") {
		t.Fatal("version 2 took ping away")
	}
}
