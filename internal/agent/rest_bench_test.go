package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// BenchmarkControlPlaneAtRest measures what a quiet mesh costs its control plane: three enrolled
// nodes on 127.0.0.1 with the daemon's default agent intervals, linked in a line, left to settle for
// 30 s; then the requests every node sends to the control plane in the next minute are counted where
// they leave the node (client.Node.Requests). It reports requests per node per minute. It takes
// about 90 s of wall time for b.N = 1 (go test -run '^$' -bench ControlPlaneAtRest -benchtime 1x).
func BenchmarkControlPlaneAtRest(b *testing.B) {
	for range b.N {
		b.ReportMetric(controlPlaneAtRest(b), "requests/node/min")
	}
}

func controlPlaneAtRest(b *testing.B) float64 {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	_, url, admin := startControlPlane(b, ctx, "rest.test", nil)

	var clients []*client.Node
	var prev *node.Node
	var prevCert *meshca.Certificate
	for _, name := range []string{"a", "b", "c"} {
		tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: name})
		if err != nil {
			b.Fatal(err)
		}
		key, err := identity.GenerateNodeKey()
		if err != nil {
			b.Fatal(err)
		}
		bundle, err := client.Enroll(ctx, url, tok.Token, key, name, client.EnrollOptions{})
		if err != nil {
			b.Fatal(err)
		}
		opts := node.Options{Key: key, Cert: bundle.Certificate, CA: []*meshca.Certificate{bundle.CA}, CRL: bundle.CRL,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quiet, NoPunch: true}
		if prev != nil {
			opts.Peers = []node.Peer{{Addr: prev.UDPAddr(), Cert: prevCert}}
		}
		n, err := node.New(opts)
		if err != nil {
			b.Fatal(err)
		}
		go n.Run(ctx)
		cl, err := client.NewNode(url, key, bundle, client.NodeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		go Run(ctx, Config{Node: n, Client: cl, Records: &bundle.Records, Logger: quiet})
		clients = append(clients, cl)
		prev, prevCert = n, bundle.Certificate
	}
	b.ResetTimer()
	time.Sleep(30 * time.Second) // let enrolment, first reports and records settle
	var before uint64
	for _, c := range clients {
		before += c.Requests()
	}
	time.Sleep(time.Minute)
	var after uint64
	for _, c := range clients {
		after += c.Requests()
	}
	return float64(after-before) / float64(len(clients))
}
