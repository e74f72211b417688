package billing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"unicode/utf8"
)

// A minimal reader of TON's bag-of-cells serialisation (the TON whitepaper's serialized_boc), enough
// to read a message body: ordinary cells, one root, no stored hashes. Every length is checked
// against the input before use, so a hostile body can neither crash nor make it allocate beyond its
// own size.

const (
	bocMagic    = 0xb5ee9c72
	maxBocCells = 64
	maxComment  = 1024
)

type cell struct {
	data []byte
	bits int
	refs []*cell
}

func parseBoC(b []byte) (*cell, error) {
	if len(b) < 6 || binary.BigEndian.Uint32(b) != bocMagic {
		return nil, errors.New("boc: bad magic")
	}
	flags := b[4]
	hasIdx, hasCRC := flags&0x80 != 0, flags&0x40 != 0
	size := int(flags & 7)
	off := int(b[5])
	if size < 1 || size > 4 || off < 1 || off > 8 {
		return nil, fmt.Errorf("boc: ref size %d or offset size %d out of range", size, off)
	}
	if hasCRC {
		if len(b) < 10 {
			return nil, errors.New("boc: truncated")
		}
		body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
		if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != sum {
			return nil, errors.New("boc: crc32c mismatch")
		}
		b = body
	}
	p := 6
	readN := func(n int) (int, error) {
		if p+n > len(b) {
			return 0, errors.New("boc: truncated")
		}
		var v uint64
		for i := 0; i < n; i++ {
			v = v<<8 | uint64(b[p+i])
		}
		p += n
		if v > 1<<30 {
			return 0, errors.New("boc: number out of range")
		}
		return int(v), nil
	}
	cells, err := readN(size)
	if err != nil {
		return nil, err
	}
	roots, err := readN(size)
	if err != nil {
		return nil, err
	}
	if _, err := readN(size); err != nil { // absent
		return nil, err
	}
	total, err := readN(off)
	if err != nil {
		return nil, err
	}
	if cells < 1 || cells > maxBocCells || roots != 1 {
		return nil, fmt.Errorf("boc: %d cells, %d roots; want 1-%d cells and one root", cells, roots, maxBocCells)
	}
	root, err := readN(size)
	if err != nil {
		return nil, err
	}
	if root >= cells {
		return nil, errors.New("boc: root index out of range")
	}
	if hasIdx {
		p += cells * off
	}
	if p > len(b) || total > len(b)-p {
		return nil, errors.New("boc: truncated cell data")
	}
	data := b[p : p+total]
	type rawCell struct {
		data []byte
		bits int
		refs []int
	}
	raw := make([]rawCell, cells)
	q := 0
	for i := range cells {
		if q+2 > len(data) {
			return nil, errors.New("boc: truncated cell")
		}
		d1, d2 := data[q], data[q+1]
		q += 2
		if d1&8 != 0 || d1&16 != 0 || d1>>5 != 0 {
			return nil, errors.New("boc: exotic cells and stored hashes are not supported")
		}
		nrefs := int(d1 & 7)
		if nrefs > 4 {
			return nil, errors.New("boc: more than 4 references")
		}
		n := (int(d2) + 1) / 2
		if q+n+nrefs*size > len(data) {
			return nil, errors.New("boc: truncated cell")
		}
		c := rawCell{data: data[q : q+n], bits: n * 8}
		if d2&1 != 0 {
			last := c.data[n-1]
			if last == 0 {
				return nil, errors.New("boc: missing completion tag")
			}
			tz := 0
			for last&(1<<tz) == 0 {
				tz++
			}
			c.bits = n*8 - tz - 1
		}
		q += n
		for range nrefs {
			var r int
			for k := 0; k < size; k++ {
				r = r<<8 | int(data[q+k])
			}
			q += size
			if r <= i || r >= cells {
				return nil, errors.New("boc: reference out of order")
			}
			c.refs = append(c.refs, r)
		}
		raw[i] = c
	}
	built := make([]*cell, cells)
	for i := cells - 1; i >= 0; i-- {
		c := &cell{data: raw[i].data, bits: raw[i].bits}
		for _, r := range raw[i].refs {
			c.refs = append(c.refs, built[r])
		}
		built[i] = c
	}
	return built[root], nil
}

// slice reads a cell's bits and references in order.
type slice struct {
	c    *cell
	pos  int
	ref  int
	fail error
}

func (s *slice) left() int { return s.c.bits - s.pos }

func (s *slice) bit() bool {
	if s.fail != nil || s.pos >= s.c.bits {
		s.fail = errors.New("cell: read past the end")
		return false
	}
	v := s.c.data[s.pos/8]>>(7-s.pos%8)&1 == 1
	s.pos++
	return v
}

func (s *slice) uint(n int) uint64 {
	var v uint64
	for range n {
		v <<= 1
		if s.bit() {
			v |= 1
		}
	}
	return v
}

func (s *slice) bytes(n int) []byte {
	out := make([]byte, 0, n)
	for range n {
		out = append(out, byte(s.uint(8)))
	}
	return out
}

func (s *slice) nextRef() *cell {
	if s.fail != nil || s.ref >= len(s.c.refs) {
		s.fail = errors.New("cell: missing reference")
		return nil
	}
	s.ref++
	return s.c.refs[s.ref-1]
}

// coins reads VarUInteger 16 (4-bit length in bytes, then the value) as an amount.
func (s *slice) coins() (int64, error) {
	n := int(s.uint(4))
	v := new(big.Int).SetBytes(s.bytes(n))
	if s.fail != nil {
		return 0, s.fail
	}
	if !v.IsInt64() {
		return 0, fmt.Errorf("%w %s: larger than int64", ErrAmount, v)
	}
	return v.Int64(), nil
}

// address reads a MsgAddress: addr_none or addr_std without anycast.
func (s *slice) address() (TonAddress, bool, error) {
	var a TonAddress
	switch s.uint(2) {
	case 0:
		return a, false, s.fail
	case 2:
		if s.bit() {
			return a, false, errors.New("cell: anycast addresses are not supported")
		}
		a.Workchain = int8(s.uint(8))
		copy(a.Hash[:], s.bytes(32))
		return a, true, s.fail
	}
	return a, false, errors.New("cell: unsupported address kind")
}

// textComment reads a text comment (op 0, then UTF-8 text continued through first references, as
// the TEP-74 forward payload and plain wallet transfers carry it). ok is false when the payload is
// not a text comment.
func textComment(s *slice) (string, bool, error) {
	if s.left() < 32 || s.uint(32) != 0 {
		return "", false, s.fail
	}
	var out []byte
	for depth := 0; ; depth++ {
		if s.left()%8 != 0 {
			return "", false, errors.New("comment: not whole bytes")
		}
		out = append(out, s.bytes(s.left()/8)...)
		if len(out) > maxComment {
			return "", false, fmt.Errorf("comment longer than %d bytes", maxComment)
		}
		if len(s.c.refs) == s.ref || depth > maxBocCells {
			break
		}
		s = &slice{c: s.nextRef()}
	}
	if s.fail != nil {
		return "", false, s.fail
	}
	if !utf8.Valid(out) {
		return "", false, errors.New("comment is not UTF-8")
	}
	return string(out), true, nil
}
