package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/handshake"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/netdev"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/session"
	"x0tta6bl4/internal/underlay"
)

// Node is a running mesh node.
type Node struct {
	opts     Options
	rand     io.Reader // Options.Rand made safe for concurrent use; nil: crypto/rand
	log      *slog.Logger
	self     *meshca.Certificate
	selfID   routing.NodeID
	addr     netip.Addr
	verifier *meshca.Verifier
	gov      *govState // nil: governance off
	conn     underlay.Conn
	dev      Device         // nil with DeviceNone
	raw      RawDevice      // dev when it moves whole bursts with virtio-net headers, else nil
	netdev   *netdev.Device // dev when the node opened it (Device)
	now      func() time.Time
	fw       *firewall.Firewall
	idx      *indexSpace
	heal     *healer                     // self-healing loop (heal.go)
	tel      *telemetryState             // detector telemetry (telemetry.go)
	kernel   atomic.Pointer[kernelState] // eBPF observation (kernel.go), set by Run
	start    time.Time

	noticeMu sync.Mutex    // guards notices
	notices  *notices      // rate limits of the unknown-session notices we send (restart.go)
	connect  *connectivity // endpoints and hole punching (connect.go), guarded by mu
	policy   policyState   // the mesh access policy (policy.go)

	mu             sync.Mutex // guards everything below, and tunnel fields marked so
	linkHS         *handshake.Machine
	e2eHS          *handshake.Machine
	router         *routing.Router
	l2             *level2                    // a gateway's level 2 (level2.go), nil on other nodes
	remote         map[netip.Addr]*remoteDest // destination proofs of other areas (level2.go)
	ownProof       ownProof                   // the node's own destination proof (level2.go)
	links          map[routing.NodeID]*tunnel
	e2e            map[netip.Addr]*tunnel
	gen            uint64 // router generation the forwarding table was built from
	dirty          bool   // links changed: rebuild the forwarding table
	lastRevalidate time.Time
	discovery      []*discoverySocket
	found          map[routing.NodeID]*found // nodes heard on the LAN
	lastBeacon     time.Time
	pings          map[uint16]chan time.Time
	pingID         uint16
	closed         bool

	// Tick's schedule, read and written by Tick alone.
	nextHeal   time.Time // the self-healing loop's next step
	lastExpire time.Time // firewall flows last expired
	lastSample time.Time // telemetry last sampled

	fib       atomic.Pointer[fib] // read on the packet path
	e2eByDst  sync.Map            // netip.Addr -> *tunnel, established end-to-end sessions
	bursts    bursts              // reassembly of bursts addressed to us (burst.go)
	pieceSize int                 // the piece size of the bursts we send
	pieces    linkPieces          // large link frames cut into piece frames (linkfrag.go)
	stats     counters
	kept      keptRecords // the routing records kept across a restart (keptrecords.go)
	workers   *workers    // helpers of the loops' AEAD work (workers.go), nil without
	done      chan struct{}
	// The shell's loops (shell.go) stop in two steps on Close: writers (receive, timer, discovery
	// loops) stop first, while the device loop still reads the device; the device closes, which
	// wakes the device loop, and the node has stopped.
	writers   sync.WaitGroup
	reader    sync.WaitGroup
	devClosed chan struct{} // closed just before the device is
	stopped   chan struct{} // closed when Close has stopped every loop
}

// fib is the forwarding table: for every reachable node, the neighbour to hand its packets to.
type fib struct {
	byAddr map[netip.Addr]fibEntry
	// Level 2 (level2.go): on a node of an area, the link towards its nearest gateway, where what
	// the area does not hold goes (nil: none); on a gateway, level2 is set and such packets go by
	// level 2 instead.
	dflt   *tunnel
	level2 bool
}

type fibEntry struct {
	id      routing.NodeID
	cert    *meshca.Certificate
	nextHop *tunnel // the link tunnel of the next hop
	direct  bool    // the destination is the neighbour itself
	level2  bool    // a gateway carries it by level 2: nextHop is nil, or l2 says how (level2.go)
	l2      *l2Hop  // a gateway's own traffic to another area: encapsulated, sent to nextHop
	hops    int
	cost    uint64
}

