package node

// Link-state records kept across a restart (docs/node.md, "Routing records kept across a
// restart"; docs/routing.md, Restarts inside an area). A node that comes back with the records it
// held finds, in its neighbours' summaries, nothing it lacks, and pulls nothing; one that comes
// back empty pulls its whole area. The file is written atomically (secfile: temporary file, fsync,
// rename) when the records changed, at most every keptRecordsInterval, and at Close. Nothing in it
// is believed: every record goes through routing.Router.Restore, the checks a received record
// passes (certificate against the CAs and the revocation list, signature, area, expiry, sequence).
// The checksum only tells a damaged file from a good one, so that the node can say so.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/secfile"
)

const (
	// keptRecordsMagic and keptRecordsVersion open the file; a file of another version is refused
	// as a whole (the node starts empty and rewrites it).
	keptRecordsMagic   = "X6KR"
	keptRecordsVersion = 1
	// keptRecordsHeader is the magic, the version and the record count (u32).
	keptRecordsHeader = len(keptRecordsMagic) + 1 + 4
	// keptRecordsMax bounds the records in the file: the router's database holds at most 4096
	// originators (routing.Config.MaxNodes, the default the node uses), and its own record.
	keptRecordsMax = 4096 + 1
	// keptRecordsMaxBytes bounds the file, written and read: 4,097 records of 3.5 KB and
	// certificates of 7 KB are 43 MB; an area of a few hundred nodes is a few MB.
	keptRecordsMaxBytes = 64 << 20
	// keptRecordsInterval is the least time between two writes while the records change (every
	// record is refreshed each minute, so they always do): a crash loses at most what changed in it.
	keptRecordsInterval = 30 * time.Second
)

// errKeptRecords marks a kept-records file that is not one this build wrote.
var errKeptRecords = errors.New("kept routing records")

// encodeKeptRecords lays the records out as: magic, version, count (u32), then per record the
// certificate and the record, each a u32 length and the bytes, and last the SHA-256 of everything
// before it. Records beyond keptRecordsMax, or that would take the file beyond keptRecordsMaxBytes,
// are left out (they are pulled from the neighbours after the restart).
func encodeKeptRecords(hs []routing.HeldRecord) []byte {
	size := keptRecordsHeader + sha256.Size
	n := 0
	for _, h := range hs {
		s := 8 + len(h.Cert) + len(h.Record)
		if n == keptRecordsMax || size+s > keptRecordsMaxBytes {
			break
		}
		size += s
		n++
	}
	b := make([]byte, 0, size)
	b = append(b, keptRecordsMagic...)
	b = append(b, keptRecordsVersion)
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

// decodeKeptRecords reads what encodeKeptRecords wrote. It refuses, as a whole, a file that is
// shorter or longer than its records say, of another version, with more than keptRecordsMax
// records or an entry over its size bound, or whose checksum does not match. The records returned
// are sub-slices of b; they are not verified (Router.Restore does that).
func decodeKeptRecords(b []byte) ([]routing.HeldRecord, error) {
	if len(b) > keptRecordsMaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errKeptRecords, len(b), keptRecordsMaxBytes)
	}
	if len(b) < keptRecordsHeader+sha256.Size || string(b[:len(keptRecordsMagic)]) != keptRecordsMagic {
		return nil, fmt.Errorf("%w: not a kept-records file", errKeptRecords)
	}
	if v := b[len(keptRecordsMagic)]; v != keptRecordsVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", errKeptRecords, v, keptRecordsVersion)
	}
	body := b[:len(b)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum does not match (a damaged file)", errKeptRecords)
	}
	n := binary.BigEndian.Uint32(body[len(keptRecordsMagic)+1:])
	if n > keptRecordsMax {
		return nil, fmt.Errorf("%w: %d records, at most %d", errKeptRecords, n, keptRecordsMax)
	}
	rest := body[keptRecordsHeader:]
	field := func(limit int) ([]byte, error) {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: truncated", errKeptRecords)
		}
		l := binary.BigEndian.Uint32(rest)
		if l == 0 || l > uint32(limit) || int(l) > len(rest)-4 {
			return nil, fmt.Errorf("%w: entry of %d bytes (at most %d, %d left)", errKeptRecords, l, limit, len(rest)-4)
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
		return nil, fmt.Errorf("%w: %d bytes after the last record", errKeptRecords, len(rest))
	}
	return hs, nil
}

// restoreKeptRecords gives the records kept in Options.RecordsFile to the router, before any link
// is up. A missing file is a first start; a file that does not decode is reported and ignored, and
// the node starts with an empty database (it is overwritten at the next save); a record the router
// refuses is counted, by reason, and dropped.
func (n *Node) restoreKeptRecords(now time.Time) {
	path := n.opts.RecordsFile
	if path == "" {
		return
	}
	data, err := secfile.Read(path, keptRecordsMaxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var hs []routing.HeldRecord
	if err == nil {
		hs, err = decodeKeptRecords(data)
	}
	if err != nil {
		n.log.Warn("kept routing records not used; starting with an empty database", "file", path, "err", err)
		return
	}
	restored := 0
	refused := map[string]int{}
	for _, h := range hs {
		if err := n.router.Restore(now, h.Cert, h.Record); err != nil {
			refused[refusalReason(err)]++
			continue
		}
		restored++
	}
	n.log.Info("kept routing records restored", "file", path, "restored", restored, "refused", refused)
}

// refusalReason names a Restore refusal by its kind, for a log line that groups them.
func refusalReason(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{routing.ErrExpired, "expired"}, {routing.ErrStale, "stale"}, {routing.ErrOtherArea, "other_area"},
		{routing.ErrBadCertificate, "bad_certificate"}, {routing.ErrBadSignature, "bad_signature"},
		{routing.ErrFuture, "future"}, {routing.ErrMalformed, "malformed"}, {routing.ErrTableFull, "table_full"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// keptRecords is the node's side of the kept-records file.
type keptRecords struct {
	mu    sync.Mutex // serialises writes (Tick and Close)
	gen   uint64     // the router's generation last written; guarded by Node.mu
	saved time.Time  // when; guarded by Node.mu
}

// keepRecords writes the records the router holds to Options.RecordsFile when they changed since
// the last write and keptRecordsInterval has passed, or, with final (Close), whenever they changed.
// The records are taken under n.mu (the slices are never modified) and written with it released:
// encoding and fsync take milliseconds.
func (n *Node) keepRecords(now time.Time, final bool) {
	if n.opts.RecordsFile == "" {
		return
	}
	n.mu.Lock()
	k := &n.kept
	if n.closed || n.router.Generation() == k.gen || !final && now.Sub(k.saved) < keptRecordsInterval {
		n.mu.Unlock()
		return
	}
	k.gen, k.saved = n.router.Generation(), now
	hs := n.router.Held(now)
	n.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := secfile.Write(n.opts.RecordsFile, encodeKeptRecords(hs), 0o644, true); err != nil {
		n.log.Warn("routing records not kept", "file", n.opts.RecordsFile, "err", err)
	}
}
