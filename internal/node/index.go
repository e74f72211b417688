package node

import (
	"io"

	"x0tta6bl4/internal/session"
)

// indexSpace is the one namespace of local session indices shared by the handshake machines and the
// transport sessions (docs/transport.md "Index allocation"): a handshake reserves an index (mapped to
// nil), and the session that its result creates binds it to a tunnel.
type indexSpace struct {
	t *session.IndexTable[*tunnel]
}

// newIndexSpace draws indices from r (nil: crypto/rand).
func newIndexSpace(max int, r io.Reader) *indexSpace {
	return &indexSpace{t: session.NewIndexTable[*tunnel](max, r)}
}

// Allocate reserves a fresh random non-zero index (handshake.IndexAllocator).
func (s *indexSpace) Allocate() (uint32, error) { return s.t.Allocate(nil) }

// Release frees an index reserved by a handshake that did not complete (handshake.IndexAllocator).
func (s *indexSpace) Release(idx uint32) { s.t.Release(idx, nil) }

// bind gives a reserved index to the tunnel whose session now uses it.
func (s *indexSpace) bind(idx uint32, t *tunnel) { s.t.Replace(idx, nil, t) }

// unbind frees an index whose keypair the session discarded.
func (s *indexSpace) unbind(idx uint32, t *tunnel) { s.t.Release(idx, t) }

func (s *indexSpace) lookup(idx uint32) *tunnel {
	t, _ := s.t.Lookup(idx)
	return t
}
