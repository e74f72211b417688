package node

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"x0tta6bl4/internal/ebpf"
)

// The kernel's view in Prometheus (docs/ebpf.md, "Metrics"). Cardinality is bounded: flows are the
// top metricsTopFlows by bytes plus one "other" series per direction, drops are keyed by the
// kernel's fixed list of reasons, and per-endpoint counts stay on the admin socket.

const metricsTopFlows = 10

var (
	descKFlowPackets = prometheus.NewDesc("x0tta6bl4_kernel_flow_packets_total", "Overlay IPv6 packets of the top flows by bytes, as the kernel counts them on the TUN; src and dst \"other\" sum every other flow of the direction.", []string{"dir", "proto", "src", "dst"}, nil)
	descKFlowBytes   = prometheus.NewDesc("x0tta6bl4_kernel_flow_bytes_total", "Overlay IPv6 bytes of the top flows by bytes, as the kernel counts them on the TUN; src and dst \"other\" sum every other flow of the direction.", []string{"dir", "proto", "src", "dst"}, nil)
	descKFlows       = prometheus.NewDesc("x0tta6bl4_kernel_flows", "Overlay flows the kernel's bounded map holds, and its bound.", []string{"state"}, nil)
	descKFlowsNew    = prometheus.NewDesc("x0tta6bl4_kernel_flows_created_total", "Overlay flows the kernel has started counting; beyond the bound the least recently used are evicted.", nil, nil)
	descKUDPPackets  = prometheus.NewDesc("x0tta6bl4_kernel_udp_packets_total", "Datagrams on the node's UDP port as the kernel sees them on the underlay interfaces, by direction.", []string{"direction"}, nil)
	descKUDPBytes    = prometheus.NewDesc("x0tta6bl4_kernel_udp_bytes_total", "UDP payload bytes on the node's UDP port as the kernel sees them on the underlay interfaces, by direction.", []string{"direction"}, nil)
	descKDrops       = prometheus.NewDesc("x0tta6bl4_kernel_drops_total", "Packets the kernel freed as dropped on the node's devices or for its UDP port, by where and the kernel's drop reason.", []string{"where", "reason"}, nil)
	descKRetrans     = prometheus.NewDesc("x0tta6bl4_kernel_tcp_retransmits_total", "TCP segments retransmitted by overlay connections of this host.", nil, nil)
)

var kernelDescs = []*prometheus.Desc{descKFlowPackets, descKFlowBytes, descKFlows, descKFlowsNew, descKUDPPackets,
	descKUDPBytes, descKDrops, descKRetrans}

// collectKernel adds the kernel's view when observation is on.
func (c collector) collectKernel(out metricSink) {
	p, _ := c.n.kernelProbe()
	if p == nil {
		return
	}
	s, err := p.Snapshot()
	if err != nil {
		c.n.log.Debug("eBPF metrics", "err", err)
		return
	}
	top, otherOut, otherIn := ebpf.TopFlows(s, metricsTopFlows)
	for _, f := range top {
		src, dst := f.Ends()
		labels := []string{f.Dir.String(), strconv.Itoa(int(f.Proto)), src, dst}
		out.counter(descKFlowPackets, f.Packets, labels...)
		out.counter(descKFlowBytes, f.Bytes, labels...)
	}
	for dir, o := range map[string]ebpf.PacketsBytes{"out": otherOut, "in": otherIn} {
		out.counter(descKFlowPackets, o.Packets, dir, "other", "other", "other")
		out.counter(descKFlowBytes, o.Bytes, dir, "other", "other", "other")
	}
	out.gauge(descKFlows, float64(len(s.Flows)), "held")
	out.gauge(descKFlows, float64(s.FlowCapacity), "capacity")
	out.counter(descKFlowsNew, s.Totals.FlowsCreated)
	out.counter(descKUDPPackets, s.Totals.UnderlayRx.Packets, "rx")
	out.counter(descKUDPPackets, s.Totals.UnderlayTx.Packets, "tx")
	out.counter(descKUDPBytes, s.Totals.UnderlayRx.Bytes, "rx")
	out.counter(descKUDPBytes, s.Totals.UnderlayTx.Bytes, "tx")
	for _, d := range s.Drops {
		out.counter(descKDrops, d.Count, d.Where, d.Reason)
	}
	out.counter(descKRetrans, s.Totals.TCPRetransmits)
}
