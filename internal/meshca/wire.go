package meshca

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

var errTruncated = errors.New("truncated")

// reader decodes the length-prefixed fields of certificates and revocation lists. The first error
// sticks; later reads return zero values, so callers check r.err once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
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

func (r *reader) bytes8() []byte  { return r.bytes(int(r.u8())) }
func (r *reader) bytes16() []byte { return r.bytes(int(r.u16())) }

func appendString8(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

func appendBytes16(b []byte, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}

func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }
