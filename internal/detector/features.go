package detector

import (
	"math"
	"slices"

	"x0tta6bl4/internal/telemetry"
)

// Model inputs derived from the raw telemetry vectors (internal/telemetry). The raw vectors carry
// counts whose scale is the traffic's (a hub relays 50× what a leaf does, a busy mesh 10× a quiet
// one); the model, every baseline and every rule read these instead: ratios, log-ratios and rates
// against the node's own recent history, which do not move when the traffic's volume does.
//
// Availability is explicit. A node whose report is missing or stale has Reported = 0 and every one
// of its own features 0, meaning "unknown", and its links' vectors are all 0 too; what its
// neighbours report about their links to it (the NbrXxx features) is computed from the neighbours
// that did report, with the fraction that did in NbrReported. An optional group of raw features (a
// kernel's own counters, when a node has them) is added the same way: a presence feature that is 1
// when the group was reported, and the group's values 0 when it was not.
const (
	RReported     = iota // 1 when the node's own report is present and fresh
	RDelivery            // own traffic's end-to-end delivery ratio
	RWorstHop            // worst delivery ratio of own traffic by first hop
	RLossMean            // mean probe loss to its neighbours
	RLossMax             // worst probe loss to a neighbour
	RLogRTT              // log1p(mean probe RTT, ms)
	RDropRatio           // reported dropped over reported transit received
	RRouteChg            // destinations whose next hop changed, over the other nodes
	RCPU                 // CPU load 0–1
	RDegree              // adjacencies up over configured links
	RNbrReported         // fraction of the neighbours whose report is present
	RNbrLossMean         // mean probe loss the reporting neighbours see towards the node
	RNbrLossMin          // least probe loss a reporting neighbour sees towards it
	RNbrUp               // fraction of reporting neighbours with the adjacency up
	RNbrRTTExcess        // mean of log((1+RTT to it)/(1+the neighbour's mean RTT)) over reporting neighbours
	RDeficit             // 1 − relayed-by-it / handed-to-it-to-relay, in the interval, by the neighbours' counters
	RDeficitW            // the same over the window
	RLogDeficitW         // log1p(handed, window mean) − log1p(relayed, window mean)
	NumRobust
)

// RobustNames names the derived node features in order.
var RobustNames = [NumRobust]string{"reported", "delivery", "worst_hop_delivery", "loss_mean", "loss_max",
	"log_rtt", "drop_ratio", "route_change_frac", "cpu", "degree_frac", "nbr_reported", "nbr_loss_mean",
	"nbr_loss_min", "nbr_up", "nbr_rtt_excess", "deficit", "deficit_w", "log_deficit_w"}

// Derived per-link features: what node v's report says about its link to u.
const (
	REReported = iota // 1 when v's report is present
	REProbeLoss
	REUp
	RERTTRel // log((1+RTT to u)/(1+v's mean RTT)); 0 when no probe was answered
	RETxRel  // log1p(handed to u to relay) − log1p(its window mean): the rate against its own history
	RERxRel  // the same for what u relayed to v
	NumRobustEdge
)

// RobustEdgeNames names the derived edge features in order.
var RobustEdgeNames = [NumRobustEdge]string{"reported", "probe_loss", "up", "rtt_rel", "tx_rel", "rx_rel"}

// Robust returns the model's input graph for a graph of raw telemetry vectors (telemetry.NumNode
// per node, telemetry.NumEdge per link; a node whose report is missing has telemetry.FMissing = 1).
// Adj and Y are shared with raw. It reads nothing but raw: no labels, no other state.
func Robust(raw *Graph) Graph {
	n := len(raw.X)
	g := Graph{Adj: raw.Adj, Y: raw.Y, X: make([][]float64, n), E: make([][][]float64, n)}
	reported := func(v int) bool { return raw.X[v][telemetry.FMissing] == 0 }
	for v := range n {
		x := make([]float64, NumRobust)
		g.X[v] = x
		r := raw.X[v]
		deg := len(raw.Adj[v])
		if reported(v) {
			x[RReported] = 1
			x[RDelivery], x[RWorstHop] = r[telemetry.FDelivery], r[telemetry.FWorstHop]
			x[RLossMean], x[RLossMax] = r[telemetry.FLossMean], r[telemetry.FLossMax]
			x[RLogRTT] = math.Log1p(max(0, r[telemetry.FRTT]))
			if in := math.Expm1(r[telemetry.FTransitIn]); in >= 1 {
				x[RDropRatio] = clamp(math.Expm1(r[telemetry.FDropped])/in, 0, 1)
			}
			x[RRouteChg] = clamp(math.Expm1(r[telemetry.FRouteChg])/float64(max(1, n-1)), 0, 1)
			x[RCPU] = clamp(r[telemetry.FCPU], 0, 1)
			if deg > 0 {
				x[RDegree] = clamp(r[telemetry.FDegree]/float64(deg), 0, 1)
			}
		}
		links := make([][]float64, deg)
		for i := range links {
			e := make([]float64, NumRobustEdge)
			links[i] = e
			if !reported(v) || raw.E == nil || i >= len(raw.E[v]) {
				continue
			}
			re := raw.E[v][i]
			e[REReported] = 1
			e[REProbeLoss], e[REUp] = clamp(re[telemetry.EProbeLoss], 0, 1), clamp(re[telemetry.EUp], 0, 1)
			if rtt := re[telemetry.EProbeRTT]; rtt > 0 {
				e[RERTTRel] = math.Log((1 + rtt) / (1 + max(0, r[telemetry.FRTT])))
			}
			e[RETxRel] = math.Log1p(max(0, re[telemetry.ETxTransit])) - math.Log1p(max(0, re[telemetry.ETxTransitW]))
			e[RERxRel] = math.Log1p(max(0, re[telemetry.ERxTransit])) - math.Log1p(max(0, re[telemetry.ERxTransitW]))
		}
		g.E[v] = links
	}
	// The neighbours' view of each node, from the neighbours that reported.
	type view struct {
		reporting, up               int
		lossSum, lossMin, rttExcess float64
		rttN                        int
	}
	views := make([]view, n)
	for v := range views {
		views[v].lossMin = 1
	}
	for u := range n {
		if !reported(u) || raw.E == nil {
			continue
		}
		for i, v := range raw.Adj[u] {
			if i >= len(raw.E[u]) {
				break
			}
			e := raw.E[u][i]
			w := &views[v]
			w.reporting++
			loss := clamp(e[telemetry.EProbeLoss], 0, 1)
			w.lossSum += loss
			w.lossMin = min(w.lossMin, loss)
			if e[telemetry.EUp] > 0 {
				w.up++
			}
			if rtt := e[telemetry.EProbeRTT]; rtt > 0 {
				w.rttExcess += math.Log((1 + rtt) / (1 + max(0, raw.X[u][telemetry.FRTT])))
				w.rttN++
			}
		}
	}
	flows := conservation(raw, reported)
	for v := range n {
		w, x := &views[v], g.X[v]
		if deg := len(raw.Adj[v]); deg > 0 {
			x[RNbrReported] = float64(w.reporting) / float64(deg)
		}
		if w.reporting > 0 {
			x[RNbrLossMean] = w.lossSum / float64(w.reporting)
			x[RNbrLossMin] = w.lossMin
			x[RNbrUp] = float64(w.up) / float64(w.reporting)
			if w.rttN > 0 {
				x[RNbrRTTExcess] = w.rttExcess / float64(w.rttN)
			}
		}
		f := flows[v]
		if f.in >= 1 {
			x[RDeficit] = clamp(1-f.out/f.in, -1, 1)
		}
		if f.inW >= 1 {
			x[RDeficitW] = clamp(1-f.outW/f.inW, -1, 1)
		}
		if f.inW > 0 || f.outW > 0 {
			x[RLogDeficitW] = math.Log1p(f.inW) - math.Log1p(f.outW)
		}
	}
	return g
}

