package routing

import (
	"hash/maphash"
	"slices"
	"time"
)

// lsa is one LSDB entry: a verified record and the per-neighbour flooding state that belongs to it.
// Neighbours are named by adjacency number, so the state of an adjacency that ended (or restarted)
// is dead at once and is purged lazily; the state of a record dies with it when it is superseded,
// expires or is revoked.
type lsa struct {
	origin  NodeID // rec.Origin and
	seq     uint64 // rec.Seq, at hand for the checks every message makes
	rec     *Record
	gone    bool      // superseded or removed from the LSDB
	arrival time.Time // when it was installed
	holders []uint32  // adjacencies known to hold rec's certificate
	pending []pending // adjacencies it was sent to that have not acknowledged it
	// answers counts the requests for this version answered since answersFrom (capped by
	// maxAnswers; the count starts again busyHold retransmission timeouts later).
	answers     int
	answersFrom time.Time

	// Room for holders and pending with a few neighbours, in the entry itself: one allocation per
	// record instead of a handful, and no pointer to chase on every message.
	hbuf [maxPerLSA]uint32
	pbuf [6]pending
}

// newLSA returns an entry for rec, installed now in place of old (nil if none): it inherits old's
// certificate holders when rec names the same certificate.
func newLSA(rec *Record, now time.Time, old *lsa) *lsa {
	l := &lsa{rec: rec, arrival: now}
	l.holders, l.pending = l.hbuf[:0], l.pbuf[:0]
	if old != nil && old.rec.CertFingerprint == rec.CertFingerprint {
		l.holders = append(l.holders, old.holders...)
	}
	return l
}

type pending struct {
	adj uint32
	due time.Time // retransmit then
}

// maxPerLSA triggers a purge of dead adjacencies from holders and pending.
const maxPerLSA = 8

func (l *lsa) holds(adj uint32) bool { return slices.Contains(l.holders, adj) }

// pendingTo returns the index of adjacency adj in l.pending, or -1.
func (l *lsa) pendingTo(adj uint32) int {
	for i := range l.pending {
		if l.pending[i].adj == adj {
			return i
		}
	}
	return -1
}

func (r *Router) addHolder(l *lsa, adj uint32) {
	if l.holds(adj) {
		return
	}
	if len(l.holders) >= maxPerLSA {
		l.holders = slices.DeleteFunc(l.holders, func(a uint32) bool { return r.byAdj[a] == nil })
	}
	l.holders = append(l.holders, adj)
}

// setPending keeps l outstanding to nb until due.
func (r *Router) setPending(l *lsa, nb *neighbour, due time.Time) {
	for i := range l.pending {
		if l.pending[i].adj == nb.adj {
			l.pending[i].due = due
			return
		}
	}
	if len(l.pending) >= maxPerLSA {
		l.pending = slices.DeleteFunc(l.pending, func(p pending) bool { return r.byAdj[p.adj] == nil })
	}
	l.pending = append(l.pending, pending{nb.adj, due})
	nb.outstanding++
	nb.sent = append(nb.sent, l)
}

// clearPending forgets that l is outstanding to nb. When nothing is left outstanding to nb, the
// list of what was sent to it is emptied, so its retransmission timer, when it fires, has nothing to
// look at. (The timer itself keeps running: stopping it would change when routers tick and so, in
// a simulation, the order of simultaneous events and what the seeded randomness draws.)
func (r *Router) clearPending(l *lsa, nb *neighbour) {
	if !l.clearPending(nb.adj) {
		return
	}
	if nb.outstanding--; nb.outstanding <= 0 {
		nb.outstanding = 0
		clear(nb.sent)
		nb.sent = nb.sent[:0]
	}
}

// clearPending forgets that l is outstanding to adjacency adj; it reports whether it was.
func (l *lsa) clearPending(adj uint32) bool {
	for i := range l.pending {
		if l.pending[i].adj == adj {
			l.pending = slices.Delete(l.pending, i, i+1)
			return true
		}
	}
	return false
}

