package routingsim

import (
	"math/rand/v2"
	"testing"
)

// TestCalendarOrder checks the calendar queue against a heap: events pushed at the current time,
// within the ring, far beyond it, and after the clock stopped short of the next event.
func TestCalendarOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var q calendar
	var ref eventHeap
	var seq uint64
	now := int64(0)
	push := func(at int64) {
		seq++
		e := event{at: at, seq: seq}
		q.push(e)
		ref.push(e)
	}
	for range 200000 {
		switch r := rng.IntN(10); {
		case r < 5:
			push(now + rng.Int64N(25_000_000)) // a message in flight
		case r < 6:
			push(now) // a tick due now
		case r < 7:
			push(now + rng.Int64N(100_000_000_000)) // far ahead
		default:
			if len(ref) == 0 {
				continue
			}
			if rng.IntN(20) == 0 { // the clock stops short of the next event
				if f := q.front(); f.at > now {
					now += rng.Int64N(f.at - now)
				}
				continue
			}
			want := ref.pop()
			if f := q.front(); f == nil || f.seq != want.seq {
				t.Fatalf("front %+v, want seq %d", f, want.seq)
			}
			if got := q.pop(); got.seq != want.seq {
				t.Fatalf("popped seq %d, want %d", got.seq, want.seq)
			}
			now = want.at
		}
	}
	for len(ref) > 0 {
		if got, want := q.pop(), ref.pop(); got.seq != want.seq {
			t.Fatalf("popped seq %d, want %d", got.seq, want.seq)
		}
	}
	if q.front() != nil {
		t.Fatal("queue not empty")
	}
}
