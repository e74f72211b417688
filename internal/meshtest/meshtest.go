// Package meshtest runs whole meshes of real nodes in one process on a virtual clock, as Nebula's e2e
// router does: every node is an unmodified node.Node whose socket and device are in memory, and the
// harness steps datagrams between them in time order. Link delay, loss and cuts, relay faults and
// node deaths are scripted; keys, certificates and every random choice of the harness come from a
// seed, so a scenario gives the same result on every run and takes no wall-clock sleep.
//
// It must never open a socket, start a goroutine or read the wall clock: a test that passes here
// passes because of what the nodes did, not because a machine happened to be fast.
package meshtest

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/memnet"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/underlay"
)

// Epoch is the virtual time every mesh starts at.
var Epoch = memnet.Epoch

// Config sets a mesh up. The zero value of a field takes the default in brackets.
type Config struct {
	Seed          uint64
	Tick          time.Duration // [20 ms] the nodes' TickInterval: how often each node's timers run
	ProbeInterval time.Duration // [100 ms] link probes
	DeadAfter     time.Duration // [400 ms] link declared down after this much silence
	Delay         time.Duration // [1 ms] one-way delay of a link that Link was not given one for
	Heal          node.HealConfig
	Logger        *slog.Logger // [discard]
	// Options, if set, adjusts each node's options before it starts.
	Options func(name string, o *node.Options)
	// Drop, if set, is asked about every datagram before it goes on a link; true loses it. Tests
	// use it to lose one chosen packet.
	Drop func(from, to *Node, datagram []byte) bool
}

// LinkParams shape one underlay link, the same in both directions.
type LinkParams = memnet.LinkParams

// Mesh is a set of in-process nodes on a virtual clock.
type Mesh struct {
	cfg     Config
	net     *memnet.Network
	rng     *rand.Rand // key material
	ca      *meshca.CA
	nodes   []*Node
	byName  map[string]*Node
	byUDP   map[netip.AddrPort]*Node
	started bool
}

// Node is one node of the mesh.
type Node struct {
	*node.Node
	Name  string
	Key   *identity.NodeKey
	Cert  *meshca.Certificate
	index int
	udp   netip.AddrPort
	conn  *memnet.Conn
	dev   *memDevice
	rcv   *node.Receiver
	pump  *node.DevicePump
	peers []int // nodes this one dials at start
	dead  bool
	boots int // processes started, so that each draws its own timeline from the seed
	// RawDevice, set before Start, gives the node a device that moves whole TCP bursts with
	// virtio-net headers, as a kernel TUN with offloads does.
	RawDevice bool
}

// New makes an empty mesh with a CA whose key comes from the seed.
func New(cfg Config) (*Mesh, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = 20 * time.Millisecond
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 100 * time.Millisecond
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 400 * time.Millisecond
	}
	if cfg.Delay <= 0 {
		cfg.Delay = time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mesh{cfg: cfg, net: memnet.New(cfg.Seed), rng: rand.New(rand.NewPCG(cfg.Seed, 0x6d657368)),
		byName: map[string]*Node{}, byUDP: map[netip.AddrPort]*Node{}}
	m.net.Tick, m.net.Delay = cfg.Tick, cfg.Delay
	m.net.OnTick = m.tick
	m.net.AfterEvent = m.pumpAll
	if cfg.Drop != nil {
		m.net.Drop = func(from, to netip.AddrPort, d []byte) bool { return cfg.Drop(m.byUDP[from], m.byUDP[to], d) }
	}
	caKey, err := identity.NewSigningKey(m.seed(32))
	if err != nil {
		return nil, err
	}
	if m.ca, err = meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "meshtest.mesh", Name: "root", Duration: 30 * 24 * time.Hour}, m.Now()); err != nil {
		return nil, err
	}
	return m, nil
}

// Network is the underlay the nodes share.
func (m *Mesh) Network() *memnet.Network { return m.net }

// seed draws n bytes of key material from the mesh's source.
func (m *Mesh) seed(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	return b
}

// Now is the mesh's virtual time.
func (m *Mesh) Now() time.Time { return m.net.Now() }

// Elapsed is the virtual time since Epoch.
func (m *Mesh) Elapsed() time.Duration { return m.Now().Sub(Epoch) }

// CA is the mesh's certificate authority.
func (m *Mesh) CA() *meshca.CA { return m.ca }

// AddNode creates a node's keys and certificate; it starts with Start.
func (m *Mesh) AddNode(name string, groups ...string) (*Node, error) {
	if m.started {
		return nil, fmt.Errorf("meshtest: add %s after Start", name)
	}
	if _, ok := m.byName[name]; ok {
		return nil, fmt.Errorf("meshtest: node %s twice", name)
	}
	kem, err := identity.NewKEMPrivateKey(m.seed(identity.KEMSeedSize))
	if err != nil {
		return nil, err
	}
	sign, err := identity.NewSigningKey(m.seed(32))
	if err != nil {
		return nil, err
	}
	key := &identity.NodeKey{KEM: kem, Sign: sign}
	cert, err := m.ca.Issue(meshca.IssueRequest{Name: name, Groups: groups, PublicKey: key.Public(), Duration: 7 * 24 * time.Hour}, m.Now())
	if err != nil {
		return nil, err
	}
	i := len(m.nodes)
	// Underlay addresses only name conns inside this process: no datagram leaves it.
	n := &Node{Name: name, Key: key, Cert: cert, index: i,
		udp: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}), 4242)}
	m.nodes = append(m.nodes, n)
	m.byName[name] = n
	m.byUDP[n.udp] = n
	return n, nil
}

// AddNodes adds nodes by name.
func (m *Mesh) AddNodes(names ...string) error {
	for _, name := range names {
		if _, err := m.AddNode(name); err != nil {
			return err
		}
	}
	return nil
}

// Link joins a and b with an underlay link; b dials a at start, as a configured peer.
func (m *Mesh) Link(a, b string, p LinkParams) error {
	na, nb := m.byName[a], m.byName[b]
	if na == nil || nb == nil || na == nb {
		return fmt.Errorf("meshtest: link %s-%s: unknown node or a loop", a, b)
	}
	m.net.Link(na.udp, nb.udp, p)
	if !m.started {
		nb.peers = append(nb.peers, na.index)
	}
	return nil
}

// Reach joins a and b in the underlay only: datagrams between them are carried, but neither is
// configured to dial the other, as two hosts on one network that have not been introduced.
func (m *Mesh) Reach(a, b string, p LinkParams) error {
	na, nb := m.byName[a], m.byName[b]
	if na == nil || nb == nil || na == nb {
		return fmt.Errorf("meshtest: reach %s-%s: unknown node or a loop", a, b)
	}
	m.net.Link(na.udp, nb.udp, p)
	return nil
}

// SetLink changes a link's delay, loss or state from now on; datagrams in flight keep their fate.
func (m *Mesh) SetLink(a, b string, p LinkParams) error {
	na, nb := m.byName[a], m.byName[b]
	if na == nil || nb == nil || m.net.LinkOf(na.udp, nb.udp) == nil {
		return fmt.Errorf("meshtest: no link %s-%s", a, b)
	}
	if p.Delay <= 0 {
		p.Delay = m.net.LinkOf(na.udp, nb.udp).Delay
	}
	m.net.Link(na.udp, nb.udp, p)
	return nil
}

var allowAll = firewall.Config{
	Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
	Outbound: []firewall.Rule{{Proto: "any", Port: "any", Any: true}},
}

// Start creates every node with an in-memory socket and device and lets the configured peers dial.
func (m *Mesh) Start() error {
	if m.started {
		return nil
	}
	m.started = true
	for _, n := range m.nodes {
		n.dev = &memDevice{m: m, self: n, raw: n.RawDevice}
		if err := m.boot(n); err != nil {
			return err
		}
	}
	for _, n := range m.nodes {
		n.Start(m.Now())
		m.pumpAll()
	}
	return nil
}

