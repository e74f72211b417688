package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestParseDataHeader(t *testing.T) {
	good := DataHeader{Receiver: 0x01020304, Counter: 0x1122334455667788}.AppendHeader(nil)
	good = append(good, make([]byte, TagSize)...)
	if !bytes.Equal(good[:8], []byte{4, 0, 0, 0, 4, 3, 2, 1}) {
		t.Fatalf("encoding not little-endian: % x", good[:8])
	}
	h, err := ParseDataHeader(good)
	if err != nil || h.Receiver != 0x01020304 || h.Counter != 0x1122334455667788 {
		t.Fatalf("parse = %+v, %v", h, err)
	}
	mod := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	limit := make([]byte, 8)
	binary.LittleEndian.PutUint64(limit, RejectAfterMessages)
	below := make([]byte, 8)
	binary.LittleEndian.PutUint64(below, RejectAfterMessages-1)
	cases := []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"short", good[:MinPacketSize-1], false},
		{"min", good, true},
		{"max", append(bytes.Clone(good), make([]byte, MaxPacketSize-len(good))...), true},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxPacketSize-len(good)+1)...), false},
		{"type 0", mod(func(p []byte) []byte { p[0] = 0; return p }), false},
		{"type 1", mod(func(p []byte) []byte { p[0] = 1; return p }), false},
		{"type 5", mod(func(p []byte) []byte { p[0] = 5; return p }), false},
		{"reserved 1", mod(func(p []byte) []byte { p[1] = 1; return p }), false},
		{"reserved 2", mod(func(p []byte) []byte { p[2] = 0x80; return p }), false},
		{"reserved 3", mod(func(p []byte) []byte { p[3] = 1; return p }), false},
		{"counter at limit", mod(func(p []byte) []byte { copy(p[8:], limit); return p }), false},
		{"counter max", mod(func(p []byte) []byte { copy(p[8:], bytes.Repeat([]byte{0xff}, 8)); return p }), false},
		{"counter below limit", mod(func(p []byte) []byte { copy(p[8:], below); return p }), true},
	}
	for _, c := range cases {
		_, err := ParseDataHeader(c.pkt)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v does not wrap ErrMalformed", c.name, err)
		}
	}
}

func TestParseDataHeaderNoAlloc(t *testing.T) {
	bad := make([]byte, 40)
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseDataHeader(bad) }); n != 0 {
		t.Fatalf("rejecting a packet allocates %v times", n)
	}
}

func FuzzParseDataHeader(f *testing.F) {
	pkt := DataHeader{Receiver: 7, Counter: 9}.AppendHeader(nil)
	pkt = append(pkt, make([]byte, TagSize)...)
	f.Add(pkt)
	f.Add(pkt[:20])
	f.Add(append(bytes.Clone(pkt), 1, 2, 3))
	f.Add([]byte{4, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseDataHeader(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(p) < MinPacketSize || len(p) > MaxPacketSize || h.Counter >= RejectAfterMessages {
			t.Fatalf("accepted out-of-bounds packet: len %d, %+v", len(p), h)
		}
		// Accepted headers round-trip exactly.
		if enc := h.AppendHeader(nil); !bytes.Equal(enc, p[:HeaderSize]) {
			t.Fatalf("round trip: % x != % x", enc, p[:HeaderSize])
		}
	})
}
