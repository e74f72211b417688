package routingsim

import "slices"

func (e *event) before(f *event) bool {
	return e.at < f.at || e.at == f.at && e.seq < f.seq
}

func cmpEvent(a, b event) int {
	switch {
	case a.before(&b):
		return -1
	case b.before(&a):
		return 1
	}
	return 0
}

// calendar is the event queue, ordered by (at, seq): a calendar queue. A ring of ringSize buckets,
// each bucketWidth nanoseconds wide, holds the events of the next ringSize buckets (a message in
// flight is always among them); later events wait in a heap. A bucket is sorted when it becomes
// current and consumed in order, so events are handled in batches that sit together in memory
// rather than through a heap of a quarter million events. The order is total, so it pops exactly
// what any priority queue would.
type calendar struct {
	ring  [ringSize][]event
	cur   int64 // the current bucket (at >> bucketShift); earlier buckets are empty
	head  int   // ring[cur%ringSize][:head] is consumed; the rest is sorted
	inRng int   // events in the ring
	far   eventHeap
	spare [][]event // emptied buckets' memory, for reuse: only the buckets in use hold any
}

const (
	bucketShift = 14 // 16.4 µs per bucket
	ringSize    = 1 << 12
	ringMask    = ringSize - 1
)

func (q *calendar) push(e event) {
	b := e.at >> bucketShift
	switch {
	case b >= q.cur+ringSize:
		q.far.push(e)
		return
	case b <= q.cur:
		// The current bucket (or, after the clock stopped short of it, an earlier one: the event
		// still comes before everything queued, which is all in this bucket or later): insert in order.
		bk := &q.ring[q.cur&ringMask]
		i, _ := slices.BinarySearchFunc((*bk)[q.head:], e, cmpEvent)
		*bk = slices.Insert(*bk, q.head+i, e)
	default:
		q.add(e)
	}
	q.inRng++
}

// add appends e to its bucket, which is not the current one.
func (q *calendar) add(e event) {
	bk := &q.ring[(e.at>>bucketShift)&ringMask]
	if *bk == nil {
		if k := len(q.spare); k > 0 {
			*bk, q.spare = q.spare[k-1], q.spare[:k-1]
		}
	}
	*bk = append(*bk, e)
}

// front returns the next event without removing it, or nil.
func (q *calendar) front() *event {
	for {
		bk := &q.ring[q.cur&ringMask]
		if q.head < len(*bk) {
			return &(*bk)[q.head]
		}
		// The current bucket is exhausted: move on to the next one.
		if cap(*bk) > 0 {
			clear(*bk)
			q.spare = append(q.spare, (*bk)[:0])
		}
		*bk, q.head = nil, 0
		if q.inRng == 0 {
			if len(q.far) == 0 {
				return nil
			}
			q.cur = q.far[0].at >> bucketShift // skip the empty buckets
		} else {
			q.cur++
		}
		for len(q.far) > 0 && q.far[0].at>>bucketShift < q.cur+ringSize {
			q.add(q.far.pop())
			q.inRng++
		}
		slices.SortFunc(q.ring[q.cur&ringMask], cmpEvent)
	}
}

// pop removes and returns the next event; the queue must not be empty.
func (q *calendar) pop() event {
	f := q.front()
	e := *f
	*f = event{}
	q.head++
	q.inRng--
	return e
}

// eventHeap is a 4-ary min-heap of events ordered by (at, seq).
type eventHeap []event

func (q *eventHeap) push(e event) {
	*q = append(*q, e)
	s := *q
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !e.before(&s[p]) {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = e
}

func (q *eventHeap) pop() event {
	s := *q
	top := s[0]
	last := len(s) - 1
	e := s[last]
	s[last] = event{}
	s = s[:last]
	*q = s
	if last == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= last {
			break
		}
		m := c
		for k := c + 1; k < c+4 && k < last; k++ {
			if s[k].before(&s[m]) {
				m = k
			}
		}
		if !s[m].before(&e) {
			break
		}
		s[i] = s[m]
		i = m
	}
	s[i] = e
	return top
}
