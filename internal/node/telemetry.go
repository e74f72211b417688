package node

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/telemetry"
)

// The node's detector telemetry (internal/telemetry): once per second the timer loop samples the
// node's counters, and the collector turns two samples into the feature vectors the anomaly
// detector reads — the same vectors the simulator emits. The agent sends the latest with its
// reports; the control plane's /ai/predict scores them.

// telemetryState belongs to the timer loop, except latest.
type telemetryState struct {
	mu           sync.Mutex // serialises samplers (the timer loop; tests)
	col          *telemetry.Collector
	prevHops     map[netip.Addr]*tunnel // the forwarding table's next hops at the last sample
	routeChanges uint64                 // destinations whose next hop changed, summed
	latest       atomic.Pointer[telemetry.Vector]
}

func newTelemetryState() *telemetryState {
	return &telemetryState{col: telemetry.NewCollector()}
}

// sampleTelemetry takes one sample at now and, from the second one on, publishes the interval's
// vector. The timer loop calls it once per telemetry.Interval.
func (n *Node) sampleTelemetry(now time.Time) {
	ts := n.tel
	ts.mu.Lock()
	defer ts.mu.Unlock()
	// Route changes: destinations whose next hop differs from the last sample (appeared and
	// vanished ones included), as the simulator counts them.
	hops := n.fib.Load().byAddr
	if ts.prevHops != nil {
		for dst, prev := range ts.prevHops {
			if e, ok := hops[dst]; !ok || e.nextHop != prev {
				ts.routeChanges++
			}
		}
		for dst := range hops {
			if _, ok := ts.prevHops[dst]; !ok {
				ts.routeChanges++
			}
		}
	}
	ts.prevHops = make(map[netip.Addr]*tunnel, len(hops))
	for dst, e := range hops {
		ts.prevHops[dst] = e.nextHop
	}

	s := n.stats.snapshot()
	h := n.Heal()
	delivery := make(map[string]float64, len(h.Peers))
	for _, p := range h.Peers {
		if loss, ok := p.Evidence["path_loss"]; ok && p.Evidence["probes"] > 0 {
			delivery[p.Name] = 1 - loss
		}
	}
	sample := telemetry.Sample{At: now, CPUs: runtime.NumCPU(), Node: telemetry.NodeCounters{
		Sent: s.Sent, TransitIn: s.TransitIn, Forwarded: s.Forwarded, RouteChanges: ts.routeChanges,
		ProbesResolved: h.ProbesOK + h.ProbesLost, ProbesAnswered: h.ProbesOK,
	}}
	sample.Node.CPUSeconds, _ = processCPUSeconds()
	sample.Kernel = n.kernelCounters()
	for _, p := range n.Peers() {
		d, ok := delivery[p.Name]
		if !ok {
			d = -1
		}
		sample.Links = append(sample.Links, telemetry.LinkCounters{Peer: p.Name, Up: p.Up, Silent: p.Silence > n.opts.DeadAfter,
			RTT: p.RTT, Loss: p.Loss, PathDelivery: d, TransitOut: p.TransitOut, TransitIn: p.TransitIn})
	}
	if v, ok := ts.col.Add(sample); ok {
		ts.latest.Store(&v)
	}
}

// Telemetry returns the features of the last complete interval; ok is false until two samples
// have been taken (about a second after Run starts).
func (n *Node) Telemetry() (telemetry.Vector, bool) {
	v := n.tel.latest.Load()
	if v == nil {
		return telemetry.Vector{}, false
	}
	return *v, true
}
