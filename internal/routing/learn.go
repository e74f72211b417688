package routing

import (
	"errors"
	"fmt"
	"time"
)

// Learn installs a record that arrived from outside the flood, with its originator's certificate
// (certRaw, the encoded mesh certificate): a control plane hands a joining node the records of the
// nodes it may reach, so that it can dial them before it has a single link. The record goes through
// every check a flooded one does (certificate, revocation, window, signature, sequence), so a
// control plane cannot forge or roll back anything; a record that is not newer than the one held is
// ignored, and so is a record of another area or level, unverified (counted in Stats.OtherArea). An
// installed record is flooded to the neighbours like any new one. Learn copies what it keeps.
func (r *Router) Learn(now time.Time, certRaw, raw []byte) error {
	r.setNow(now)
	rec, cur, err := r.checkOutside(now, certRaw, raw)
	switch {
	case errors.Is(err, errOwnRecord), errors.Is(err, ErrOtherArea), errors.Is(err, ErrExpired), errors.Is(err, ErrStale):
		return nil // counted in Stats; a control plane's answer may carry any of these
	case err != nil:
		return err
	}
	r.install(now, rec, nil, cur)
	return nil
}

// errOwnRecord is checkOutside's answer to a record of the router itself, which only Restore takes.
var errOwnRecord = errors.New("routing: the router's own record")

// checkOutside runs the checks a record that did not come from a neighbour must pass before it is
// installed: area and level, expiry window, sequence against the held one, room, certificate
// (chain, validity, revocation: the Verifier's) and signature. It returns the verified record and
// the entry it would replace. Each refusal is counted in Stats and named by its error.
func (r *Router) checkOutside(now time.Time, certRaw, raw []byte) (*Record, *lsa, error) {
	h, ok := peekRecord(raw)
	if !ok {
		r.stats.Malformed++
		return nil, nil, fmt.Errorf("%w: record header", ErrMalformed)
	}
	if !r.accepts(h) {
		// A record of another area or of the other level (a control plane hands out the records
		// of every node a node may reach): it has no place in this database, as when flooded.
		r.stats.OtherArea++
		return nil, nil, ErrOtherArea
	}
	if h.origin == r.self {
		return nil, nil, errOwnRecord
	}
	expires := time.UnixMilli(h.expires)
	if !expires.After(now) {
		r.stats.Expired++
		return nil, nil, fmt.Errorf("%w: %s", ErrExpired, expires.UTC().Format(time.RFC3339))
	}
	if expires.After(now.Add(r.cfg.Lifetime + r.cfg.MaxClockSkew)) {
		r.stats.Future++
		return nil, nil, fmt.Errorf("%w: %s", ErrFuture, expires.UTC().Format(time.RFC3339))
	}
	cur := r.lsdb.get(h.origin)
	switch {
	case cur != nil && h.seq <= cur.seq:
		r.stats.Stale++
		return nil, nil, ErrStale
	case cur != nil && now.Sub(cur.arrival) < r.cfg.MinArrival:
		r.stats.TooFrequent++
		return nil, nil, ErrStale
	case cur == nil && r.lsdb.len() >= r.cfg.MaxNodes:
		r.stats.TableFull++
		return nil, nil, ErrTableFull
	}
	cert, id, err := r.cache.certificate(h.certFP, certRaw)
	if err == nil && id != h.origin {
		err = fmt.Errorf("certificate is not for the record's originator")
	}
	if err != nil {
		r.stats.BadCertificate++
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
	if err := r.checkCert(cert, now); err != nil {
		r.stats.BadCertificate++
		return nil, nil, err
	}
	rec, err := r.cache.verify(raw, cert)
	if err != nil {
		if errors.Is(err, ErrBadSignature) {
			r.stats.BadSignature++
		} else {
			r.stats.Malformed++
		}
		return nil, nil, err
	}
	return rec, cur, nil
}

// Announce makes a router that has not originated yet originate at its next Tick, neighbours or
// not. On its own a router waits for its first neighbour (a record nobody receives is useless);
// a node whose records also travel through a control plane calls this, since the others can only
// dial it once they hold its record and the endpoints in it. A router that kept its own record
// across a restart (Restore) and would announce the same endpoints does not: that record, which
// the control plane got before the restart, stands until its links are up and it is taken back or
// replaced.
func (r *Router) Announce() {
	if !r.originated && !r.keptAnnounces() {
		r.originateNow = true
	}
}

// Own returns the router's latest record and its certificate, encoded (nil before the first
// record): what the node reports to a control plane for others to Learn.
func (r *Router) Own() (cert, record []byte) {
	l := r.lsdb.get(r.self)
	if l == nil {
		return nil, nil
	}
	return r.cert.Bytes(), l.rec.raw
}
