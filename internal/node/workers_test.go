package node

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/underlay"
	"x0tta6bl4/internal/virtio"
)

// TestFanout: every part of every batch is done exactly once, by the loop or a helper, also when two
// loops share the helpers and helpers wake for batches that are long over.
func TestFanout(t *testing.T) {
	w := startWorkers(3)
	defer w.stop()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hits [maxParts]atomic.Int32
			f := newFanout(w, func(i int) { hits[i].Add(1) })
			for batch := range 3000 {
				parts := 1 + batch%maxParts
				f.run(parts)
				for i := range hits {
					want := int32(0)
					if i < parts {
						want = 1
					}
					if got := hits[i].Swap(0); got != want {
						t.Errorf("batch %d of %d parts: part %d done %d times", batch, parts, i, got)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestCut: the runs cover the items in order, there are at most as many as asked, and none is empty.
func TestCut(t *testing.T) {
	var ends [maxParts]int
	for _, tc := range []struct {
		weights []int
		parts   int
	}{
		{[]int{1500, 1500, 1500, 1500}, 2},
		{[]int{1500, 1500, 1500}, 4},
		{[]int{60000, 100, 60000}, 2},
		{[]int{0, 0, 0, 1500}, 2},
		{[]int{1500}, 3},
		{[]int{256, 256, 1500, 1500, 1500, 256, 0, 1500}, 3},
	} {
		k := cut(tc.weights, tc.parts, ends[:])
		if k < 1 || k > tc.parts || ends[k-1] != len(tc.weights) {
			t.Errorf("%v in %d: %d runs ending %v", tc.weights, tc.parts, k, ends[:k])
			continue
		}
		for i := range k {
			lo := 0
			if i > 0 {
				lo = ends[i-1]
			}
			if ends[i] <= lo {
				t.Errorf("%v in %d: run %d is empty (ends %v)", tc.weights, tc.parts, i, ends[:k])
			}
		}
	}
	if k := cut([]int{1500, 1500, 1500, 1500}, 2, ends[:]); k != 2 || ends[0] != 2 {
		t.Errorf("four equal items in two: ends %v", ends[:k])
	}
}

// forceFanout makes every batch worth sharing for the rest of the test.
func forceFanout(tb testing.TB) {
	old := minPartBytes
	minPartBytes = 1
	tb.Cleanup(func() { minPartBytes = old })
}

// seqPacket returns a UDP packet from src to dst carrying the number seq.
func seqPacket(src, dst netip.Addr, size int, seq uint32) []byte {
	p := make([]byte, size)
	udpPacket(p, src, dst)
	binary.BigEndian.PutUint32(p[48:], seq)
	return p
}

func seqOf(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[48:]) }

// drops is a node's drop counters and deliveries, to compare two receives.
func drops(n *Node) [5]uint64 {
	s := &n.stats
	return [5]uint64{s.dropAuth.Load(), s.dropNoSession.Load(), s.dropMalformed.Load(), s.dropSpoofed.Load(), s.delivered.Load()}
}

// TestParallelReceive: a batch opened by workers is delivered, dropped and counted exactly as the
// loop alone handles it: in order, link packets and end-to-end packets inside transit packets, with
// forged and unknown ones among them.
func TestParallelReceive(t *testing.T) {
	forceFanout(t)
	w, nodes, devs, _ := relayedChain(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	e2e, _, head := e2eParts(t, a, c)
	link := b.fib.Load().byAddr[c.Addr()].nextHop // b's link to c
	pool := startWorkers(1)
	defer pool.stop()

	// batch returns datagrams from b to c and the numbers of the packets c must deliver, in order.
	batch := func(seq uint32) ([]underlay.Datagram, []uint32) {
		now := w.Now()
		var ds []underlay.Datagram
		var want []uint32
		add := func(pkt []byte, deliver bool, n uint32) {
			ds = append(ds, underlay.Datagram{Data: pkt, From: b.UDPAddr()})
			if deliver {
				want = append(want, n)
			}
		}
		for i := range 24 {
			direct := append([]byte{byte(overlay.TypeDirect)}, seqPacket(b.Addr(), c.Addr(), 1000, seq)...)
			sealed, err := link.sess.Seal(nil, direct, now)
			if err != nil {
				t.Fatal(err)
			}
			inner, err := e2e.sess.Seal(nil, seqPacket(a.Addr(), c.Addr(), 1200, seq+1), now)
			if err != nil {
				t.Fatal(err)
			}
			transit, err := link.sess.SealTransit(nil, head, inner, now)
			if err != nil {
				t.Fatal(err)
			}
			switch i {
			case 5: // a forged link packet
				sealed[40] ^= 1
				add(sealed, false, seq)
			case 9: // an unknown session
				sealed[4] ^= 0xff
				add(sealed, false, seq)
			case 13: // a forged end-to-end packet inside a genuine transit packet, before the link packet
				transit[len(transit)-100] ^= 1
				add(transit, false, seq+1)
				add(sealed, true, seq)
				seq += 2
				continue
			case 17: // spoofed: a's address in b's link session
				spoof := append([]byte{byte(overlay.TypeDirect)}, seqPacket(a.Addr(), c.Addr(), 1000, seq)...)
				forged, err := link.sess.Seal(nil, spoof, now)
				if err != nil {
					t.Fatal(err)
				}
				add(forged, false, seq)
			default:
				add(sealed, true, seq)
			}
			add(transit, true, seq+1)
			seq += 2
		}
		return ds, want
	}
	receive := func(r *Receiver, seq uint32) ([]uint32, [5]uint64) {
		ds, want := batch(seq)
		before := drops(c)
		devs[2].mu.Lock()
		devs[2].record, devs[2].received = true, nil
		devs[2].mu.Unlock()
		r.Receive(w.Now(), ds)
		devs[2].mu.Lock()
		defer devs[2].mu.Unlock()
		var got []uint32
		for _, p := range devs[2].received {
			got = append(got, seqOf(p))
		}
		if !equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		after := drops(c)
		for i := range after {
			after[i] -= before[i]
		}
		return got, after
	}
	inline := c.NewReceiver()
	parallel := c.NewReceiver()
	parallel.useWorkers(pool)
	_, alone := receive(inline, 1000)
	_, shared := receive(parallel, 2000)
	if alone != shared {
		t.Errorf("counts (auth, no session, malformed, spoofed, delivered): alone %v, with workers %v", alone, shared)
	}
	if alone[0] != 2 || alone[1] != 1 || alone[3] != 1 {
		t.Errorf("counts (auth, no session, malformed, spoofed, delivered): %v", alone)
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestParallelPump: a device batch sealed by workers reaches a neighbour (link session) and a node
// behind it (end to end) in order; a packet nobody routes is dropped.
func TestParallelPump(t *testing.T) {
	forceFanout(t)
	w, nodes, devs, _ := relayedChain(t)
	a, b, c := nodes[0], nodes[1], nodes[2]
	var feed [][]byte
	var toB, toC []uint32
	stranger := netip.MustParseAddr("fd00::1")
	for seq := range uint32(60) {
		switch seq % 3 {
		case 0:
			feed = append(feed, seqPacket(a.Addr(), b.Addr(), 1372, seq))
			toB = append(toB, seq)
		case 1:
			feed = append(feed, seqPacket(a.Addr(), c.Addr(), 1372-int(seq), seq))
			toC = append(toC, seq)
		default:
			if seq == 20 {
				feed = append(feed, seqPacket(a.Addr(), stranger, 200, seq))
				continue
			}
			feed = append(feed, seqPacket(a.Addr(), c.Addr(), 300, seq))
			toC = append(toC, seq)
		}
	}
	for _, d := range devs[1:] {
		d.mu.Lock()
		d.record, d.received = true, nil
		d.mu.Unlock()
	}
	devs[0].mu.Lock()
	devs[0].feed = feed
	devs[0].mu.Unlock()
	pool := startWorkers(1)
	defer pool.stop()
	p := a.NewDevicePump()
	p.useWorkers(pool)
	noRoute := a.stats.dropNoRoute.Load()
	before := devs[1].delivered() + devs[2].delivered()
	if err := p.Pump(); err != nil {
		t.Fatal(err)
	}
	w.RunUntil(func() bool { return devs[1].delivered()+devs[2].delivered()-before >= uint64(len(toB)+len(toC)) }, time.Second)
	w.Run(10 * time.Millisecond) // anything more would arrive now
	for i, want := range [][]uint32{toB, toC} {
		d := devs[1+i]
		d.mu.Lock()
		var got []uint32
		for _, p := range d.received {
			got = append(got, seqOf(p))
		}
		d.mu.Unlock()
		if !equal(got, want) {
			t.Errorf("%s received %v, want %v", nodes[1+i].self.Name, got, want)
		}
	}
	if a.stats.dropNoRoute.Load() != noRoute+1 {
		t.Errorf("no-route drops: %d, want %d", a.stats.dropNoRoute.Load(), noRoute+1)
	}
}

// TestParallelBursts: two TCP bursts and a packet between them, read raw in one batch and sealed by
// workers, arrive whole and in order end to end.
func TestParallelBursts(t *testing.T) {
	forceFanout(t)
	w, nodes, devs, _ := relayedChain(t)
	a, c := nodes[0], nodes[2]
	v, _ := a.e2eByDst.Load(c.Addr())
	v.(*tunnel).burstConfirmedUntil.Store(w.Now().Add(time.Hour).UnixNano()) // as if c answered a probe
	const segments, size = 40, 1300
	first, second := tcpBurst(a.Addr(), c.Addr(), segments, size), tcpBurst(a.Addr(), c.Addr(), segments, size)
	binary.BigEndian.PutUint32(second[virtio.HeaderLen+ipv6HeaderLen+4:], 2000) // its own TCP sequence
	between := make([]byte, virtio.HeaderLen+300)                               // a virtio-net header asking for nothing, then a packet
	udpPacket(between[virtio.HeaderLen:], a.Addr(), c.Addr())
	bufs := make([][]byte, devBatch)
	for i := range bufs {
		bufs[i] = make([]byte, txHeadroom+netdev.MaxPacket+txTailroom)
	}
	r := newRawReader(bufs, make([]int, devBatch))
	off := 0
	for _, f := range [][]byte{first, between, second} {
		copy(r.room(off), f)
		r.frames = append(r.frames, rawFrame{off, len(f)})
		off += (rawHeadroom + len(f) + session.TagSize + 7) &^ 7
	}
	devs[2].mu.Lock()
	devs[2].record = true
	devs[2].mu.Unlock()
	pool := startWorkers(1)
	defer pool.stop()
	s := newTxSealer(a, pool, devBatch).use(len(first) + len(second))
	if s == nil {
		t.Fatal("batch not shared")
	}
	tx := newTxBatch(a)
	now := w.Now()
	for _, f := range r.frames {
		a.sendRaw(now, tx, r, s, r.arena[f.off:], f.size)
	}
	s.flush(now, tx, r)
	tx.flush(now)
	sent := a.stats.burstsSent.Load()
	if _, ok := w.RunUntil(func() bool { return devs[2].delivered() >= 2*segments+2 }, time.Second); !ok || sent != 2 {
		t.Fatalf("%d bursts sent, %d packets delivered", sent, devs[2].delivered())
	}
	devs[2].mu.Lock()
	defer devs[2].mu.Unlock()
	got := devs[2].received[len(devs[2].received)-(2*segments+1):]
	for i, p := range got {
		var want []byte
		switch {
		case i < segments:
			want = first[virtio.HeaderLen+ipv6HeaderLen+20+i*size:][:size]
		case i == segments:
			if !bytes.Equal(p, between[virtio.HeaderLen:]) {
				t.Errorf("packet %d is not the one between the bursts", i)
			}
			continue
		default:
			want = second[virtio.HeaderLen+ipv6HeaderLen+20+(i-segments-1)*size:][:size]
		}
		if !bytes.Equal(p[ipv6HeaderLen+20:], want) {
			t.Errorf("packet %d: payload differs", i)
		}
		seq := binary.BigEndian.Uint32(p[ipv6HeaderLen+4:])
		if base := uint32(1000); i > segments {
			if seq != 2000+uint32((i-segments-1)*size) {
				t.Errorf("packet %d of the second burst: seq %d", i, seq)
			}
		} else if i < segments && seq != base+uint32(i*size) {
			t.Errorf("packet %d of the first burst: seq %d", i, seq)
		}
	}
}

// Benchmarks of the parallel phases, to run with -cpu 1,2 (docs/performance.md, "All cores"): one op
// is one batch of 128 full-sized packets; "inline" is a loop alone, "workers" a loop with the
// helpers Run would give it at that GOMAXPROCS (none at 1, so that it is inline too).

const benchBatch = 128

// benchPool gives a loop one helper for every other P, whatever the default would be.
func benchPool(b *testing.B, workers bool) *workers {
	if !workers {
		return nil
	}
	w := startWorkers(runtime.GOMAXPROCS(0) - 1)
	b.Cleanup(w.stop)
	return w
}

// BenchmarkReceiveBatch: a neighbour's link packets opened, checked and written to the device. The
// sender seals 48 batches at a time with the timer stopped.
func BenchmarkReceiveBatch(b *testing.B) {
	for _, workers := range []bool{false, true} {
		b.Run(map[bool]string{false: "inline", true: "workers"}[workers], func(b *testing.B) {
			w, nodes, _ := memChain(b, 2)
			a, c := nodes[0], nodes[1]
			link := a.fib.Load().byAddr[c.Addr()].nextHop
			r := c.NewReceiver()
			r.useWorkers(benchPool(b, workers))
			frame := append([]byte{byte(overlay.TypeDirect)}, seqPacket(a.Addr(), c.Addr(), benchPacket, 0)...)
			const ahead = 48 // batches sealed in advance: fewer than the replay window
			mem := make([][]byte, ahead*benchBatch)
			for i := range mem {
				mem[i] = make([]byte, 0, len(frame)+64)
			}
			batches := make([][]underlay.Datagram, ahead)
			for i := range batches {
				batches[i] = make([]underlay.Datagram, benchBatch)
			}
			from := a.UDPAddr()
			now := w.Now()
			seal := func() {
				for i := range batches {
					for j := range batches[i] {
						out, err := link.sess.Seal(mem[i*benchBatch+j][:0], frame, now)
						if err != nil {
							b.Fatal(err)
						}
						batches[i][j] = underlay.Datagram{Data: out, From: from}
					}
				}
			}
			b.SetBytes(benchBatch * benchPacket)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%ahead == 0 {
					b.StopTimer()
					seal()
					b.StartTimer()
				}
				r.Receive(now, batches[i%ahead])
			}
		})
	}
}

// BenchmarkPumpBatch: device batches of packets to a neighbour routed, sealed and queued for the
// socket (which drops them).
func BenchmarkPumpBatch(b *testing.B) {
	for _, workers := range []bool{false, true} {
		b.Run(map[bool]string{false: "inline", true: "workers"}[workers], func(b *testing.B) {
			w, nodes, devs := memChain(b, 2)
			a := nodes[0]
			feed := make([][]byte, benchBatch)
			for i := range feed {
				feed[i] = seqPacket(a.Addr(), nodes[1].Addr(), benchPacket, uint32(i))
			}
			devs[0].feed = feed
			w.Drop = func(netip.AddrPort, netip.AddrPort, []byte) bool { return true }
			p := a.NewDevicePump()
			p.useWorkers(benchPool(b, workers))
			b.SetBytes(benchBatch * benchPacket)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := p.Pump(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := w.Dropped; got < uint64(b.N)*benchBatch {
				b.Fatalf("%d datagrams sent, want %d", got, b.N*benchBatch)
			}
		})
	}
}

// BenchmarkPumpBursts: raw device batches of two TCP bursts of 44 × 1312 bytes to a neighbour, each
// sealed whole in the link session and cut into its pieces (one op is one batch: 115 KB). The copy
// of the frames into the read arena, which sealing in place consumes, is part of the op.
func BenchmarkPumpBursts(b *testing.B) {
	for _, workers := range []bool{false, true} {
		b.Run(map[bool]string{false: "inline", true: "workers"}[workers], func(b *testing.B) {
			w, nodes, _ := memChain(b, 2)
			a, c := nodes[0], nodes[1]
			a.fib.Load().byAddr[c.Addr()].nextHop.burstConfirmedUntil.Store(w.Now().Add(time.Hour).UnixNano())
			w.Drop = func(netip.AddrPort, netip.AddrPort, []byte) bool { return true }
			const segments, size = 44, 1312
			frame := tcpBurst(a.Addr(), c.Addr(), segments, size)
			p := a.NewDevicePump()
			p.raw = newRawReader(p.bufs, p.sizes) // as for a kernel TUN with virtio-net headers
			p.useWorkers(benchPool(b, workers))
			for off := 0; len(p.raw.frames) < 2; off += (rawHeadroom + len(frame) + session.TagSize + 7) &^ 7 {
				p.raw.frames = append(p.raw.frames, rawFrame{off, len(frame)})
			}
			now := w.Now()
			b.SetBytes(2 * segments * size)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, f := range p.raw.frames {
					copy(p.raw.room(f.off), frame)
				}
				p.send(now, 0)
			}
			b.StopTimer()
			if got := a.stats.burstsSent.Load(); got < 2*uint64(b.N) {
				b.Fatalf("%d bursts sent, want %d", got, 2*b.N)
			}
		})
	}
}