// boot creates n's node process: a fresh socket on its address, its device, and a node.Node with
// its identity and nothing else.
func (m *Mesh) boot(n *Node) error {
	n.conn = m.net.Conn(n.udp)
	n.dev.closed = false
	o := node.Options{Key: n.Key, Cert: n.Cert, CA: []*meshca.Certificate{m.ca.Certificate()},
		Device: node.DeviceNetstack, Firewall: allowAll, Logger: m.cfg.Logger.With("mesh", "meshtest"),
		ProbeInterval: m.cfg.ProbeInterval, DeadAfter: m.cfg.DeadAfter, TickInterval: m.cfg.Tick,
		Heal: m.cfg.Heal, Conn: n.conn, PacketDevice: n.dev, Now: m.Now, Rand: m.processRand(n)}
	for _, p := range n.peers {
		o.Peers = append(o.Peers, node.Peer{Addr: m.nodes[p].udp, Cert: m.nodes[p].Cert})
	}
	if m.cfg.Options != nil {
		m.cfg.Options(n.Name, &o)
	}
	nd, err := node.New(o)
	if err != nil {
		return fmt.Errorf("meshtest: node %s: %w", n.Name, err)
	}
	n.Node, n.rcv, n.pump = nd, nd.NewReceiver(), nd.NewDevicePump()
	n.conn.Attach(&reusingReceiver{r: n.rcv})
	return nil
}

// processRand is the randomness of n's next process (handshake jitter, indices): drawn from the seed,
// the node and how many processes it has had, so that a seed replays the same timeline.
func (m *Mesh) processRand(n *Node) *rand.ChaCha8 {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], m.cfg.Seed)
	binary.LittleEndian.PutUint64(seed[8:], uint64(n.index))
	binary.LittleEndian.PutUint64(seed[16:], uint64(n.boots))
	copy(seed[24:], "process\x00")
	n.boots++
	return rand.NewChaCha8(seed)
}

// reusingReceiver hands datagrams to a node as a socket reader does (underlay.Datagram: a view into
// the reader's buffers, valid until its next Read): each arrives in the same buffer, overwritten once
// the node has handled it, so that a node keeping a reference into a received packet, instead of a
// copy, sees that memory change here as it would in production.
type reusingReceiver struct {
	r   *node.Receiver
	buf []byte
}

func (rr *reusingReceiver) Receive(now time.Time, ds []underlay.Datagram) {
	for _, d := range ds {
		if cap(rr.buf) < len(d.Data) {
			rr.buf = make([]byte, len(d.Data), max(len(d.Data), 2048))
		}
		b := rr.buf[:len(d.Data)]
		copy(b, d.Data)
		rr.r.Receive(now, []underlay.Datagram{{Data: b, From: d.From}})
		for i := range b {
			b[i] = 0xa5
		}
	}
}

// Node returns the node called name, or nil.
func (m *Mesh) Node(name string) *Node { return m.byName[name] }

// Nodes returns every node, in the order they were added.
func (m *Mesh) Nodes() []*Node { return slices.Clone(m.nodes) }

// Kill stops a node at once, as a crash would: it sends nothing more, and what reaches it is lost.
func (m *Mesh) Kill(name string) error {
	n := m.byName[name]
	if n == nil || n.Node == nil {
		return fmt.Errorf("meshtest: no running node %s", name)
	}
	n.dead = true
	return n.Close()
}

// Restart starts a node again as a new process, as after a crash (it is killed first if it runs):
// the same identity, address and host, and no session, routing state or queued packet of the old
// process. It dials its configured peers at once, as a starting node does.
func (m *Mesh) Restart(name string) error {
	n := m.byName[name]
	if n == nil || n.Node == nil {
		return fmt.Errorf("meshtest: no started node %s", name)
	}
	if !n.dead {
		if err := m.Kill(name); err != nil {
			return err
		}
	}
	if err := m.boot(n); err != nil {
		return err
	}
	n.dead = false
	n.Start(m.Now())
	m.pumpAll()
	return nil
}

// Run advances virtual time by d.
func (m *Mesh) Run(d time.Duration) { m.net.Run(d) }

// RunUntil advances virtual time until cond holds, checked after every event, or until limit has
// passed; it returns the virtual time it took and whether cond held.
func (m *Mesh) RunUntil(cond func() bool, limit time.Duration) (time.Duration, bool) {
	return m.net.RunUntil(cond, limit)
}

// tick runs every live node's timers, in node order.
func (m *Mesh) tick(now time.Time) {
	for _, n := range m.nodes {
		if !n.dead {
			n.Tick(now)
		}
	}
}

// pumpAll sends what the hosts wrote to their devices (in node order, so the order is the seed's).
func (m *Mesh) pumpAll() {
	for again := true; again; {
		again = false
		for _, n := range m.nodes {
			if !n.dead && len(n.dev.in) > 0 {
				n.pump.Pump()
				again = true
			}
		}
	}
}
