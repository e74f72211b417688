package node

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
)

// Benchmarks of the per-packet path (docs/performance.md). Real nodes on 127.0.0.1 with real
// handshakes; the device is an in-memory sink, so what is measured is the node's own work plus the
// UDP syscalls. b.ReportAllocs counts the allocations of the whole process, the receiving and relaying
// nodes' loops included: 0 allocs/op means no packet allocates anywhere on its way.

// nullTun is a tun.Device that counts what is written to it. It never yields a packet unless a test
// gives it packets to read (feed), and keeps what is written only when a test asks (record).
type nullTun struct {
	closed  chan struct{}
	written atomic.Uint64

	mu       sync.Mutex
	feed     [][]byte // what each Read returns, again and again
	record   bool
	received [][]byte // copies of the packets written, with record
}

func newNullTun() *nullTun { return &nullTun{closed: make(chan struct{})} }

func (d *nullTun) File() *os.File { return nil }
func (d *nullTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.Lock()
	feed := d.feed
	d.mu.Unlock()
	if len(feed) == 0 {
		<-d.closed
		return 0, os.ErrClosed
	}
	k := min(len(feed), len(bufs))
	for i := range k {
		sizes[i] = copy(bufs[i][offset:], feed[i])
	}
	return k, nil
}
func (d *nullTun) Write(bufs [][]byte, offset int) (int, error) {
	d.written.Add(uint64(len(bufs)))
	d.mu.Lock()
	if d.record {
		for _, b := range bufs {
			d.received = append(d.received, slices.Clone(b[offset:]))
		}
	}
	d.mu.Unlock()
	return len(bufs), nil
}
func (d *nullTun) MTU() (int, error)        { return 1420, nil }
func (d *nullTun) Name() (string, error)    { return "null", nil }
func (d *nullTun) Events() <-chan tun.Event { return nil }
func (d *nullTun) BatchSize() int           { return 128 }
func (d *nullTun) Close() error             { close(d.closed); return nil }
func (d *nullTun) delivered() uint64        { return d.written.Load() }
func (d *nullTun) wait(n uint64, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for d.written.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return d.written.Load() >= n
}

