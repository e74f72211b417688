package node

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/session"
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

// TestBurstThroughRelay: a burst sealed once end to end crosses a relay in fragment transit packets
// and reaches a destination whose device takes single packets, split into its segments. With a
// piece missing, the destination gives the burst up and asks the sender to split its bursts.
func TestBurstThroughRelay(t *testing.T) {
	nodes, devs, _ := relayedChain(t)
	a, relay, c := nodes[0], nodes[1], nodes[2]
	e2e, link, head := e2eParts(t, a, c)
	const segments = 40
	fragments := func() [][]byte {
		t.Helper()
		now := time.Now()
		// Segments larger than c's MTU (1280): a sender's MTU may differ, and the split must not care.
		sealed, err := e2e.sess.SealBurst(nil, tcpBurst(a.Addr(), c.Addr(), segments, 1400), now)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := session.ParseBurstHeader(sealed)
		var out [][]byte
		for i := range session.Pieces(len(sealed), a.pieceSize) {
			f, end := session.Cut(h, len(sealed), a.pieceSize, i)
			p, err := link.sess.SealFragment(nil, head, f, sealed[f.Offset:end], now)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}

	fwd, delivered := relay.stats.forwarded.Load(), devs[2].delivered()
	pieces := fragments()
	for _, p := range pieces {
		relay.handleDatagram(time.Now(), a.UDPAddr(), p, nil)
	}
	if got := relay.stats.forwarded.Load() - fwd; got != uint64(len(pieces)) {
		t.Fatalf("the relay forwarded %d of %d pieces", got, len(pieces))
	}
	if !devs[2].wait(delivered+segments, 5*time.Second) || c.stats.burstsDelivered.Load() != 1 {
		t.Fatalf("delivered %d packets and %d bursts, want %d and 1", devs[2].delivered()-delivered,
			c.stats.burstsDelivered.Load(), segments)
	}

	// A burst whose first piece never comes is given up and reported to its sender.
	for _, p := range fragments()[1:] {
		relay.handleDatagram(time.Now(), a.UDPAddr(), p, nil)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e2e.burstOffUntil.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.stats.burstsLost.Load() != 1 || a.stats.burstBackoffs.Load() != 1 || time.Now().UnixNano() >= e2e.burstOffUntil.Load() {
		t.Fatalf("lost %d, back-offs %d: the sender was not told to split", c.stats.burstsLost.Load(), a.stats.burstBackoffs.Load())
	}
	if c.stats.burstsDelivered.Load() != 1 {
		t.Fatal("an incomplete burst was delivered")
	}
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
		a.sendRaw(now, tx, r, r.arena, len(frame))
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

// TestBurstProbe: a sender uses bursts to a peer only after the peer answered a burst probe through
// the path, and stops when that answer is older than burstConfirmFor and no new one came.
func TestBurstProbe(t *testing.T) {
	nodes, _, _ := relayedChain(t)
	a, c := nodes[0], nodes[2]
	e2e, _, _ := e2eParts(t, a, c)
	frame := tcpBurst(a.Addr(), c.Addr(), 10, 1200)
	pkt := frame[virtio.HeaderLen:]
	now := time.Now()
	if a.burstTunnel(now, pkt, len(frame)) != nil {
		t.Fatal("bursts before any probe was answered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e2e.burstConfirmedUntil.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	now = time.Now()
	if got := a.burstTunnel(now, pkt, len(frame)); got != e2e {
		t.Fatalf("no bursts after the probe was answered (confirmed until %v)", time.Unix(0, e2e.burstConfirmedUntil.Load()))
	}
	probed := e2e.lastBurstProbe.Load()
	if later := now.Add(burstConfirmFor); a.burstTunnel(later, pkt, len(frame)) != nil {
		t.Fatal("bursts on an answer older than burstConfirmFor")
	} else if e2e.lastBurstProbe.Load() == probed {
		t.Fatal("a lapsed confirmation sent no new probe")
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
