package session

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// replayModel is the reference: a packet is accepted iff its counter is below the limit, was
// never accepted, and is not more than ReplayWindow behind the highest counter accepted so far.
type replayModel struct {
	seen map[uint64]bool
	max  uint64
}

func (m *replayModel) acceptable(c uint64) bool {
	return c < RejectAfterMessages && !m.seen[c] && (c > m.max || m.max-c <= ReplayWindow)
}

func (m *replayModel) accept(c uint64) {
	m.seen[c] = true
	m.max = max(m.max, c)
}

func TestReplayWindowSize(t *testing.T) {
	if ReplayWindow < 2048 {
		t.Fatalf("window %d < 2048", ReplayWindow)
	}
}

func TestReplayWindowEdges(t *testing.T) {
	var f replayFilter
	accept := func(c uint64, want bool) {
		t.Helper()
		if got := f.check(c); got != want {
			t.Fatalf("check(%d) = %v, want %v", c, got, want)
		}
		if got := f.update(c); got != want {
			t.Fatalf("update(%d) = %v, want %v", c, got, want)
		}
	}
	accept(0, true)
	accept(0, false)
	accept(1, true)
	accept(20000, true)
	accept(20000-ReplayWindow-1, false) // just outside
	accept(20000-ReplayWindow, true)    // oldest inside
	accept(20000-ReplayWindow, false)
	accept(19999, true)
	accept(1, false)
	// A jump larger than the ring clears everything.
	accept(1<<40, true)
	accept(1<<40-1, true)
	accept(1<<40-ReplayWindow, true)
	accept(1<<40-ReplayWindow-1, false)
	accept(RejectAfterMessages-1, true)
	accept(RejectAfterMessages-1, false)
	accept(RejectAfterMessages, false)
	accept(RejectAfterMessages-2, true)
	// check never changes state.
	var g replayFilter
	for c := range uint64(10) {
		g.check(c * 1000)
	}
	if g != (replayFilter{}) {
		t.Fatal("check modified the filter")
	}
}

// TestReplayWindowRandom compares the filter with the reference model on reordered,
// duplicated streams.
func TestReplayWindowRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		var f replayFilter
		m := replayModel{seen: map[uint64]bool{}}
		next := uint64(0)
		for range 20000 {
			var c uint64
			switch r := rng.IntN(10); {
			case r < 6:
				c = next
				next++
			case r < 9 && next > 0:
				c = next - 1 - rng.Uint64N(min(next, 3*ReplayWindow))
			default:
				next += rng.Uint64N(20000)
				c = next
			}
			want := m.acceptable(c)
			if got := f.check(c); got != want {
				t.Fatalf("trial %d: check(%d) = %v, model %v", trial, c, got, want)
			}
			if got := f.update(c); got != want {
				t.Fatalf("trial %d: update(%d) = %v, model %v", trial, c, got, want)
			}
			if want {
				m.accept(c)
			}
		}
	}
}

// FuzzReplayWindow drives the filter with arbitrary counter sequences, each packet either
// authenticating (check then update) or failing authentication (check only), and compares
// every answer with the reference model.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 0, 1, 1, 0})
	f.Add([]byte{4, 0xff, 0xff, 0, 0, 1, 2, 0x10, 0})
	f.Add([]byte{6, 0, 0, 7, 0, 0, 1, 0, 0, 1, 0xff, 0x1f})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var fl replayFilter
		m := replayModel{seen: map[uint64]bool{}}
		for len(ops) >= 3 {
			op, v := ops[0], uint64(binary.LittleEndian.Uint16(ops[1:3]))
			ops = ops[3:]
			var c uint64
			switch op >> 1 & 3 {
			case 0: // near the front, either side
				c = m.max + v - 0x8000
				if v < 0x8000 && m.max < 0x8000-v {
					c = v
				}
			case 1: // absolute small
				c = v
			case 2: // big jump forward
				c = m.max + v<<8
			case 3: // close to the limit
				c = RejectAfterMessages - 0x100 + v%0x200
			}
			want := m.acceptable(c)
			if got := fl.check(c); got != want {
				t.Fatalf("check(%d) = %v, model %v (max %d)", c, got, want, m.max)
			}
			if op&1 == 1 {
				continue // authentication failed: the window must not change
			}
			if got := fl.update(c); got != want {
				t.Fatalf("update(%d) = %v, model %v (max %d)", c, got, want, m.max)
			}
			if want {
				m.accept(c)
			}
		}
	})
}

func BenchmarkReplayWindow(b *testing.B) {
	var f replayFilter
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		c := i ^ 5 // mild reordering within words
		if f.check(c) {
			f.update(c)
		}
	}
}
