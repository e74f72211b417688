package routing

import (
	"math"
	"time"
)

// Cost model constants (docs/routing.md, "Cost").
const (
	costUnit    = 100 * time.Microsecond // one cost unit of "effective latency"
	hopPenalty  = 10                     // 1 ms per hop, so equal latencies prefer fewer hops
	maxLossUsed = 0.95                   // loss above this is treated as this (cost ×400)
	maxRTTUsed  = 60 * time.Second
)

// PenaltyLoss is the loss at which LinkCost stops growing: a link advertised with it costs 400 times
// its lossless cost (at most MaxLinkCost). Such a link is a last resort: every node's SPF routes
// around it, yet still uses it when it is the only way. Self-healing advertises it for a relay it
// distrusts (through UpdateMetrics); flap damping for a suppressed link.
const PenaltyLoss = maxLossUsed

// LinkCost turns smoothed link measurements into a routing cost:
//
//	ceil((10 + RTT/100µs) / (1 − min(loss, 0.95))²), between 1 and MaxLinkCost.
//
// The second factor is ETX: a delivery needs both the packet and the reverse traffic through.
func LinkCost(m Metrics) uint32 {
	if m.Cost != 0 {
		return min(m.Cost, MaxLinkCost)
	}
	rtt := m.RTT
	if rtt < 0 {
		rtt = 0
	}
	rtt = min(rtt, maxRTTUsed)
	base := float64(hopPenalty) + float64(rtt)/float64(costUnit)
	loss := m.Loss
	if !(loss > 0) { // negative or NaN
		loss = 0
	}
	loss = min(loss, maxLossUsed)
	d := 1 - loss
	c := math.Ceil(base / (d * d))
	if c >= MaxLinkCost {
		return MaxLinkCost
	}
	return max(uint32(c), 1)
}

// rto is the retransmission timeout for a neighbour with the given RTT.
func rto(rtt time.Duration) time.Duration {
	return min(max(3*rtt, 100*time.Millisecond), 2*time.Second)
}

// beyondHysteresis reports whether a measured cost differs enough from the advertised one to be
// advertised.
func beyondHysteresis(advertised, measured uint32, h float64) bool {
	return math.Abs(float64(measured)-float64(advertised)) > h*float64(advertised)
}
