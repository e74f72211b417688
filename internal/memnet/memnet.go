// Package memnet is an in-memory UDP network on a virtual clock, for tests and the whole-mesh harness
// (internal/meshtest): underlay.Conns whose datagrams go into one time-ordered queue, links with
// scripted delay, loss and cuts, and a tick that drives the endpoints' timers. The caller steps time
// forward; every random choice comes from a seed, so a run repeats exactly.
//
// It must never open a socket, start a goroutine or read the wall clock.
package memnet

import (
	"cmp"
	"container/heap"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"x0tta6bl4/internal/underlay"
)

// Epoch is the virtual time every network starts at.
var Epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Receiver is what the network hands datagrams to: node.Receiver is one.
type Receiver interface {
	Receive(now time.Time, ds []underlay.Datagram)
}

// LinkParams shape one link, the same in both directions.
type LinkParams struct {
	Delay time.Duration // one way; 0 takes the network's default
	Loss  float64       // fraction of datagrams lost, drawn from the network's seeded source
	Down  bool          // cut: nothing passes
}

// Network is a set of conns and the links between them.
type Network struct {
	// Tick is how often OnTick runs; OnTick, if set, runs the endpoints' timers.
	Tick   time.Duration
	OnTick func(now time.Time)
	// AfterEvent, if set, runs after every delivery and every tick.
	AfterEvent func()
	// Drop, if set, is asked about every datagram before it goes on a link; true loses it.
	Drop func(from, to netip.AddrPort, datagram []byte) bool
	// Delay is the one-way delay of a link given none.
	Delay time.Duration
	// Dropped counts datagrams not carried: lost, over a cut or missing link, or to a closed conn.
	Dropped uint64

	now      time.Time
	lastTick time.Time
	rng      *rand.Rand
	conns    map[netip.AddrPort]*Conn
	links    map[[2]netip.AddrPort]*LinkParams
	queue    eventQueue
	seq      uint64
}

// New returns an empty network whose random choices come from seed; it ticks every 20 ms and links
// delay 1 ms unless told otherwise.
func New(seed uint64) *Network {
	return &Network{Tick: 20 * time.Millisecond, Delay: time.Millisecond, now: Epoch, lastTick: Epoch,
		rng: rand.New(rand.NewPCG(seed, 0x6d656d6e6574)), conns: map[netip.AddrPort]*Conn{},
		links: map[[2]netip.AddrPort]*LinkParams{}}
}

// Rand is the network's seeded source, for callers that need random choices of their own.
func (w *Network) Rand() *rand.Rand { return w.rng }

// Now is the virtual time.
func (w *Network) Now() time.Time { return w.now }

// Conn returns a conn bound to addr; datagrams reach it once Attach gives it a receiver.
func (w *Network) Conn(addr netip.AddrPort) *Conn {
	c := &Conn{w: w, addr: addr}
	w.conns[addr] = c
	return c
}

// Link joins a and b, or changes their link from now on; datagrams in flight keep their fate.
func (w *Network) Link(a, b netip.AddrPort, p LinkParams) {
	if p.Delay <= 0 {
		p.Delay = w.Delay
	}
	w.links[pair(a, b)] = &p
}

// LinkOf returns the link between a and b, or nil.
func (w *Network) LinkOf(a, b netip.AddrPort) *LinkParams { return w.links[pair(a, b)] }

func pair(a, b netip.AddrPort) [2]netip.AddrPort {
	if a.Compare(b) > 0 {
		a, b = b, a
	}
	return [2]netip.AddrPort{a, b}
}

// Run advances virtual time by d.
func (w *Network) Run(d time.Duration) {
	end := w.now.Add(d)
	for w.Step(end) {
	}
	w.now = end
}

// RunUntil advances virtual time until cond holds, checked after every event, or until limit has
// passed; it returns the virtual time it took and whether cond held.
func (w *Network) RunUntil(cond func() bool, limit time.Duration) (time.Duration, bool) {
	start := w.now
	end := start.Add(limit)
	for !cond() {
		if !w.Step(end) {
			w.now = end
			return limit, false
		}
	}
	return w.now.Sub(start), true
}

// Step handles the next event due no later than end: a datagram's arrival or the next tick. It
// reports false when none is due by then.
func (w *Network) Step(end time.Time) bool {
	next := w.lastTick.Add(w.Tick)
	if w.queue.Len() > 0 && !w.queue[0].at.After(next) {
		if w.queue[0].at.After(end) {
			return false
		}
		e := heap.Pop(&w.queue).(*event)
		w.now = e.at
		if c := w.conns[e.to]; c != nil && !c.closed && c.recv != nil {
			c.recv.Receive(w.now, []underlay.Datagram{{Data: e.data, From: e.from}})
		} else {
			w.Dropped++
		}
	} else {
		if next.After(end) {
			return false
		}
		w.now, w.lastTick = next, next
		if w.OnTick != nil {
			w.OnTick(w.now)
		}
	}
	if w.AfterEvent != nil {
		w.AfterEvent()
	}
	return true
}

func (w *Network) send(from netip.AddrPort, buf []byte, seg int, to netip.AddrPort) int {
	l := w.links[pair(from, to)]
	sent := 0
	for off := 0; off < len(buf); off += seg {
		sent++
		d := buf[off:min(off+seg, len(buf))]
		if l == nil || l.Down || (l.Loss > 0 && w.rng.Float64() < l.Loss) || (w.Drop != nil && w.Drop(from, to, d)) {
			w.Dropped++
			continue
		}
		w.seq++
		heap.Push(&w.queue, &event{at: w.now.Add(l.Delay), seq: w.seq, from: from, to: to, data: slices.Clone(d)})
	}
	return sent
}

// Conn is an underlay.Conn on the network.
type Conn struct {
	w      *Network
	addr   netip.AddrPort
	recv   Receiver
	closed bool
}

// Attach makes r the receiver of what arrives at c.
func (c *Conn) Attach(r Receiver) { c.recv = r }

var errDriven = errors.New("memnet: the network delivers datagrams; nothing reads a conn")

// NewReader fails: the network hands datagrams to the attached receiver itself.
func (c *Conn) NewReader() (underlay.Reader, error) { return nil, errDriven }

// LocalAddr is the conn's address.
func (c *Conn) LocalAddr() netip.AddrPort { return c.addr }

// Close drops everything sent to or from c from now on.
func (c *Conn) Close() error { c.closed = true; return nil }

// Send puts the datagrams in buf on the link to to.
func (c *Conn) Send(buf []byte, seg int, to netip.AddrPort) (int, error) {
	if c.closed {
		return 0, net.ErrClosed
	}
	if seg <= 0 || len(buf) == 0 {
		return 0, errors.New("memnet: empty send")
	}
	return c.w.send(c.addr, buf, seg, to), nil
}

// event is a datagram in flight.
type event struct {
	at       time.Time
	seq      uint64
	from, to netip.AddrPort
	data     []byte
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if c := q[i].at.Compare(q[j].at); c != 0 {
		return c < 0
	}
	return cmp.Less(q[i].seq, q[j].seq)
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
