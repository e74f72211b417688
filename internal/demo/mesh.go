package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// The demo topology: two paths from alpha to delta, three hops through bravo and charlie, four through
// echo, foxtrot and golf; hotel hangs off golf.
//
//	alpha ── bravo ── charlie ── delta
//	  │                            │
//	 echo ── foxtrot ──────── golf ── hotel
var topology = []struct {
	name   string
	device node.DeviceMode
	peers  []string // dialled by this node; each must appear earlier
}{
	{"alpha", node.DeviceNetstack, nil},
	{"bravo", node.DeviceNone, []string{"alpha"}},
	{"charlie", node.DeviceNone, []string{"bravo"}},
	{"delta", node.DeviceNetstack, []string{"charlie"}},
	{"echo", node.DeviceNone, []string{"alpha"}},
	{"foxtrot", node.DeviceNone, []string{"echo"}},
	{"golf", node.DeviceNone, []string{"foxtrot", "delta"}},
	{"hotel", node.DeviceNone, []string{"golf"}},
}

// The rules every demo node runs: anything from a node of this mesh, both ways.
var demoFirewall = firewall.Config{
	Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Group: "demo"}},
	Outbound: []firewall.Rule{{Proto: "any", Port: "any", Group: "demo"}},
}

type demoNode struct {
	cert   *meshca.Certificate
	node   *node.Node
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *demoNode) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

func mesh(e *env) error {
	w := e.stdout
	step := func(format string, a ...any) { fmt.Fprintf(w, "\n== "+format+"\n", a...) }
	ctx := e.ctx

	step("6. eight nodes get keys and certificates; each listens on its own UDP port on 127.0.0.1")
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		return err
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "demo.x0tta6bl4.mesh", Name: "demo-root", Duration: 2 * time.Hour}, e.now())
	if err != nil {
		return err
	}
	nodes := map[string]*demoNode{}
	defer func() {
		for _, d := range nodes {
			d.stop()
		}
	}()
	quiet := slog.New(slog.DiscardHandler)
	for _, spec := range topology {
		key, err := identity.GenerateNodeKey()
		if err != nil {
			return err
		}
		cert, err := ca.Issue(meshca.IssueRequest{Name: spec.name, Groups: []string{"demo"}, PublicKey: key.Public(), Duration: time.Hour}, e.now())
		if err != nil {
			return err
		}
		opts := node.Options{Key: key, Cert: cert, CA: []*meshca.Certificate{ca.Certificate()},
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Device: spec.device, Firewall: demoFirewall, Logger: quiet,
			// Every node can reach every other on 127.0.0.1: direct links would hide the multi-hop
			// routing and the healing the demo is about.
			NoPunch: true}
		for _, p := range spec.peers {
			opts.Peers = append(opts.Peers, node.Peer{Addr: nodes[p].node.UDPAddr(), Cert: nodes[p].cert})
		}
		n, err := node.New(opts)
		if err != nil {
			return err
		}
		runCtx, cancel := context.WithCancel(ctx)
		d := &demoNode{cert: cert, node: n, cancel: cancel, done: make(chan struct{})}
		go func() { n.Run(runCtx); close(d.done) }()
		nodes[spec.name] = d
		dials := "waits to be dialled"
		if len(spec.peers) > 0 {
			dials = "dials " + strings.Join(spec.peers, ", ")
		}
		fmt.Fprintf(w, "   %-8s %-39s udp %-16s %-8s %s\n", spec.name, cert.Overlay, n.UDPAddr(), spec.device, dials)
	}
	fmt.Fprintln(w, "   alpha ── bravo ── charlie ── delta\n     │                            │\n    echo ── foxtrot ──────── golf ── hotel")

	alpha, delta := nodes["alpha"].node, nodes["delta"].node
	step("7. links come up with the post-quantum handshake; signed link-state records flood; routes converge")
	start := time.Now()
	if err := waitFor(ctx, 20*time.Second, func() bool { return allReachable(nodes) }); err != nil {
		return fmt.Errorf("mesh did not converge: %w", err)
	}
	fmt.Fprintf(w, "   every node has a route to every other after %s\n", time.Since(start).Round(time.Millisecond))
	printRoute(w, alpha, "delta")
	printRoute(w, alpha, "hotel")

	step("8. round-trip time per hop along alpha → delta (ICMPv6 echo through the mesh, best of 5)")
	if err := hopRTTs(ctx, w, alpha, nodes, []string{"bravo", "charlie", "delta"}); err != nil {
		return err
	}

	step("9. a real HTTP request from alpha's userspace TCP/IP stack to delta's, end-to-end encrypted")
	srv, err := serveHTTP(delta)
	if err != nil {
		return err
	}
	defer srv.Close()
	client := httpClient(alpha)
	url := fmt.Sprintf("http://[%s]/", delta.Addr())
	body, took, err := get(ctx, client, url)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "   GET %s -> %q in %s\n", url, body, took.Round(time.Microsecond))
	relayed := func(name string) uint64 { return nodes[name].node.Status().Stats.Forwarded }
	fmt.Fprintf(w, "   bravo relayed %d and charlie %d packets they could not read\n", relayed("bravo"), relayed("charlie"))

	step("10. kill charlie, a relay on that path; the mesh notices and routes around it")
	killed := time.Now()
	nodes["charlie"].stop()
	delete(nodes, "charlie")
	if err := waitFor(ctx, 15*time.Second, func() bool { return !linkUp(nodes["bravo"].node, "charlie") }); err != nil {
		return fmt.Errorf("bravo did not notice: %w", err)
	}
	detected := time.Since(killed)
	if err := waitFor(ctx, 15*time.Second, func() bool { r, ok := route(alpha, "delta"); return ok && r.NextHop == "echo" }); err != nil {
		return fmt.Errorf("alpha did not reroute: %w", err)
	}
	rerouted := time.Since(killed)
	fmt.Fprintf(w, "   bravo declared its link to charlie down %s after the kill; alpha rerouted to delta after %s\n",
		detected.Round(time.Millisecond), rerouted.Round(time.Millisecond))
	printRoute(w, alpha, "delta")
	var served time.Duration
	for attempt := 0; ; attempt++ {
		body, took, err = get(ctx, client, url)
		if err == nil {
			served = time.Since(killed)
			break
		}
		if attempt == 20 {
			return fmt.Errorf("HTTP after reroute: %w", err)
		}
	}
	fmt.Fprintf(w, "   GET %s -> %q in %s; first success %s after the kill\n", url, body, took.Round(time.Microsecond), served.Round(time.Millisecond))
	if err := hopRTTs(ctx, w, alpha, nodes, []string{"echo", "foxtrot", "golf", "delta"}); err != nil {
		return err
	}
	fmt.Fprintf(w, "   echo relayed %d, foxtrot %d, golf %d packets\n", relayed("echo"), relayed("foxtrot"), relayed("golf"))
	return nil
}

