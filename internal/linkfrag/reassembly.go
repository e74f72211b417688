package linkfrag

import (
	"errors"
	"time"

	"x0tta6bl4/internal/overlay"
)

// Reassembly bounds (docs/transport.md, "Piece frames").
const (
	// PerLink is the most messages reassembled at once for one link; a new one evicts the link's
	// oldest, so a neighbour can crowd out only itself.
	PerLink = 4
	// Total is the most messages reassembled at once over all links; a piece that would start
	// another is dropped.
	Total = 64
	// Timeout is how long an incomplete message is kept after its first piece.
	Timeout = 3 * time.Second
)

// Reassembly errors. Fixed values, so refusing a piece never allocates.
var (
	// ErrInconsistent: the piece names a message under reassembly whose length, piece length or
	// count differ from its own.
	ErrInconsistent = errors.New("linkfrag: piece disagrees with its message")
	// ErrFull: Total messages are already being reassembled.
	ErrFull = errors.New("linkfrag: too many messages under reassembly")
	// ErrNested: the reassembled message is itself a piece frame.
	ErrNested = errors.New("linkfrag: reassembled message is a piece frame")
)

// Reassembler puts messages back together from their pieces, for all links of a node; K names a
// link. It is not safe for concurrent use.
type Reassembler[K comparable] struct {
	msgs []message[K] // at most Total
	// Expired counts messages dropped incomplete at their timeout, Evicted those a newer message of
	// the same link displaced, Forgotten those whose link went.
	Expired, Evicted, Forgotten uint64
}

type message[K comparable] struct {
	link    K
	hdr     Piece // Index is meaningless here
	started time.Time
	have    uint64 // bit i: piece i arrived
	buf     []byte // hdr.Total bytes
}

// Add takes a piece frame that arrived authenticated over link and returns the whole message when
// this piece completes it (nil otherwise; a duplicate piece is ignored). The returned slice is the
// caller's. Memory is allocated only for the first valid piece of a message, at most MaxMessage
// bytes.
func (r *Reassembler[K]) Add(now time.Time, link K, frame []byte) ([]byte, error) {
	p, data, err := ParsePiece(frame)
	if err != nil {
		return nil, err
	}
	r.Expire(now)
	i := r.find(link, p.ID)
	if i < 0 {
		if i, err = r.start(now, link, p); err != nil {
			return nil, err
		}
	}
	m := &r.msgs[i]
	if m.hdr.Total != p.Total || m.hdr.PieceLen != p.PieceLen || m.hdr.Count != p.Count {
		return nil, ErrInconsistent
	}
	bit := uint64(1) << p.Index
	if m.have&bit != 0 {
		return nil, nil
	}
	m.have |= bit
	copy(m.buf[p.Offset():], data)
	if m.have != uint64(1)<<p.Count-1 {
		return nil, nil
	}
	whole := m.buf
	r.remove(i)
	if whole[0] == byte(overlay.TypePiece) {
		return nil, ErrNested
	}
	return whole, nil
}

// start makes room for and begins the message p names on link, returning its position.
func (r *Reassembler[K]) start(now time.Time, link K, p Piece) (int, error) {
	oldest, mine := -1, 0
	for i := range r.msgs {
		if r.msgs[i].link == link {
			mine++
			if oldest < 0 || r.msgs[i].started.Before(r.msgs[oldest].started) {
				oldest = i
			}
		}
	}
	switch {
	case mine >= PerLink:
		r.remove(oldest)
		r.Evicted++
	case len(r.msgs) >= Total:
		return 0, ErrFull
	}
	hdr := p
	hdr.Index = 0
	r.msgs = append(r.msgs, message[K]{link: link, hdr: hdr, started: now, buf: make([]byte, p.Total)})
	return len(r.msgs) - 1, nil
}

func (r *Reassembler[K]) find(link K, id uint32) int {
	for i := range r.msgs {
		if r.msgs[i].link == link && r.msgs[i].hdr.ID == id {
			return i
		}
	}
	return -1
}

// remove drops message i (order is not kept).
func (r *Reassembler[K]) remove(i int) {
	last := len(r.msgs) - 1
	r.msgs[i] = r.msgs[last]
	r.msgs[last] = message[K]{}
	r.msgs = r.msgs[:last]
}

// Expire drops the messages still incomplete Timeout after their first piece.
func (r *Reassembler[K]) Expire(now time.Time) {
	for i := 0; i < len(r.msgs); {
		if now.Sub(r.msgs[i].started) >= Timeout {
			r.remove(i)
			r.Expired++
			continue
		}
		i++
	}
}

// Forget drops every message of link (the link went down).
func (r *Reassembler[K]) Forget(link K) {
	for i := 0; i < len(r.msgs); {
		if r.msgs[i].link == link {
			r.remove(i)
			r.Forgotten++
			continue
		}
		i++
	}
}

// Pending is how many messages are under reassembly, and their bytes.
func (r *Reassembler[K]) Pending() (messages, bytes int) {
	for i := range r.msgs {
		bytes += len(r.msgs[i].buf)
	}
	return len(r.msgs), bytes
}
