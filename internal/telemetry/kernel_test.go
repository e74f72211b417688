package telemetry

import (
	"math"
	"testing"
	"time"
)

func TestKernelFeatures(t *testing.T) {
	c := NewCollector()
	at := time.Unix(1000, 0)
	k0 := &KernelCounters{UnderlayRx: 100, UnderlayTx: 50, DaemonRx: 100, DaemonTx: 50, TCPRetransmits: 7,
		Drops: map[string]uint64{"socket_rcvbuff": 4}}
	if _, ok := c.Add(Sample{At: at, Kernel: k0}); ok {
		t.Fatal("the first sample made a vector")
	}
	// Two seconds later: the kernel saw 40 more arrive but the daemon read 30; it sent 20 and the
	// kernel saw 16 leave; 10 more buffer drops and 2 netfilter drops; 6 more retransmits.
	k1 := &KernelCounters{UnderlayRx: 140, UnderlayTx: 66, DaemonRx: 130, DaemonTx: 70, TCPRetransmits: 13,
		Drops: map[string]uint64{"socket_rcvbuff": 14, "netfilter_drop": 2}}
	v, ok := c.Add(Sample{At: at.Add(2 * time.Second), Kernel: k1})
	if !ok {
		t.Fatal("no vector")
	}
	want := map[string]float64{"kernel_rx_unread": 5, "kernel_tx_unseen": 2, "kernel_drops": math.Log1p(6),
		"kernel_tcp_retransmits": math.Log1p(3), "kernel_drop_socket_rcvbuff": math.Log1p(5), "kernel_drop_netfilter_drop": math.Log1p(1)}
	if len(v.Kernel) != len(want) {
		t.Errorf("features %v, want %v", v.Kernel, want)
	}
	for name, x := range want {
		if got, ok := v.Kernel[name]; !ok || math.Abs(got-x) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, x)
		}
		if !ValidKernelName(name) {
			t.Errorf("%s is not a valid kernel feature name", name)
		}
	}
	// A sample without kernel counters (eBPF went away) gives no kernel features: unknown, not 0.
	if v, _ := c.Add(Sample{At: at.Add(3 * time.Second)}); v.Kernel != nil {
		t.Errorf("kernel features without kernel counters: %v", v.Kernel)
	}
	for _, bad := range []string{"cpu", "kernel_drop_", "kernel_drop_A", "kernel_drop_a-b", "kernel_x"} {
		if ValidKernelName(bad) {
			t.Errorf("%q accepted as a kernel feature name", bad)
		}
	}
}
