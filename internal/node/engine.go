package node

import (
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/telemetry"
	"x0tta6bl4/internal/underlay"
)

// The engine's entry points. Each is fed the time of its event and acts through the node's Conn and
// Device; none starts a goroutine, sleeps or reads the wall clock, so the daemon's loops (shell.go),
// the tests and the whole-mesh harness (internal/meshtest) run the same code. Receivers and pumps may
// run on several goroutines at once, each Receiver and DevicePump on one; Tick belongs to one
// goroutine too (its schedule is its own).

// Start dials the configured peers.
func (n *Node) Start(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range n.opts.Peers {
		n.dialLocked(now, &n.opts.Peers[i])
	}
}

// Tick runs every timer due at now: handshake retries, link probes and failure detection, session
// keepalives and rekeys, routing refreshes, burst and piece reassembly timeouts, firewall flow expiry, telemetry,
// the self-healing loop and the routing records kept for a restart. Call it every TickInterval.
func (n *Node) Tick(now time.Time) {
	n.tick(now)
	n.keepRecords(now, false)
	n.expireBursts(now)
	if now.Sub(n.lastExpire) >= time.Second {
		n.lastExpire = now
		n.fw.Expire(now)
		n.expirePieces(now)
	}
	if now.Sub(n.lastSample) >= telemetry.Interval {
		n.lastSample = now
		n.sampleTelemetry(now)
	}
	on, interval := n.heal.schedule()
	if on {
		if gap, stalled := n.heal.clock(now, n.opts.TickInterval); stalled {
			n.log.Warn("self-healing: the node's own schedule stalled, probe evidence set aside",
				"gap", gap, "tick", n.opts.TickInterval)
		}
	}
	if on && !now.Before(n.nextHeal) {
		// A step every ProbeInterval on average, whatever the tick granularity.
		n.nextHeal = n.nextHeal.Add(interval)
		if n.nextHeal.Before(now) {
			n.nextHeal = now.Add(interval)
		}
		n.healStep(now)
	}
}

// Receiver handles datagrams from the socket: what they deliver and relay leaves in batches after
// each call.
type Receiver struct {
	n    *Node
	rx   *rxBatch
	open *rxOpener // nil: every datagram is opened as it is handled (open.go)
}

// NewReceiver returns a receiver with its own batch buffers.
func (n *Node) NewReceiver() *Receiver {
	rx := &rxBatch{tx: newTxBatch(n)}
	if n.dev != nil {
		rx.dev = newDevWriter(n)
	}
	return &Receiver{n: n, rx: rx}
}

// useWorkers lets the receiver open large batches with the helpers w (workers.go).
func (r *Receiver) useWorkers(w *workers) {
	if w != nil {
		r.open = newRxOpener(r.n, w)
	}
}

// Receive handles datagrams that arrived at now.
func (r *Receiver) Receive(now time.Time, ds []underlay.Datagram) {
	n := r.n
	var res []opened // what workers opened, if the batch was worth sharing
	if r.open != nil {
		res = r.open.open(now, ds)
	}
	for i, d := range ds {
		n.stats.rxPackets.Add(1)
		n.stats.rxBytes.Add(uint64(len(d.Data)))
		var o *opened
		if res != nil {
			o = &res[i]
		}
		n.handleDatagram(now, d.From, d.Data, o, r.rx)
	}
	r.rx.flush(now)
}

// DevicePump reads packets from the device and sends them into the mesh, a batch at a time
// (batch.go); from a device with virtio-net headers it reads each offloaded packet whole (burst.go).
type DevicePump struct {
	n     *Node
	bufs  [][]byte
	sizes []int
	tx    *txBatch
	raw   *rawReader
	seal  *txSealer // nil: every packet is sealed as it is routed (seal.go)
}

// NewDevicePump returns a pump with its own buffers; the node must have a device.
func (n *Node) NewDevicePump() *DevicePump {
	batch := n.dev.BatchSize()
	p := &DevicePump{n: n, bufs: make([][]byte, batch), sizes: make([]int, batch), tx: newTxBatch(n)}
	size := pumpPacket(n)
	for i := range p.bufs {
		// A read or split fills the buffer up to its length; the tailroom for the tag lies beyond it,
		// within its capacity.
		p.bufs[i] = make([]byte, txHeadroom+size+txTailroom)[:txHeadroom+size]
	}
	if n.raw != nil {
		p.raw = newRawReader(p.bufs, p.sizes)
	}
	return p
}

// pumpPacket is the largest packet one of the pump's buffers must hold. A device's Read may put up to
// netdev.MaxPacket bytes in each. From a raw device the buffers take only the segments of frames
// split in software (the raw reader has its own arena for whole frames), and the kernel cuts what it
// hands the device into segments that fit the device's MTU, which the node set: 128 buffers of 64 KiB
// would be 8 MiB that no segment fills, and twice that in what the garbage collector lets the heap
// grow to. A segment that does not fit (someone raised the MTU behind the node's back) is dropped as
// malformed.
func pumpPacket(n *Node) int {
	if n.raw != nil {
		return n.opts.MTU
	}
	return netdev.MaxPacket
}

// useWorkers lets the pump seal large batches with the helpers w (workers.go).
func (p *DevicePump) useWorkers(w *workers) {
	if w != nil {
		p.seal = newTxSealer(p.n, w, len(p.bufs))
	}
}

// Pump reads one batch from the device, waiting as the device's Read does, and sends it, timed by
// the node's clock when the read returned.
func (p *DevicePump) Pump() error {
	n := p.n
	var k int
	var err error
	if p.raw != nil {
		err = p.raw.read(n.raw)
	} else {
		k, err = n.dev.Read(p.bufs, p.sizes, txHeadroom)
	}
	if err != nil {
		return err
	}
	p.send(n.now(), k)
	return nil
}

// send sends what the last read left: k packets in bufs, or the raw reader's frames.
func (p *DevicePump) send(now time.Time, k int) {
	n := p.n
	var s *txSealer // set when the batch is worth sealing in parallel
	if p.seal != nil {
		s = p.seal.use(p.readBytes(k))
	}
	switch {
	case p.raw != nil:
		for _, f := range p.raw.frames {
			n.sendRaw(now, p.tx, p.raw, s, p.raw.arena[f.off:], f.size)
		}
		s.flush(now, p.tx, p.raw)
	case s != nil:
		for i := range k {
			s.add(now, p.bufs[i], p.sizes[i])
		}
		s.flush(now, p.tx, nil)
	default:
		for i := range k {
			n.sendBuffered(now, p.tx, p.bufs[i], p.sizes[i])
		}
	}
	p.tx.flush(now)
}

// readBytes is how many bytes the last read left: k packets in bufs, or the raw reader's frames.
func (p *DevicePump) readBytes(k int) int {
	total := 0
	if p.raw != nil {
		for _, f := range p.raw.frames {
			total += f.size
		}
		return total
	}
	for _, size := range p.sizes[:k] {
		total += size
	}
	return total
}
