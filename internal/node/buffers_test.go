package node

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/virtio"
)

// rawNullTun is a nullTun that says it moves frames with virtio-net headers, as a kernel TUN with
// offloads does; only its buffers' sizes matter here.
type rawNullTun struct{ *nullTun }

func (rawNullTun) Raw() bool                          { return true }
func (rawNullTun) ReadRaw(buf []byte) (int, error)    { return 0, errors.New("no frames") }
func (rawNullTun) ReadRawNow(buf []byte) (int, error) { return 0, nil }
func (rawNullTun) WriteRaw(frame []byte) error        { return nil }

// TestPumpBuffersFitTheMTU: from a raw device the pump's buffers take segments of at most the MTU, not
// 64 KiB each; a burst cut at the MTU splits into them, and a segment beyond the MTU is refused, not
// written past a buffer.
func TestPumpBuffersFitTheMTU(t *testing.T) {
	const mtu = 1280
	d := rawNullTun{newNullTun()}
	n := &Node{opts: Options{MTU: mtu}, dev: d, raw: d, log: slog.New(slog.DiscardHandler)}
	p := n.NewDevicePump()
	for _, b := range p.bufs {
		if len(b) != txHeadroom+mtu || cap(b) != txHeadroom+mtu+txTailroom {
			t.Fatalf("pump buffer of %d bytes (capacity %d), want %d (%d)", len(b), cap(b), txHeadroom+mtu, txHeadroom+mtu+txTailroom)
		}
	}
	src, dst := n.Addr(), n.Addr()
	const segment = mtu - ipv6HeaderLen - 20 // a full-sized TCP segment
	frame := tcpBurst(src, dst, 44, segment)
	h, err := virtio.ParseHeader(frame)
	if err != nil {
		t.Fatal(err)
	}
	k, err := virtio.Split(h, frame[virtio.HeaderLen:], p.raw.segs, p.raw.sizes, txHeadroom)
	if err != nil || k != 44 {
		t.Fatalf("burst of 44 segments at the MTU: %d segments, %v", k, err)
	}
	frame = tcpBurst(src, dst, 2, segment+1)
	h, _ = virtio.ParseHeader(frame)
	if _, err := virtio.Split(h, frame[virtio.HeaderLen:], p.raw.segs, p.raw.sizes, txHeadroom); !errors.Is(err, virtio.ErrBufferTooSmall) {
		t.Errorf("segments beyond the MTU: %v, want %v", err, virtio.ErrBufferTooSmall)
	}

	// A device read with no virtio-net headers may fill a whole buffer.
	plain := &Node{opts: Options{MTU: mtu}, dev: newNullTun(), log: slog.New(slog.DiscardHandler)}
	if b := plain.NewDevicePump().bufs[0]; len(b) != txHeadroom+netdev.MaxPacket || cap(b) != len(b)+txTailroom {
		t.Errorf("plain device: pump buffer of %d bytes (capacity %d)", len(b), cap(b))
	}
}

// TestDevWriterBuffersFollowBatches: the device writer makes a buffer when a batch needs it, so it
// holds as many as its largest batch, never more than devBatch; after a period whose batches needed
// fewer than half, it keeps twice what they needed, and batch sizes that waver cost no new buffers.
func TestDevWriterBuffersFollowBatches(t *testing.T) {
	d := newNullTun()
	n := &Node{dev: d, log: slog.New(slog.DiscardHandler)}
	rx := &rxBatch{dev: newDevWriter(n), tx: newTxBatch(n)}
	w := rx.dev
	if len(w.mem) != 0 {
		t.Fatalf("a new writer holds %d buffers", len(w.mem))
	}
	now := time.Unix(1_700_000_000, 0)
	rx.flush(now) // the first period begins
	pkt := make([]byte, 1280)
	var sent uint64
	batch := func(k int) { // one receive of k packets for the device, a millisecond later
		for range k {
			w.add(pkt)
		}
		now = now.Add(time.Millisecond)
		rx.flush(now)
		sent += uint64(k)
	}
	for range 100 {
		batch(3)
	}
	if len(w.mem) != 3 {
		t.Errorf("after batches of 3: %d buffers", len(w.mem))
	}
	batch(1)
	batch(2*devBatch + 5)
	if len(w.mem) != devBatch {
		t.Errorf("after a batch of %d: %d buffers, want %d", 2*devBatch+5, len(w.mem), devBatch)
	}
	period := int(devShrinkEvery / time.Millisecond)
	for range 2 * period { // the rest of the spike's period, then one of batches of 2
		batch(2)
	}
	if len(w.mem) != 4 {
		t.Errorf("after a period of batches of 2: %d buffers, want 4", len(w.mem))
	}
	for i, b := range w.bufs[4:] {
		if b != nil {
			t.Fatalf("view %d still holds a dropped buffer", 4+i)
		}
	}
	// Periods whose largest batches are 4, 3 and 2 keep the same four buffers.
	held := make([]*byte, len(w.mem))
	for i, b := range w.mem {
		held[i] = &b[0]
	}
	for _, k := range []int{4, 3, 2} {
		for range period {
			batch(k)
		}
	}
	if len(w.mem) != 4 {
		t.Fatalf("after wavering batches: %d buffers, want 4", len(w.mem))
	}
	for i, b := range w.mem {
		if &b[0] != held[i] {
			t.Errorf("buffer %d was made again", i)
		}
	}
	// An idle receive loop (link probes only) still lets the buffers go.
	batch(devBatch)
	for range 3 {
		now = now.Add(devShrinkEvery)
		rx.flush(now)
	}
	if len(w.mem) != 0 {
		t.Errorf("after idle periods: %d buffers", len(w.mem))
	}
	if got := d.delivered(); got != sent {
		t.Errorf("device got %d packets, want %d", got, sent)
	}
}