func allReachable(nodes map[string]*demoNode) bool {
	for _, d := range nodes {
		if len(d.node.Routes()) != len(nodes)-1 {
			return false
		}
	}
	return true
}

func linkUp(n *node.Node, peer string) bool {
	for _, p := range n.Peers() {
		if p.Name == peer {
			return p.Up
		}
	}
	return false
}

func route(n *node.Node, to string) (node.RouteStatus, bool) {
	for _, r := range n.Routes() {
		if r.Name == to {
			return r, true
		}
	}
	return node.RouteStatus{}, false
}

func printRoute(w io.Writer, n *node.Node, to string) {
	r, ok := route(n, to)
	if !ok {
		fmt.Fprintf(w, "   %s has no route to %s\n", n.Certificate().Name, to)
		return
	}
	fmt.Fprintf(w, "   route %s → %s: next hop %s, %d hops, cost %d\n", n.Certificate().Name, to, r.NextHop, r.Hops, r.Cost)
}

func hopRTTs(ctx context.Context, w io.Writer, from *node.Node, nodes map[string]*demoNode, path []string) error {
	prev := time.Duration(0)
	for i, name := range path {
		best := time.Duration(-1)
		for range 5 {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			rtt, err := from.Ping(pctx, nodes[name].cert.Overlay)
			cancel()
			if err == nil && (best < 0 || rtt < best) {
				best = rtt
			}
		}
		if best < 0 {
			return fmt.Errorf("no echo reply from %s", name)
		}
		fmt.Fprintf(w, "   %d hop(s) to %-8s rtt %8s  (+%s for this hop)\n", i+1, name, best.Round(time.Microsecond), (best - prev).Round(time.Microsecond))
		prev = best
	}
	return nil
}

func serveHTTP(n *node.Node) (*http.Server, error) {
	ln, err := n.Device().Net.ListenTCPAddrPort(netip.AddrPortFrom(n.Addr(), 80))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s over the mesh", n.Certificate().Name)
		}),
	}
	go srv.Serve(ln)
	return srv, nil
}

func httpClient(n *node.Node) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					return nil, err
				}
				return n.Device().Net.DialContextTCPAddrPort(ctx, ap)
			},
		},
	}
}

func get(ctx context.Context, c *http.Client, url string) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", 0, err
	}
	return string(b), time.Since(start), nil
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + limit.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
