package session

import (
	"errors"
	"fmt"
	"time"
)

// Reassembly limits (docs/transport.md, "Bursts").
const (
	// ReassemblySlots is the number of burst packets a node collects at once.
	ReassemblySlots = 32
	// ReassemblyPerSession bounds the slots one end-to-end receiver index can hold.
	ReassemblyPerSession = 2
	// ReassemblyTimeout is how long an incomplete burst packet is kept.
	ReassemblyTimeout = 50 * time.Millisecond
)

// Reassembly errors: a piece refused before anything was copied.
var (
	ErrDuplicatePiece = errors.New("session: piece already received")
	ErrPieceMismatch  = errors.New("session: piece disagrees with its burst's other pieces")
)

// Loss says why an incomplete burst packet was discarded.
type Loss uint8

const (
	LossNone    Loss = iota
	LossExpired      // older than ReassemblyTimeout
	LossEvicted      // its slot was needed: its session's third burst, or a full pool
)

// Dropped is a burst packet discarded before it was complete.
type Dropped struct {
	Receiver uint32 // the end-to-end receiver index it was sealed to
	Why      Loss
}

// Reassembler collects the pieces of burst packets in a fixed pool of slots until a packet is whole.
// It is a pure protocol core: the caller authenticates each piece's link, checks with the session
// that the burst is fresh (Session.Fresh), feeds the piece with the current time and opens the
// completed packet (Session.OpenBurst). It is not safe for concurrent use.
//
// Nothing a sender does makes it allocate: the pool is allocated on the first piece and never grows.
type Reassembler struct {
	slots []slot
	pool  []byte // len(slots) × MaxPacketSize, allocated on the first piece
	clock uint64 // for least-recently-used eviction
}

type slot struct {
	used     bool
	receiver uint32
	counter  uint64
	total    int
	count    int
	have     uint64 // bit i: piece i received
	started  time.Time
	touched  uint64 // clock at the last piece
}

// NewReassembler returns a reassembler with n slots of MaxPacketSize bytes (ReassemblySlots for a
// node).
func NewReassembler(n int) *Reassembler {
	return &Reassembler{slots: make([]slot, n)}
}

// Add places piece, described by f, in its burst packet. When that completes the packet it returns
// the whole packet, which aliases the pool and stays valid until the next call. It reports in
// dropped an incomplete burst packet that it discarded to make room (Why == LossNone if none). A
// piece that is a duplicate, or that contradicts earlier pieces of its burst, is refused with an
// error and changes nothing.
func (r *Reassembler) Add(now time.Time, f Fragment, piece []byte) (packet []byte, dropped Dropped, err error) {
	if !f.fits(len(piece)) {
		return nil, Dropped{}, errFragment
	}
	if r.pool == nil {
		r.pool = make([]byte, len(r.slots)*MaxPacketSize)
	}
	r.clock++
	i, sessionSlots, oldest := -1, 0, -1
	for j := range r.slots {
		s := &r.slots[j]
		if !s.used || s.receiver != f.Burst.Receiver {
			continue
		}
		if s.counter == f.Burst.Counter {
			i = j
			break
		}
		sessionSlots++
		if oldest < 0 || s.touched < r.slots[oldest].touched {
			oldest = j
		}
	}
	if i >= 0 {
		s := &r.slots[i]
		switch {
		case s.total != f.Total || s.count != f.Count:
			return nil, Dropped{}, ErrPieceMismatch
		case s.have&(1<<f.Index) != 0:
			return nil, Dropped{}, ErrDuplicatePiece
		}
	} else {
		if sessionSlots >= ReassemblyPerSession {
			i = oldest
			dropped = r.discard(i, LossEvicted)
		} else {
			i, dropped = r.free(now)
		}
		r.slots[i] = slot{used: true, receiver: f.Burst.Receiver, counter: f.Burst.Counter,
			total: f.Total, count: f.Count, started: now}
	}
	s := &r.slots[i]
	s.touched = r.clock
	s.have |= 1 << f.Index
	buf := r.pool[i*MaxPacketSize : (i+1)*MaxPacketSize]
	copy(buf[f.Offset:], piece)
	if s.have != ^uint64(0)>>(64-s.count) {
		return nil, dropped, nil
	}
	s.used = false
	// The header the pieces were collected under is the one the packet is opened with (the AEAD
	// authenticates it); piece 0's copy of it is not trusted apart.
	f.Burst.putType(buf[:HeaderSize], TypeBurst)
	return buf[:s.total], dropped, nil
}

// free finds a slot for a new burst packet: an unused one, else an expired one, else the least
// recently used one. It reports the incomplete packet it discarded, if any.
func (r *Reassembler) free(now time.Time) (int, Dropped) {
	lru := -1
	for j := range r.slots {
		s := &r.slots[j]
		if !s.used {
			return j, Dropped{}
		}
		if lru < 0 || s.touched < r.slots[lru].touched {
			lru = j
		}
	}
	for j := range r.slots {
		if now.Sub(r.slots[j].started) > ReassemblyTimeout {
			return j, r.discard(j, LossExpired)
		}
	}
	return lru, r.discard(lru, LossEvicted)
}

func (r *Reassembler) discard(i int, why Loss) Dropped {
	s := &r.slots[i]
	s.used = false
	return Dropped{Receiver: s.receiver, Why: why}
}

// Expire discards the incomplete burst packets older than ReassemblyTimeout at now and calls lost
// for each (call it from a timer; Add also reuses expired slots).
func (r *Reassembler) Expire(now time.Time, lost func(Dropped)) {
	for j := range r.slots {
		if r.slots[j].used && now.Sub(r.slots[j].started) > ReassemblyTimeout {
			lost(r.discard(j, LossExpired))
		}
	}
}

// Pending returns the number of incomplete burst packets held.
func (r *Reassembler) Pending() int {
	k := 0
	for j := range r.slots {
		if r.slots[j].used {
			k++
		}
	}
	return k
}

func (l Loss) String() string {
	switch l {
	case LossNone:
		return "none"
	case LossExpired:
		return "expired"
	case LossEvicted:
		return "evicted"
	}
	return fmt.Sprintf("Loss(%d)", uint8(l))
}
