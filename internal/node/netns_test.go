package node

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/netnstest"
	"x0tta6bl4/internal/secfile"
)

// These tests build real multi-host meshes: one network namespace per node, veth pairs between
// neighbours, a kernel TUN device per node, and this test binary re-executed as the node. Traffic stays
// inside the namespaces the test creates (underlay 10.99.0.0/16 on the veths, overlay fd74::/16).

// requireRoot skips without root, except under CI, where a skip would hide that nothing ran.
func requireRoot(t *testing.T) {
	t.Helper()
	netnstest.Require(t, "netns test", "/dev/net/tun")
}

type lab struct {
	t        *testing.T
	discover bool   // nodes find each other by LAN discovery instead of static peers
	extra    string // appended to the configuration of every node started after it is set
	// wrap runs before the node binary inside its namespace (a command and its arguments), for
	// nodes started after it is set.
	wrap  []string
	dir   string
	tag   string // unique per run, in namespace names
	ca    *meshca.CA
	nodes []*labNode
	links [][2]int
}

type labNode struct {
	name   string
	ns     string
	cert   *meshca.Certificate
	socket string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

func newLab(t *testing.T, count int, links [][2]int) *lab {
	t.Helper()
	return newLabWith(t, count, links, false)
}

func newLabWith(t *testing.T, count int, links [][2]int, discover bool) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{t: t, dir: t.TempDir(), tag: netnstest.Tag("x6"), links: links, discover: discover}
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if l.ca, err = meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "netns.test", Name: "root", Duration: time.Hour}, now); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(l.dir, name)
		if err := secfile.Write(p, data, mode, false); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ca.crt", meshca.EncodeCertificatePEM(l.ca.Certificate()), 0o644)
	for i := range count {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("n%d", i+1)
		c, err := l.ca.Issue(meshca.IssueRequest{Name: name, Groups: []string{"lab"}, PublicKey: k.Public(), Duration: 50 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".key", identity.MarshalNodeKey(k), 0o600)
		write(name+".crt", meshca.EncodeCertificatePEM(c), 0o644)
		l.nodes = append(l.nodes, &labNode{name: name, ns: l.tag + name, cert: c, socket: filepath.Join(l.dir, name+".sock")})
	}
	for _, n := range l.nodes {
		netnstest.Namespace(t, n.ns)
	}
	for k, e := range links {
		a, b := l.nodes[e[0]], l.nodes[e[1]]
		va, vb := fmt.Sprintf("v%da", k), fmt.Sprintf("v%db", k)
		netnstest.Veth(t, a.ns, va, b.ns, vb)
		l.ip("-n", a.ns, "addr", "add", fmt.Sprintf("10.99.%d.1/30", k), "dev", va)
		l.ip("-n", b.ns, "addr", "add", fmt.Sprintf("10.99.%d.2/30", k), "dev", vb)
		l.ip("-n", a.ns, "link", "set", va, "up")
		l.ip("-n", b.ns, "link", "set", vb, "up")
	}
	// Registered after the namespaces, so it runs first: the nodes stop before their namespaces go.
	t.Cleanup(l.cleanup)
	for i := range l.nodes {
		l.startNode(i)
	}
	return l
}

// labFirewall lets members of group "lab" reach everything, both ways.
const labFirewall = `firewall:
  inbound:
    - {proto: any, port: any, group: lab}
  outbound:
    - {proto: any, port: any, group: lab}
`

func (l *lab) ip(args ...string) {
	l.t.Helper()
	netnstest.IP(l.t, args...)
}

// startNode writes node i's configuration (the higher-numbered end of each link dials the lower one)
// and starts it in its namespace.
func (l *lab) startNode(i int) {
	n := l.nodes[i]
	f := File{Key: n.name + ".key", Cert: n.name + ".crt", CA: []string{"ca.crt"}, Listen: "0.0.0.0:7946",
		AdminSocket: n.socket, Device: DeviceFile{Mode: "tun", Name: "x6"}, LogLevel: "debug"}
	for k, e := range l.links {
		switch {
		case l.discover && e[0] == i:
			f.Discovery = append(f.Discovery, fmt.Sprintf("v%da", k))
		case l.discover && e[1] == i:
			f.Discovery = append(f.Discovery, fmt.Sprintf("v%db", k))
		case e[1] == i:
			f.Peers = append(f.Peers, PeerFile{Address: fmt.Sprintf("10.99.%d.1:7946", k), Cert: l.nodes[e[0]].name + ".crt"})
		}
	}
	if l.discover {
		f.Listen = "[::]:7946"
	}
	data, err := yaml.Marshal(f)
	if err != nil {
		l.t.Fatal(err)
	}
	data = append(data, labFirewall...)
	data = append(data, l.extra...)
	config := filepath.Join(l.dir, n.name+".yaml")
	if err := os.WriteFile(config, data, 0o644); err != nil {
		l.t.Fatal(err)
	}
	n.cmd = l.inNS(n, []string{"X0TTA6BL4_TEST_NODE=" + config})
	logf, err := os.Create(filepath.Join(l.dir, n.name+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); logf.Close(); close(exited) }(n.cmd, n.exited)
}

