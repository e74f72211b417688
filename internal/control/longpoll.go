package control

import (
	"net/http"
	"sync"
	"time"
)

// Long polls (GET /api/v1/crl, GET /api/v1/mesh/records): the client names the version it holds
// with ?after=N and how long it will wait with ?wait=S; the server answers at once when it holds
// something newer, and otherwise parks the request until a change, the wait, or the client leaving.
// Each endpoint parks at most a bounded number of requests; beyond that it answers at once and the
// client asks again.

// longPollQuery reads ?after (whether it was given, and its value) and ?wait (seconds, at most
// maxWait; without it the request does not wait).
func longPollQuery(r *http.Request, maxWait time.Duration) (after uint64, hasAfter bool, wait time.Duration, err error) {
	a, err := queryInt(r, "after", 1<<62)
	if err != nil {
		return 0, false, 0, err
	}
	w, err := queryInt(r, "wait", int64(maxWait/time.Second))
	if err != nil {
		return 0, false, 0, err
	}
	return uint64(a), r.URL.Query().Has("after"), time.Duration(w) * time.Second, nil
}

// longPoll parks the request until changed is closed, wait has passed or the client goes away, and
// reports whether changed ended it. It holds a slot of waiters meanwhile; when every slot is taken it
// returns at once.
func longPoll(r *http.Request, waiters chan struct{}, changed <-chan struct{}, wait time.Duration) (woken bool) {
	if wait <= 0 {
		return false
	}
	select {
	case waiters <- struct{}{}:
	default:
		return false
	}
	defer func() { <-waiters }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
	case <-r.Context().Done():
	}
	return false
}

// generation is a version number that long polls wait on.
type generation struct {
	mu      sync.Mutex
	n       uint64
	changed chan struct{} // closed and replaced whenever n changes
}

func newGeneration(n uint64) *generation { return &generation{n: n, changed: make(chan struct{})} }

// set moves the number on and wakes every waiter.
func (g *generation) set(n uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n = n
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait returns the number and a channel closed at the next change.
func (g *generation) wait() (uint64, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n, g.changed
}

// wakeAll releases every waiter without a change (at shutdown).
func (g *generation) wakeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.changed)
	g.changed = make(chan struct{})
}
