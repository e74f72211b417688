package keptrecords

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"x0tta6bl4/internal/routing"
)

func sampleKept() []routing.HeldRecord {
	return []routing.HeldRecord{
		{Cert: bytes.Repeat([]byte{1}, 7000), Record: bytes.Repeat([]byte{2}, 3500)},
		{Cert: []byte("c"), Record: []byte("r")},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, hs := range [][]routing.HeldRecord{nil, sampleKept()} {
		got, err := Decode(Encode(hs))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, hs, func(a, b routing.HeldRecord) bool {
			return bytes.Equal(a.Cert, b.Cert) && bytes.Equal(a.Record, b.Record)
		}) {
			t.Fatalf("round trip of %d records gave %d, or different bytes", len(hs), len(got))
		}
	}
}

// withSum replaces b's checksum with the right one, so that a test reaches the checks after it.
func withSum(b []byte) []byte {
	body := b[:len(b)-sha256.Size]
	sum := sha256.Sum256(body)
	return append(bytes.Clone(body), sum[:]...)
}

// Every way a file can be damaged or forged is refused as a whole, with a reason, never a panic
// or an allocation beyond the file.
func TestRefused(t *testing.T) {
	good := Encode(sampleKept())
	count := len(magic) + 1
	first := header
	cases := map[string][]byte{
		"empty":          nil,
		"other magic":    withSum(append([]byte("X6KQ"), good[4:]...)),
		"other version":  withSum(append(append([]byte(magic), 9), good[5:]...)),
		"a bit flipped":  func() []byte { b := bytes.Clone(good); b[len(b)/2] ^= 1; return b }(),
		"truncated":      good[:len(good)-1],
		"trailing bytes": withSum(append(bytes.Clone(good), make([]byte, 40)...)),
		"count too high": withSum(append(binary.BigEndian.AppendUint32(append([]byte(nil), good[:count]...), MaxRecords+1), make([]byte, sha256.Size)...)),
		"count beyond the records": func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[count:], 3)
			return withSum(b)
		}(),
		"entry longer than the file": func() []byte {
			b := bytes.Clone(good)
			binary.BigEndian.PutUint32(b[first:], 1<<30)
			return withSum(b)
		}(),
		"empty entry": func() []byte {
			b := bytes.Clone(good[:first])
			binary.BigEndian.PutUint32(b[count:], 1)
			b = binary.BigEndian.AppendUint32(b, 0)
			return withSum(append(b, make([]byte, 32)...))
		}(),
		"too large": make([]byte, MaxBytes+1),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrFile) {
			t.Errorf("%s: %v, want it refused", name, err)
		}
	}
}

// The encoder leaves out what would take the file beyond its bounds; the decoder reads the rest.
func TestBounded(t *testing.T) {
	big := routing.HeldRecord{Cert: make([]byte, 8<<10), Record: make([]byte, 8<<10)}
	hs := make([]routing.HeldRecord, MaxBytes/(16<<10)+10)
	for i := range hs {
		hs[i] = big
	}
	b := Encode(hs)
	if len(b) > MaxBytes {
		t.Fatalf("encoded %d bytes, bound %d", len(b), MaxBytes)
	}
	got, err := Decode(b)
	if err != nil || len(got) == 0 || len(got) >= len(hs) {
		t.Fatalf("decoded %d of %d records: %v", len(got), len(hs), err)
	}
	many := make([]routing.HeldRecord, MaxRecords+5)
	for i := range many {
		many[i] = routing.HeldRecord{Cert: []byte("c"), Record: []byte("r")}
	}
	if got, err := Decode(Encode(many)); err != nil || len(got) != MaxRecords {
		t.Fatalf("decoded %d records of %d: %v, want the first %d", len(got), len(many), err, MaxRecords)
	}
}

// The decoder takes any bytes: it refuses them with ErrFile or returns records that encode
// back to exactly those bytes.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(sampleKept()))
	f.Add(Encode(nil))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFile) {
				t.Fatalf("error without ErrFile: %v", err)
			}
			return
		}
		if !bytes.Equal(Encode(hs), b) {
			t.Fatal("decoded records do not encode back to the input")
		}
	})
}
