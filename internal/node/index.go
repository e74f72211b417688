package node

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
)

// indexSpace is the one namespace of local session indices shared by the handshake machines and the
// transport sessions (docs/transport.md "Index allocation"): a handshake reserves an index, and the
// session that its result creates binds it to a tunnel.
type indexSpace struct {
	mu  sync.RWMutex
	m   map[uint32]*tunnel // nil: reserved by a handshake in progress
	max int
}

var errIndexSpaceFull = errors.New("node: no free session index")

func newIndexSpace(max int) *indexSpace { return &indexSpace{m: make(map[uint32]*tunnel), max: max} }

// Allocate reserves a fresh random non-zero index (handshake.IndexAllocator).
func (s *indexSpace) Allocate() (uint32, error) {
	var b [4]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= s.max {
		return 0, errIndexSpaceFull
	}
	for range 64 {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if _, used := s.m[idx]; idx != 0 && !used {
			s.m[idx] = nil
			return idx, nil
		}
	}
	return 0, errIndexSpaceFull
}

// Release frees an index reserved by a handshake that did not complete (handshake.IndexAllocator).
func (s *indexSpace) Release(idx uint32) {
	s.mu.Lock()
	if t, ok := s.m[idx]; ok && t == nil {
		delete(s.m, idx)
	}
	s.mu.Unlock()
}

// bind gives a reserved index to the tunnel whose session now uses it.
func (s *indexSpace) bind(idx uint32, t *tunnel) {
	s.mu.Lock()
	s.m[idx] = t
	s.mu.Unlock()
}

// unbind frees an index whose keypair the session discarded.
func (s *indexSpace) unbind(idx uint32, t *tunnel) {
	s.mu.Lock()
	if cur, ok := s.m[idx]; ok && cur == t {
		delete(s.m, idx)
	}
	s.mu.Unlock()
}

func (s *indexSpace) lookup(idx uint32) *tunnel {
	s.mu.RLock()
	t := s.m[idx]
	s.mu.RUnlock()
	return t
}
