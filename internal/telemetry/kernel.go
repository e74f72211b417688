package telemetry

import (
	"math"
	"regexp"
)

// Kernel features: what a node's eBPF programs (internal/ebpf, docs/ebpf.md) count, evidence the
// daemon cannot forge. They are optional — a node without eBPF sends none — so a reader must
// treat an absent kernel feature as unknown, never as zero.
const (
	// KRxUnread is the datagrams to the node's UDP port that the kernel saw arrive minus those the
	// daemon read, per second: drops in the kernel (firewall, full socket buffer) or a daemon that
	// under-reports. Negative when the daemon reads traffic from interfaces not observed.
	KRxUnread = iota
	// KTxUnseen is the datagrams the daemon says it sent minus those the kernel saw leave, per second.
	KTxUnseen
	KDrops      // log1p(packets the kernel dropped on the node's devices or for its port, per second)
	KTCPRetrans // log1p(TCP segments retransmitted by overlay connections of the host, per second)
	NumKernel
)

// KernelNames names the kernel features in order.
var KernelNames = [NumKernel]string{"kernel_rx_unread", "kernel_tx_unseen", "kernel_drops", "kernel_tcp_retransmits"}

// KernelDropPrefix starts the name of a per-reason drop feature: kernel_drop_<reason> is
// log1p(drops for the kernel's reason, per second), sent for reasons seen in the interval.
const KernelDropPrefix = "kernel_drop_"

// MaxKernelFeatures bounds the kernel features of one vector (the kernel has about 120 reasons).
const MaxKernelFeatures = 256

var dropReason = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// ValidKernelName says whether name is a kernel feature's name.
func ValidKernelName(name string) bool {
	for _, k := range KernelNames {
		if name == k {
			return true
		}
	}
	if len(name) > len(KernelDropPrefix) && name[:len(KernelDropPrefix)] == KernelDropPrefix {
		return dropReason.MatchString(name[len(KernelDropPrefix):])
	}
	return false
}

// KernelCounters are the cumulative kernel-side counters at one instant.
type KernelCounters struct {
	UnderlayRx, UnderlayTx uint64            // datagrams on the node's port the kernel saw
	DaemonRx, DaemonTx     uint64            // datagrams the daemon read and sent, read at the same instant
	Drops                  map[string]uint64 // by reason
	TCPRetransmits         uint64
}

// KernelFeatures computes an interval's kernel features from the counters at its two ends, secs
// apart, or nil when either end lacks them. Nodes and the simulator (internal/sim) both use it, so
// simulated kernel evidence has exactly the definitions a real node reports.
func KernelFeatures(now, before *KernelCounters, secs float64) map[string]float64 {
	if now == nil || before == nil {
		return nil
	}
	rate := func(a, b uint64) float64 {
		if a < b {
			return 0
		}
		return float64(a-b) / secs
	}
	f := make(map[string]float64, NumKernel+len(now.Drops))
	f[KernelNames[KRxUnread]] = rate(now.UnderlayRx, before.UnderlayRx) - rate(now.DaemonRx, before.DaemonRx)
	f[KernelNames[KTxUnseen]] = rate(now.DaemonTx, before.DaemonTx) - rate(now.UnderlayTx, before.UnderlayTx)
	var drops float64
	for reason, n := range now.Drops {
		r := rate(n, before.Drops[reason])
		drops += r
		if name := KernelDropPrefix + reason; r > 0 && len(f) < MaxKernelFeatures && ValidKernelName(name) {
			f[name] = math.Log1p(r)
		}
	}
	f[KernelNames[KDrops]] = math.Log1p(drops)
	f[KernelNames[KTCPRetrans]] = math.Log1p(rate(now.TCPRetransmits, before.TCPRetransmits))
	return f
}
