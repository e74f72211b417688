package control

import (
	"sync"

	"x0tta6bl4/internal/control/store"
)

// Long polls for records and proofs are woken by routing area. A node's answer holds the records of
// its own area only (proofs: of the other areas), so waking every waiting node at every publication
// cost O(nodes) wake-ups and empty answers per publication, O(nodes²) a refresh round in a mesh split
// into areas. Each area's waiters share a channel, closed only by a publication their answer may
// carry; a caller whose area is not known (it has reported no record and named none at enrolment)
// gets every area's and is woken by every publication.

// areaGenerations is the generation of a directory of records or proofs, with its long polls woken
// by area. Generations stay one sequence for the whole directory (the database's counter, which
// orders publications, docs/control.md "Signed records"); what is per area is which waiters a
// publication wakes.
type areaGenerations struct {
	// concerns reports whether an item published in area published may go into the answer of a
	// caller of area caller.
	concerns func(published, caller uint32) bool

	mu sync.Mutex
	n  uint64 // the latest generation announced
	// byArea holds the waiters of each area a caller long-polled from (a caller's area is the one its
	// signed record or its enrolment names), at most maxWaitAreas of them.
	byArea  map[uint32]*areaWaiters
	unknown areaWaiters // callers whose area is not known
}

// areaWaiters are the long polls of one area.
type areaWaiters struct {
	// last is the latest generation announced that concerns these callers: every item of theirs
	// announced so far is at or below it.
	last    uint64
	changed chan struct{} // closed and replaced when last moves
}

func (w *areaWaiters) wake(g uint64) {
	w.last = max(w.last, g)
	close(w.changed)
	w.changed = make(chan struct{})
}

// maxWaitAreas bounds the areas long polls are kept apart by: far above the areas of a real mesh
// (10,000 nodes in areas of 50 are 200), reached only by nodes that keep signing new areas. Reaching
// it wakes every waiter and starts again: spurious answers, never a missed one.
const maxWaitAreas = 4096

// recordsConcern: a link-state record goes to the nodes of its own area.
func recordsConcern(published, caller uint32) bool { return published == caller }

// proofsConcern: a destination proof goes to the nodes of the other areas, and a node of area 0
// (a mesh of one area) gets none.
func proofsConcern(published, caller uint32) bool { return caller != 0 && published != caller }

func newAreaGenerations(n uint64, concerns func(published, caller uint32) bool) *areaGenerations {
	return &areaGenerations{concerns: concerns, n: n, byArea: map[uint32]*areaWaiters{},
		unknown: areaWaiters{last: n, changed: make(chan struct{})}}
}

// current returns the latest generation announced.
func (g *areaGenerations) current() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// wait returns, for a caller of area (known false: of unknown area), the latest generation announced
// that concerns it, the latest announced at all, and a channel closed at the next publication that
// concerns it. An area seen for the first time starts at the latest generation: anything announced
// before may have concerned it.
func (g *areaGenerations) wait(area uint32, known bool) (last, n uint64, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := &g.unknown
	if known {
		if w = g.byArea[area]; w == nil {
			if len(g.byArea) >= maxWaitAreas {
				for _, old := range g.byArea {
					old.wake(0)
				}
				clear(g.byArea)
			}
			w = &areaWaiters{last: g.n, changed: make(chan struct{})}
			g.byArea[area] = w
		}
	}
	return w.last, g.n, w.changed
}

// publish announces an item of area published at generation n, waking the waiters it concerns
// that have not been woken for it (another instance's publication taken in by refresh may have
// announced a later one), and reports whether the latest generation moved.
func (g *areaGenerations) publish(n uint64, area uint32) bool {
	return g.publishMany(n, []store.PublishedArea{{Area: area, Generation: n}})
}

// publishMany announces generation n, the latest of the given publications, as publish does.
// An item of unknown area (stored before areas were kept) may concern anyone.
func (g *areaGenerations) publishMany(n uint64, published []store.PublishedArea) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range published {
		for area, w := range g.byArea {
			if p.Generation > w.last && (p.AreaUnknown || g.concerns(p.Area, area)) {
				w.wake(p.Generation)
			}
		}
		if p.Generation > g.unknown.last {
			g.unknown.wake(p.Generation)
		}
	}
	if n <= g.n {
		return false
	}
	g.n = n
	return true
}

// wakeAll releases every waiter without a publication (at shutdown).
func (g *areaGenerations) wakeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range g.byArea {
		w.wake(0)
	}
	g.unknown.wake(0)
}
