package governance

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

var errTruncated = errors.New("truncated")

// reader decodes the fixed and length-prefixed fields of the encodings. The first error sticks;
// later reads return zero values, so callers check r.err once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return make([]byte, max(n, 0))
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w at byte %d", errTruncated, r.off)
		return make([]byte, max(n, 0))
	}
	out := r.b[r.off : r.off+n]
	r.off += n
	return out
}

func (r *reader) u8() uint8   { return r.bytes(1)[0] }
func (r *reader) u16() uint16 { return binary.BigEndian.Uint16(r.bytes(2)) }
func (r *reader) u32() uint32 { return binary.BigEndian.Uint32(r.bytes(4)) }
func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }

func (r *reader) hash() (h [32]byte) {
	copy(h[:], r.bytes(32))
	return h
}

func (r *reader) str8() string    { return string(r.bytes(int(r.u8()))) }
func (r *reader) bytes16() []byte { return r.bytes(int(r.u16())) }

// bytes32 reads a u32 length and that many bytes, refusing a length above limit before reading.
func (r *reader) bytes32(limit int) []byte {
	n := r.u32()
	if r.err == nil && uint64(n) > uint64(limit) {
		r.err = fmt.Errorf("field of %d bytes at byte %d, at most %d allowed", n, r.off, limit)
		return nil
	}
	return r.bytes(int(n))
}

// done fails unless every byte was consumed.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.b) {
		return fmt.Errorf("%d trailing bytes", len(r.b)-r.off)
	}
	return nil
}

func (r *reader) magic(m string, version byte) {
	if string(r.bytes(len(m))) != m && r.err == nil {
		r.err = fmt.Errorf("not a %s encoding", m)
	}
	if v := r.u8(); r.err == nil && v != version {
		r.err = fmt.Errorf("%s format %d, only %d is known", m, v, version)
	}
}

func appendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

func appendBytes16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}

func appendBytes32(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
}

// labelledHash is SHA-256 over a label, a zero byte and the data: a hash of one kind of object can
// never equal a hash of another kind.
func labelledHash(label string, data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write([]byte{0})
	h.Write(data)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// validText accepts printable UTF-8 of at most 255 bytes.
func validText(s string) error {
	if len(s) > 255 {
		return fmt.Errorf("%d bytes, at most 255 allowed", len(s))
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}
