package node

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
)

// The whole-mesh behaviour of nodes (routing, rerouting, revocation, firewall reloads, bursts,
// self-healing) is tested on the harness in internal/meshtest; the tests here reach into one node.

var allowAll = firewall.Config{
	Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
	Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("X0TTA6BL4_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestMetrics: the Prometheus endpoint shows links, packets, drops and routing.
func TestMetrics(t *testing.T) {
	w, nodes, devs := memChain(t, 2)
	a, b := nodes[0], nodes[1]
	pkt := make([]byte, 100)
	udpPacket(pkt, a.Addr(), b.Addr())
	a.sendPacket(w.Now(), pkt)
	if _, ok := w.RunUntil(func() bool { return devs[1].delivered() > 0 }, time.Second); !ok {
		t.Fatal("nothing delivered a -> b")
	}
	w.Run(2 * time.Second) // link measurements
	rec := httptest.NewRecorder()
	a.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b2, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b2)
	for _, want := range []string{
		`x0tta6bl4_link_up{peer="b"} 1`,
		`x0tta6bl4_link_rtt_seconds{peer="b"}`,
		`x0tta6bl4_link_loss_ratio{peer="b"}`,
		`x0tta6bl4_node_ip_packets_total{event="sent"} 1`,
		`x0tta6bl4_node_drops_total{reason="spoofed"} 0`,
		`x0tta6bl4_node_mesh_nodes{state="reachable"}`,
		`x0tta6bl4_node_route_changes_total`,
		`process_resident_memory_bytes`,
		`x0tta6bl4_link_bytes_total{direction="tx",peer="b"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// Each link counts the bytes it carries both ways, for the agent's reports (mesh/peers tx_bytes
// and rx_bytes) and the link byte counters.
func TestLinkByteCounters(t *testing.T) {
	w, nodes, devs := memChain(t, 2)
	a, b := nodes[0], nodes[1]
	peer := func(n *Node, name string) PeerStatus {
		for _, p := range n.Peers() {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("no link to %s", name)
		return PeerStatus{}
	}
	w.Run(2 * time.Second)
	txBefore, rxBefore := peer(a, "b").TxBytes, peer(b, "a").RxBytes
	const packets, size = 20, 1000
	pkt := make([]byte, size)
	for range packets {
		udpPacket(pkt, a.Addr(), b.Addr())
		a.sendPacket(w.Now(), pkt)
	}
	if _, ok := w.RunUntil(func() bool { return devs[1].delivered() >= packets }, 5*time.Second); !ok {
		t.Fatal("packets not delivered")
	}
	tx, rx := peer(a, "b").TxBytes-txBefore, peer(b, "a").RxBytes-rxBefore
	if tx < packets*size || rx < packets*size {
		t.Fatalf("after %d packets of %d bytes: a counted %d bytes sent to b, b %d received from a", packets, size, tx, rx)
	}
}

// TestHandshakeCounters: each completed handshake is counted once on each side, by kind and role:
// in the chain a-b-c, b and c dial their predecessor (links), and a packet from a to c needs an
// end-to-end session that a initiates and c answers.
func TestHandshakeCounters(t *testing.T) {
	w, nodes, devs := memChain(t, 3)
	a, c := nodes[0], nodes[2]
	pkt := make([]byte, 100)
	udpPacket(pkt, a.Addr(), c.Addr())
	if _, ok := w.RunUntil(func() bool { return a.Status().Reachable >= 3 }, 10*time.Second); !ok {
		t.Fatal("a never learned a route to c")
	}
	a.sendPacket(w.Now(), pkt)
	if _, ok := w.RunUntil(func() bool { return devs[2].delivered() > 0 }, 10*time.Second); !ok {
		t.Fatal("nothing delivered a -> c")
	}
	want := []struct {
		n                                    *Node
		linkInit, linkResp, e2eInit, e2eResp uint64
	}{{nodes[0], 0, 1, 1, 0}, {nodes[1], 1, 1, 0, 0}, {nodes[2], 1, 0, 0, 1}}
	for _, x := range want {
		s := x.n.Status().Stats
		if s.LinkHandshakesInitiated != x.linkInit || s.LinkHandshakesAnswered != x.linkResp || s.E2EHandshakesInitiated != x.e2eInit || s.E2EHandshakesAnswered != x.e2eResp {
			t.Errorf("%s: link %d initiated %d answered, e2e %d initiated %d answered; want %d %d %d %d", x.n.self.Name,
				s.LinkHandshakesInitiated, s.LinkHandshakesAnswered, s.E2EHandshakesInitiated, s.E2EHandshakesAnswered, x.linkInit, x.linkResp, x.e2eInit, x.e2eResp)
		}
	}
	rec := httptest.NewRecorder()
	c.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	for _, line := range []string{`x0tta6bl4_node_handshakes_total{kind="e2e",role="responder"} 1`, `x0tta6bl4_node_handshakes_total{kind="link",role="initiator"} 1`,
		`x0tta6bl4_node_handshakes_total{kind="link",role="responder"} 0`} {
		if !strings.Contains(string(body), line) {
			t.Errorf("c's metrics lack %q", line)
		}
	}
}
