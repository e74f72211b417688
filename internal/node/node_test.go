package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// testMesh is a set of nodes in this process, on 127.0.0.1 UDP ports.
type testMesh struct {
	t     *testing.T
	ca    *meshca.CA
	nodes map[string]*Node
	keys  map[string]*identity.NodeKey
	certs map[string]*meshca.Certificate
	stop  map[string]context.CancelFunc
	done  map[string]chan struct{}
}

var allowAll = firewall.Config{
	Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
	Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
}

func newTestMesh(t *testing.T, names ...string) *testMesh {
	t.Helper()
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "test.mesh", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMesh{t: t, ca: ca, nodes: map[string]*Node{}, keys: map[string]*identity.NodeKey{},
		certs: map[string]*meshca.Certificate{}, stop: map[string]context.CancelFunc{}, done: map[string]chan struct{}{}}
	for _, name := range names {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.Issue(meshca.IssueRequest{Name: name, PublicKey: k.Public(), Duration: 30 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		m.keys[name], m.certs[name] = k, c
	}
	return m
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("X0TTA6BL4_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start starts node name with links to the given already-started peers.
func (m *testMesh) start(name string, device DeviceMode, peers ...string) *Node {
	m.t.Helper()
	return m.startWith(name, device, nil, peers...)
}

// startWith is start with a last change to the options.
func (m *testMesh) startWith(name string, device DeviceMode, mod func(*Options), peers ...string) *Node {
	m.t.Helper()
	opts := Options{Key: m.keys[name], Cert: m.certs[name], CA: []*meshca.Certificate{m.ca.Certificate()},
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Device: device, Firewall: allowAll, Logger: testLogger(m.t),
		ProbeInterval: 100 * time.Millisecond, DeadAfter: 400 * time.Millisecond, TickInterval: 20 * time.Millisecond}
	for _, p := range peers {
		opts.Peers = append(opts.Peers, Peer{Addr: m.nodes[p].UDPAddr(), Cert: m.certs[p]})
	}
	if mod != nil {
		mod(&opts)
	}
	n, err := New(opts)
	if err != nil {
		m.t.Fatalf("start %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	m.nodes[name], m.stop[name], m.done[name] = n, cancel, done
	m.t.Cleanup(func() { m.kill(name) })
	return n
}

func (m *testMesh) kill(name string) {
	if cancel, ok := m.stop[name]; ok {
		cancel()
		<-m.done[name]
		delete(m.stop, name)
	}
}

// waitRoute waits until from has a route to to with the given hop count (0: any).
func (m *testMesh) waitRoute(from, to string, hops int, within time.Duration) time.Duration {
	m.t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		for _, r := range m.nodes[from].Routes() {
			if r.Name == to && (hops == 0 || r.Hops == hops) {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.t.Fatalf("%s has no %d-hop route to %s after %s; routes: %+v", from, hops, to, within, m.nodes[from].Routes())
	return 0
}

// pingUntil retries ping until it succeeds or within passes: the first packets to a node wait for its
// end-to-end handshake, which a responder without a route back yet answers only on the retry (5 s).
func (m *testMesh) pingUntil(from, to string, within time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(within)
	for {
		rtt, err := m.ping(from, to)
		if err == nil || time.Now().After(deadline) {
			return rtt, err
		}
	}
}

func (m *testMesh) ping(from, to string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return m.nodes[from].Ping(ctx, m.certs[to].Overlay)
}

func TestLineMeshPing(t *testing.T) {
	m := newTestMesh(t, "a", "b", "c", "d")
	m.start("a", DeviceNone)
	m.start("b", DeviceNone, "a")
	m.start("c", DeviceNone, "b")
	m.start("d", DeviceNone, "c")
	took := m.waitRoute("a", "d", 3, 10*time.Second)
	t.Logf("a learned a 3-hop route to d in %s", took)
	rtt, err := m.pingUntil("a", "d", 15*time.Second)
	if err != nil {
		t.Fatalf("ping a -> d: %v\n%s", err, m.dump())
	}
	t.Logf("ping a -> d over 3 hops: %s", rtt)
	if s := m.nodes["b"].Status().Stats; s.Forwarded == 0 {
		t.Errorf("relay b forwarded nothing: %+v", s)
	}
}

func (m *testMesh) dump() string {
	var s string
	for name, n := range m.nodes {
		s += fmt.Sprintf("%s: %+v\n  routes %+v\n", name, n.Status().Stats, n.Routes())
	}
	return s
}

func TestRerouteAroundDeadRelay(t *testing.T) {
	// a - b - c - d and a - e - f - g - d: the short path through b, c; the long one through e, f, g.
	m := newTestMesh(t, "a", "b", "c", "d", "e", "f", "g")
	m.start("a", DeviceNone)
	m.start("b", DeviceNone, "a")
	m.start("c", DeviceNone, "b")
	m.start("d", DeviceNone, "c")
	m.start("e", DeviceNone, "a")
	m.start("f", DeviceNone, "e")
	m.start("g", DeviceNone, "f", "d")
	m.waitRoute("a", "d", 3, 10*time.Second)
	if _, err := m.pingUntil("a", "d", 15*time.Second); err != nil {
		t.Fatalf("ping before failure: %v", err)
	}
	killed := time.Now()
	m.kill("b")
	took := m.waitRoute("a", "d", 4, 10*time.Second)
	var rtt time.Duration
	var err error
	for range 20 {
		if rtt, err = m.ping("a", "d"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("ping after reroute: %v\n%s", err, m.dump())
	}
	t.Logf("relay b killed: a rerouted to d over 4 hops in %s (ping works %s after the kill, rtt %s)",
		took, time.Since(killed).Round(time.Millisecond), rtt)
	if took > 5*time.Second {
		t.Errorf("reroute took %s", took)
	}
}

func TestRevokedNodeDropsOut(t *testing.T) {
	m := newTestMesh(t, "a", "b", "c")
	m.start("a", DeviceNone)
	m.start("b", DeviceNone, "a")
	m.start("c", DeviceNone, "b")
	m.waitRoute("a", "c", 2, 10*time.Second)
	crl, err := m.ca.SignRevocationList(nil, []meshca.Serial{m.certs["c"].Serial}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Only a learns of the list; it must spread over the mesh to b, which then drops c.
	if changed, err := m.nodes["a"].UpdateCRL(crl); err != nil || !changed {
		t.Fatalf("UpdateCRL: %v %v", changed, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		peers := m.nodes["b"].Peers()
		gone := true
		for _, p := range peers {
			if p.Name == "c" {
				gone = false
			}
		}
		if gone {
			if _, err := m.ping("a", "c"); err == nil {
				t.Fatal("a can still reach revoked c")
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("b still has revoked c as a peer: %+v", m.nodes["b"].Peers())
}

func TestFirewallReload(t *testing.T) {
	m := newTestMesh(t, "a", "b")
	m.start("a", DeviceNone)
	m.start("b", DeviceNone, "a")
	m.waitRoute("a", "b", 1, 10*time.Second)
	if _, err := m.pingUntil("a", "b", 15*time.Second); err != nil {
		t.Fatalf("ping with allow-all rules: %v", err)
	}
	tcpOnly := firewall.Config{
		Inbound:  []firewall.Rule{{Proto: "tcp", Port: "22", Any: true}},
		Outbound: allowAll.Outbound,
	}
	if err := m.nodes["b"].ReloadFirewall(tcpOnly); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ping("a", "b"); err == nil {
		t.Fatal("ping passed after b's rules stopped allowing ICMPv6")
	}
	if s := m.nodes["b"].Status().Stats; s.DropFirewall == 0 {
		t.Errorf("b counted no firewall drop: %+v", s)
	}
	if err := m.nodes["b"].ReloadFirewall(firewall.Config{Inbound: []firewall.Rule{{Proto: "tcp", Port: "99999", Any: true}}}); err == nil {
		t.Fatal("invalid rules accepted")
	}
	if err := m.nodes["b"].ReloadFirewall(allowAll); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ping("a", "b"); err != nil {
		t.Fatalf("ping after restoring the rules: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	m := newTestMesh(t, "a", "b")
	a := m.startWith("a", DeviceNone, func(o *Options) { o.MetricsListen = "127.0.0.1:0" })
	m.start("b", DeviceNone, "a")
	m.waitRoute("a", "b", 1, 10*time.Second)
	if _, err := m.pingUntil("a", "b", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{
		`x0tta6bl4_link_up{peer="b"} 1`,
		`x0tta6bl4_link_rtt_seconds{peer="b"}`,
		`x0tta6bl4_link_loss_ratio{peer="b"}`,
		`x0tta6bl4_node_ip_packets_total{event="sent"} 1`,
		`x0tta6bl4_node_drops_total{reason="spoofed"} 0`,
		`x0tta6bl4_node_mesh_nodes{state="reachable"}`,
		`x0tta6bl4_node_route_changes_total`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
