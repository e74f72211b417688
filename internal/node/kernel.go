package node

import (
	"fmt"

	"x0tta6bl4/internal/ebpf"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/telemetry"
)

// Kernel-side observation (internal/ebpf, docs/ebpf.md). The shell owns it: Run loads the programs
// when Options.EBPF asks for them and unloads them when the node stops. The engine never reads it;
// status, the admin socket, metrics and telemetry read it when they are asked.

// kernelState is the probe, or why there is none.
type kernelState struct {
	probe *ebpf.Probe // nil when off
	off   string      // why it is off
}

// startKernel loads the programs if asked; a failure leaves the node running without them, logged
// once.
func (n *Node) startKernel() {
	ks := &kernelState{off: "disabled in the configuration (ebpf: {enabled: true} turns it on)"}
	if n.opts.EBPF {
		cfg := ebpf.Config{Port: n.UDPAddr().Port(), OverlayPrefix: identity.OverlayPrefix}
		if n.netdev != nil {
			cfg.Overlay = n.opts.DeviceName
		}
		if p, err := ebpf.Open(cfg); err != nil {
			ks.off = err.Error()
			n.log.Warn("eBPF observation is off", "why", ks.off)
		} else {
			ks.probe, ks.off = p, ""
			n.log.Info("eBPF observation on", "port", cfg.Port, "overlay_device", cfg.Overlay, "programs", len(p.ProgramIDs()))
		}
	}
	n.kernel.Store(ks)
}

// stopKernel unloads the programs.
func (n *Node) stopKernel() {
	ks := n.kernel.Swap(&kernelState{off: "the node stopped"})
	if ks != nil && ks.probe != nil {
		if err := ks.probe.Close(); err != nil {
			n.log.Warn("eBPF unload", "err", err)
		}
	}
}

func (n *Node) kernelProbe() (*ebpf.Probe, string) {
	ks := n.kernel.Load()
	if ks == nil {
		return nil, "the node is not running"
	}
	return ks.probe, ks.off
}

// FlowsView is what the kernel sees of the node's traffic: the admin socket's "flows" answer.
type FlowsView struct {
	On  bool   `json:"on"`
	Off string `json:"off,omitempty"` // why observation is off
	// Top are the overlay flows with the most bytes; OtherOut and OtherIn add up every other
	// flow in each direction, those evicted from the bounded map included.
	Top      []ebpf.Flow       `json:"top"`
	OtherOut ebpf.PacketsBytes `json:"other_out"`
	OtherIn  ebpf.PacketsBytes `json:"other_in"`
	Flows    int               `json:"flows"`    // flows the map holds
	Capacity int               `json:"capacity"` // its bound
	Totals   ebpf.Totals       `json:"totals"`
	// DaemonRx and DaemonTx are the datagrams the node itself read and sent, to set against the
	// kernel's underlay totals.
	DaemonRx   uint64          `json:"daemon_rx_packets"`
	DaemonTx   uint64          `json:"daemon_tx_packets"`
	Endpoints  []ebpf.Endpoint `json:"endpoints"`
	Drops      []ebpf.Drop     `json:"drops"`
	TCP        []ebpf.TCPFlow  `json:"tcp"`
	ProgramIDs []uint32        `json:"program_ids"`
}

// Most flows the admin socket and metrics list by name.
const (
	defaultTopFlows = 20
	maxTopFlows     = 1000
)

// Flows reads the kernel's view, with the top k flows (default 20).
func (n *Node) Flows(k int) (FlowsView, error) {
	if k <= 0 {
		k = defaultTopFlows
	}
	k = min(k, maxTopFlows)
	p, off := n.kernelProbe()
	if p == nil {
		return FlowsView{Off: off}, nil
	}
	s, err := p.Snapshot()
	if err != nil {
		return FlowsView{}, fmt.Errorf("read the kernel's maps: %w", err)
	}
	st := n.stats.snapshot()
	v := FlowsView{On: true, Flows: len(s.Flows), Capacity: s.FlowCapacity, Totals: s.Totals, Endpoints: s.Endpoints,
		Drops: s.Drops, TCP: s.TCP, DaemonRx: st.RxPackets, DaemonTx: st.TxPackets}
	v.Top, v.OtherOut, v.OtherIn = ebpf.TopFlows(s, k)
	v.ProgramIDs = p.ProgramIDs()
	return v, nil
}

// kernelCounters reads the kernel's counters for the detector's telemetry, with the daemon's
// datagram counts read right after; nil when observation is off or the maps cannot be read.
func (n *Node) kernelCounters() *telemetry.KernelCounters {
	p, _ := n.kernelProbe()
	if p == nil {
		return nil
	}
	t, err := p.Totals()
	if err != nil {
		return nil
	}
	drops, err := p.Drops()
	if err != nil {
		return nil
	}
	k := &telemetry.KernelCounters{UnderlayRx: t.UnderlayRx.Packets, UnderlayTx: t.UnderlayTx.Packets,
		DaemonRx: n.stats.rxPackets.Load(), DaemonTx: n.stats.txPackets.Load(), TCPRetransmits: t.TCPRetransmits,
		Drops: make(map[string]uint64, len(drops))}
	for _, d := range drops {
		k.Drops[d.Reason] += d.Count
	}
	return k
}
