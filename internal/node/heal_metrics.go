package node

import "github.com/prometheus/client_golang/prometheus"

// The self-healing loop's Prometheus metrics, read at scrape time like the node's others.
var (
	descHealProbes    = prometheus.NewDesc("x0tta6bl4_heal_probes_total", "Self-healing path probes: sent; answered and lost, of those judged; unjudged (sent in a grace period or on an unsettled way back, or to a destination that has not answered since it became one or restarted).", []string{"result"}, nil)
	descHealDecisions = prometheus.NewDesc("x0tta6bl4_heal_decisions_total", "Self-healing decisions by action (penalise: route around a neighbour; restore: lift the penalty to re-probe it).", []string{"action"}, nil)
	descHealPenalised = prometheus.NewDesc("x0tta6bl4_heal_penalised", "1 while the loop routes around the neighbour.", []string{"peer"}, nil)
	descHealStalls    = prometheus.NewDesc("x0tta6bl4_heal_local_stalls_total", "Gaps in the node's own schedule (the engine's clock jumped by more than 5 tick intervals) after which the probes in flight and the evidence were set aside.", nil, nil)
	descHealPathLoss  = prometheus.NewDesc("x0tta6bl4_heal_path_loss_ratio", "Loss of the recent path probes through the neighbour.", []string{"peer"}, nil)
)

type healCollector struct{ n *Node }

func (c healCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealProbes, descHealDecisions, descHealPenalised, descHealPathLoss, descHealStalls} {
		ch <- d
	}
}

func (c healCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.n.Heal()
	out := metricSink(ch)
	out.counter(descHealProbes, h.ProbesSent, "sent")
	out.counter(descHealProbes, h.ProbesOK, "answered")
	out.counter(descHealProbes, h.ProbesLost, "lost")
	out.counter(descHealProbes, h.ProbesUnjudged, "unjudged")
	out.counter(descHealDecisions, h.Penalties, "penalise")
	out.counter(descHealDecisions, h.Restores, "restore")
	out.counter(descHealStalls, h.LocalStalls)
	for _, p := range h.Peers {
		v := 0.0
		if p.Penalised {
			v = 1
		}
		out.gauge(descHealPenalised, v, p.Name)
		out.gauge(descHealPathLoss, p.Evidence["path_loss"], p.Name)
	}
}
