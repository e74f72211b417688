package session

import "testing"

const benchSize = 1420

func BenchmarkSeal1420(b *testing.B) {
	a, _ := newPair(b, t0)
	pt := make([]byte, benchSize)
	buf := make([]byte, 0, benchSize+MinPacketSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Seal(buf[:0], pt, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal1420Parallel seals from GOMAXPROCS goroutines on one session (shared counter).
func BenchmarkSeal1420Parallel(b *testing.B) {
	a, _ := newPair(b, t0)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		pt := make([]byte, benchSize)
		buf := make([]byte, 0, benchSize+MinPacketSize)
		for pb.Next() {
			if _, err := a.Seal(buf[:0], pt, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpen1420 opens pre-sealed packets (refilled off the clock in batches, since each
// counter is accepted once). The timed loop includes copying the packet into the receive
// buffer, as a receiver reading from a socket would.
func BenchmarkOpen1420(b *testing.B) {
	a, s := newPair(b, t0)
	const batch = 4096
	pt := make([]byte, benchSize)
	pkts := make([][]byte, batch)
	for i := range pkts {
		pkts[i] = make([]byte, 0, benchSize+MinPacketSize)
	}
	refill := func() {
		for i := range pkts {
			var err error
			if pkts[i], err = a.Seal(pkts[i][:0], pt, t0); err != nil {
				b.Fatal(err)
			}
		}
	}
	refill()
	rbuf := make([]byte, benchSize+MinPacketSize)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == batch {
			b.StopTimer()
			refill()
			i = 0
			b.StartTimer()
		}
		n := copy(rbuf, pkts[i])
		if _, err := s.Open(rbuf[:n], t0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
