package control

import (
	"sync"

	"x0tta6bl4/internal/meshca"
)

// crlHolder holds the current revocation list and wakes readers waiting for a newer one.
type crlHolder struct {
	mu      sync.RWMutex
	cur     *crlState
	changed chan struct{} // closed and replaced whenever the list changes
}

type crlState struct {
	list *meshca.RevocationList
	pem  []byte
}

func (h *crlHolder) set(l *meshca.RevocationList) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = &crlState{list: l, pem: meshca.EncodeRevocationListPEM(l)}
	if h.changed != nil {
		close(h.changed)
	}
	h.changed = make(chan struct{})
}

func (h *crlHolder) get() *crlState {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

// wait returns the current list and a channel closed at the next change.
func (h *crlHolder) wait() (*crlState, <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur, h.changed
}

// wakeAll releases every waiter without changing the list (at shutdown).
func (h *crlHolder) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.changed)
	h.changed = make(chan struct{})
}