// sorted returns r.entries, sorted by origin. New originators are appended and sorted in lazily, so a
// cold start that installs a thousand new records pays for one sort instead of a thousand insertions.
func (r *Router) sorted() []*lsa {
	if r.unsorted {
		slices.SortFunc(r.entries, func(a, b *lsa) int { return cmpID(a.origin, b.origin) })
		r.unsorted = false
	}
	return r.entries
}

// entryIndex returns where origin is or would be in the sorted entries.
func (r *Router) entryIndex(origin NodeID) (int, bool) {
	return slices.BinarySearchFunc(r.sorted(), origin, func(l *lsa, id NodeID) int { return cmpID(l.origin, id) })
}

// put stores l as the entry of its origin, replacing old, the entry held until now (nil if none).
func (r *Router) put(l, old *lsa) {
	origin := l.rec.Origin
	l.origin, l.seq = origin, l.rec.Seq
	r.lsdb.set(l)
	if old != nil {
		old.gone = true
		if i, found := r.entryIndex(origin); found {
			r.entries[i] = l
		}
	} else {
		if n := len(r.entries); n > 0 && !r.unsorted && cmpID(r.entries[n-1].origin, origin) > 0 {
			r.unsorted = true
		}
		r.entries = append(r.entries, l)
	}
	r.gen++
}

// remove drops the entry of id, if any.
func (r *Router) remove(id NodeID) {
	l := r.lsdb.get(id)
	if l == nil {
		return
	}
	l.gone = true
	r.lsdb.del(id)
	if i, found := r.entryIndex(id); found {
		r.entries = slices.Delete(r.entries, i, i+1)
	}
	r.gen++
}

// lsaTable maps originators to LSDB entries, like a map[NodeID]*lsa with fewer cache misses (every
// routing message looks up its originator): open addressing with linear probing, at most half full,
// so a lookup reads one or two 16-byte slots and then the entry, which the caller reads anyway. The
// hash is seeded per table, so nobody can pick originator IDs that collide.
type lsaTable struct {
	seed  maphash.Seed
	slots []lsaSlot
	n     int
}

type lsaSlot struct {
	h uint64
	l *lsa // nil: empty
}

func (t *lsaTable) hash(id *NodeID) uint64 { return maphash.Bytes(t.seed, id[:]) }

// len returns the number of entries.
func (t *lsaTable) len() int { return t.n }

// get returns the entry of id, or nil.
func (t *lsaTable) get(id NodeID) *lsa {
	if t.n == 0 {
		return nil
	}
	h := t.hash(&id)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.l == nil {
			return nil
		}
		if s.h == h && s.l.origin == id {
			return s.l
		}
	}
}

// set makes l, whose origin field is set, the entry of its origin.
func (t *lsaTable) set(l *lsa) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	h := t.hash(&l.origin)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.l == nil {
			*s = lsaSlot{h, l}
			t.n++
			return
		}
		if s.h == h && s.l.origin == l.origin {
			s.l = l
			return
		}
	}
}

func (t *lsaTable) grow() {
	old := t.slots
	if len(old) == 0 {
		t.seed = maphash.MakeSeed()
	}
	t.slots = make([]lsaSlot, max(16, 2*len(old)))
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.l == nil {
			continue
		}
		i := s.h & mask
		for t.slots[i].l != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// del removes the entry of id, if any (backward-shift deletion: no tombstones).
func (t *lsaTable) del(id NodeID) {
	if t.n == 0 {
		return
	}
	h := t.hash(&id)
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for {
		s := &t.slots[i]
		if s.l == nil {
			return
		}
		if s.h == h && s.l.origin == id {
			break
		}
		i = (i + 1) & mask
	}
	t.n--
	for j := (i + 1) & mask; t.slots[j].l != nil; j = (j + 1) & mask {
		home := t.slots[j].h & mask
		// The entry at j may move to the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = lsaSlot{}
}
