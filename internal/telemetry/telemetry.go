// Package telemetry defines the feature vectors the anomaly detector reads — one per node and one
// per directed link, every interval — and computes them from a real node's cumulative counters.
// The simulator (internal/sim) emits the same vectors from its own counters, so a model trained in
// the simulator reads real nodes (docs/intelligence.md, "Telemetry").
//
// It is pure: samples and their times are passed in. It must never read sockets, clocks or the
// node's internals itself, and never keep more than Window intervals of history per link.
package telemetry

import (
	"math"
	"time"
)

// Classes are the detector's classes, in the order of its outputs: normal, then the fault kinds the
// simulator injects (internal/sim.Kind).
var Classes = [...]string{"normal", "linkdeg", "crash", "overload", "blackhole", "greyhole", "flapping"}

// Node feature indices: what a node exports about itself.
const (
	FDegree    = iota // neighbours the routing core has up
	FRTT              // mean probe RTT to configured neighbours, ms
	FLossMean         // mean probe loss to configured neighbours (1 for a silent neighbour)
	FLossMax          // worst probe loss
	FSent             // log1p(packets of own flows sent per second)
	FDelivery         // end-to-end delivery ratio of own traffic (1 if none)
	FWorstHop         // worst delivery ratio of own traffic by first hop (1 if none)
	FTransitIn        // log1p(packets received to forward, per second)
	FForwarded        // log1p(packets reported forwarded, per second)
	FDropped          // log1p(packets reported dropped, per second)
	FRouteChg         // log1p(destinations whose next hop changed)
	FCPU              // CPU load 0–1
	FMissing          // 1 when the node exported nothing (dead or silent)
	NumNode
)

// NodeNames names the node features in order.
var NodeNames = [NumNode]string{"degree", "rtt_ms", "loss_mean", "loss_max", "sent", "delivery",
	"worst_hop_delivery", "transit_in", "forwarded", "dropped", "route_changes", "cpu", "missing"}

// Edge feature indices: what node v's own counters say about its link to neighbour u. The transit
// counts are linear (per second), not log1p: a relay conserves frames across its links, and only
// in linear scale is that balance a difference of means that a mean aggregator can form.
const (
	ETxTransit  = iota // data frames v sent to u for u to relay (destination ≠ u), per second
	ERxTransit         // data frames v received from u that u relayed (source ≠ u), per second
	ETxTransitW        // ETxTransit averaged over the last Window intervals
	ERxTransitW        // ERxTransit averaged over the last Window intervals
	EProbeLoss         // fraction of v's probes to u lost (1 when u is silent)
	EProbeRTT          // mean RTT of v's answered probes to u, ms (0 when none answered)
	EUp                // 1 when v's routing core has the adjacency with u up
	NumEdge
)

// EdgeNames names the edge features in order.
var EdgeNames = [NumEdge]string{"tx_transit", "rx_transit", "tx_transit_5s_mean", "rx_transit_5s_mean",
	"probe_loss", "probe_rtt_ms", "up"}

// Window is the number of intervals the windowed edge features cover.
const Window = 5

// Interval is the collection interval the features are defined for: counts are per second.
const Interval = time.Second

// NodeCounters are a node's cumulative counters at one instant.
type NodeCounters struct {
	Sent         uint64  // IPv6 packets from the device into the mesh
	TransitIn    uint64  // transit packets received for others
	Forwarded    uint64  // of those, relayed on
	RouteChanges uint64  // destinations whose next hop changed, summed over time
	CPUSeconds   float64 // process CPU time
	// Path probes (the self-healing loop's end-to-end echoes): a real node's only measure of its own
	// traffic's end-to-end delivery.
	ProbesResolved, ProbesAnswered uint64 // resolved: answered or timed out
}

// LinkCounters is one configured neighbour link at one instant.
type LinkCounters struct {
	Peer                  string
	Up                    bool
	Silent                bool // nothing heard within the link's dead interval
	RTT                   time.Duration
	Loss                  float64 // recent probe loss, 0–1
	PathDelivery          float64 // recent path-probe delivery through this neighbour, 0–1; <0 unknown
	TransitOut, TransitIn uint64
}

// Sample is everything a node reports at one instant.
type Sample struct {
	At    time.Time
	Node  NodeCounters
	Links []LinkCounters
	CPUs  int // cores the CPU time is shared by
	// Kernel is what the node's eBPF programs counted; nil when it has none.
	Kernel *KernelCounters
}

// Vector is one interval's features: the node's and, per configured neighbour, the link's.
type Vector struct {
	At    time.Time
	Node  [NumNode]float64
	Peers []string // the neighbours, in the order of Edges
	Edges [][NumEdge]float64
	// Kernel are the kernel features (kernel.go) by name; nil when the node or the interval's
	// first sample had none.
	Kernel map[string]float64
}

