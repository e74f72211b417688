package session

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

var (
	// ErrTableFull: the IndexTable holds its maximum number of entries.
	ErrTableFull = errors.New("session: index table full")
	// errNoFreeIndex: the random source kept producing used indices (a broken reader, in practice).
	errNoFreeIndex = errors.New("session: no free index found")
)

// maxIndexTries bounds the attempts to draw an unused index. With the table at most a quarter
// full (maxTableSize) the chance of needing more than 64 draws is below 2^-128.
const maxIndexTries = 64

// maxTableSize caps IndexTable sizes at a quarter of the index space.
const maxTableSize = 1 << 30

// IndexTable allocates local indices and maps them to the owner's values (peers, pending
// handshakes). Indices are uniformly random non-zero uint32s, collision-checked; the table never
// holds more than its configured maximum. It is safe for concurrent use.
type IndexTable[T comparable] struct {
	mu   sync.RWMutex
	m    map[uint32]T
	max  int
	rand io.Reader
}

// NewIndexTable returns a table holding at most max entries (clamped to [1, 2^30]), drawing
// indices from r, or from crypto/rand if r is nil.
func NewIndexTable[T comparable](max int, r io.Reader) *IndexTable[T] {
	if max < 1 {
		max = 1
	}
	if max > maxTableSize {
		max = maxTableSize
	}
	if r == nil {
		r = rand.Reader
	}
	return &IndexTable[T]{m: make(map[uint32]T), max: max, rand: r}
}

// Allocate draws a fresh index, maps it to v and returns it.
func (t *IndexTable[T]) Allocate(v T) (uint32, error) {
	var b [4]byte
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		return 0, ErrTableFull
	}
	for range maxIndexTries {
		if _, err := io.ReadFull(t.rand, b[:]); err != nil {
			return 0, fmt.Errorf("session: drawing index: %w", err)
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if idx == 0 {
			continue
		}
		if _, used := t.m[idx]; used {
			continue
		}
		t.m[idx] = v
		return idx, nil
	}
	return 0, errNoFreeIndex
}

// Lookup returns the value mapped to idx.
func (t *IndexTable[T]) Lookup(idx uint32) (T, bool) {
	t.mu.RLock()
	v, ok := t.m[idx]
	t.mu.RUnlock()
	return v, ok
}

// Release removes idx if it is mapped to v and reports whether it did; a stale release for an
// index that has since been reallocated to another value is ignored.
func (t *IndexTable[T]) Release(idx uint32, v T) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.m[idx]; !ok || cur != v {
		return false
	}
	delete(t.m, idx)
	return true
}

// Replace maps idx to v if it is mapped to old, and reports whether it did: an index reserved for a
// handshake passes to the session its result creates.
func (t *IndexTable[T]) Replace(idx uint32, old, v T) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.m[idx]; !ok || cur != old {
		return false
	}
	t.m[idx] = v
	return true
}

// Len returns the number of allocated indices.
func (t *IndexTable[T]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
