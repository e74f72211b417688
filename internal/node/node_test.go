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
