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
	"cmp"
	"container/heap"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/underlay"
)

// Epoch is the virtual time every mesh starts at.
var Epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

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
}

// LinkParams shape one underlay link, the same in both directions.
type LinkParams struct {
	Delay time.Duration // one way
	Loss  float64       // fraction of datagrams lost, drawn from the mesh's seeded source
	Down  bool          // cut: nothing passes
}

// Mesh is a set of in-process nodes on a virtual clock.
type Mesh struct {
	cfg      Config
	now      time.Time
	lastTick time.Time
	rng      *rand.Rand
	ca       *meshca.CA
	nodes    []*Node
	byName   map[string]*Node
	byUDP    map[netip.AddrPort]*Node
	links    map[[2]int]*LinkParams
	queue    eventQueue
	seq      uint64
	started  bool
	// Dropped counts datagrams the network did not carry: lost, over a cut link, or to a dead node.
	Dropped uint64
}

// Node is one node of the mesh.
type Node struct {
	*node.Node
	Name  string
	Key   *identity.NodeKey
	Cert  *meshca.Certificate
	index int
	udp   netip.AddrPort
	conn  *memConn
	dev   *memDevice
	rcv   *node.Receiver
	pump  *node.DevicePump
	peers []int // nodes this one dials at start
	dead  bool
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
	m := &Mesh{cfg: cfg, now: Epoch, lastTick: Epoch, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6d657368)),
		byName: map[string]*Node{}, byUDP: map[netip.AddrPort]*Node{}, links: map[[2]int]*LinkParams{}}
	caKey, err := identity.NewSigningKey(m.seed(32))
	if err != nil {
		return nil, err
	}
	if m.ca, err = meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "meshtest.mesh", Name: "root", Duration: 30 * 24 * time.Hour}, m.now); err != nil {
		return nil, err
	}
	return m, nil
}

// seed draws n bytes of key material from the mesh's source.
func (m *Mesh) seed(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	return b
}

// Now is the mesh's virtual time.
func (m *Mesh) Now() time.Time { return m.now }

// Elapsed is the virtual time since Epoch.
func (m *Mesh) Elapsed() time.Duration { return m.now.Sub(Epoch) }

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
	cert, err := m.ca.Issue(meshca.IssueRequest{Name: name, Groups: groups, PublicKey: key.Public(), Duration: 7 * 24 * time.Hour}, m.now)
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
	if p.Delay <= 0 {
		p.Delay = m.cfg.Delay
	}
	m.links[pair(na.index, nb.index)] = &p
	if !m.started {
		nb.peers = append(nb.peers, na.index)
	}
	return nil
}

// SetLink changes a link's delay, loss or state from now on; datagrams in flight keep their fate.
func (m *Mesh) SetLink(a, b string, p LinkParams) error {
	l := m.link(a, b)
	if l == nil {
		return fmt.Errorf("meshtest: no link %s-%s", a, b)
	}
	if p.Delay <= 0 {
		p.Delay = l.Delay
	}
	*l = p
	return nil
}

func (m *Mesh) link(a, b string) *LinkParams {
	na, nb := m.byName[a], m.byName[b]
	if na == nil || nb == nil {
		return nil
	}
	return m.links[pair(na.index, nb.index)]
}

func pair(i, j int) [2]int { return [2]int{min(i, j), max(i, j)} }

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
		n.conn = &memConn{m: m, self: n}
		n.dev = &memDevice{m: m, self: n}
		o := node.Options{Key: n.Key, Cert: n.Cert, CA: []*meshca.Certificate{m.ca.Certificate()},
			Device: node.DeviceNetstack, Firewall: allowAll, Logger: m.cfg.Logger.With("mesh", "meshtest"),
			ProbeInterval: m.cfg.ProbeInterval, DeadAfter: m.cfg.DeadAfter, TickInterval: m.cfg.Tick,
			Heal: m.cfg.Heal, Conn: n.conn, PacketDevice: n.dev, Now: m.Now}
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
	}
	for _, n := range m.nodes {
		n.Start(m.now)
		m.pumpAll()
	}
	return nil
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

// Run advances virtual time by d.
func (m *Mesh) Run(d time.Duration) {
	end := m.now.Add(d)
	for m.step(end) {
	}
	m.now = end
}

// RunUntil advances virtual time until cond holds, checked after every event, or until limit has
// passed; it returns the virtual time it took and whether cond held.
func (m *Mesh) RunUntil(cond func() bool, limit time.Duration) (time.Duration, bool) {
	start := m.now
	end := start.Add(limit)
	for !cond() {
		if !m.step(end) {
			return limit, false
		}
	}
	return m.now.Sub(start), true
}

// step handles the next event due no later than end: a datagram's arrival, or the next tick of every
// node. It reports false when none is due by then.
func (m *Mesh) step(end time.Time) bool {
	next := m.lastTick.Add(m.cfg.Tick)
	if m.queue.Len() > 0 && !m.queue[0].at.After(next) {
		if m.queue[0].at.After(end) {
			return false
		}
		e := heap.Pop(&m.queue).(*event)
		m.now = e.at
		if n := m.byUDP[e.to]; n != nil && !n.dead {
			n.rcv.Receive(m.now, []underlay.Datagram{{Data: e.data, From: e.from}})
		}
		m.pumpAll()
		return true
	}
	if next.After(end) {
		return false
	}
	m.now, m.lastTick = next, next
	for _, n := range m.nodes {
		if !n.dead {
			n.Tick(m.now)
		}
	}
	m.pumpAll()
	return true
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

// send puts datagrams from n on the wire: each is delivered after its link's delay unless the link
// loses it.
func (m *Mesh) send(n *Node, buf []byte, seg int, to netip.AddrPort) int {
	dst := m.byUDP[to]
	var l *LinkParams
	if dst != nil {
		l = m.links[pair(n.index, dst.index)]
	}
	sent := 0
	for off := 0; off < len(buf); off += seg {
		sent++
		if l == nil || l.Down || (l.Loss > 0 && m.rng.Float64() < l.Loss) {
			m.Dropped++
			continue
		}
		m.seq++
		heap.Push(&m.queue, &event{at: m.now.Add(l.Delay), seq: m.seq, from: n.udp, to: to,
			data: slices.Clone(buf[off:min(off+seg, len(buf))])})
	}
	return sent
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
