package ebpf

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Config says what to observe.
type Config struct {
	Port uint16 // the node's UDP port
	// Underlay names the interfaces the node's UDP traffic crosses; empty means every interface
	// that is up at Open, except loopback and Overlay.
	Underlay []string
	Overlay  string // the TUN device; empty: no overlay programs
	// OverlayPrefix selects the TCP connections whose health is recorded; invalid: none.
	OverlayPrefix netip.Prefix
}

// Endpoint is what crossed the underlay to and from one peer endpoint on the node's port. Bytes
// are UDP payload bytes.
type Endpoint struct {
	Addr netip.AddrPort `json:"addr"`
	Counts
}

// Counts are packets and bytes in both directions.
type Counts struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// Direction of an overlay flow.
type Direction uint8

const (
	// Outbound flows go from the host into the mesh (out of the TUN).
	Outbound Direction = 0
	// Inbound flows come from the mesh to the host (into the TUN).
	Inbound Direction = 1
)

// MarshalText writes "in" or "out".
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "in" or "out".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "in":
		*d = Inbound
	case "out":
		*d = Outbound
	default:
		return fmt.Errorf("direction %q: want in or out", b)
	}
	return nil
}

func (d Direction) String() string {
	if d == Inbound {
		return "in"
	}
	return "out"
}

// FlowKey is an IPv6 5-tuple and its direction. Ports are zero for protocols without them.
type FlowKey struct {
	Src     netip.Addr `json:"src"`
	Dst     netip.Addr `json:"dst"`
	SrcPort uint16     `json:"src_port"`
	DstPort uint16     `json:"dst_port"`
	Proto   uint8      `json:"proto"`
	Dir     Direction  `json:"dir"`
}

// Ends returns the source and destination as text: [address]:port for TCP and UDP, the address
// alone for protocols without ports.
func (k FlowKey) Ends() (src, dst string) {
	if k.Proto != 6 && k.Proto != 17 {
		return k.Src.String(), k.Dst.String()
	}
	return netip.AddrPortFrom(k.Src, k.SrcPort).String(), netip.AddrPortFrom(k.Dst, k.DstPort).String()
}

// Flow is one overlay flow's packets and bytes (whole IPv6 packets, headers included).
type Flow struct {
	FlowKey
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Drop counts the packets the kernel freed for one reason at one place.
type Drop struct {
	Reason string `json:"reason"` // the kernel's skb_drop_reason, lower case without its prefix
	Where  string `json:"where"`  // underlay, overlay or socket (a datagram to or from the mesh port elsewhere)
	Count  uint64 `json:"count"`
}

// TCPFlow is one overlay TCP connection as the kernel's TCP sees it.
type TCPFlow struct {
	Local       netip.AddrPort `json:"local"`
	Remote      netip.AddrPort `json:"remote"`
	Retransmits uint64         `json:"retransmits"`
	SRTTMicros  uint32         `json:"srtt_us"`
}

// Totals are counts no map eviction loses.
type Totals struct {
	OverlayTx  PacketsBytes `json:"overlay_tx"`
	OverlayRx  PacketsBytes `json:"overlay_rx"`
	UnderlayTx PacketsBytes `json:"underlay_tx"`
	UnderlayRx PacketsBytes `json:"underlay_rx"`
	// FlowsCreated counts flow entries ever inserted: beyond the bound, the least recently used
	// were evicted.
	FlowsCreated   uint64 `json:"flows_created"`
	TCPRetransmits uint64 `json:"tcp_retransmits"` // segments of overlay connections
}

// PacketsBytes is a packet and byte count.
type PacketsBytes struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Snapshot is the probe's maps read at one instant.
type Snapshot struct {
	Endpoints    []Endpoint
	Flows        []Flow // every flow the bounded map holds
	Drops        []Drop
	TCP          []TCPFlow
	Totals       Totals
	FlowCapacity int // the flow map's bound
}

// TopFlows returns the k flows with the most bytes (ties: more packets, then key order, so the
// answer is deterministic), none when k ≤ 0, and what the rest of the traffic in each direction
// adds up to. The rest is the totals minus the top flows, so it includes flows evicted from the
// bounded map.
func TopFlows(s Snapshot, k int) (top []Flow, otherOut, otherIn PacketsBytes) {
	fs := slices.Clone(s.Flows)
	slices.SortFunc(fs, func(a, b Flow) int {
		if c := cmp.Compare(b.Bytes, a.Bytes); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		return compareKeys(a.FlowKey, b.FlowKey)
	})
	top = fs[:max(0, min(k, len(fs)))]
	otherOut, otherIn = s.Totals.OverlayTx, s.Totals.OverlayRx
	for _, f := range top {
		o := &otherOut
		if f.Dir == Inbound {
			o = &otherIn
		}
		o.Packets -= min(o.Packets, f.Packets)
		o.Bytes -= min(o.Bytes, f.Bytes)
	}
	return top, otherOut, otherIn
}

func compareKeys(a, b FlowKey) int {
	return cmp.Or(a.Src.Compare(b.Src), a.Dst.Compare(b.Dst), cmp.Compare(a.SrcPort, b.SrcPort),
		cmp.Compare(a.DstPort, b.DstPort), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Dir, b.Dir))
}
