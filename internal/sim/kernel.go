package sim

import (
	"maps"
	"math"
	"math/rand/v2"
	"time"

	"x0tta6bl4/internal/telemetry"
)

// Kernel-side evidence. A node with eBPF (docs/ebpf.md) counts, in the kernel, the datagrams that
// reach and leave its UDP port, and the packets the kernel drops, by reason; its report carries
// those counts next to the daemon's own (telemetry.KernelCounters), and the interval's kernel
// features follow from them exactly as on a real node (telemetry.KernelFeatures). Here the kernel
// counts follow what the simulated underlay really did, and the daemon's counts are what the
// daemon says it did:
//
//   - a datagram that arrives at the node is seen by its kernel (UnderlayRx) and read by the daemon
//     (DaemonRx), unless the node is saturated: the excess it cannot serve (the queue drops of an
//     overload, 1 − 1/ρ) overflows the socket's receive buffer, so the kernel counts a
//     socket_rcvbuff drop and the daemon never reads it;
//   - a datagram the node puts on the wire is seen by its kernel (UnderlayTx) and counted by the
//     daemon (DaemonTx); a lying relay (blackhole, grey hole) also counts the datagrams it claims to
//     have handed on, to agree with the forwarded count it reports, and a relay that frames its
//     upstream (Config.Frame) reads, by its own count, what it under-reports on its links;
//   - small noise a real node has: the kernel's and the daemon's counters are read a moment apart
//     (kernelSkew of the interval's counts, each way), and now and then a few stray datagrams (a
//     scan, a peer's stale endpoint) reach the port and the firewall drops them (netfilter_drop).
//
// What the simulator does not model is left out rather than reported as zero: it has no TCP, so
// kernel_tcp_retransmits is absent. Simplification: a saturated node's queue drops still count in
// the daemon's own dropped and transit_in, as they always have (the model's inputs are unchanged);
// on a real node they would not reach the daemon at all.
//
// The kernel draws only from its own PRNG stream, so a run's other telemetry is the same with and
// without kernel evidence, and which nodes have eBPF is a fixed set per run.

const (
	kernelSkew  = 0.002 // relative offset between the kernel's and the daemon's counters, per sample
	strayChance = 0.05  // per node and interval, that stray datagrams reach the port
	strayMax    = 5     // stray datagrams in such an interval, at most
)

// Kernel drop reasons the simulator produces (the kernel's enum skb_drop_reason, lower case).
const (
	reasonSocketBuffer = "socket_rcvbuff"
	reasonFirewall     = "netfilter_drop"
)

// kernels holds the kernel counters of the nodes with eBPF.
type kernels struct {
	rng   *rand.Rand
	on    []bool
	count []telemetry.KernelCounters  // cumulative, exact
	prev  []*telemetry.KernelCounters // the last sample as reported
	// daemon counts in the current interval (the size of the sampling skew)
	rx, tx []uint64
}

// newKernels picks the nodes with eBPF; nil when there are none.
func newKernels(cfg Config) *kernels {
	n := int(math.Round(max(0, min(1, cfg.KernelFraction)) * float64(cfg.Nodes)))
	if n == 0 {
		return nil
	}
	k := &kernels{rng: rand.New(rand.NewPCG(cfg.Seed, 0x6b65726e)), on: make([]bool, cfg.Nodes),
		count: make([]telemetry.KernelCounters, cfg.Nodes), prev: make([]*telemetry.KernelCounters, cfg.Nodes),
		rx: make([]uint64, cfg.Nodes), tx: make([]uint64, cfg.Nodes)}
	for _, v := range k.rng.Perm(cfg.Nodes)[:n] {
		k.on[v] = true
		k.count[v].Drops = map[string]uint64{}
		k.prev[v] = &telemetry.KernelCounters{Drops: map[string]uint64{}}
	}
	return k
}

// arrive counts n datagrams reaching node v: its kernel sees them and its daemon reads them.
func (k *kernels) arrive(v, n int) {
	if k == nil || !k.on[v] || n <= 0 {
		return
	}
	k.count[v].UnderlayRx += uint64(n)
	k.count[v].DaemonRx += uint64(n)
	k.rx[v] += uint64(n)
}

// socketDrop moves n of the datagrams that reached v to the socket buffer's drops: the daemon,
// saturated, never read them.
func (k *kernels) socketDrop(v, n int) {
	if k == nil || !k.on[v] || n <= 0 {
		return
	}
	k.count[v].DaemonRx -= uint64(n)
	k.rx[v] -= uint64(n)
	k.count[v].Drops[reasonSocketBuffer] += uint64(n)
}

// underRead is what a framing relay v says it did not read, though it did.
func (k *kernels) underRead(v, n int) {
	if k == nil || !k.on[v] || n <= 0 {
		return
	}
	n = min(n, int(k.rx[v]))
	k.count[v].DaemonRx -= uint64(n)
	k.rx[v] -= uint64(n)
}

// send counts n datagrams v put on the wire, and claimed more it says it sent but did not.
func (k *kernels) send(v, n, claimed int) {
	if k == nil || !k.on[v] {
		return
	}
	k.count[v].UnderlayTx += uint64(n)
	k.count[v].DaemonTx += uint64(n + claimed)
	k.tx[v] += uint64(n + claimed)
}

// sample ends node v's interval: the kernel features its report carries, nil without eBPF.
func (k *kernels) sample(v int, interval time.Duration) map[string]float64 {
	if k == nil || !k.on[v] {
		return nil
	}
	c := &k.count[v]
	if k.rng.Float64() < strayChance {
		stray := uint64(1 + k.rng.IntN(strayMax))
		c.UnderlayRx += stray
		c.Drops[reasonFirewall] += stray
	}
	now := &telemetry.KernelCounters{UnderlayRx: c.UnderlayRx, UnderlayTx: c.UnderlayTx,
		DaemonRx: k.skewed(c.DaemonRx, k.rx[v]), DaemonTx: k.skewed(c.DaemonTx, k.tx[v]),
		Drops: maps.Clone(c.Drops), TCPRetransmits: c.TCPRetransmits}
	f := telemetry.KernelFeatures(now, k.prev[v], interval.Seconds())
	delete(f, telemetry.KernelNames[telemetry.KTCPRetrans]) // no TCP in the simulator: unknown, not zero
	k.prev[v], k.rx[v], k.tx[v] = now, 0, 0
	return f
}

// skewed is a cumulative daemon counter as read a moment before or after the kernel's: off by
// kernelSkew of the interval's count, each way.
func (k *kernels) skewed(total, interval uint64) uint64 {
	off := math.Round(kernelSkew * float64(interval) * k.rng.NormFloat64())
	return uint64(max(0, float64(total)+off))
}
