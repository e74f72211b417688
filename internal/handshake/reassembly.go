package handshake

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

var (
	errReassemblyTooLarge = errors.New("reassembled message exceeds its size limit")
	errCountMismatch      = errors.New("fragment count differs from the first fragment's")
	// errSourceBusy is ErrBusy for one source only: it does not put the machine under load.
	errSourceBusy = fmt.Errorf("%w: source", ErrBusy)
)

// reassembly collects the fragments of one logical message. Chunks are copied on arrival.
type reassembly struct {
	count   int
	have    uint64 // bit i set: fragment i present (MaxFragments ≤ 64)
	parts   [][]byte
	size    int // logical bytes held
	wire    int // packet bytes of the unique fragments held
	largest int // largest packet
	maxSize int
	created time.Time
	proven  bool // some fragment carried a valid mac2 (the source proved its address)
}

func newReassembly(count, maxSize int, now time.Time) *reassembly {
	return &reassembly{count: count, parts: make([][]byte, count), maxSize: maxSize, created: now}
}

// add stores one fragment. It returns the whole message once every fragment is present. A duplicate
// fragment number is ignored (the first copy wins). An error means the fragment was refused; if it is
// errReassemblyTooLarge the whole reassembly must be dropped.
func (r *reassembly) add(f *fragment, pktLen int) (msg []byte, done bool, err error) {
	if f.count != r.count {
		return nil, false, errCountMismatch
	}
	bit := uint64(1) << uint(f.num)
	if r.have&bit != 0 {
		return nil, false, nil
	}
	if r.size+len(f.chunk) > r.maxSize {
		return nil, false, errReassemblyTooLarge
	}
	r.parts[f.num] = append([]byte(nil), f.chunk...)
	r.have |= bit
	r.size += len(f.chunk)
	r.wire += pktLen
	r.largest = max(r.largest, pktLen)
	if r.have != (uint64(1)<<uint(r.count))-1 {
		return nil, false, nil
	}
	msg = make([]byte, 0, r.size)
	for _, p := range r.parts {
		msg = append(msg, p...)
	}
	return msg, true, nil
}

type reasmKey struct {
	src   netip.AddrPort
	index uint32
}

// reassembler is the responder's bounded table of incomplete initiations (docs/protocol.md §5).
type reassembler struct {
	max     int
	entries map[reasmKey]*reassembly
	perAddr map[netip.Addr]int
}

func newReassembler(max int) *reassembler {
	return &reassembler{max: max, entries: make(map[reasmKey]*reassembly), perAddr: make(map[netip.Addr]int)}
}

func (t *reassembler) len() int { return len(t.entries) }

// get returns the live reassembly for k, dropping it if it has timed out.
func (t *reassembler) get(now time.Time, k reasmKey) *reassembly {
	r, ok := t.entries[k]
	if !ok {
		return nil
	}
	if expired(r.created, now, ReassemblyTimeout) {
		t.remove(k)
		return nil
	}
	return r
}

// create starts a reassembly. When the table is full, a proven source may evict the oldest unproven
// reassembly; otherwise ErrBusy.
func (t *reassembler) create(now time.Time, k reasmKey, count int, proven bool) (*reassembly, error) {
	a := k.src.Addr()
	if t.perAddr[a] >= reassembliesPerSource {
		return nil, fmt.Errorf("%w: %d initiations from %s already in reassembly", errSourceBusy, reassembliesPerSource, a)
	}
	if len(t.entries) >= t.max {
		t.expire(now)
	}
	if len(t.entries) >= t.max {
		if !proven || !t.evictUnproven() {
			return nil, fmt.Errorf("%w: reassembly table full (%d)", ErrBusy, t.max)
		}
	}
	r := newReassembly(count, MaxInitiationSize, now)
	r.proven = proven
	t.entries[k] = r
	t.perAddr[a]++
	return r, nil
}

func (t *reassembler) evictUnproven() bool {
	var (
		oldest reasmKey
		at     time.Time
		found  bool
	)
	for k, r := range t.entries {
		if !r.proven && (!found || r.created.Before(at)) {
			oldest, at, found = k, r.created, true
		}
	}
	if found {
		t.remove(oldest)
	}
	return found
}

func (t *reassembler) remove(k reasmKey) {
	if _, ok := t.entries[k]; !ok {
		return
	}
	delete(t.entries, k)
	a := k.src.Addr()
	if t.perAddr[a] <= 1 {
		delete(t.perAddr, a)
	} else {
		t.perAddr[a]--
	}
}

func (t *reassembler) expire(now time.Time) {
	for k, r := range t.entries {
		if expired(r.created, now, ReassemblyTimeout) {
			t.remove(k)
		}
	}
}

// expired reports whether a deadline of since+d has passed. A clock that went backwards expires
// everything, so nothing can be pinned forever by a time jump.
func expired(since, now time.Time, d time.Duration) bool {
	return now.Before(since) || now.Sub(since) >= d
}
