package detector

import (
	"math"
	"strings"
	"testing"

	"x0tta6bl4/internal/telemetry"
)

// TestKernelInputs: the kernel block is computed from the report's fields as ratios to the node's
// own packet rate; absent features (no eBPF, a partial map, a missing report) give value 0 and
// presence 0; and scaling every rate by the same factor leaves the ratios where they were.
func TestKernelInputs(t *testing.T) {
	node := func(sent, transit float64) []float64 {
		x := make([]float64, telemetry.NumNode)
		x[telemetry.FSent], x[telemetry.FTransitIn] = math.Log1p(sent), math.Log1p(transit)
		return x
	}
	kernel := func(unread, unseen, drops, retrans float64) map[string]float64 {
		return map[string]float64{"kernel_rx_unread": unread, "kernel_tx_unseen": unseen,
			"kernel_drops": math.Log1p(drops), "kernel_tcp_retransmits": math.Log1p(retrans), "kernel_drop_socket_rcvbuff": 1}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

	// 99 sent + 100 transit + 1 = 200 packets per second.
	k := KernelInputs(node(99, 100), kernel(20, -4, 50, 9))
	want := [NumKernelInputs]float64{0.1, 1, -0.02, 1, 0.25, 1, 0.09, 1}
	for i := range want {
		if !near(k[i], want[i]) {
			t.Fatalf("%s = %v, want %v (all %v)", KernelInputNames[i], k[i], want[i], k)
		}
	}
	// Ten times the traffic and ten times the kernel's counts: the same inputs.
	k10 := KernelInputs(node(999, 1000), kernel(200, -40, 500, 90))
	for i := range k {
		if math.Abs(k10[i]-k[i]) > 0.002 {
			t.Fatalf("%s moved with volume: %v → %v", KernelInputNames[i], k[i], k10[i])
		}
	}
	// Ratios are bounded whatever a node claims.
	k = KernelInputs(node(0, 0), kernel(1e9, -1e9, 1e9, 1e9))
	if k[KIRxUnread] != 1 || k[KITxUnseen] != -1 || k[KIDropRatio] != 1 || k[KIRetransRatio] != 1 {
		t.Fatalf("unbounded: %v", k)
	}

	// No eBPF: every value and every presence is 0.
	if k := KernelInputs(node(99, 100), nil); k != ([NumKernelInputs]float64{}) {
		t.Fatalf("no kernel features: %v", k)
	}
	// A partial map: only what was reported is present; a non-finite value counts as absent.
	k = KernelInputs(node(99, 100), map[string]float64{"kernel_drops": math.Log1p(20), "kernel_tcp_retransmits": math.NaN()})
	if !near(k[KIDropRatio], 0.1) || k[KIDropRatioPresent] != 1 || k[KIRxUnreadPresent] != 0 || k[KITxUnseenPresent] != 0 ||
		k[KIRetransRatioPresent] != 0 || k[KIRxUnread] != 0 || k[KIRetransRatio] != 0 {
		t.Fatalf("partial: %v", k)
	}
	// A node whose report is missing: unknown, whatever kernel map travels with it.
	missing := node(99, 100)
	missing[telemetry.FMissing] = 1
	if k := KernelInputs(missing, kernel(20, -4, 50, 9)); k != ([NumKernelInputs]float64{}) {
		t.Fatalf("missing report: %v", k)
	}
}

// TestKernelInputLayout: every value input is followed by its presence input, which readers of the
// block (ctl predict) rely on.
func TestKernelInputLayout(t *testing.T) {
	for i := 0; i < NumKernelInputs; i += 2 {
		if !strings.HasSuffix(KernelInputNames[i+1], "_present") || strings.HasSuffix(KernelInputNames[i], "_present") {
			t.Fatalf("inputs %d, %d: %q, %q", i, i+1, KernelInputNames[i], KernelInputNames[i+1])
		}
	}
}
