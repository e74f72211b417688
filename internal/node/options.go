package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/underlay"
)

// DeviceMode selects how packets reach the host.
type DeviceMode string

// Device modes.
const (
	DeviceNone     DeviceMode = "none"     // no device: the node only relays (and answers ping)
	DeviceNetstack DeviceMode = "netstack" // userspace TCP/IP stack, no root
	DeviceTUN      DeviceMode = "tun"      // kernel TUN device, root
)

// Peer is a neighbour to connect to at start-up. The initiator of the post-quantum handshake must
// know the responder's certificate (docs/protocol.md), so a static peer names it.
type Peer struct {
	Addr netip.AddrPort
	Cert *meshca.Certificate
}

// Options is everything a Node needs, already loaded. LoadConfig builds it from a YAML file; tests and
// the demo build it directly.
type Options struct {
	Key    *identity.NodeKey
	Cert   *meshca.Certificate
	CA     []*meshca.Certificate
	CRL    *meshca.RevocationList // optional
	Listen netip.AddrPort         // UDP address; port 0 picks one

	Device     DeviceMode
	DeviceName string // TUN name (DeviceTUN)
	MTU        int    // overlay MTU, default 1280
	// NoBursts makes the node split TCP bursts from a kernel TUN into packets even for destinations
	// beyond a neighbour, instead of sending them whole (docs/transport.md, "Bursts").
	NoBursts bool

	Peers     []Peer
	Discovery []string // interfaces to find neighbours on by link-local multicast (opt-in)
	// NoTransit makes the node a destination only: it does not relay for others, and routes never
	// pass through it (config relay: false).
	NoTransit bool
	// RoutingArea is the node's routing area (docs/routing.md, Areas): it floods and accepts
	// link-state records only of this area, and routes only inside it. 0 is a mesh of one area.
	RoutingArea uint32
	// RoutingGateway makes the node a gateway of its area (docs/routing.md, "Level 2"; docs/node.md,
	// "Areas and gateways"): it runs a level-2 router next to its level-1 one and carries traffic
	// between its area and the others. It needs a RoutingArea other than 0 and relaying (not NoTransit).
	RoutingGateway bool
	// NoPunch stops the node from making direct links to nodes it learns of through routing
	// (docs/connectivity.md); it then links only to configured and discovered peers.
	NoPunch bool
	// LocalAddrs lists the host's interface addresses, published as endpoints when the socket is bound
	// to a wildcard address; nil lists them from the operating system.
	LocalAddrs func() ([]netip.Addr, error)
	Firewall   firewall.Config
	// PolicyFile keeps the newest access policy the node has applied, so that a restart starts with
	// it and can never be rolled back to an older one (policy.go); empty: not kept.
	PolicyFile string
	// RecordsFile keeps the link-state records the node holds, so that a restart starts with them
	// and pulls only what changed instead of its whole area (keptrecords.go, docs/node.md); empty:
	// not kept.
	RecordsFile string
	// Governance makes the node follow the members' decisions and refuse governed action types from
	// anywhere else (governance.go); nil: off, and the node behaves as without it.
	Governance *GovernanceOptions

	// EBPF loads the kernel-side observation programs in Run (kernel.go, docs/ebpf.md); where they
	// cannot load, the node logs why and runs without them.
	EBPF bool

	AdminSocket   string // unix socket path for status/peers/routes/ping; empty: none
	MetricsListen string // host:port for Prometheus metrics at /metrics (plain HTTP); empty: none

	// Rand, if set, supplies the handshakes' retry jitter, cookie secrets and session indices instead
	// of crypto/rand, so that a simulation on a virtual clock can replay the same timeline from a
	// seed. KEM keys always come from crypto/rand. It may be called from several goroutines; the node
	// serialises the calls. Production leaves it nil.
	Rand io.Reader

	// NoHandshakeRetransmit makes the node's handshakes behave as before retransmission of the
	// current attempt (docs/protocol.md §12.4): for compatibility tests and before/after figures.
	NoHandshakeRetransmit bool
	// NoPieceFrames makes the node behave as a build without piece frames (docs/transport.md, "Piece
	// frames"): every frame goes whole, piece frames are dropped as an unknown type. For
	// compatibility tests and before/after figures.
	NoPieceFrames bool

	ProbeInterval time.Duration // link probes, default 150 ms
	DeadAfter     time.Duration // link down after this much silence, default 600 ms
	TickInterval  time.Duration // timer resolution, default 50 ms

	// CryptoWorkers is how many goroutines seal or open one large batch of packets together in Run,
	// the receive or device loop included (workers.go). 0 takes GOMAXPROCS on a machine of more than
	// two cores and 1 on a smaller one; 1 keeps the loops alone. The engine entry points called
	// directly (Receiver, DevicePump) never start goroutines.
	CryptoWorkers int

	Heal HealConfig // self-healing (heal.go); the zero value is enabled with the defaults
	DNS  DNSConfig  // the name responder (dns.go); off unless enabled

	Logger *slog.Logger

	// The node's I/O, for tests and the whole-mesh harness (internal/meshtest); the daemon leaves them
	// nil. Conn replaces the UDP socket on Listen; PacketDevice replaces the device Device would open
	// (Device then only names the mode in status); Now replaces the wall clock.
	Conn         underlay.Conn
	PacketDevice Device
	Now          func() time.Time
}