// checkAlive fails the test at once if a node that should run has exited.
func (l *lab) checkAlive() {
	l.t.Helper()
	for _, n := range l.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.exited:
			l.t.Fatalf("node %s exited unexpectedly", n.name)
		default:
		}
	}
}

// inNS prepares this test binary to run in n's namespace with the given environment.
func (l *lab) inNS(n *labNode, env []string) *exec.Cmd {
	args := append(append([]string{"netns", "exec", n.ns}, l.wrap...), os.Args[0], "-test.run=^$")
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func (l *lab) kill(i int) {
	if c := l.nodes[i].cmd; c != nil {
		c.Process.Kill()
		<-l.nodes[i].exited
		l.nodes[i].cmd = nil
	}
}

func (l *lab) cleanup() {
	for i := range l.nodes {
		if c := l.nodes[i].cmd; c != nil && c.Process != nil {
			c.Process.Signal(os.Interrupt)
		}
	}
	for _, n := range l.nodes {
		if n.cmd != nil {
			select {
			case <-n.exited:
			case <-time.After(5 * time.Second):
				n.cmd.Process.Kill()
				<-n.exited
			}
		}
	}
	if l.t.Failed() || os.Getenv("X0TTA6BL4_TEST_LOGS") != "" {
		for _, n := range l.nodes {
			if b, err := os.ReadFile(filepath.Join(l.dir, n.name+".log")); err == nil {
				l.t.Logf("--- %s log (last 3000 bytes):\n%s", n.name, tail(b, 3000))
			}
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// dumpGraphs logs what each node's routing knows, to tell a flooding problem from a forwarding one.
func (l *lab) dumpGraphs() {
	for i, n := range l.nodes {
		if n.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var g struct {
			Nodes []struct {
				Name      string
				Seq       uint64
				Reachable bool
			}
			Links []struct{ Cost uint32 }
		}
		err := AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "graph"}, &g)
		var st Status
		AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "status"}, &st)
		cancel()
		l.t.Logf("%s graph (%v): nodes %+v, %d confirmed links; stats %+v", n.name, err, g.Nodes, len(g.Links), st.Stats)
	}
}

// waitLinks waits until every configured link is up at both ends.
func (l *lab) waitLinks(within time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		l.checkAlive()
		up := 0
		for i, n := range l.nodes {
			if n.cmd == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var peers []PeerStatus
			AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "peers"}, &peers)
			cancel()
			for _, p := range peers {
				if p.Up {
					up++
				}
			}
		}
		if up == 2*len(l.links) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Fatalf("not every link came up within %s", within)
	return 0
}

func (l *lab) status(i int) Status {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var s Status
	if err := AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "status"}, &s); err != nil {
		l.t.Fatalf("status of %s: %v", l.nodes[i].name, err)
	}
	return s
}

func (l *lab) routes(i int) []RouteStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var rs []RouteStatus
	if err := AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "routes"}, &rs); err != nil {
		return nil
	}
	return rs
}

func (l *lab) route(from, to int) (RouteStatus, bool) {
	for _, r := range l.routes(from) {
		if r.Name == l.nodes[to].name {
			return r, true
		}
	}
	return RouteStatus{}, false
}

// waitRoute polls until cond holds for from's route to to, and returns how long that took.
func (l *lab) waitRoute(from, to int, within time.Duration, cond func(RouteStatus) bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		l.checkAlive()
		if r, ok := l.route(from, to); ok && cond(r) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, _ := l.route(from, to)
	l.t.Errorf("%s -> %s: route condition not met within %s (route now %+v)", l.nodes[from].name, l.nodes[to].name, within, r)
	l.dumpGraphs()
	l.t.FailNow()
	return 0
}

// pingUntil pings until a reply comes or within runs out; the first packets to a new destination wait
// for its end-to-end handshake, whose retry interval (5 s) is longer than one ping's timeout.
func (l *lab) pingUntil(from, to int, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		l.checkAlive()
		rtt, err := l.ping(from, to)
		if err == nil || time.Since(start) > within {
			return rtt, err
		}
	}
}

func (l *lab) ping(from, to int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res []PingResult
	if err := AdminCall(ctx, l.nodes[from].socket, AdminRequest{Op: "ping", Target: l.nodes[to].name, Count: 1}, &res); err != nil {
		return 0, err
	}
	if res[0].Error != "" {
		return 0, fmt.Errorf("%s", res[0].Error)
	}
	return res[0].RTT, nil
}

