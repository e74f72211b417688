package routing

import (
	"slices"
	"time"
)

// lsa is one LSDB entry: a verified record and the per-neighbour flooding state that belongs to it.
// Neighbours are named by adjacency number, so the state of an adjacency that ended (or restarted)
// is dead at once and is purged lazily; the state of a record dies with it when it is superseded,
// expires or is revoked.
type lsa struct {
	rec     *Record
	arrival time.Time // when it was installed
	holders []uint32  // adjacencies known to hold rec's certificate
	pending []pending // adjacencies it was sent to that have not acknowledged it
}

type pending struct {
	adj uint32
	due time.Time // retransmit then
}

// maxPerLSA triggers a purge of dead adjacencies from holders and pending.
const maxPerLSA = 8

func (l *lsa) holds(adj uint32) bool { return slices.Contains(l.holders, adj) }

func (r *Router) addHolder(l *lsa, adj uint32) {
	if l.holds(adj) {
		return
	}
	if len(l.holders) >= maxPerLSA {
		l.holders = slices.DeleteFunc(l.holders, func(a uint32) bool { return r.byAdj[a] == nil })
	}
	l.holders = append(l.holders, adj)
}

func (r *Router) setPending(l *lsa, adj uint32, due time.Time) {
	for i := range l.pending {
		if l.pending[i].adj == adj {
			l.pending[i].due = due
			return
		}
	}
	if len(l.pending) >= maxPerLSA {
		l.pending = slices.DeleteFunc(l.pending, func(p pending) bool { return r.byAdj[p.adj] == nil })
	}
	l.pending = append(l.pending, pending{adj, due})
}

func (l *lsa) clearPending(adj uint32) {
	for i := range l.pending {
		if l.pending[i].adj == adj {
			l.pending = slices.Delete(l.pending, i, i+1)
			return
		}
	}
}

// entryIndex returns where origin is or would be in r.entries.
func (r *Router) entryIndex(origin NodeID) (int, bool) {
	return slices.BinarySearchFunc(r.entries, origin, func(l *lsa, id NodeID) int { return cmpID(l.rec.Origin, id) })
}

// put stores l as the entry of its origin, replacing any older one.
func (r *Router) put(l *lsa) (old *lsa) {
	origin := l.rec.Origin
	old = r.lsdb[origin]
	r.lsdb[origin] = l
	i, found := r.entryIndex(origin)
	if found {
		r.entries[i] = l
	} else {
		r.entries = slices.Insert(r.entries, i, l)
	}
	if old != nil && old.rec.cert.Overlay != l.rec.cert.Overlay && r.byAddr[old.rec.cert.Overlay] == origin {
		delete(r.byAddr, old.rec.cert.Overlay)
	}
	r.byAddr[l.rec.cert.Overlay] = origin
	r.gen++
	return old
}

// remove drops the entry of id, if any.
func (r *Router) remove(id NodeID) {
	l := r.lsdb[id]
	if l == nil {
		return
	}
	delete(r.lsdb, id)
	if i, found := r.entryIndex(id); found {
		r.entries = slices.Delete(r.entries, i, i+1)
	}
	if r.byAddr[l.rec.cert.Overlay] == id {
		delete(r.byAddr, l.rec.cert.Overlay)
	}
	r.gen++
}