// New sets a node up: it binds the UDP socket and opens the device (unless Options gives them), but
// moves no packet until Run, or until its caller drives it (Start, Receiver, DevicePump, Tick).
func New(opts Options) (*Node, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	verifier, err := meshca.NewVerifier(opts.CA...)
	if err != nil {
		return nil, err
	}
	if opts.CRL != nil {
		if _, err := verifier.UpdateCRL(opts.CRL); err != nil {
			return nil, fmt.Errorf("node: revocation list: %w", err)
		}
	}
	now := opts.Now()
	if err := verifier.Verify(opts.Cert, now); err != nil {
		return nil, fmt.Errorf("node: own certificate: %w", err)
	}
	fw, err := firewall.New(opts.Firewall, now)
	if err != nil {
		return nil, err
	}
	var rnd io.Reader
	if opts.Rand != nil {
		rnd = &lockedReader{r: opts.Rand}
	}
	n := &Node{
		rand: rnd, opts: opts, log: opts.Logger.With("node", opts.Cert.Name), self: opts.Cert, now: opts.Now,
		selfID: opts.Cert.SignPublicKey.ID(), addr: opts.Cert.Overlay, verifier: verifier, fw: fw,
		idx: newIndexSpace(maxIndices, rnd), start: now,
		links: make(map[routing.NodeID]*tunnel), e2e: make(map[netip.Addr]*tunnel),
		pings: make(map[uint16]chan time.Time), done: make(chan struct{}),
		devClosed: make(chan struct{}), stopped: make(chan struct{}),
		found: make(map[routing.NodeID]*found), heal: newHealer(opts.Heal, now), tel: newTelemetryState(),
		nextHeal: now, lastExpire: now, lastSample: now,
	}
	n.fib.Store(&fib{byAddr: map[netip.Addr]fibEntry{}})
	if msg := closedFirewallWarning(opts.Firewall); msg != "" {
		n.log.Warn(msg, "inbound_rules", len(opts.Firewall.Inbound), "outbound_rules", len(opts.Firewall.Outbound))
	}
	n.initPolicy(now)
	n.bursts.reasm = session.NewReassembler(session.ReassemblySlots)
	// Every fragment transit packet fits the datagram a full-sized packet of ours needs.
	n.pieceSize = session.PieceSize(opts.MTU+e2eOverhead, overlay.RoutedHeaderSize)
	if n.linkHS, err = handshake.New(n.handshakeConfig(opts.Cert, handshake.PrologueLink, 0)); err != nil {
		return nil, err
	}
	// End-to-end handshake packets ride inside routed frames inside link packets; keep them small
	// enough that the link packet stays under a 1500-byte underlay MTU.
	if n.e2eHS, err = handshake.New(n.handshakeConfig(opts.Cert, handshake.PrologueE2E, e2eHandshakePacket)); err != nil {
		return nil, err
	}
	if n.notices, err = newNotices(); err != nil {
		return nil, err
	}
	if n.connect, err = newConnectivity(); err != nil {
		return nil, err
	}
	// The incarnation tells peers that this process is not the one they had sessions with.
	if n.router, err = routing.New(routing.Config{Key: opts.Key.Sign, Certificate: opts.Cert, Verifier: verifier,
		Incarnation: uint64(now.UnixNano()), NoTransit: opts.NoTransit, Area: opts.RoutingArea, Gateway: opts.RoutingGateway,
		MaxOriginationHold: maxOriginationHold}); err != nil {
		return nil, err
	}
	n.restoreKeptRecords(now, n.router, opts.RecordsFile)
	if err := n.initLevel2(now); err != nil {
		return nil, err
	}
	n.kept.gen, n.kept.saved = n.router.Generation(), now
	if n.l2 != nil {
		n.kept.gen2 = n.l2.r.Generation()
	}
	if err := n.initGovernance(now); err != nil {
		return nil, err
	}
	if n.conn = opts.Conn; n.conn == nil {
		if n.conn, err = underlay.ListenUDP(opts.Listen, n.log); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}
	if err := n.openDevice(); err != nil {
		n.conn.Close()
		return nil, err
	}
	return n, nil
}