// transfer sends size bytes over TCP from from's kernel stack to an echo server in to's namespace,
// through both nodes' TUN devices, and checks they come back intact.
func (l *lab) transfer(from, to, size int) string {
	l.t.Helper()
	addr := netip.AddrPortFrom(l.nodes[to].cert.Overlay, 5001).String()
	srv := l.inNS(l.nodes[to], []string{"X0TTA6BL4_TEST_TCP_SERVER=" + addr})
	if err := srv.Start(); err != nil {
		l.t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var out []byte
	var err error
	for range 20 { // the server needs a moment to listen
		cli := l.inNS(l.nodes[from], []string{"X0TTA6BL4_TEST_TCP_CLIENT=" + addr, fmt.Sprintf("X0TTA6BL4_TEST_TCP_BYTES=%d", size)})
		if out, err = cli.CombinedOutput(); err == nil {
			return strings.TrimSpace(string(out))
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.t.Fatalf("TCP transfer %s -> %s: %v: %s", l.nodes[from].name, l.nodes[to].name, err, out)
	return ""
}

func TestNetnsChain(t *testing.T) {
	// n1 - n2 - n3 - n4 - n5: n1 and n5 are four hops apart.
	l := newLab(t, 5, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}})
	t.Logf("all links up %s after the nodes started", l.waitLinks(30*time.Second))
	took := l.waitRoute(0, 4, 30*time.Second, func(r RouteStatus) bool { return r.Hops == 4 })
	t.Logf("n1 has a 4-hop route to n5 %s later", took)
	rtt, err := l.pingUntil(0, 4, 15*time.Second)
	if err != nil {
		t.Fatalf("ping n1 -> n5: %v", err)
	}
	t.Logf("ping n1 -> n5 over 4 hops: %s", rtt)
	t.Logf("TCP n1 -> n5 through the TUN devices: %s", l.transfer(0, 4, 4<<20))
	// The echo makes both ends send TCP bursts, and the relays carry them in pieces (burst.go).
	for _, i := range []int{0, 4} {
		s := l.status(i).Stats
		t.Logf("%s: bursts sent %d, delivered %d, lost %d, back-offs %d", l.nodes[i].name,
			s.BurstsSent, s.BurstsDelivered, s.BurstsLost, s.BurstBackoffs)
		if s.BurstsSent == 0 || s.BurstsDelivered == 0 {
			t.Errorf("%s sent or delivered no TCP burst whole", l.nodes[i].name)
		}
	}
	// Between neighbours, bursts travel in the link session.
	before := l.status(1).Stats.BurstsDelivered
	t.Logf("TCP n1 -> n2 (neighbours): %s", l.transfer(0, 1, 1<<20))
	if l.status(1).Stats.BurstsDelivered == before {
		t.Error("n2 received no TCP burst whole from its neighbour n1")
	}
}

// TestNetnsBurstLoss: with 1 % of the datagrams the relay receives dropped, a lost piece loses a whole
// burst; the destinations report it, the senders fall back to packets, and TCP still delivers every
// byte.
func TestNetnsBurstLoss(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs nftables (nft), and CI must run it")
		}
		t.Skip("needs nftables (nft)")
	}
	l := newLab(t, 3, [][2]int{{0, 1}, {1, 2}})
	l.waitLinks(30 * time.Second)
	l.waitRoute(0, 2, 15*time.Second, func(r RouteStatus) bool { return r.Hops == 2 })
	if _, err := l.pingUntil(0, 2, 15*time.Second); err != nil {
		t.Fatalf("ping n1 -> n3: %v", err)
	}
	// Over a veth, one UDP_SEGMENT send stays one packet into the next namespace; a real network
	// loses its datagrams one by one. One segment per packet on the veths makes the kernel cut sends
	// up before they cross.
	for k, e := range l.links {
		l.ip("-n", l.nodes[e[0]].ns, "link", "set", fmt.Sprintf("v%da", k), "gso_max_segs", "1")
		l.ip("-n", l.nodes[e[1]].ns, "link", "set", fmt.Sprintf("v%db", k), "gso_max_segs", "1")
	}
	relay := l.nodes[1].ns
	for _, rule := range [][]string{
		{"add", "table", "inet", "x6loss"},
		// On input, where each datagram is still on its own (on output one UDP_SEGMENT send is one
		// packet, and a drop there fails the whole send).
		{"add", "chain", "inet", "x6loss", "in", "{ type filter hook input priority 0; }"},
		{"add", "rule", "inet", "x6loss", "in", "udp", "dport", "7946", "numgen", "random", "mod", "100", "<", "1", "drop"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", relay, "nft"}, rule...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", rule, err, out)
		}
	}
	t.Logf("TCP n1 -> n3 with 1%% loss at the relay: %s", l.transfer(0, 2, 8<<20))
	var lost, backoffs uint64
	for _, i := range []int{0, 2} {
		s := l.status(i).Stats
		t.Logf("%s: bursts sent %d, delivered %d, lost %d, back-offs %d", l.nodes[i].name,
			s.BurstsSent, s.BurstsDelivered, s.BurstsLost, s.BurstBackoffs)
		lost += s.BurstsLost
		backoffs += s.BurstBackoffs
	}
	if lost == 0 || backoffs == 0 {
		t.Errorf("%d bursts lost and %d back-offs: the loss was not noticed", lost, backoffs)
	}
	// Between neighbours the report is a link frame.
	backoffs = l.status(0).Stats.BurstBackoffs
	t.Logf("TCP n1 -> n2 (neighbours) with 1%% loss at n2: %s", l.transfer(0, 1, 2<<20))
	s0, s1 := l.status(0).Stats, l.status(1).Stats
	t.Logf("n2: bursts delivered %d, lost %d; n1: back-offs %d", s1.BurstsDelivered, s1.BurstsLost, s0.BurstBackoffs)
	if s1.BurstsLost == 0 || s0.BurstBackoffs == backoffs {
		t.Error("a burst lost between neighbours was not reported to the sender")
	}
}