// NodeMap returns the node features by name.
func (v *Vector) NodeMap() map[string]float64 {
	m := make(map[string]float64, NumNode)
	for i, x := range v.Node {
		m[NodeNames[i]] = x
	}
	return m
}

// EdgeMap returns the features of the link to Peers[i] by name.
func (v *Vector) EdgeMap(i int) map[string]float64 {
	m := make(map[string]float64, NumEdge)
	for k, x := range v.Edges[i] {
		m[EdgeNames[k]] = x
	}
	return m
}

// Collector turns a node's successive samples into feature vectors. It is not safe for concurrent
// use.
type Collector struct {
	prev  Sample
	have  bool
	rings map[string]*ring
}

type ring struct {
	tx, rx [Window]float64
	pos    int
	seen   int
}

// NewCollector returns a collector with no history.
func NewCollector() *Collector { return &Collector{rings: map[string]*ring{}} }

// Add takes the next sample and returns the features of the interval since the previous one. The
// first sample only starts an interval; one not later than the previous is ignored (ok is false).
func (c *Collector) Add(s Sample) (v Vector, ok bool) {
	prev, had := c.prev, c.have
	if had && !s.At.After(prev.At) {
		return Vector{}, false
	}
	c.prev, c.have = s, true
	if !had {
		return Vector{}, false
	}
	secs := s.At.Sub(prev.At).Seconds()
	rate := func(now, before uint64) float64 {
		if now < before { // a restarted counter
			return 0
		}
		return float64(now-before) / secs
	}
	v.At = s.At
	x := &v.Node
	n, p := s.Node, prev.Node
	var rttSum, lossSum, lossMax float64
	rttN := 0
	worst := 1.0
	prevLinks := make(map[string]LinkCounters, len(prev.Links))
	for _, l := range prev.Links {
		prevLinks[l.Peer] = l
	}
	live := make(map[string]bool, len(s.Links))
	for _, l := range s.Links {
		live[l.Peer] = true
		var e [NumEdge]float64
		if l.Up {
			x[FDegree]++
			e[EUp] = 1
		}
		loss := l.Loss
		if l.Silent {
			loss = 1
		}
		if !l.Silent && l.RTT > 0 && loss < 1 {
			ms := float64(l.RTT) / float64(time.Millisecond)
			e[EProbeRTT] = ms
			rttSum += ms
			rttN++
		}
		e[EProbeLoss] = loss
		lossSum += loss
		lossMax = max(lossMax, loss)
		if l.PathDelivery >= 0 {
			worst = min(worst, l.PathDelivery)
		}
		if pl, ok := prevLinks[l.Peer]; ok {
			e[ETxTransit] = rate(l.TransitOut, pl.TransitOut)
			e[ERxTransit] = rate(l.TransitIn, pl.TransitIn)
		}
		r := c.rings[l.Peer]
		if r == nil {
			r = &ring{}
			c.rings[l.Peer] = r
		}
		r.tx[r.pos], r.rx[r.pos] = e[ETxTransit], e[ERxTransit]
		r.pos = (r.pos + 1) % Window
		r.seen = min(r.seen+1, Window)
		var txW, rxW float64
		for k := range Window {
			txW += r.tx[k]
			rxW += r.rx[k]
		}
		e[ETxTransitW], e[ERxTransitW] = txW/Window, rxW/Window
		v.Peers = append(v.Peers, l.Peer)
		v.Edges = append(v.Edges, e)
	}
	for peer := range c.rings {
		if !live[peer] {
			delete(c.rings, peer) // bounded by the node's configured links
		}
	}
	if rttN > 0 {
		x[FRTT] = rttSum / float64(rttN)
	}
	if len(s.Links) > 0 {
		x[FLossMean] = lossSum / float64(len(s.Links))
	}
	x[FLossMax] = lossMax
	x[FSent] = math.Log1p(rate(n.Sent, p.Sent))
	x[FDelivery] = 1
	if sent := rate(n.ProbesResolved, p.ProbesResolved); sent > 0 {
		x[FDelivery] = min(1, rate(n.ProbesAnswered, p.ProbesAnswered)/sent)
	}
	x[FWorstHop] = worst
	in, fwd := rate(n.TransitIn, p.TransitIn), rate(n.Forwarded, p.Forwarded)
	x[FTransitIn] = math.Log1p(in)
	x[FForwarded] = math.Log1p(fwd)
	x[FDropped] = math.Log1p(max(0, in-fwd))
	x[FRouteChg] = math.Log1p(rate(n.RouteChanges, p.RouteChanges))
	if s.CPUs > 0 && n.CPUSeconds >= p.CPUSeconds {
		x[FCPU] = max(0, min(1, (n.CPUSeconds-p.CPUSeconds)/secs/float64(s.CPUs)))
	}
	v.Kernel = KernelFeatures(s.Kernel, prev.Kernel, secs)
	return v, true
}