// openDevice takes the device Options gives, or opens the one its mode asks for.
func (n *Node) openDevice() error {
	opts := &n.opts
	var d *netdev.Device
	var err error
	switch {
	case opts.PacketDevice != nil:
		n.dev = opts.PacketDevice
	case opts.Device == DeviceNetstack:
		d, err = netdev.OpenNetstack(n.addr, opts.MTU)
	case opts.Device == DeviceTUN:
		d, err = netdev.OpenTUN(opts.DeviceName, n.addr, opts.MTU)
		if err == nil && underlay.SegmentationOffload {
			// A TCP burst the kernel hands over whole then leaves as one UDP_SEGMENT send and
			// reaches the far end as one coalesced read, instead of a full send and a short one.
			if err := d.LimitSegments(segmentsPerSend(opts.MTU)); err != nil {
				n.log.Warn("device: TCP bursts will be split over two UDP sends", "err", err)
			}
		}
	}
	if err != nil {
		return err
	}
	if d != nil {
		n.dev, n.netdev = d, d
	}
	if r, ok := n.dev.(RawDevice); ok && r.Raw() {
		n.raw = r
	}
	return nil
}

func (n *Node) handshakeConfig(cert *meshca.Certificate, prologue string, packet int) handshake.Config {
	return handshake.Config{Key: n.opts.Key, Cert: cert, Verifier: n.verifier, Prologue: prologue,
		Indices: n.idx, MaxPacketSize: packet, DisableRetransmission: n.opts.NoHandshakeRetransmit,
		Rand: n.rand}
}

// e2eHandshakePacket: 1500 − 20 (IPv4) − 8 (UDP) − 32 (link transport) − 1 (frame) − 36 (routed header),
// rounded down.
const e2eHandshakePacket = 1400

// Addr is the node's overlay address.
func (n *Node) Addr() netip.Addr { return n.addr }

// ID is the node's routing identity (its signing key ID).
func (n *Node) ID() routing.NodeID { return n.selfID }

// Certificate is the node's current certificate.
func (n *Node) Certificate() *meshca.Certificate {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.self
}

// UDPAddr is the bound UDP address.
func (n *Node) UDPAddr() netip.AddrPort { return n.conn.LocalAddr() }

// Device is the packet device the node opened (netstack or TUN), nil with DeviceNone or a device
// from Options.PacketDevice.
func (n *Node) Device() *netdev.Device { return n.netdev }

// Close stops the node: it keeps its routing records (Options.RecordsFile), closes the socket and
// the device and wipes its sessions. It returns once the node's loops have stopped; a second call
// waits for the first.
func (n *Node) Close() error {
	n.keepRecords(n.now(), true)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		<-n.stopped
		return nil
	}
	n.closed = true
	close(n.done)
	for _, t := range n.links {
		t.sess.Close()
	}
	for _, t := range n.e2e {
		t.sess.Close()
	}
	n.mu.Unlock()
	defer close(n.stopped)
	// The loops that write into the device stop before it closes: closing wireguard-go's netstack
	// closes the channel its writes hand their answers over on, so a write in flight would race
	// with the close or panic. Such a write waits until the device loop has read the answer, so the
	// device loop keeps reading until the device closes, which is what wakes it.
	n.closeDiscovery()
	err := n.conn.Close() // wakes the receive and discovery loops; done stopped the timer loop
	n.writers.Wait()
	if n.dev != nil {
		close(n.devClosed)
		err = errors.Join(err, n.dev.Close())
	}
	n.reader.Wait()
	return err
}

func (n *Node) isClosed() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// lockedReader serialises reads of a reader that is not safe for concurrent use.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}
