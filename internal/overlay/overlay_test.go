package overlay

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

var (
	srcAddr = netip.MustParseAddr("fd74:1::1")
	dstAddr = netip.MustParseAddr("fd74:2::2")
)

func TestRoutedRoundTrip(t *testing.T) {
	b := AppendRouted(nil, RoutedHeader{HopLimit: 7, Src: srcAddr, Dst: dstAddr})
	if len(b) != RoutedHeaderSize {
		t.Fatalf("header is %d bytes", len(b))
	}
	b = append(b, "payload"...)
	h, p, err := ParseRouted(b)
	if err != nil || h.HopLimit != 7 || h.Src != srcAddr || h.Dst != dstAddr || string(p) != "payload" {
		t.Fatalf("got %+v %q %v", h, p, err)
	}
	for i := 7; i > 1; i-- {
		if !DecrementHopLimit(b) {
			t.Fatalf("hop limit exhausted early at %d", i)
		}
	}
	if DecrementHopLimit(b) {
		t.Fatal("hop limit 1 must not be relayed")
	}
}

func TestRoutedRejects(t *testing.T) {
	good := append(AppendRouted(nil, RoutedHeader{HopLimit: 3, Src: srcAddr, Dst: dstAddr}), 1)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"short", good[:RoutedHeaderSize], ErrShort},
		{"type", mut(func(b []byte) []byte { b[0] = byte(TypeDirect); return b }), ErrUnknownType},
		{"reserved", mut(func(b []byte) []byte { b[3] = 1; return b }), ErrReserved},
		{"hop limit 0", mut(func(b []byte) []byte { b[1] = 0; return b }), ErrHopLimit},
		{"source outside prefix", mut(func(b []byte) []byte { b[5] = 0x75; return b }), ErrAddress},
		{"destination outside prefix", mut(func(b []byte) []byte { b[20] = 0xfe; return b }), ErrAddress},
	}
	for _, tt := range tests {
		if _, _, err := ParseRouted(tt.frame); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestProbeRoundTrip(t *testing.T) {
	for _, ack := range []bool{false, true} {
		b := AppendProbe(nil, Probe{ID: 42, Sent: -5}, ack)
		p, gotAck, err := ParseProbe(b)
		if err != nil || p.ID != 42 || p.Sent != -5 || gotAck != ack {
			t.Fatalf("ack=%v: %+v %v %v", ack, p, gotAck, err)
		}
	}
	if _, _, err := ParseProbe(make([]byte, ProbeSize+1)); !errors.Is(err, ErrLength) {
		t.Errorf("long probe: %v", err)
	}
	bad := AppendProbe(nil, Probe{}, false)
	bad[1] = 9
	if _, _, err := ParseProbe(bad); !errors.Is(err, ErrReserved) {
		t.Errorf("reserved: %v", err)
	}
}

func TestPayloadAndType(t *testing.T) {
	if _, err := FrameType(nil); !errors.Is(err, ErrEmpty) {
		t.Error(err)
	}
	for _, b := range []byte{0, byte(lastType) + 1, 255} {
		if _, err := FrameType([]byte{b}); !errors.Is(err, ErrUnknownType) {
			t.Errorf("type %d: %v", b, err)
		}
	}
	if p, err := Payload([]byte{byte(TypeDirect), 0x60}); err != nil || len(p) != 1 {
		t.Errorf("direct payload: %v %v", p, err)
	}
	if _, err := Payload([]byte{byte(TypeCRL)}); !errors.Is(err, ErrShort) {
		t.Errorf("empty crl: %v", err)
	}
	if _, err := Payload([]byte{byte(TypePolicy)}); !errors.Is(err, ErrShort) {
		t.Errorf("empty policy: %v", err)
	}
	if p, err := Payload([]byte{byte(TypePolicy), 'X'}); err != nil || string(p) != "X" {
		t.Errorf("policy payload: %q %v", p, err)
	}
	if _, err := Payload(AppendProbe(nil, Probe{}, false)); !errors.Is(err, ErrUnknownType) {
		t.Errorf("probe has no plain payload: %v", err)
	}
}

func TestObservedRoundTrip(t *testing.T) {
	for _, a := range []string{"192.0.2.1:7946", "[2001:db8::1]:40000"} {
		addr := netip.MustParseAddrPort(a)
		f := AppendObserved(nil, addr)
		if len(f) != ObservedSize {
			t.Fatalf("%s: %d bytes", a, len(f))
		}
		got, err := ParseObserved(f)
		if err != nil || got != addr {
			t.Fatalf("%s: got %s, %v", a, got, err)
		}
	}
	f := AppendObserved(nil, netip.MustParseAddrPort("192.0.2.1:1"))
	if _, err := ParseObserved(f[:ObservedSize-1]); !errors.Is(err, ErrLength) {
		t.Error(err)
	}
	f[1] = 1
	if _, err := ParseObserved(f); !errors.Is(err, ErrReserved) {
		t.Error(err)
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	frame := append(AppendRouted(nil, RoutedHeader{HopLimit: 3, Src: srcAddr, Dst: dstAddr}), 1, 2, 3)
	probe := AppendProbe(nil, Probe{ID: 1}, true)
	if n := testing.AllocsPerRun(100, func() {
		ParseRouted(frame)
		ParseProbe(probe)
		ParseRouted(frame[:3])
	}); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(append(AppendRouted(nil, RoutedHeader{HopLimit: 3, Src: srcAddr, Dst: dstAddr}), 4, 0, 0, 0))
	f.Add(AppendProbe(nil, Probe{ID: 7, Sent: 99}, false))
	f.Add([]byte{byte(TypeDirect), 0x60, 0, 0})
	f.Add([]byte{byte(TypeCRL)})
	f.Add(AppendObserved(nil, netip.MustParseAddrPort("192.0.2.1:7946")))
	f.Fuzz(func(t *testing.T, frame []byte) {
		typ, err := FrameType(frame)
		if err != nil {
			return
		}
		switch typ {
		case TypeRouted:
			h, p, err := ParseRouted(frame)
			if err != nil {
				return
			}
			re := append(AppendRouted(nil, h), p...)
			if !bytes.Equal(re, frame) {
				t.Fatalf("routed frame does not re-encode: %x vs %x", re, frame)
			}
		case TypeObserved:
			a, err := ParseObserved(frame)
			if err == nil && !bytes.Equal(AppendObserved(nil, a), frame) {
				t.Fatal("observed address does not re-encode")
			}
		case TypeProbe, TypeProbeAck:
			p, ack, err := ParseProbe(frame)
			if err == nil && !bytes.Equal(AppendProbe(nil, p, ack), frame) {
				t.Fatal("probe does not re-encode")
			}
		default:
			if p, err := Payload(frame); err == nil && len(p) != len(frame)-1 {
				t.Fatal("payload length")
			}
		}
	})
}