// benchChain starts nodes 0 - 1 - ... - (count-1) on 127.0.0.1; the nodes given in withDev get a
// nullTun. It returns when node 0 has a route to the last node.
func benchChain(b testing.TB, count int, withDev ...int) ([]*Node, []*nullTun) {
	b.Helper()
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		b.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "bench.mesh", Name: "root", Duration: time.Hour}, now)
	if err != nil {
		b.Fatal(err)
	}
	nodes, devs := make([]*Node, count), make([]*nullTun, count)
	certs := make([]*meshca.Certificate, count)
	for i := range count {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			b.Fatal(err)
		}
		if certs[i], err = ca.Issue(meshca.IssueRequest{Name: string(rune('a' + i)), PublicKey: k.Public(), Duration: 30 * time.Minute}, now); err != nil {
			b.Fatal(err)
		}
		opts := Options{Key: k, Cert: certs[i], CA: []*meshca.Certificate{ca.Certificate()},
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Firewall: allowAll, Logger: slog.New(slog.DiscardHandler)}
		if i > 0 {
			opts.Peers = []Peer{{Addr: nodes[i-1].UDPAddr(), Cert: certs[i-1]}}
		}
		if slices.Contains(withDev, i) {
			devs[i] = newNullTun()
			opts.PacketDevice = devs[i]
		}
		n, err := New(opts)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		nodes[i] = n
	}
	last := nodes[count-1].Addr()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := nodes[0].fib.Load().byAddr[last]; ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no route to the last node")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The responder of a link handshake seals only once the initiator's first packet confirmed the
	// keys; wait for that on every link of node 0 and of its neighbour.
	var scratch [64]byte
	for _, n := range nodes[:min(2, count)] {
		for {
			n.mu.Lock()
			ready := len(n.links) > 0
			for _, t := range n.links {
				if _, err := t.sess.Seal(scratch[:0], nil, time.Now()); err != nil {
					ready = false
				}
			}
			n.mu.Unlock()
			if ready {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("link keys not confirmed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nodes, devs
}

// udpPacket writes an IPv6/UDP packet of size bytes from src to dst into p.
func udpPacket(p []byte, src, dst netip.Addr) {
	clear(p)
	putIPv6Header(p, 17, src, dst)
	binary.BigEndian.PutUint16(p[40:], 40000)
	binary.BigEndian.PutUint16(p[42:], 5201)
	binary.BigEndian.PutUint16(p[44:], uint16(len(p)-ipv6HeaderLen))
}

// putIPv6Header writes an IPv6 header for the packet p (its whole length) with next header proto.
func putIPv6Header(p []byte, proto byte, src, dst netip.Addr) {
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(p)-ipv6HeaderLen))
	p[6], p[7] = proto, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
}

const benchPacket = 1372 // the bench/ overlay MTU

// BenchmarkSendDirect: packets from the device to a neighbour, sealed and sent in batches of 64 with
// UDP GSO (one op is one packet); the neighbour opens them and writes them to its device.
func BenchmarkSendDirect(b *testing.B) {
	nodes, devs := benchChain(b, 2, 0, 1)
	a := nodes[0]
	buf := make([]byte, txHeadroom+netdev.MaxPacket+txTailroom)
	udpPacket(buf[txHeadroom:txHeadroom+benchPacket], a.Addr(), nodes[1].Addr())
	tx := newTxBatch(a)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	now := time.Now()
	for i := range b.N {
		a.sendBuffered(now, tx, buf, benchPacket)
		if i%64 == 63 {
			tx.flush(now)
			now = time.Now()
		}
	}
	tx.flush(now)
	b.StopTimer()
	devs[1].wait(uint64(b.N)*9/10, 2*time.Second) // let the receiver finish (UDP may drop a few)
}

// BenchmarkReceiveDirect: a neighbour's packets opened, checked and written to the device in batches
// of 64 (the receive loop's work for one coalesced read); one op is one packet, sealed by the sender
// in the same loop.
func BenchmarkReceiveDirect(b *testing.B) { benchReceiveDirect(b, true) }

// BenchmarkReceiveDirectUnbatched is the receive path without a batch (as before batching): each
// packet copied into a fresh buffer and written to the device on its own.
func BenchmarkReceiveDirectUnbatched(b *testing.B) { benchReceiveDirect(b, false) }

func benchReceiveDirect(b *testing.B, batched bool) {
	nodes, devs := benchChain(b, 2, 1)
	a, r := nodes[0], nodes[1]
	link := a.fib.Load().byAddr[r.Addr()].nextHop
	from := a.UDPAddr()
	frame := make([]byte, 1+benchPacket)
	frame[0] = byte(overlay.TypeDirect)
	udpPacket(frame[1:], a.Addr(), r.Addr())
	sealed := make([]byte, 0, 2048)
	var rx *rxBatch // nil: the unbatched path
	if batched {
		rx = &rxBatch{dev: newDevWriter(r), tx: newTxBatch(r)}
	}
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	now := time.Now()
	for i := range b.N {
		out, err := link.sess.Seal(sealed[:0], frame, now)
		if err != nil {
			b.Fatal(err)
		}
		r.handleDatagram(now, from, out, nil, rx)
		if i%64 == 63 {
			rx.flush(now)
			now = time.Now()
		}
	}
	rx.flush(now)
	b.StopTimer()
	if devs[1].delivered() < uint64(b.N) {
		b.Fatalf("delivered %d of %d", devs[1].delivered(), b.N)
	}
}

// BenchmarkSendEndToEnd: packets to a node two hops away: sealed end to end, sent as transit packets
// (only the routed header sealed into the link) with GSO, relayed by the middle node (which opens and
// reseals the routed header in its receive loop and sends with GSO) and opened by the destination:
// its routed header, then the end-to-end packet.
func BenchmarkSendEndToEnd(b *testing.B) {
	nodes, _ := benchChain(b, 3, 0)
	a, c := nodes[0], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for { // the first ping runs the end-to-end handshake
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := a.Ping(pctx, c.Addr())
		pcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			b.Fatal("no end-to-end session:", err)
		}
	}
	buf := make([]byte, txHeadroom+netdev.MaxPacket+txTailroom)
	pkt := make([]byte, benchPacket)
	udpPacket(pkt, a.Addr(), c.Addr())
	tx := newTxBatch(a)
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	now := time.Now()
	for i := range b.N {
		copy(buf[txHeadroom:], pkt) // sealing in place consumed the last one
		a.sendBuffered(now, tx, buf, benchPacket)
		if i%64 == 63 {
			tx.flush(now)
			now = time.Now()
		}
	}
	tx.flush(now)
}

// BenchmarkSendDirectUnbatched is the per-packet path the node used before batching (it remains for
// packets the node makes itself, such as ping): a fresh frame and a fresh datagram per packet, one
// sendto per packet.
func BenchmarkSendDirectUnbatched(b *testing.B) {
	nodes, devs := benchChain(b, 2, 0, 1)
	a := nodes[0]
	pkt := make([]byte, benchPacket)
	udpPacket(pkt, a.Addr(), nodes[1].Addr())
	b.SetBytes(benchPacket)
	b.ReportAllocs()
	b.ResetTimer()
	now := time.Now()
	for i := range b.N {
		a.sendPacket(now, pkt)
		if i%64 == 63 {
			now = time.Now()
		}
	}
	b.StopTimer()
	devs[1].wait(uint64(b.N)*9/10, 2*time.Second)
}

// TestSegmentsPerSend: the device's burst of full-sized packets, sealed end to end, fits one send.
func TestSegmentsPerSend(t *testing.T) {
	for mtu := 1280; mtu <= 65535; mtu += 7 {
		k := segmentsPerSend(mtu)
		if k < 1 || k > gsoMaxSegments || (k > 1 && k*(mtu+e2eOverhead) > gsoMaxBytes) {
			t.Fatalf("MTU %d: %d segments per send", mtu, k)
		}
	}
	if k := segmentsPerSend(1372); k != 44 {
		t.Errorf("MTU 1372: %d segments per send, want 44", k)
	}
}
