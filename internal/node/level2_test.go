package node

import (
	"bytes"
	"net/netip"
	"testing"

	"x0tta6bl4/internal/overlay"
)

func testRoutedHeader() []byte {
	return overlay.AppendRouted(nil, overlay.RoutedHeader{HopLimit: 9,
		Src: netip.MustParseAddr("fd74::1"), Dst: netip.MustParseAddr("fd74::2")})
}

// TestLevel2PayloadRoundTrip: what the node encodes, it decodes to the same fields; truncations and
// unknown kinds are refused.
func TestLevel2PayloadRoundTrip(t *testing.T) {
	entry := netip.MustParseAddr("fd74::3")
	encap := append(appendEncap(nil, encapTransit, entry, testRoutedHeader()), "inner"...)
	p, err := parseLevel2Payload(encap)
	if err != nil || p.typ != l2PayloadEncap || p.kind != encapTransit || p.entry != entry ||
		!bytes.Equal(p.head, testRoutedHeader()) || string(p.payload) != "inner" {
		t.Fatalf("encap: %+v, %v", p, err)
	}
	proof := appendProofPayload(nil, []byte("cert"), []byte("record"))
	if p, err := parseLevel2Payload(proof); err != nil || string(p.cert) != "cert" || string(p.record) != "record" {
		t.Fatalf("proof: %+v, %v", p, err)
	}
	if p, err := parseLevel2Payload([]byte{l2PayloadMessage}); err != nil || len(p.msg) != 0 {
		t.Fatalf("hello: %+v, %v", p, err)
	}
	ack := appendProofAck(nil, entry, 1<<40+7)
	if p, err := parseLevel2Payload(ack); err != nil || p.typ != l2PayloadProofAck || p.dest != entry || p.seq != 1<<40+7 {
		t.Fatalf("proof acknowledgement: %+v, %v", p, err)
	}
	bad := [][]byte{nil, {l2PayloadProof, 0}, {l2PayloadProof, 0, 4, 'c'}, proof[:7], encap[:l2EncapHeader-1],
		append(appendEncap(nil, 2, entry, testRoutedHeader()), 'x'), appendEncap(nil, encapRouted, entry, testRoutedHeader()),
		{99}, ack[:len(ack)-1], append(ack, 0)}
	for i, b := range bad {
		if _, err := parseLevel2Payload(b); err == nil {
			t.Errorf("bad payload %d (%x) accepted", i, b)
		}
	}
}

// FuzzParseLevel2Payload: any bytes decode or are refused without a panic, and what decodes encodes
// back to the same bytes.
func FuzzParseLevel2Payload(f *testing.F) {
	f.Add(append(appendEncap(nil, encapTransit, netip.MustParseAddr("fd74::3"), testRoutedHeader()), 4, 0, 0))
	f.Add(append(appendEncap(nil, encapRouted, netip.MustParseAddr("fd74::3"), testRoutedHeader()), 1))
	f.Add(appendProofPayload(nil, []byte("cert"), []byte("record")))
	f.Add([]byte{l2PayloadMessage, 1, 2, 3})
	f.Add(appendProofAck(nil, netip.MustParseAddr("fd74::3"), 42))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseLevel2Payload(b)
		if err != nil {
			return
		}
		var again []byte
		switch p.typ {
		case l2PayloadMessage:
			again = append([]byte{l2PayloadMessage}, p.msg...)
		case l2PayloadProof:
			again = appendProofPayload(nil, p.cert, p.record)
		case l2PayloadEncap:
			again = append(appendEncap(nil, p.kind, p.entry, p.head), p.payload...)
			if _, err := overlay.ParseRoutedHeader(p.head); err != nil {
				t.Fatalf("decoded a bad routed header: %v", err)
			}
		case l2PayloadProofAck:
			again = appendProofAck(nil, p.dest, p.seq)
		default:
			t.Fatalf("decoded unknown type %d", p.typ)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, decoded from %x", again, b)
		}
	})
}
