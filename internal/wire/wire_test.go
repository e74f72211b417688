package wire

import (
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	b := AppendBytes32(AppendBytes16(AppendStr8([]byte("MAGC\x01"), "hi"), []byte{1, 2, 3}), []byte("four"))
	r := NewReader(b)
	r.Magic("MAGC", 1)
	if s, v16, v32 := r.Str8(), r.Bytes16(), r.Bytes32(8); s != "hi" || len(v16) != 3 || string(v32) != "four" || r.Done() != nil {
		t.Fatalf("read %q %v %q: %v", s, v16, v32, r.Done())
	}
	// A length past the end is an error, not an allocation; the first error sticks.
	r = NewReader([]byte{0xff, 0xff, 1})
	if r.Bytes16(); !errors.Is(r.Err(), ErrTruncated) || r.U8() != 0 || !errors.Is(r.Done(), ErrTruncated) {
		t.Fatalf("truncated: %v", r.Err())
	}
	// Bytes32 refuses a length above its limit before reading.
	r = NewReader(AppendBytes32(nil, make([]byte, 9)))
	if r.Bytes32(8); r.Err() == nil {
		t.Fatal("Bytes32 took 9 bytes with a limit of 8")
	}
	// Trailing bytes, a wrong magic and a wrong format are errors.
	r = NewReader([]byte{1, 2})
	r.U8()
	if r.Done() == nil || r.Remaining() != 1 || r.Offset() != 1 {
		t.Fatal("trailing byte not reported")
	}
	for _, in := range []string{"MAGX\x01", "MAGC\x02"} {
		r = NewReader([]byte(in))
		if r.Magic("MAGC", 1); r.Err() == nil {
			t.Errorf("%q passed the magic check", in)
		}
	}
}
