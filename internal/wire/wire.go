// Package wire reads and writes the big-endian, length-prefixed fields every canonical encoding of
// the project is made of (certificates, revocation lists, policies, governance objects).
//
// It never allocates more than the bytes it was given hold: a length that points past the end is an
// error, not an allocation.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTruncated is the error of a read past the end.
var ErrTruncated = errors.New("truncated")

// Reader decodes fields in order. The first error sticks; later reads return zero values, so
// callers check Err once at the end.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Bytes returns the next n bytes (a slice of the input).
func (r *Reader) Bytes(n int) []byte {
	if r.err != nil {
		return make([]byte, max(n, 0))
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w at byte %d", ErrTruncated, r.off)
		return make([]byte, max(n, 0))
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *Reader) U8() uint8   { return r.Bytes(1)[0] }
func (r *Reader) U16() uint16 { return binary.BigEndian.Uint16(r.Bytes(2)) }
func (r *Reader) U32() uint32 { return binary.BigEndian.Uint32(r.Bytes(4)) }
func (r *Reader) U64() uint64 { return binary.BigEndian.Uint64(r.Bytes(8)) }

// Hash reads 32 bytes.
func (r *Reader) Hash() (h [32]byte) {
	copy(h[:], r.Bytes(32))
	return h
}

// Bytes8 reads a 1-byte length and that many bytes; Str8 the same as a string.
func (r *Reader) Bytes8() []byte { return r.Bytes(int(r.U8())) }
func (r *Reader) Str8() string   { return string(r.Bytes8()) }

// Bytes16 reads a 2-byte length and that many bytes.
func (r *Reader) Bytes16() []byte { return r.Bytes(int(r.U16())) }

// Bytes32 reads a 4-byte length and that many bytes, refusing a length above limit first.
func (r *Reader) Bytes32(limit int) []byte {
	n := r.U32()
	if r.err == nil && uint64(n) > uint64(limit) {
		r.err = fmt.Errorf("field of %d bytes at byte %d, at most %d allowed", n, r.off, limit)
		return nil
	}
	return r.Bytes(int(n))
}

// Magic checks a format's magic bytes and format number.
func (r *Reader) Magic(magic string, format byte) {
	if string(r.Bytes(len(magic))) != magic && r.err == nil {
		r.err = fmt.Errorf("not a %s encoding", magic)
	}
	if v := r.U8(); r.err == nil && v != format {
		r.err = fmt.Errorf("%s format %d, only %d is known", magic, v, format)
	}
}

// Err is the first error.
func (r *Reader) Err() error { return r.err }

// Fail records err unless an error is already recorded.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Offset is how many bytes were read; Remaining how many are left.
func (r *Reader) Offset() int    { return r.off }
func (r *Reader) Remaining() int { return len(r.b) - r.off }

// Done returns the first error, or an error if bytes are left over.
func (r *Reader) Done() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%d trailing bytes", len(r.b)-r.off)
	}
	return nil
}

// AppendStr8 appends a 1-byte length and s; AppendBytes16 a 2-byte length and v; AppendBytes32 a
// 4-byte length and v. The caller bounds the lengths.
func AppendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }
func AppendBytes16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}
func AppendBytes32(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
}
