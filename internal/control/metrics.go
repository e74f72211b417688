package control

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"x0tta6bl4/internal/netguard"
)

// metrics are the server's Prometheus metrics, in a registry of its own (no global state).
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inflight     prometheus.Gauge
	rateLimited  *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	enrollments  *prometheus.CounterVec
	renewals     *prometheus.CounterVec
	revocations  prometheus.Counter
	reports      prometheus.Counter
	crlNumber    prometheus.Gauge
	// recorded and recordSkipped count reports recorded for training and ones too large to record.
	recorded, recordSkipped prometheus.Counter
	// tlsHandshakes counts handshakes by group, hybrid or classical key exchange, and certificate.
	tlsHandshakes *prometheus.CounterVec
	// dbUnavailable counts requests answered 503 because the database did not answer.
	dbUnavailable prometheus.Counter
	handler       http.Handler
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_http_requests_total", Help: "API requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "x0tta6bl4_control_http_request_duration_seconds", Help: "API request latency by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "x0tta6bl4_control_http_in_flight_requests", Help: "Requests being served.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_rate_limited_total", Help: "Requests refused with 429, by limiter (per_ip, per_key, auth).",
		}, []string{"limiter"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_auth_failures_total", Help: "Failed authentications by kind (missing, invalid, login, node).",
		}, []string{"reason"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_enrollments_total", Help: "Node enrollments by result (ok, refused).",
		}, []string{"result"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_renewals_total", Help: "Certificate renewals by result (ok, refused).",
		}, []string{"result"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_revocations_total", Help: "Nodes revoked since start.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_mesh_reports_total", Help: "Node status reports accepted since start.",
		}),
		crlNumber: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "x0tta6bl4_control_crl_number", Help: "Number of the current signed revocation list.",
		}),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_reports_recorded_total", Help: "Node reports recorded for training (ai.record) since start.",
		}),
		recordSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_reports_record_skipped_total", Help: "Node reports not recorded because their detector part exceeded ai.record.max_report_bytes.",
		}),
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_tls_handshakes_total",
			Help: "Completed TLS handshakes by key-exchange group, key exchange (hybrid: post-quantum X25519MLKEM768; classical) and server certificate (ml-dsa-65, ecdsa-p256, ed25519).",
		}, []string{"group", "key_exchange", "certificate"}),
		dbUnavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "x0tta6bl4_control_database_unavailable_total", Help: "Requests answered 503 because the database did not answer in time.",
		}),
	}
	reg.MustRegister(m.tlsHandshakes, m.requests, m.duration, m.inflight, m.rateLimited, m.authFailures, m.enrollments, m.renewals,
		m.revocations, m.reports, m.crlNumber, m.recorded, m.recordSkipped, m.dbUnavailable, connCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newMeshCollector(s), newAnomalyCollector(s))
	// Every known label value starts at zero, so dashboards and alerts see a series before the
	// first event.
	for _, l := range []string{"per_ip", "per_key", "auth"} {
		m.rateLimited.WithLabelValues(l)
	}
	for _, r := range []string{"missing", "invalid", "login", "node"} {
		m.authFailures.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "refused"} {
		m.enrollments.WithLabelValues(r)
		m.renewals.WithLabelValues(r)
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil, ErrorHandling: promhttp.ContinueOnError,
		MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
	return m
}

func (m *metrics) observe(route, method string, code int, d time.Duration) {
	if code == 0 {
		code = http.StatusOK
	}
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
	default:
		method = "other" // a stranger's invented methods must not create series
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	s.m.handler.ServeHTTP(w, r)
}

// meshCollector exposes the mesh view built from node reports at scrape time.
type meshCollector struct {
	s                                                                         *Server
	nodes, links, rtt, loss, linkUp, tx, rx, age, routes, certLeft, viewError *prometheus.Desc
}