// Limits on what strangers and the mesh can make a node hold.
const (
	maxLinks         = 256   // neighbour sessions
	maxE2E           = 4096  // end-to-end sessions
	maxIndices       = 16384 // session indices (three keypairs per session at most, plus handshakes)
	maxQueuedPerPeer = 32    // packets waiting for an end-to-end handshake
	e2eIdleTimeout   = 3 * time.Minute
	defaultMTU       = 1280
	metricsInterval  = time.Second
	// maxOriginationHold caps routing's back-off between topology-triggered records.
	maxOriginationHold = 400 * time.Millisecond
)

func (o *Options) check() error {
	switch {
	case o.Key == nil || o.Cert == nil:
		return errors.New("node: key and certificate are required")
	case len(o.CA) == 0:
		return errors.New("node: at least one CA certificate is required")
	case o.Cert.Kind != meshca.KindNode:
		return errors.New("node: certificate is not a node certificate")
	case o.Cert.SignPublicKey.ID() != o.Key.Sign.PublicKey().ID() ||
		string(o.Cert.KEMPublicKey.Bytes()) != string(o.Key.KEM.PublicKey().Bytes()):
		return errors.New("node: certificate does not belong to this key")
	}
	switch o.Device {
	case "":
		o.Device = DeviceNone
	case DeviceNone, DeviceNetstack, DeviceTUN:
	default:
		return fmt.Errorf("node: device mode %q: use none, netstack or tun", o.Device)
	}
	switch {
	case o.RoutingGateway && o.RoutingArea == 0:
		return errors.New("node: routing_gateway needs a routing_area other than 0")
	case o.RoutingGateway && o.NoTransit:
		return errors.New("node: a routing_gateway relays between areas: it cannot have relay: false")
	}
	if o.Device == DeviceTUN && o.DeviceName == "" {
		o.DeviceName = "x6l0"
	}
	if o.MTU == 0 {
		o.MTU = defaultMTU
	}
	for _, c := range []struct {
		r durationRange
		v time.Duration
	}{{durationRange{"link.probe_interval", 10 * time.Millisecond, time.Minute}, o.ProbeInterval},
		{durationRange{"link.dead_after", 20 * time.Millisecond, 10 * time.Minute}, o.DeadAfter}} {
		if c.v < 0 {
			return fmt.Errorf("node: %s %s: must not be negative", c.r.field, c.v)
		}
		if err := c.r.check(c.v); err != nil {
			return fmt.Errorf("node: %w", err)
		}
	}
	if err := o.Heal.Validate(); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 150 * time.Millisecond
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 600 * time.Millisecond
	}
	if o.DeadAfter < 2*o.ProbeInterval {
		return fmt.Errorf("node: dead-after %s must be at least twice the probe interval %s", o.DeadAfter, o.ProbeInterval)
	}
	if o.TickInterval <= 0 {
		o.TickInterval = 50 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LocalAddrs == nil {
		o.LocalAddrs = interfaceAddrs
	}
	for i, p := range o.Peers {
		if !p.Addr.IsValid() || p.Cert == nil {
			return fmt.Errorf("node: peer %d needs an address and a certificate", i)
		}
	}
	return nil
}
