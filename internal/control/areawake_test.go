package control

import (
	"fmt"
	"testing"

	"x0tta6bl4/internal/control/store"
)

// woken reports whether a long poll's channel has been closed.
func woken(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestAreaGenerationsWakeByArea: a record's publication wakes the long polls of its own area and
// those of callers of unknown area; a proof's wakes every other area's but area 0's; an announcement
// older than one already made still wakes the waiters it concerns that were not woken for a later
// one; an item of unknown area wakes everyone.
func TestAreaGenerationsWakeByArea(t *testing.T) {
	records := newAreaGenerations(10, recordsConcern)
	waitOn := func(g *areaGenerations) map[string]<-chan struct{} {
		out := map[string]<-chan struct{}{}
		for _, a := range []uint32{0, 2, 3} {
			_, _, out[fmt.Sprint(a)] = g.wait(a, true)
		}
		_, _, out["unknown"] = g.wait(0, false)
		return out
	}
	check := func(what string, ch map[string]<-chan struct{}, want string) {
		t.Helper()
		var got []string
		for _, k := range []string{"0", "2", "3", "unknown"} {
			if woken(ch[k]) {
				got = append(got, k)
			}
		}
		if fmt.Sprint(got) != want {
			t.Errorf("%s woke %v, want %s", what, got, want)
		}
	}
	ch := waitOn(records)
	if !records.publish(11, 2) {
		t.Fatal("a publication did not move the generation")
	}
	check("a record of area 2", ch, "[2 unknown]")
	if last, n, _ := records.wait(3, true); last != 10 || n != 11 {
		t.Errorf("area 3 after area 2's publication: last %d, current %d; want 10, 11", last, n)
	}
	if last, _, _ := records.wait(2, true); last != 11 {
		t.Errorf("area 2's last generation %d, want 11", last)
	}

	ch = waitOn(records)
	if records.publishMany(15, []store.PublishedArea{{Area: 3, Generation: 15}}) != true {
		t.Fatal("a refresh did not move the generation")
	}
	check("another instance's record of area 3", ch, "[3 unknown]")
	ch = waitOn(records)
	if records.publish(13, 0) { // this instance's, announced after the refresh took in 15
		t.Error("an older announcement moved the generation back")
	}
	check("a late record of area 0", ch, "[0]")
	if records.current() != 15 {
		t.Errorf("generation %d, want 15", records.current())
	}
	ch = waitOn(records)
	records.publishMany(16, []store.PublishedArea{{AreaUnknown: true, Generation: 16}})
	check("a record of unknown area", ch, "[0 2 3 unknown]")

	proofs := newAreaGenerations(0, proofsConcern)
	ch = waitOn(proofs)
	proofs.publish(1, 2)
	check("a proof of area 2", ch, "[3 unknown]")

	ch = waitOn(records)
	records.wakeAll()
	check("shutting down", ch, "[0 2 3 unknown]")
}

// TestAreaGenerationsBounded: callers of ever new areas (a node that keeps signing new ones) keep at
// most maxWaitAreas areas apart; reaching the bound wakes the waiters of the areas dropped, so none
// waits on a channel nothing will close.
func TestAreaGenerationsBounded(t *testing.T) {
	g := newAreaGenerations(5, recordsConcern)
	_, _, first := g.wait(0, true)
	for a := uint32(1); a < maxWaitAreas; a++ {
		g.wait(a, true)
	}
	if woken(first) || len(g.byArea) != maxWaitAreas {
		t.Fatalf("%d areas kept, first woken %v; want %d, not woken", len(g.byArea), woken(first), maxWaitAreas)
	}
	if last, _, _ := g.wait(maxWaitAreas, true); last != 5 {
		t.Errorf("a new area after the bound starts at %d, want the current generation 5", last)
	}
	if !woken(first) || len(g.byArea) != 1 {
		t.Fatalf("past the bound: %d areas kept, first woken %v; want 1, woken", len(g.byArea), woken(first))
	}
}

// BenchmarkLongPollWakeups counts the long polls one publication wakes, 10,000 of them waiting in
// 100 areas of 100 nodes: with one generation for the whole mesh (what records used before, and
// the policy still uses) and with waiters woken by area, for records and for proofs. ns/op is the
// publication's own cost (closing the channels), without the waiters' registration.
//
//	go test -run '^$' -bench LongPollWakeups ./internal/control/
func BenchmarkLongPollWakeups(b *testing.B) {
	const polls, areas = 10000, 100
	b.Run("one-generation", func(b *testing.B) {
		g := newGeneration(0)
		chans := make([]<-chan struct{}, polls)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			for p := range chans {
				_, chans[p] = g.wait()
			}
			b.StartTimer()
			g.set(uint64(i + 1))
			b.StopTimer()
			countWoken(b, chans)
			b.StartTimer()
		}
	})
	for _, c := range []struct {
		name     string
		concerns func(published, caller uint32) bool
	}{{"by-area/records", recordsConcern}, {"by-area/proofs", proofsConcern}} {
		b.Run(c.name, func(b *testing.B) {
			g := newAreaGenerations(0, c.concerns)
			chans := make([]<-chan struct{}, polls)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for p := range chans {
					_, _, chans[p] = g.wait(uint32(p%areas)+1, true)
				}
				b.StartTimer()
				g.publish(uint64(i+1), uint32(i%areas)+1)
				b.StopTimer()
				countWoken(b, chans)
				b.StartTimer()
			}
		})
	}
}

// countWoken reports how many of the waiters' channels a publication closed, per publication.
func countWoken(b *testing.B, chans []<-chan struct{}) {
	n := 0
	for _, c := range chans {
		if woken(c) {
			n++
		}
	}
	b.ReportMetric(float64(n), "wakeups/op")
}