func newMeshCollector(s *Server) *meshCollector {
	link := []string{"from", "to"}
	node := []string{"node"}
	return &meshCollector{
		s:         s,
		nodes:     prometheus.NewDesc("x0tta6bl4_mesh_nodes", "Nodes by status (online, stale, silent, revoked).", []string{"status"}, nil),
		links:     prometheus.NewDesc("x0tta6bl4_mesh_links", "Node pairs with a link reported up (kind=any) and up from both ends (kind=confirmed).", []string{"kind"}, nil),
		rtt:       prometheus.NewDesc("x0tta6bl4_mesh_link_rtt_seconds", "Round-trip time of a link as its from-end reports it.", link, nil),
		loss:      prometheus.NewDesc("x0tta6bl4_mesh_link_loss_ratio", "Packet loss of a link (0-1) as its from-end reports it.", link, nil),
		linkUp:    prometheus.NewDesc("x0tta6bl4_mesh_link_up", "1 if the from-end reports the link up in a fresh report.", link, nil),
		tx:        prometheus.NewDesc("x0tta6bl4_mesh_link_tx_bytes", "Bytes sent on a link, as reported.", link, nil),
		rx:        prometheus.NewDesc("x0tta6bl4_mesh_link_rx_bytes", "Bytes received on a link, as reported.", link, nil),
		age:       prometheus.NewDesc("x0tta6bl4_mesh_node_report_age_seconds", "Seconds since the node's last report.", node, nil),
		routes:    prometheus.NewDesc("x0tta6bl4_mesh_node_routes", "Routes in the node's last report.", node, nil),
		certLeft:  prometheus.NewDesc("x0tta6bl4_mesh_node_cert_expiry_seconds", "Seconds until the node's certificate expires.", node, nil),
		viewError: prometheus.NewDesc("x0tta6bl4_mesh_view_error", "1 if the mesh view could not be read from the database at this scrape.", nil, nil),
	}
}

func (c *meshCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodes, c.links, c.rtt, c.loss, c.linkUp, c.tx, c.rx, c.age, c.routes, c.certLeft, c.viewError} {
		ch <- d
	}
}

func (c *meshCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.s.meshView(ctx)
	if err != nil {
		c.s.log.Error("metrics: mesh view", "err", err)
		ch <- prometheus.MustNewConstMetric(c.viewError, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.viewError, prometheus.GaugeValue, 0)
	for status, n := range map[string]int{"online": v.counts.Online, "stale": v.counts.Stale, "silent": v.counts.Silent, "revoked": v.counts.Revoked} {
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(n), status)
	}
	ch <- prometheus.MustNewConstMetric(c.links, prometheus.GaugeValue, float64(v.counts.Links), "any")
	ch <- prometheus.MustNewConstMetric(c.links, prometheus.GaugeValue, float64(v.counts.LinksConfirmed), "confirmed")
	for _, l := range v.links {
		if l.Stale {
			continue
		}
		up := 0.0
		if l.State == "up" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.linkUp, prometheus.GaugeValue, up, l.From, l.To)
		ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, l.RTTMillis/1000, l.From, l.To)
		ch <- prometheus.MustNewConstMetric(c.loss, prometheus.GaugeValue, l.LossRatio, l.From, l.To)
		ch <- prometheus.MustNewConstMetric(c.tx, prometheus.CounterValue, float64(l.TxBytes), l.From, l.To)
		ch <- prometheus.MustNewConstMetric(c.rx, prometheus.CounterValue, float64(l.RxBytes), l.From, l.To)
	}
	for _, n := range v.nodes {
		if n.Status == "revoked" {
			continue
		}
		if n.LastReport != nil {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, v.at.Sub(*n.LastReport).Seconds(), n.Name)
			ch <- prometheus.MustNewConstMetric(c.routes, prometheus.GaugeValue, float64(n.Routes), n.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.certLeft, prometheus.GaugeValue, n.CertNotAfter.Sub(v.at).Seconds(), n.Name)
	}
}

var (
	descConnsOpen = prometheus.NewDesc("x0tta6bl4_control_connections_open", "Connections open, by listener.", []string{"listener"}, nil)
	descConnsShed = prometheus.NewDesc("x0tta6bl4_control_connections_shed_total",
		"Connections closed by the listener guard, by listener and reason (refused: no slot; evicted: idle, to make room; timeout: idle or silent too long).",
		[]string{"listener", "reason"}, nil)
)

// connCollector reports the guarded listeners' counters.
type connCollector struct{ s *Server }

func (c connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descConnsOpen; ch <- descConnsShed }

func (c connCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range map[string]*netguard.Listener{"api": c.s.apiListener.Load(), "metrics": c.s.metricsListener.Load()} {
		if l == nil {
			continue
		}
		st := l.Stats()
		ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(st.Open), name)
		ch <- prometheus.MustNewConstMetric(descConnsShed, prometheus.CounterValue, float64(st.Refused), name, "refused")
		ch <- prometheus.MustNewConstMetric(descConnsShed, prometheus.CounterValue, float64(st.Evicted), name, "evicted")
		ch <- prometheus.MustNewConstMetric(descConnsShed, prometheus.CounterValue, float64(st.TimedOut), name, "timeout")
	}
}
