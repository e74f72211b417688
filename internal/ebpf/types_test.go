package ebpf

import (
	"net/netip"
	"testing"
)

// TestTopFlows: the heaviest flows by bytes, ties broken by packets; "other" is the totals minus
// the top, per direction; any k, negative or beyond the flows held, is an answer, not a panic.
func TestTopFlows(t *testing.T) {
	key := func(i byte, d Direction) FlowKey {
		return FlowKey{Src: netip.AddrFrom16([16]byte{0xfd, 15: i}), Dst: netip.AddrFrom16([16]byte{0xfd, 15: 1}), Proto: 17, Dir: d}
	}
	s := Snapshot{Flows: []Flow{{key(2, Outbound), 1, 100}, {key(3, Outbound), 5, 900}, {key(4, Inbound), 2, 900}, {key(5, Inbound), 3, 50}},
		Totals: Totals{OverlayTx: PacketsBytes{Packets: 20, Bytes: 3000}, OverlayRx: PacketsBytes{Packets: 5, Bytes: 950}}}
	top, out, in := TopFlows(s, 2)
	if len(top) != 2 || top[0].FlowKey != key(3, Outbound) || top[1].FlowKey != key(4, Inbound) {
		t.Fatalf("top 2: %+v", top)
	}
	if out != (PacketsBytes{Packets: 15, Bytes: 2100}) || in != (PacketsBytes{Packets: 3, Bytes: 50}) {
		t.Fatalf("other out %+v, in %+v", out, in)
	}
	for _, k := range []int{-1, 0} {
		if top, out, _ := TopFlows(s, k); len(top) != 0 || out != s.Totals.OverlayTx {
			t.Fatalf("k = %d: top %+v, other out %+v", k, top, out)
		}
	}
	if top, _, _ := TopFlows(s, 100); len(top) != len(s.Flows) {
		t.Fatalf("k = 100: %d flows of %d", len(top), len(s.Flows))
	}
}
