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
	"errors"
	"io/fs"
	"sync"
	"time"

	"x0tta6bl4/internal/node/keptrecords"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/secfile"
)

// keptRecordsInterval is the least time between two writes while the records change (every record
// is refreshed each minute, so they always do): a crash loses at most what changed in it.
const keptRecordsInterval = 30 * time.Second

// restoreKeptRecords gives the records kept in path to router r (the level-1 router, or a
// gateway's level-2 router), before any link is up. A missing file is a first start; a file that
// does not decode is reported and ignored, and the router starts with an empty database (the file
// is overwritten at the next save); a record the router refuses is counted, by reason, and dropped.
func (n *Node) restoreKeptRecords(now time.Time, r *routing.Router, path string) {
	if path == "" {
		return
	}
	data, err := secfile.Read(path, keptrecords.MaxBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var hs []routing.HeldRecord
	if err == nil {
		hs, err = keptrecords.Decode(data)
	}
	if err != nil {
		n.log.Warn("kept routing records not used; starting with an empty database", "file", path, "err", err)
		return
	}
	restored := 0
	refused := map[string]int{}
	for _, h := range hs {
		if err := r.Restore(now, h.Cert, h.Record); err != nil {
			refused[refusalReason(err)]++
			continue
		}
		restored++
	}
	n.log.Info("kept routing records restored", "file", path, "restored", restored, "refused", refused)
}

// level2RecordsFile is where a gateway keeps its level-2 router's records: beside the level-1 ones.
func (n *Node) level2RecordsFile() string {
	if n.opts.RecordsFile == "" {
		return ""
	}
	return n.opts.RecordsFile + "-level2"
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

// keptRecords is the node's side of the kept-records files.
type keptRecords struct {
	mu    sync.Mutex // serialises writes (Tick and Close)
	gen   uint64     // the level-1 router's generation last written; guarded by Node.mu
	gen2  uint64     // the level-2 router's (a gateway's); guarded by Node.mu
	saved time.Time  // when they were last written; guarded by Node.mu
}

// keepRecords writes the records the routers hold to Options.RecordsFile (and a gateway's level-2
// records beside it) when they changed since the last write and keptRecordsInterval has passed, or,
// with final (Close), whenever they changed. The records are taken under n.mu (the slices are never
// modified) and written with it released: encoding and fsync take milliseconds.
func (n *Node) keepRecords(now time.Time, final bool) {
	if n.opts.RecordsFile == "" {
		return
	}
	type file struct {
		path string
		hs   []routing.HeldRecord
	}
	var files []file
	n.mu.Lock()
	k := &n.kept
	if !n.closed && (final || now.Sub(k.saved) >= keptRecordsInterval) {
		if g := n.router.Generation(); g != k.gen {
			k.gen = g
			files = append(files, file{n.opts.RecordsFile, n.router.Held(now)})
		}
		if n.l2 != nil {
			if g := n.l2.r.Generation(); g != k.gen2 {
				k.gen2 = g
				files = append(files, file{n.level2RecordsFile(), n.l2.r.Held(now)})
			}
		}
		if len(files) > 0 {
			k.saved = now
		}
	}
	n.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, f := range files {
		if err := secfile.Write(f.path, keptrecords.Encode(f.hs), 0o644, true); err != nil {
			n.log.Warn("routing records not kept", "file", f.path, "err", err)
		}
	}
}