// SuspectDeficit is the windowed flow deficit, by its neighbours' testimony, above which a node's
// testimony about its links is not trusted for judging a less suspect neighbour (conservation).
// Healthy relays away from any fault read about 0.01; the lowest-rate grey holes in training drop 10 %.
const SuspectDeficit = 0.05

// flow is what was handed to a node to relay and what it relayed, this interval and as the
// window means.
type flow struct{ in, out, inW, outW float64 }

// conservation returns every node's flow balance. Each link to a neighbour u contributes u's
// testimony (what u handed the node to relay, what u received that the node relayed), except
// where that testimony is unavailable or suspect:
//
//   - u is silent: what u handed the node is unknown and left out; what the node handed u is
//     taken from the node's own report. Without it, every packet the node passed towards a silent
//     neighbour would read as dropped.
//   - u's own flow deficit (first pass, by its neighbours' testimony) exceeds SuspectDeficit and
//     the node's: a relay that drops and reports handing on what it dropped inflates what it
//     claims it handed its downstream neighbours, and a relay that also under-reports what it
//     received frames its upstream ones. For such a link, what was handed to the node is the
//     smaller of u's claim and the node's own count of what u relayed to it, and what the node
//     relayed is the larger of u's count and the node's own claim. The more suspect end of a link
//     does not testify against the less suspect one; the reverse still holds, so a lying relay is
//     judged by its neighbours' testimony, never by its own report.
//
// The node's own counts are not the same quantities as its neighbours' (what it handed u includes
// its own packets; what u relayed to it includes packets for the node itself), so they only ever
// lower what was handed or raise what was relayed: a stand-in can hide a fault, never invent one.
func conservation(raw *Graph, reported func(int) bool) []flow {
	n := len(raw.X)
	suspect := func(u, v int) bool { return false }
	pass := func() []flow {
		fs := make([]flow, n)
		if raw.E == nil {
			return fs
		}
		for v := range n {
			f := &fs[v]
			for i, u := range raw.Adj[v] {
				var own []float64
				if reported(v) && i < len(raw.E[v]) {
					own = raw.E[v][i]
				}
				if !reported(u) {
					if own != nil {
						f.out += max(0, own[telemetry.ETxTransit])
						f.outW += max(0, own[telemetry.ETxTransitW])
					}
					continue
				}
				j := slices.Index(raw.Adj[u], v)
				if j < 0 || j >= len(raw.E[u]) {
					continue
				}
				e := raw.E[u][j]
				in, out := max(0, e[telemetry.ETxTransit]), max(0, e[telemetry.ERxTransit])
				inW, outW := max(0, e[telemetry.ETxTransitW]), max(0, e[telemetry.ERxTransitW])
				if own != nil && suspect(u, v) {
					in, out = min(in, max(0, own[telemetry.ERxTransit])), max(out, own[telemetry.ETxTransit])
					inW, outW = min(inW, max(0, own[telemetry.ERxTransitW])), max(outW, own[telemetry.ETxTransitW])
				}
				f.in += in
				f.out += out
				f.inW += inW
				f.outW += outW
			}
		}
		return fs
	}
	suspicion := make([]float64, n)
	for v, f := range pass() {
		if f.inW >= 1 {
			suspicion[v] = 1 - f.outW/f.inW
		}
	}
	suspect = func(u, v int) bool { return suspicion[u] > SuspectDeficit && suspicion[u] > suspicion[v] }
	return pass()
}

func clamp(a, lo, hi float64) float64 {
	if math.IsNaN(a) {
		return 0
	}
	return max(lo, min(hi, a))
}
