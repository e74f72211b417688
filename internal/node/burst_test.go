package node

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/virtio"
)

// TestBurstBackoff: a loss report turns bursts off for burstBackoffMin; reports in flight while they
// are off change nothing; a loss soon after they resume doubles the back-off up to burstBackoffMax,
// and a long quiet spell resets it.
func TestBurstBackoff(t *testing.T) {
	var tu tunnel
	now := time.Unix(1_700_000_000, 0)
	offFor := func() time.Duration { return time.Duration(tu.burstOffUntil.Load() - now.UnixNano()) }

	tu.backOffBursts(now)
	if offFor() != burstBackoffMin {
		t.Fatalf("first report: off for %s", offFor())
	}
	now = now.Add(10 * time.Millisecond)
	tu.backOffBursts(now) // a report for a burst sent before the first
	if got := offFor(); got != burstBackoffMin-10*time.Millisecond {
		t.Fatalf("report while off: off for %s", got)
	}
	want := burstBackoffMin
	for range 10 {
		now = time.Unix(0, tu.burstOffUntil.Load()).Add(100 * time.Millisecond) // lost again soon after
		tu.backOffBursts(now)
		want = min(2*want, burstBackoffMax)
		if offFor() != want {
			t.Fatalf("repeated loss: off for %s, want %s", offFor(), want)
		}
	}
	now = time.Unix(0, tu.burstOffUntil.Load()).Add(2*burstBackoffMax + time.Second)
	tu.backOffBursts(now)
	if offFor() != burstBackoffMin {
		t.Fatalf("after a quiet spell: off for %s", offFor())
	}
}

// tcpBurst returns a frame as a kernel TUN hands it over: a virtio-net header for TCPv6
// segmentation, then one IPv6 TCP packet from src to dst with segments × size bytes of payload.
func tcpBurst(src, dst netip.Addr, segments, size int) []byte {
	const tcpLen = 20
	pkt := make([]byte, virtio.HeaderLen+ipv6HeaderLen+tcpLen+segments*size)
	virtio.Header{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv6, HdrLen: ipv6HeaderLen + tcpLen,
		GSOSize: uint16(size), CsumStart: ipv6HeaderLen, CsumOffset: 16}.Put(pkt)
	p := pkt[virtio.HeaderLen:]
	putIPv6Header(p, 6, src, dst)
	tcp := p[ipv6HeaderLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = tcpLen/4<<4, 0x18 // ACK|PSH
	for i := range tcp[tcpLen:] {
		tcp[tcpLen+i] = byte(i)
	}
	return pkt
}

// BenchmarkSendBurstEndToEnd: a TCP burst of 44 segments of 1312 bytes, as a kernel TUN hands it
// over, sent whole end to end through a relay (one op is one burst); the destination, whose device
// takes single packets, reassembles, opens and splits it. Compare with 44 × BenchmarkSendEndToEnd.
func BenchmarkSendBurstEndToEnd(b *testing.B) {
	nodes, devs := benchChain(b, 3, 0, 2)
	a, c := nodes[0], nodes[2]
	pkt := make([]byte, 200)
	udpPacket(pkt, a.Addr(), c.Addr())
	deadline := time.Now().Add(10 * time.Second)
	for devs[2].delivered() == 0 && time.Now().Before(deadline) { // runs the end-to-end handshake
		a.sendPacket(time.Now(), pkt)
		time.Sleep(20 * time.Millisecond)
	}
	const segments, size = 44, 1312
	frame := tcpBurst(a.Addr(), c.Addr(), segments, size)
	bufs := make([][]byte, devBatch)
	for i := range bufs {
		bufs[i] = make([]byte, txHeadroom+netdev.MaxPacket+txTailroom)
	}
	r := newRawReader(bufs, make([]int, devBatch))
	tx := newTxBatch(a)
	send := func() {
		copy(r.room(0), frame) // sealing in place consumed the last one
		now := time.Now()
		a.sendRaw(now, tx, r, nil, r.arena, len(frame))
		tx.flush(now)
	}
	// Until c answers a's burst probe the bursts are split; then the first whole one makes c
	// allocate its reassembly pool and split arena.
	deadline = time.Now().Add(5 * time.Second)
	for a.stats.burstsSent.Load() == 0 && time.Now().Before(deadline) {
		send()
		time.Sleep(time.Millisecond)
	}
	if c.stats.burstsDelivered.Load() == 0 && !waitFor(&c.stats.burstsDelivered, 5*time.Second) {
		b.Fatal("no burst arrived whole")
	}
	before := devs[2].delivered()
	b.SetBytes(segments * size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		send()
	}
	b.StopTimer()
	if !devs[2].wait(before+segments, 5*time.Second) {
		b.Fatal("no burst arrived")
	}
}

// waitFor polls c until it is not zero, for at most within.
func waitFor(c *atomic.Uint64, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for c.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return c.Load() != 0
}
