package meshtest

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/virtio"
)

// tcpBurst returns a frame as a kernel TUN hands it over: a virtio-net header for TCPv6
// segmentation, then one IPv6 TCP packet from src to dst with segments × size bytes of payload.
func tcpBurst(src, dst netip.Addr, segments, size int) []byte {
	const ipLen, tcpLen = 40, 20
	frame := make([]byte, virtio.HeaderLen+ipLen+tcpLen+segments*size)
	virtio.Header{Flags: virtio.FlagNeedsCsum, GSOType: virtio.GSOTCPv6, HdrLen: ipLen + tcpLen,
		GSOSize: uint16(size), CsumStart: ipLen, CsumOffset: 16}.Put(frame)
	p := frame[virtio.HeaderLen:]
	putIPv6Header(p, 6, src, dst)
	tcp := p[ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	tcp[12], tcp[13] = tcpLen/4<<4, 0x18 // ACK|PSH
	for i := range tcp[tcpLen:] {
		tcp[tcpLen+i] = byte(i)
	}
	return frame
}

// burstChain is a - relay - c with devices that move whole bursts (c's only if rawDst), converged
// and with an end-to-end session a -> c.
func burstChain(t *testing.T, seed uint64, rawDst bool, drop func(from, to *Node, d []byte) bool) (*Mesh, *Node, *Node) {
	t.Helper()
	m, err := New(Config{Seed: seed, Drop: drop})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "relay", "c"); err != nil {
		t.Fatal(err)
	}
	a, c := m.Node("a"), m.Node("c")
	a.RawDevice, c.RawDevice = true, rawDst
	if err := m.Link("a", "relay", LinkParams{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Link("relay", "c", LinkParams{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "relay"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c\n%s", dump(m))
	}
	send(t, m, a, c, "hello", 5*time.Second)
	return m, a, c
}

// burstOutcome injects a burst of segments at a and runs the mesh until c has all of them; it
// reports whether they crossed whole.
func burstOutcome(t *testing.T, m *Mesh, a, c *Node, segments int) bool {
	t.Helper()
	sent, delivered := a.Status().Stats.BurstsSent, c.DeliveredCount()
	a.InjectRaw(tcpBurst(a.Addr(), c.Addr(), segments, 1200))
	if _, ok := m.RunUntil(func() bool { return c.DeliveredCount() >= delivered+segments }, time.Second); !ok {
		t.Fatalf("c got %d of %d segments\n%s", c.DeliveredCount()-delivered, segments, dump(m))
	}
	return a.Status().Stats.BurstsSent > sent
}

// TestBurstProbe: a sender splits its TCP bursts until the destination has answered a burst probe
// through the path; then bursts cross the relay whole and reach the host in one write. An answer
// older than 30 s no longer counts: bursts are split again until a new probe is answered.
func TestBurstProbe(t *testing.T) {
	m, a, c := burstChain(t, 11, true, nil)
	if burstOutcome(t, m, a, c, 10) {
		t.Fatal("a burst went whole before any probe was answered")
	}
	m.Run(50 * time.Millisecond) // the probe sent with that burst is answered
	if !burstOutcome(t, m, a, c, 10) {
		t.Fatal("bursts are still split after the probe was answered")
	}
	last := c.Delivered()[len(c.Delivered())-1]
	if last.Segments != 10 || c.Status().Stats.BurstsDelivered != 1 {
		t.Fatalf("c's host got %d segments in its last write, %d bursts in all; want one write of 10",
			last.Segments, c.Status().Stats.BurstsDelivered)
	}
	if f := m.Node("relay").Status().Stats.Forwarded; f == 0 {
		t.Fatal("the relay forwarded nothing")
	}
	m.Run(31 * time.Second) // no bursts: no re-probe, and the answer lapses
	if burstOutcome(t, m, a, c, 10) {
		t.Fatal("a burst went whole on an answer older than 30 s")
	}
	m.Run(50 * time.Millisecond)
	if !burstOutcome(t, m, a, c, 10) {
		t.Fatal("the new probe's answer did not let bursts go again")
	}
}

// TestBurstLossBacksOff: a burst crosses a relay in pieces to a destination whose device takes single
// packets, which gets it split into its segments. When one piece is lost, the destination gives the
// burst up and tells the sender, which splits its bursts for a while: the next burst goes as segments.
func TestBurstLossBacksOff(t *testing.T) {
	var dropNext bool
	drop := func(from, to *Node, d []byte) bool {
		if dropNext && from.Name == "a" && len(d) > 0 && d[0] == session.TypeFragment {
			dropNext = false
			return true
		}
		return false
	}
	m, a, c := burstChain(t, 12, false, drop)
	burstOutcome(t, m, a, c, 10) // carries the first probe
	m.Run(50 * time.Millisecond)
	if !burstOutcome(t, m, a, c, 40) {
		t.Fatal("bursts are still split after the probe was answered")
	}
	if s := c.Status().Stats; s.BurstsDelivered != 1 {
		t.Fatalf("c delivered %d bursts, want 1 (split for its device)", s.BurstsDelivered)
	}
	dropNext = true
	before := c.DeliveredCount()
	a.InjectRaw(tcpBurst(a.Addr(), c.Addr(), 40, 1200))
	if _, ok := m.RunUntil(func() bool { return a.Status().Stats.BurstBackoffs == 1 }, time.Second); !ok {
		t.Fatalf("the sender was not told of the lost burst\n%s", dump(m))
	}
	if s := c.Status().Stats; s.BurstsLost != 1 || s.BurstsDelivered != 1 || c.DeliveredCount() != before {
		t.Fatalf("c: %+v, %d packets delivered since the loss; want the burst given up whole", s, c.DeliveredCount()-before)
	}
	if burstOutcome(t, m, a, c, 10) {
		t.Fatal("a burst went whole during the back-off")
	}
}
