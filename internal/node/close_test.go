package node

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/underlay"
)

// TestCloseWhileDelivering: Close stops a node that is delivering a steady stream of echo requests
// into its userspace stack, which answers each one. A write into wireguard-go's netstack waits until
// the device loop has read the stack's answer, handed over on a channel that the stack's Close
// closes: the device may close only once the receive loop has stopped, and the device loop must keep
// reading until then. The device is wrapped so that a write overlapping or following its Close fails
// the test, with or without the race detector. In each round the node's socket closes while one
// write is held at its start, which is where a Close that closes the device too early does so.
func TestCloseWhileDelivering(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), closeWhileDelivering)
	}
}

// holdWrite is the write into the stack that waits for the socket to close: late enough that the
// stream is steady.
const holdWrite = 64

func closeWhileDelivering(t *testing.T) {
	var dev *watchedDevice
	nodes := newLine(t, 2, func(i int, o *Options) {
		if i == 0 {
			return
		}
		d, err := netdev.OpenNetstack(o.Cert.Overlay, defaultMTU)
		if err != nil {
			t.Fatal(err)
		}
		c, err := underlay.ListenUDP(o.Listen, o.Logger)
		if err != nil {
			d.Close()
			t.Fatal(err)
		}
		conn := &signalledConn{Conn: c, closed: make(chan struct{})}
		dev = newWatchedDevice(d, holdWrite, conn.closed)
		o.PacketDevice, o.Conn = dev, conn
	})
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { stopped <- n.Run(ctx) }()
	}
	closeHung := false
	t.Cleanup(func() {
		cancel()
		for range nodes {
			if closeHung {
				return // b's Run waits for a Close that never returns
			}
			if err := <-stopped; err != nil {
				t.Error(err)
			}
		}
	})

	// Each pinger sends its next request when the last one's reply came back, or was lost.
	var replies atomic.Int64
	var pingers sync.WaitGroup
	pingCtx, stopPings := context.WithCancel(ctx)
	defer func() { stopPings(); pingers.Wait() }()
	for range 8 {
		pingers.Add(1)
		go func() {
			defer pingers.Done()
			for pingCtx.Err() == nil {
				c, done := context.WithTimeout(pingCtx, 200*time.Millisecond)
				if _, err := a.Ping(c, b.Addr()); err == nil {
					replies.Add(1)
				}
				done()
			}
		}()
	}
	select {
	case <-dev.holding:
	case <-time.After(time.Minute):
		t.Fatalf("b wrote %d packets into its stack in a minute, want %d", dev.writeCount(), holdWrite)
	}
	if replies.Load() == 0 {
		t.Fatal("b's stack answered no echo request before the held write")
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(time.Minute):
		closeHung = true
		buf := make([]byte, 1<<20)
		t.Fatalf("Close has not returned after a minute:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if faults := dev.faultList(); len(faults) > 0 {
		t.Fatalf("the node misused its device: %s", strings.Join(faults, "; "))
	}
}

// watchedDevice wraps a device and records what a node must never do: write into it while it closes,
// or after. Its hold-th write waits at its start until release is closed, and closes holding then.
type watchedDevice struct {
	Device
	hold    int
	release <-chan struct{}
	holding chan struct{}

	mu         sync.Mutex
	idle       sync.Cond // no write in progress
	writes     int
	inProgress int
	closed     bool
	faults     []string
}

func newWatchedDevice(d Device, hold int, release <-chan struct{}) *watchedDevice {
	w := &watchedDevice{Device: d, hold: hold, release: release, holding: make(chan struct{})}
	w.idle.L = &w.mu
	return w
}

func (d *watchedDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	if d.closed {
		d.faults = append(d.faults, "a write after Close")
		d.mu.Unlock()
		return 0, os.ErrClosed
	}
	d.writes++
	d.inProgress++
	hold := d.writes == d.hold
	d.mu.Unlock()
	if hold {
		close(d.holding)
		<-d.release
	}
	k, err := d.Device.Write(bufs, offset)
	d.mu.Lock()
	d.inProgress--
	d.idle.Broadcast()
	d.mu.Unlock()
	return k, err
}

// Close closes the device underneath once no write is in progress, so that a node closing it too
// early fails the test rather than panicking the stack's writer.
func (d *watchedDevice) Close() error {
	d.mu.Lock()
	d.closed = true
	if d.inProgress > 0 {
		d.faults = append(d.faults, fmt.Sprintf("Close while %d writes were in progress", d.inProgress))
		for d.inProgress > 0 {
			d.idle.Wait()
		}
	}
	d.mu.Unlock()
	return d.Device.Close()
}

func (d *watchedDevice) writeCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

func (d *watchedDevice) faultList() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// signalledConn is a socket that closes closed once it has closed.
type signalledConn struct {
	underlay.Conn
	closed chan struct{}
}

func (c *signalledConn) Close() error {
	err := c.Conn.Close()
	close(c.closed)
	return err
}
