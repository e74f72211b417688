// Package keptrecords is the file format of the link-state records a node keeps across a restart
// (docs/node.md, "Routing records kept across a restart"): the records and their originators'
// certificates, as they travel on the wire, in a length-prefixed container with a version and a
// SHA-256 checksum.
//
// It only lays bytes out and reads them back. It must never believe what it reads (the records are
// verified by routing.Router.Restore, like received ones), never read past a length it was given,
// and never allocate more than the file it is given, which is bounded by MaxBytes.
package keptrecords

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

const (
	// magic and version open the file; a file of another version is refused
	// as a whole (the node starts empty and rewrites it).
	magic   = "X6KR"
	version = 1
	// header is the magic, the version and the record count (u32).
	header = len(magic) + 1 + 4
	// MaxRecords bounds the records in the file: the router's database holds at most 4096
	// originators (routing.Config.MaxNodes, the default the node uses), and its own record.
	MaxRecords = 4096 + 1
	// MaxBytes bounds the file, written and read: 4,097 records of 3.5 KB and
	// certificates of 7 KB are 43 MB; an area of a few hundred nodes is a few MB.
	MaxBytes = 64 << 20
)

// ErrFile marks a file that is not a kept-records file this build wrote.
var ErrFile = errors.New("kept routing records")

// Encode lays the records out as: magic, version, count (u32), then per record the
// certificate and the record, each a u32 length and the bytes, and last the SHA-256 of everything
// before it. Records beyond MaxRecords, or that would take the file beyond MaxBytes,
// are left out (they are pulled from the neighbours after the restart).
func Encode(hs []routing.HeldRecord) []byte {
	size := header + sha256.Size
	n := 0
	for _, h := range hs {
		s := 8 + len(h.Cert) + len(h.Record)
		if n == MaxRecords || size+s > MaxBytes {
			break
		}
		size += s
		n++
	}
	b := make([]byte, 0, size)
	b = append(b, magic...)
	b = append(b, version)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for _, h := range hs[:n] {
		b = binary.BigEndian.AppendUint32(b, uint32(len(h.Cert)))
		b = append(b, h.Cert...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(h.Record)))
		b = append(b, h.Record...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// Decode reads what Encode wrote. It refuses, as a whole, a file that is
// shorter or longer than its records say, of another version, with more than MaxRecords
// records or an entry over its size bound, or whose checksum does not match. The records returned
// are sub-slices of b; they are not verified (Router.Restore does that).
func Decode(b []byte) ([]routing.HeldRecord, error) {
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFile, len(b), MaxBytes)
	}
	if len(b) < header+sha256.Size || string(b[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not a kept-records file", ErrFile)
	}
	if v := b[len(magic)]; v != version {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrFile, v, version)
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum does not match (a damaged file)", ErrFile)
	}
	n := binary.BigEndian.Uint32(body[len(magic)+1:])
	if n > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, at most %d", ErrFile, n, MaxRecords)
	}
	rest := body[header:]
	field := func(limit int) ([]byte, error) {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: truncated", ErrFile)
		}
		l := binary.BigEndian.Uint32(rest)
		if l == 0 || l > uint32(limit) || int(l) > len(rest)-4 {
			return nil, fmt.Errorf("%w: entry of %d bytes (at most %d, %d left)", ErrFile, l, limit, len(rest)-4)
		}
		f := rest[4 : 4+l : 4+l]
		rest = rest[4+l:]
		return f, nil
	}
	hs := make([]routing.HeldRecord, 0, min(int(n), len(rest)/8))
	for range n {
		cert, err := field(meshca.MaxCertificateSize)
		if err != nil {
			return nil, err
		}
		rec, err := field(routing.MaxRecordSize)
		if err != nil {
			return nil, err
		}
		hs = append(hs, routing.HeldRecord{Cert: cert, Record: rec})
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last record", ErrFile, len(rest))
	}
	return hs, nil
}
