package routing

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Refusals of Restore (and, counted but not returned, of Learn); test with errors.Is.
var (
	ErrExpired   = errors.New("routing: record expired")
	ErrStale     = errors.New("routing: record not newer than the one held")
	ErrOtherArea = errors.New("routing: record of another area or level")
)

// HeldRecord is a record the router holds and its originator's certificate, both encoded as they
// travel on the wire.
type HeldRecord struct {
	Cert, Record []byte
}

// Held returns the records of the router's database that have not expired at now, its own among
// them, each with its certificate: what a node keeps across a restart and gives back to Restore
// (docs/routing.md, Restarts inside an area, "Records kept across a restart"). The slices are
// shared with the router and must not be modified.
func (r *Router) Held(now time.Time) []HeldRecord {
	out := make([]HeldRecord, 0, len(r.entries))
	for _, l := range r.sorted() {
		if !l.rec.Expires.After(now) {
			continue
		}
		cert := l.rec.cert
		if l.origin == r.self {
			cert = r.cert
		}
		out = append(out, HeldRecord{Cert: cert.Bytes(), Record: l.rec.raw})
	}
	return out
}

// Restore gives back a record the node held before it restarted (Held), before its first link
// comes up. A copy read from disk is believed no more than one from a neighbour: it passes every
// check a flooded or learnt record does — the originator's certificate against the CAs and the
// revocation list at now, the signature, the area and level, the expiry window and the sequence
// against the record held — and expires at the time it signs, as it would have in memory. A refused
// record is named by its error (ErrExpired, ErrStale, ErrOtherArea, ErrBadCertificate,
// ErrBadSignature, ErrFuture, ErrMalformed, ErrTableFull) and changes nothing. An installed record
// is flooded to the neighbours that are up, like any new one (none, before the first LinkUp).
//
// The router's own record is checked with its own key. It raises the sequence number the router
// signs above its own, and if it names the router's certificate and has not expired, the router
// takes it back instead of signing a new record when its neighbours' summaries are in and its
// links are still the ones the record lists (as when a neighbour hands it back; docs/routing.md,
// Restarts inside an area, item 3).
func (r *Router) Restore(now time.Time, certRaw, raw []byte) error {
	r.setNow(now)
	rec, cur, err := r.checkOutside(now, certRaw, raw)
	if errors.Is(err, errOwnRecord) {
		return r.restoreOwn(now, raw)
	}
	if err != nil {
		return err
	}
	r.install(now, rec, nil, cur)
	return nil
}

// restoreOwn checks a kept record of the router itself with its own key.
func (r *Router) restoreOwn(now time.Time, raw []byte) error {
	h, _ := peekRecord(raw) // checkOutside read it
	rec, err := r.verifyOwn(h, raw)
	if err != nil {
		return err
	}
	// Whatever else is wrong with it, we signed it: never sign that sequence number again.
	r.seq = max(r.seq, h.seq)
	expires := time.UnixMilli(h.expires)
	switch {
	case !expires.After(now):
		r.stats.Expired++
		return fmt.Errorf("%w: own record, %s", ErrExpired, expires.UTC().Format(time.RFC3339))
	case expires.After(now.Add(r.cfg.Lifetime + r.cfg.MaxClockSkew)):
		r.stats.Future++
		return fmt.Errorf("%w: own record, %s", ErrFuture, expires.UTC().Format(time.RFC3339))
	case r.originated || h.seq < r.seq:
		r.stats.Stale++
		return fmt.Errorf("%w: own record, a newer one is signed", ErrStale)
	}
	r.kept = rec // nil when it names an earlier certificate: only its sequence number counts
	return nil
}

// keeps reports whether the own record Restore kept is at least as new as seq: a neighbour that
// offers or sends that version back is acknowledged, and the kept one is taken back (or replaced)
// when the first record is due, once every link it lists is up.
func (r *Router) keeps(seq uint64) bool { return r.kept != nil && r.kept.Seq >= seq }

// keptAnnounces reports whether the own record Restore kept says what Announce would sign now: the
// router's endpoints, and not yet due for its refresh.
func (r *Router) keptAnnounces() bool {
	k := r.kept
	return k != nil && slices.Equal(k.Endpoints, r.endpoints) &&
		r.now.Before(k.Expires.Add(r.cfg.RefreshInterval-r.cfg.Lifetime))
}

// adoptKept takes back the own record Restore kept, if it is still the newest the router knows of
// and says what the router would sign now (adopt). It is called when the first record is due.
func (r *Router) adoptKept(now time.Time) bool {
	rec := r.kept
	r.kept = nil
	return rec != nil && rec.Seq >= r.seq && r.adopt(now, nil, rec)
}