func TestNetnsRingHeals(t *testing.T) {
	// A ring of six: n1 and n4 are three hops apart either way round.
	l := newLab(t, 6, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 0}})
	l.waitLinks(30 * time.Second)
	l.waitRoute(0, 3, 30*time.Second, func(r RouteStatus) bool { return r.Hops == 3 })
	t.Logf("before: %s", l.transfer(0, 3, 1<<20))

	// Cut the link after n1's first hop on its current path to n4.
	r, _ := l.route(0, 3)
	var cut int // link index
	if r.NextHop == "n2" {
		cut = 1 // n2 - n3
	} else {
		cut = 4 // n5 - n6
	}
	e := l.links[cut]
	start := time.Now()
	l.ip("-n", l.nodes[e[0]].ns, "link", "set", fmt.Sprintf("v%da", cut), "down")
	took := l.waitRoute(0, 3, 15*time.Second, func(nr RouteStatus) bool { return nr.NextHop != r.NextHop })
	_, err := l.pingUntil(0, 3, 10*time.Second)
	t.Logf("link %s-%s cut: n1 rerouted to n4 in %s (ping ok: %v, %s after the cut)",
		l.nodes[e[0]].name, l.nodes[e[1]].name, took.Round(time.Millisecond), err == nil, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("ping after the cut: %v", err)
	}
	t.Logf("after cut: %s", l.transfer(0, 3, 1<<20))
	if took > 10*time.Second {
		t.Errorf("reroute after a cut link took %s", took)
	}

	// Restore the link, then kill the relay that is now n1's next hop.
	l.ip("-n", l.nodes[e[0]].ns, "link", "set", fmt.Sprintf("v%da", cut), "up")
	l.waitLinks(15 * time.Second) // the restored link comes back up
	time.Sleep(time.Second)       // and routes settle on it
	r, _ = l.route(0, 3)
	victim := 1
	if r.NextHop == "n6" {
		victim = 5
	}
	start = time.Now()
	l.kill(victim)
	took = l.waitRoute(0, 3, 15*time.Second, func(nr RouteStatus) bool { return nr.NextHop != l.nodes[victim].name })
	if _, err := l.pingUntil(0, 3, 10*time.Second); err != nil {
		t.Fatalf("ping after killing %s: %v", l.nodes[victim].name, err)
	}
	t.Logf("relay %s killed: n1 rerouted to n4 in %s (%s to a working ping)", l.nodes[victim].name,
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Logf("after kill: %s", l.transfer(0, 3, 1<<20))
	if took > 10*time.Second {
		t.Errorf("reroute after a node died took %s", took)
	}
}

func TestNetnsDiscovery(t *testing.T) {
	// n1 - n2 - n3 with no configured peers: every node finds its neighbours by link-local multicast.
	l := newLabWith(t, 3, [][2]int{{0, 1}, {1, 2}}, true)
	t.Logf("links found and up %s after start", l.waitLinks(30*time.Second))
	l.waitRoute(0, 2, 15*time.Second, func(r RouteStatus) bool { return r.Hops == 2 })
	if _, err := l.pingUntil(0, 2, 15*time.Second); err != nil {
		t.Fatalf("ping n1 -> n3 over discovered links: %v", err)
	}
	t.Logf("TCP n1 -> n3: %s", l.transfer(0, 2, 1<<20))
}
