package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/control"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// TestRecordsFromControlPlane: a node with no link and no configured peer learns, from the control
// plane alone, the signed records that its mesh's nodes reported: those of the nodes up when it
// enrols from its enrolment answer and the first long poll, and a node that comes up later through
// the long poll. Each record is one a real node's router signed, and the learning node's router
// verifies each as it would a flooded one.
func TestRecordsFromControlPlane(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	srv, url, admin := startControlPlane(t, ctx, "records.test", nil)

	nodes := map[string]*node.Node{}
	certs := map[string]*meshca.Certificate{}
	// start enrols a node, starts it (dialling the named peers, if any) and its agent.
	start := func(name string, peers ...string) *client.Bundle {
		t.Helper()
		n, b := startJoined(t, ctx, admin, url, name, 200*time.Millisecond, func(opts *node.Options) {
			// Punching off: every node here can reach every other on 127.0.0.1, and the test is
			// about what reaches a node through the control plane, not through links it would then make.
			opts.NoPunch = true
			for _, p := range peers {
				opts.Peers = append(opts.Peers, node.Peer{Addr: nodes[p].UDPAddr(), Cert: certs[p]})
			}
		})
		nodes[name], certs[name] = n, b.Certificate
		return b
	}
	// knows reports whether n holds a record (from its originator's router) of every named node.
	knows := func(n *node.Node, names ...string) bool {
		held := map[string]bool{}
		for _, gn := range n.Graph().Nodes {
			if gn.Seq > 0 && !gn.Self {
				held[gn.Name] = true
			}
		}
		for _, name := range names {
			if !held[name] {
				return false
			}
		}
		return true
	}

	start("alpha")
	start("bravo", "alpha")
	waitFor(t, 15*time.Second, "alpha and bravo know each other's records over their link", func() bool {
		return knows(nodes["alpha"], "bravo") && knows(nodes["bravo"], "alpha")
	})
	waitFor(t, 15*time.Second, "the control plane hands out alpha's and bravo's records", func() bool {
		st, err := admin.MeshStatus(ctx)
		return err == nil && st.Counts.Online == 2 && len(recordsOf(t, srv, "alpha", "bravo")) == 2
	})

	// Charlie has no link and no peer: what it knows of the others comes from the control plane.
	cb := start("charlie")
	if got := len(cb.Records.Records); got != 2 {
		t.Fatalf("charlie's enrolment answer carries %d records, want alpha's and bravo's", got)
	}
	waitFor(t, 15*time.Second, "charlie holds alpha's and bravo's records", func() bool { return knows(nodes["charlie"], "alpha", "bravo") })
	if len(nodes["charlie"].Peers()) != 0 {
		t.Fatal("charlie has a link; this test wants it to know the others from the control plane only")
	}

	// A node that comes up later reaches charlie through its long poll.
	start("delta", "bravo")
	waitFor(t, 15*time.Second, "charlie learns delta's record from its long poll", func() bool { return knows(nodes["charlie"], "delta") })
}

// startJoined enrols a fresh key as name with a new join token, then runs the node on 127.0.0.1
// (its options changed by mod, if any) and its agent, reporting every report.
func startJoined(t *testing.T, ctx context.Context, admin *client.API, url, name string, report time.Duration, mod func(*node.Options)) (*node.Node, *client.Bundle) {
	t.Helper()
	tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: name})
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Enroll(ctx, url, tok.Token, key, name, client.EnrollOptions{})
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	quiet := slog.New(slog.DiscardHandler)
	opts := node.Options{Key: key, Cert: b.Certificate, CA: []*meshca.Certificate{b.CA}, CRL: b.CRL,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quiet}
	if mod != nil {
		mod(&opts)
	}
	n, err := node.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(ctx)
	cl, err := client.NewNode(url, key, b, client.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	go Run(ctx, Config{Node: n, Client: cl, Records: &b.Records, ReportInterval: report, CRLWait: 20 * time.Second, Logger: quiet})
	return n, b
}

// recordsOf returns the named nodes' records as the control plane hands them to a node that is
// none of them.
func recordsOf(t *testing.T, srv *control.Server, names ...string) []string {
	t.Helper()
	recs, err := srv.Store().ListRecords(t.Context(), 0, 1<<62, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		for _, n := range names {
			if r.NodeName == n {
				out = append(out, n)
			}
		}
	}
	return out
}

// TestJoinedNodesWithoutPeersMeet: nodes that all joined through the control plane, none with a
// configured peer, find each other. A router signs no record before its first neighbour, so such
// nodes used to report none and stay alone (seen with the real binary on 127.0.0.1: no peer after
// 20 s); the agent now has the node announce itself, and the others dial it from its record.
func TestJoinedNodesWithoutPeersMeet(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, url, admin := startControlPlane(t, ctx, "meet.test", nil)
	var nodes []*node.Node
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		n, _ := startJoined(t, ctx, admin, url, name, 10*time.Second, nil)
		nodes = append(nodes, n)
	}
	up := func(n *node.Node) int {
		k := 0
		for _, p := range n.Peers() {
			if p.Up {
				k++
			}
		}
		return k
	}
	waitFor(t, 20*time.Second, "every node has a link up to both others", func() bool {
		return up(nodes[0]) == 2 && up(nodes[1]) == 2 && up(nodes[2]) == 2
	})
}
