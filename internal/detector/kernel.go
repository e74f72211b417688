package detector

import (
	"math"

	"x0tta6bl4/internal/telemetry"
)

// Kernel inputs: a node's eBPF counters (telemetry.KernelNames, docs/ebpf.md) turned into
// volume-invariant ratios, each followed by a presence input. They form a separate block, versioned
// by KernelInputsVersion, that is not part of the model's input width (NumRobust): the shipped model
// and every model trained so far ignore it, because the simulator the models are trained in has no
// kernel of its own (docs/intelligence.md, "Kernel inputs"). The control plane derives the block
// for every prediction and returns it with the answer, so an operator sees the kernel's independent
// evidence next to the model's score. Each value is followed by its presence input, so values sit
// at even indices and presences at odd ones. A node without eBPF, or a report without a feature, gives the
// value 0 and presence 0: unknown, never "no drops".
const (
	KIRxUnread            = iota // (kernel-seen − daemon-read datagrams) over the node's packets, −1…1
	KIRxUnreadPresent            // 1 when kernel_rx_unread was reported
	KITxUnseen                   // (daemon-sent − kernel-seen datagrams) over the node's packets, −1…1
	KITxUnseenPresent            // 1 when kernel_tx_unseen was reported
	KIDropRatio                  // kernel drops over the node's packets, 0…1
	KIDropRatioPresent           // 1 when kernel_drops was reported
	KIRetransRatio               // TCP retransmitted segments over the overlay packets the node sent, 0…1
	KIRetransRatioPresent        // 1 when kernel_tcp_retransmits was reported
	NumKernelInputs
)

// KernelInputsVersion names the layout of the kernel block; it changes whenever an input is added,
// removed or redefined, so that a model reading the block can refuse one of another layout.
const KernelInputsVersion = 1

// KernelInputNames names the kernel inputs in order.
var KernelInputNames = [NumKernelInputs]string{"kernel_rx_unread_frac", "kernel_rx_unread_present",
	"kernel_tx_unseen_frac", "kernel_tx_unseen_present", "kernel_drops_per_packet", "kernel_drops_present",
	"kernel_retransmits_per_sent", "kernel_retransmits_present"}

// KernelInputs derives a node's kernel block from its raw telemetry vector (telemetry.NumNode
// values) and its reported kernel features (nil when it has none). The node's packets per second
// are what its own report says it handled: own packets sent plus transit packets received, plus one
// so that an idle node's ratios stay bounded. A missing report (telemetry.FMissing = 1) gives an
// all-zero block, as Robust does for the node's own features.
func KernelInputs(node []float64, kernel map[string]float64) [NumKernelInputs]float64 {
	var k [NumKernelInputs]float64
	if len(node) < telemetry.NumNode || node[telemetry.FMissing] != 0 || len(kernel) == 0 {
		return k
	}
	sent := math.Expm1(max(0, node[telemetry.FSent]))
	packets := 1 + sent + math.Expm1(max(0, node[telemetry.FTransitIn]))
	feature := func(i int) (float64, bool) {
		v, ok := kernel[telemetry.KernelNames[i]]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, false
		}
		return v, true
	}
	if v, ok := feature(telemetry.KRxUnread); ok {
		k[KIRxUnread], k[KIRxUnreadPresent] = clamp(v/packets, -1, 1), 1
	}
	if v, ok := feature(telemetry.KTxUnseen); ok {
		k[KITxUnseen], k[KITxUnseenPresent] = clamp(v/packets, -1, 1), 1
	}
	if v, ok := feature(telemetry.KDrops); ok {
		k[KIDropRatio], k[KIDropRatioPresent] = clamp(math.Expm1(max(0, v))/packets, 0, 1), 1
	}
	if v, ok := feature(telemetry.KTCPRetrans); ok {
		k[KIRetransRatio], k[KIRetransRatioPresent] = clamp(math.Expm1(max(0, v))/(1+sent), 0, 1), 1
	}
	return k
}
