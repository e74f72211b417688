package node

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// The shell: the goroutines that wait on the socket, the device and a ticker, and feed what they get
// to the node's engine entry points with the time it arrived (engine.go). Nothing here decides what
// to do with a packet, so the whole-mesh harness (internal/meshtest), which drives the same entry
// points on a virtual clock, tests everything but these loops.

// Run moves packets until ctx is cancelled or Close is called.
func (n *Node) Run(ctx context.Context) error {
	n.log.Info("node starting", "overlay", n.addr, "udp", n.UDPAddr(), "device", n.opts.Device, "spiffe_id", n.Certificate().SPIFFEID())
	if err := n.startDiscovery(n.opts.Discovery); err != nil {
		n.Close()
		return err
	}
	if n.opts.MetricsListen != "" {
		m, err := n.serveMetrics(n.opts.MetricsListen)
		if err != nil {
			n.Close()
			return err
		}
		defer m.close()
	}
	var admin *adminServer
	if n.opts.AdminSocket != "" {
		var err error
		if admin, err = n.serveAdmin(n.opts.AdminSocket); err != nil {
			n.Close()
			return err
		}
	}
	dns, err := n.startDNS()
	if err != nil {
		if admin != nil {
			admin.close()
		}
		n.Close()
		return err
	}
	n.startKernel()
	defer n.stopKernel() // after Close: the counters stay readable while the loops drain
	n.Start(n.now())
	n.workers = startWorkers(cryptoHelpers(n.opts.CryptoWorkers))
	defer n.workers.stop() // after Close, which waits for the loops
	n.writers.Add(2)
	go n.receiveLoop()
	go n.timerLoop()
	if n.dev != nil {
		n.reader.Add(1)
		go n.deviceLoop()
	}
	select {
	case <-ctx.Done():
	case <-n.done:
	}
	dns.close()
	if admin != nil {
		admin.close()
	}
	n.Close()
	n.log.Info("node stopped")
	return nil
}

// receiveLoop reads datagrams until the socket is closed.
func (n *Node) receiveLoop() {
	defer n.writers.Done()
	r, err := n.conn.NewReader()
	if err != nil {
		n.log.Error("udp reader", "err", err)
		return
	}
	rcv := n.NewReceiver()
	rcv.useWorkers(n.workers)
	for {
		ds, err := r.Read()
		if err != nil {
			if n.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.Warn("udp read", "err", err)
			continue
		}
		rcv.Receive(n.now(), ds)
	}
}

// deviceLoop reads packets from the device until Close closes it. It outlives the receive loop,
// whose writes into a userspace stack wait for it to read their answers (Close).
func (n *Node) deviceLoop() {
	defer n.reader.Done()
	p := n.NewDevicePump()
	p.useWorkers(n.workers)
	for {
		err := p.Pump()
		if err == nil {
			continue
		}
		select {
		case <-n.devClosed:
			return
		default:
		}
		n.log.Warn("device read", "err", err)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		time.Sleep(10 * time.Millisecond) // a transient error must not spin a core
	}
}

// timerLoop drives Tick.
func (n *Node) timerLoop() {
	defer n.writers.Done()
	t := time.NewTicker(n.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			// The ticker's own timestamp can be stale when the process was busy; probes must carry
			// the real send time.
			n.Tick(n.now())
		}
	}
}
