package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"x0tta6bl4/internal/netguard"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The node exports its telemetry in the Prometheus text format on metrics_listen (plain HTTP; bind
// it to loopback or a management network). The values are read from the node at scrape time, so
// the packet path pays nothing for them. The same per-link figures (RTT, jitter, loss) are what
// routing's costs and the anomaly detector's features are built from.

var (
	descPackets   = prometheus.NewDesc("x0tta6bl4_node_udp_packets_total", "UDP datagrams by direction.", []string{"direction"}, nil)
	descBytes     = prometheus.NewDesc("x0tta6bl4_node_udp_bytes_total", "UDP payload bytes by direction.", []string{"direction"}, nil)
	descIP        = prometheus.NewDesc("x0tta6bl4_node_ip_packets_total", "Overlay IPv6 packets: sent from the device, delivered to it, forwarded for others.", []string{"event"}, nil)
	descDrops     = prometheus.NewDesc("x0tta6bl4_node_drops_total", "Packets dropped, by reason.", []string{"reason"}, nil)
	descBursts    = prometheus.NewDesc("x0tta6bl4_node_bursts_total", "TCP bursts carried whole end to end: sent, delivered, lost in reassembly, and loss reports that made this node split its own.", []string{"event"}, nil)
	descHSErrors  = prometheus.NewDesc("x0tta6bl4_node_handshake_errors_total", "Handshake packets refused or failed.", nil, nil)
	descHandshake = prometheus.NewDesc("x0tta6bl4_node_handshakes_total", "Handshakes completed, by kind (link: with a neighbour; e2e: end to end through the mesh) and our role (initiator, responder).", []string{"kind", "role"}, nil)
	descRouteChg  = prometheus.NewDesc("x0tta6bl4_node_route_changes_total", "Times the forwarding table was rebuilt because routes or links changed.", nil, nil)
	descNodes     = prometheus.NewDesc("x0tta6bl4_node_mesh_nodes", "Nodes in the link-state database, and how many are reachable.", []string{"state"}, nil)
	descRoutes    = prometheus.NewDesc("x0tta6bl4_node_routes", "Entries of the forwarding table.", nil, nil)
	descE2E       = prometheus.NewDesc("x0tta6bl4_node_e2e_sessions", "End-to-end sessions.", nil, nil)
	descLinkUp    = prometheus.NewDesc("x0tta6bl4_link_up", "1 if the link to the neighbour is up.", []string{"peer"}, nil)
	descLinkRTT   = prometheus.NewDesc("x0tta6bl4_link_rtt_seconds", "Smoothed round-trip time to the neighbour.", []string{"peer"}, nil)
	descLinkJit   = prometheus.NewDesc("x0tta6bl4_link_jitter_seconds", "Smoothed round-trip time variation to the neighbour.", []string{"peer"}, nil)
	descLinkLoss  = prometheus.NewDesc("x0tta6bl4_link_loss_ratio", "Fraction of recent probes to the neighbour that went unanswered.", []string{"peer"}, nil)
	descLinkQuiet = prometheus.NewDesc("x0tta6bl4_link_silence_seconds", "Time since the neighbour was last heard.", []string{"peer"}, nil)
	descRestarts  = prometheus.NewDesc("x0tta6bl4_node_peer_restarts_total", "Peers seen restarting: a larger incarnation in their link-state record.", nil, nil)
	descNotices   = prometheus.NewDesc("x0tta6bl4_node_unknown_session_notices_total", "Unknown-session notices: sent for packets naming a session this node does not know; received and acted on (accepted), not about a packet this node sent (ignored), or over the rate limit (limited).", []string{"event"}, nil)
	descPunch     = prometheus.NewDesc("x0tta6bl4_node_punch_total", "Hole punching towards nodes reached through relays: attempts, direct links they made, attempts that ended without one, and initiations held back by the punch budget.", []string{"result"}, nil)
	descPathBytes = prometheus.NewDesc("x0tta6bl4_node_sent_bytes_total", "Bytes of overlay packets sent from the device, by path: straight to the destination's link (direct) or through relays (relayed).", []string{"path"}, nil)
	descLinkBytes = prometheus.NewDesc("x0tta6bl4_link_bytes_total", "UDP payload bytes sent to the neighbour (tx) and authenticated from it (rx) over the link.", []string{"peer", "direction"}, nil)
	descTransit   = prometheus.NewDesc("x0tta6bl4_link_transit_packets_total", "Transit packets on the link for nodes beyond its ends: handed to the neighbour to relay (out), relayed by the neighbour to us (in).", []string{"peer", "direction"}, nil)
)

type collector struct{ n *Node }

// metricSink sends constant metrics, read at scrape time, to a collector's channel.
type metricSink chan<- prometheus.Metric

func (ch metricSink) counter(d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (ch metricSink) gauge(d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descIP, descDrops, descBursts, descHSErrors, descHandshake, descRouteChg,
		descNodes, descRoutes, descE2E, descLinkUp, descLinkRTT, descLinkJit, descLinkLoss, descLinkQuiet, descLinkBytes, descTransit, descRestarts, descNotices, descPunch, descPathBytes} {
		ch <- d
	}
	for _, d := range kernelDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Status()
	s := st.Stats
	out := metricSink(ch)
	out.counter(descPackets, s.RxPackets, "rx")
	out.counter(descPackets, s.TxPackets, "tx")
	out.counter(descBytes, s.RxBytes, "rx")
	out.counter(descBytes, s.TxBytes, "tx")
	out.counter(descIP, s.Sent, "sent")
	out.counter(descIP, s.Delivered, "delivered")
	out.counter(descIP, s.Forwarded, "forwarded")
	for reason, v := range map[string]uint64{
		"no_route": s.DropNoRoute, "hop_limit": s.DropHopLimit, "firewall": s.DropFirewall, "spoofed": s.DropSpoofed,
		"auth": s.DropAuth, "malformed": s.DropMalformed, "queue_full": s.DropQueueFull, "no_session": s.DropNoSession,
		"not_overlay": s.DropNotOverlay,
	} {
		out.counter(descDrops, v, reason)
	}
	out.counter(descHSErrors, s.HandshakeErrors)
	out.counter(descHandshake, s.LinkHandshakesInitiated, "link", "initiator")
	out.counter(descHandshake, s.LinkHandshakesAnswered, "link", "responder")
	out.counter(descHandshake, s.E2EHandshakesInitiated, "e2e", "initiator")
	out.counter(descHandshake, s.E2EHandshakesAnswered, "e2e", "responder")
	for event, v := range map[string]uint64{"sent": s.BurstsSent, "delivered": s.BurstsDelivered,
		"lost": s.BurstsLost, "backoff": s.BurstBackoffs} {
		out.counter(descBursts, v, event)
	}
	out.counter(descRouteChg, s.RouteChanges)
	out.counter(descRestarts, s.PeerRestarts)
	for result, v := range map[string]uint64{"attempt": s.PunchAttempts, "direct": s.PunchDirect,
		"failed": s.PunchFailed, "limited": s.PunchLimited} {
		out.counter(descPunch, v, result)
	}
	out.counter(descPathBytes, s.SentDirectBytes, "direct")
	out.counter(descPathBytes, s.SentRelayedBytes, "relayed")
	for event, v := range map[string]uint64{"sent": s.NoticesSent, "accepted": s.NoticesAccepted,
		"ignored": s.NoticesIgnored, "limited": s.NoticesLimited} {
		out.counter(descNotices, v, event)
	}
	out.gauge(descNodes, float64(st.Nodes), "known")
	out.gauge(descNodes, float64(st.Reachable), "reachable")
	out.gauge(descRoutes, float64(len(c.n.Routes())))
	out.gauge(descE2E, float64(st.E2E))
	for _, p := range c.n.Peers() {
		up := 0.0
		if p.Up {
			up = 1
		}
		out.gauge(descLinkUp, up, p.Name)
		out.gauge(descLinkRTT, p.RTT.Seconds(), p.Name)
		out.gauge(descLinkJit, p.Jitter.Seconds(), p.Name)
		out.gauge(descLinkLoss, p.Loss, p.Name)
		out.gauge(descLinkQuiet, p.Silence.Seconds(), p.Name)
		out.counter(descLinkBytes, p.TxBytes, p.Name, "tx")
		out.counter(descLinkBytes, p.RxBytes, p.Name, "rx")
		out.counter(descTransit, p.TransitOut, p.Name, "out")
		out.counter(descTransit, p.TransitIn, p.Name, "in")
	}
	c.collectKernel(out)
}

type metricsServer struct {
	srv *http.Server
	ln  *netguard.Listener
}

// The metrics listener serves a few scrapers; strangers who reach it get a bounded share. A scrape
// of this node takes milliseconds, so a minute of idle keep-alive is plenty for Prometheus (which
// scrapes every 15 s to 1 min and reconnects when it must).
const (
	metricsMaxConns          = 64
	metricsMaxConnsPerSource = 16
	metricsHandshakeTimeout  = 10 * time.Second
	metricsIdleTimeout       = time.Minute
)

// metricsHandler serves the node's Prometheus metrics at /metrics.
func (n *Node) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{n}, healCollector{n}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// serveMetrics starts the Prometheus endpoint at /metrics.
func (n *Node) serveMetrics(addr string) (*metricsServer, error) {
	mux := n.metricsHandler()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	gl, err := netguard.Wrap(ln, netguard.Config{Name: "metrics", MaxConns: metricsMaxConns, MaxConnsPerSource: metricsMaxConnsPerSource,
		HandshakeTimeout: metricsHandshakeTimeout, IdleTimeout: metricsIdleTimeout, Logger: n.log})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	m := &metricsServer{ln: gl, srv: &http.Server{Handler: mux, ConnState: gl.HTTPConnState, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: metricsIdleTimeout, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}}
	go func() {
		if err := m.srv.Serve(gl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("metrics server", "err", err)
		}
	}()
	return m, nil
}

func (m *metricsServer) close() { m.srv.Close() }
