package sim

import (
	"math"
	"testing"
	"time"

	"x0tta6bl4/internal/telemetry"
)

var kernelConfig = Config{Nodes: 40, Seed: 7, Duration: 12 * time.Second, FaultFrom: 0.1, FaultTo: 0.2,
	Faults: []FaultSpec{{Blackhole, 1}, {GreyHole, 1}, {Overload, 1}, {Crash, 1}}, Intensity: map[Kind][2]float64{GreyHole: {0.5, 0.5}}}

// TestKernelLeavesTelemetryAlone: the kernel draws from its own PRNG stream, so a run's telemetry
// is the same with and without kernel evidence, and without it no interval carries any.
func TestKernelLeavesTelemetryAlone(t *testing.T) {
	a, err := Run(kernelConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kernelConfig
	cfg.KernelFraction = 1
	b, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Intervals {
		if a.Intervals[i].Kernel != nil {
			t.Fatal("kernel features without eBPF")
		}
		if b.Intervals[i].Kernel == nil {
			t.Fatal("no kernel features with eBPF on every node")
		}
		for v := range a.Intervals[i].X {
			if a.Intervals[i].X[v] != b.Intervals[i].X[v] {
				t.Fatalf("interval %d node %d: telemetry changed with the kernel", i, v)
			}
			for j := range a.Intervals[i].E[v] {
				if a.Intervals[i].E[v][j] != b.Intervals[i].E[v][j] {
					t.Fatalf("interval %d node %d: link telemetry changed with the kernel", i, v)
				}
			}
		}
	}
}

// TestKernelFraction: the nodes with eBPF are a fixed set of the asked size; every other node, and
// a dead one, has no kernel features (unknown, not zero).
func TestKernelFraction(t *testing.T) {
	cfg := kernelConfig
	cfg.KernelFraction = 0.25
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := map[int]bool{}
	for v, k := range r.Intervals[0].Kernel {
		if k != nil {
			first[v] = true
		}
	}
	if len(first) != 10 {
		t.Fatalf("%d of 40 nodes have kernel features, want 10", len(first))
	}
	for i, iv := range r.Intervals {
		for v, k := range iv.Kernel {
			switch {
			case k != nil && !first[v]:
				t.Fatalf("interval %d: node %d gained eBPF", i, v)
			case k != nil && iv.X[v][FMissing] != 0:
				t.Fatalf("interval %d: dead node %d has kernel features", i, v)
			case k == nil && first[v] && iv.X[v][FMissing] == 0:
				t.Fatalf("interval %d: node %d lost eBPF", i, v)
			}
		}
	}
}

// TestKernelEvidence: the kernel features follow what happened. A healthy node's daemon and kernel
// agree within the noise; a blackhole or grey hole, which reports relaying what it dropped, sends
// fewer datagrams than its daemon says (kernel_tx_unseen about what it dropped); an overloaded node
// leaves datagrams unread in its socket buffer (kernel_rx_unread and socket_rcvbuff drops); with
// Frame, a lying relay also says it read less than reached it.
func TestKernelEvidence(t *testing.T) {
	for _, frame := range []bool{false, true} {
		cfg := kernelConfig
		cfg.KernelFraction, cfg.Frame = 1, frame
		r, err := Run(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var healthyMax float64
		seen := map[Kind]bool{}
		for _, iv := range r.Intervals {
			for v, k := range iv.Kernel {
				if k == nil {
					continue
				}
				x := iv.X[v]
				packets := 1 + math.Expm1(float64(x[FSent])) + math.Expm1(float64(x[FTransitIn]))
				transit := math.Expm1(float64(x[FTransitIn]))
				rxUnread, txUnseen := k[telemetry.KernelNames[telemetry.KRxUnread]], k[telemetry.KernelNames[telemetry.KTxUnseen]]
				if _, ok := k[telemetry.KernelNames[telemetry.KTCPRetrans]]; ok {
					t.Fatal("retransmits reported by a simulator without TCP")
				}
				switch iv.Labels[v] {
				case Normal:
					// Stray datagrams the firewall dropped are unread too; the rest is noise.
					stray := math.Expm1(k[telemetry.KernelDropPrefix+reasonFirewall])
					healthyMax = max(healthyMax, math.Abs(rxUnread-stray)/packets, math.Abs(txUnseen)/packets)
				case Blackhole, GreyHole:
					if transit < 20 {
						continue
					}
					drop := 1.0
					if iv.Labels[v] == GreyHole {
						drop = 0.5
					}
					if got := txUnseen / transit; math.Abs(got-drop) > 0.25 {
						t.Errorf("frame %v: %s node %d: unseen %v of %v transit, want about %v", frame, iv.Labels[v], v, txUnseen, transit, drop)
					}
					if frame && rxUnread < 0.2*transit*drop {
						t.Errorf("frame %v: %s node %d: unread %v of %v transit", frame, iv.Labels[v], v, rxUnread, transit)
					}
					seen[iv.Labels[v]] = true
				case Overload:
					if rxUnread > 0.05*packets {
						if _, ok := k[telemetry.KernelDropPrefix+reasonSocketBuffer]; !ok {
							t.Errorf("overloaded node %d: %v unread but no socket-buffer drops: %v", v, rxUnread, k)
						}
						seen[Overload] = true
					}
				}
			}
		}
		if healthyMax > 0.05 {
			t.Errorf("frame %v: a healthy node's daemon and kernel disagree by %.3f of its packets", frame, healthyMax)
		}
		for _, kind := range []Kind{Blackhole, GreyHole, Overload} {
			if !seen[kind] {
				t.Errorf("frame %v: no kernel evidence of the %s", frame, kind)
			}
		}
		t.Logf("frame %v: healthy nodes' largest discrepancy %.4f of their packets", frame, healthyMax)
	}
}
