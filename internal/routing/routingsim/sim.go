// Package routingsim is a deterministic, in-process network for the routing core: a virtual clock,
// an event queue, virtual links with delay, jitter and loss drawn from a seeded PRNG, a modelled
// link-layer failure-detection delay, and real routing.Routers with real ML-DSA keys and mesh
// certificates (derived from the seed). Tests and the simulator use it to cut links, kill and restart
// nodes, partition and merge, inject forged messages, and check every node's routes against shortest
// paths on the true topology.
//
// It must never read the wall clock or use randomness other than its seeded PRNG for anything that
// affects behaviour (ML-DSA signatures are hedged, so their bytes differ between runs; nothing
// depends on them). It is not safe for concurrent use.
package routingsim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// NodeID is routing's node identity.
type NodeID = routing.NodeID

// Config configures a Network.
type Config struct {
	Seed        uint64
	Start       time.Time      // virtual time zero; default 2030-01-01T00:00:00Z
	DetectDelay time.Duration  // link layer: time to notice a dead link or node
	UpDelay     time.Duration  // link layer: time to report a new or restored link (handshake)
	Router      routing.Config // timers and limits; Key, Certificate, Verifier and Cache are set per node
	// NoSharedCache gives every router its own verified-record cache and certificate checks (slower:
	// every node verifies every record and certificate, as real nodes do).
	NoSharedCache bool
}

// LinkParams describe a virtual link; both directions behave the same.
type LinkParams struct {
	Delay  time.Duration // one-way propagation delay
	Jitter time.Duration // extra one-way delay, uniform in [0, Jitter)
	Loss   float64       // probability that a message is lost, per direction
	// Cost, when not 0, is the link's cost as is (a level-2 link between two gateways of one area
	// costs their level-1 distance).
	Cost uint32
	// NoFlood: level-2 records are not flooded over the link (routing.Metrics.NoFlood).
	NoFlood bool
}

// Metrics returns what an ideal link layer would measure on the link.
func (p LinkParams) Metrics() routing.Metrics {
	return routing.Metrics{RTT: 2*p.Delay + p.Jitter, Loss: p.Loss, Cost: p.Cost, NoFlood: p.NoFlood}
}

// Node is a simulated node.
type Node struct {
	ID     NodeID
	Name   string
	Key    *identity.NodeKey
	Cert   *meshca.Certificate
	Router *routing.Router // replaced by Revive
	Alive  bool
	Area   uint32 // routing area (0: the mesh is one area)
	// Gateway: the node is a gateway of its area (its level-1 router signs so; Backbone gives it a
	// level-2 router).
	Gateway bool
	// SentBytes counts the routing bytes the node sent (all its routers' messages, on every link).
	SentBytes uint64
	// Kept is what its level-1 router held when it was killed (routing.Router.Held): what a node
	// that saved its records at a clean shutdown gives back at its restart (ReviveKeepingRecords).
	Kept []routing.HeldRecord

	incarnation uint64
	tickToken   uint64
	tickAt      time.Time
	tickPending bool
	tickSameNow int
	lastTickNow time.Time

	adj []nodeLink // its links, in creation order (a faster lookup than Network.links when sending)
}

type nodeLink struct {
	peer NodeID
	l    *link
	node *Node // the peer
}

type linkKey struct{ a, b NodeID } // a < b

func keyOf(a, b NodeID) linkKey {
	if cmpID(a, b) > 0 {
		a, b = b, a
	}
	return linkKey{a, b}
}

func cmpID(a, b NodeID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

type link struct {
	key   linkKey
	p     LinkParams
	up    bool
	epoch uint64
}

// event is a scheduled function, or (fn nil) the delivery of a message: the bulk of the events, kept
// in the event itself so that a bucket of them sits together in memory (see calendar).
type event struct {
	at  int64 // nanoseconds since the start
	seq uint64
	fn  func()
	delivery
}

// delivery is a message in flight.
type delivery struct {
	l        *link
	epoch    uint64
	src, dst *Node
	srcInc   uint64
	dstInc   uint64
	msg      []byte
}

// Counters of the traffic the network carried.
type Counters struct {
	Sent      uint64 // messages handed to links
	Bytes     uint64 // their bytes
	Lost      uint64 // dropped by link loss
	Undeliver uint64 // dropped because the link or node was gone
	Delivered uint64
	Events    uint64
}

// Network is the simulated mesh.
type Network struct {
	cfg      Config
	now      time.Time
	rng      *rand.Rand
	ca       *meshca.CA
	verifier *meshca.Verifier
	cache    *routing.Cache
	certs    routing.CertVerifier // what routers check certificates with
	verdicts map[*meshca.Certificate]bool
	nodes    map[NodeID]*Node
	order    []NodeID
	links    map[linkKey]*link
	q        calendar
	outBuf   []routing.Outgoing
	seq      uint64
	version  uint64 // bumped by every topology change
	syncHint [2]int // where CheckSynchronised failed last: area index, pair index

	areas        map[uint32][]NodeID // nodes by area, for CheckSynchronised, as of areasVersion
	areaList     []uint32
	areasVersion uint64

	// Counters of what the links carried.
	Counters Counters
	// OnDeliver, if set, sees every message just before it is delivered.
	OnDeliver func(from, to NodeID, msg []byte)
	// HandleErrors counts HandleMessage errors by error text (forgeries, malformed input).
	HandleErrors map[string]int
}

// New creates an empty network with its own CA.
func New(cfg Config) (*Network, error) {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	n := &Network{
		cfg:          cfg,
		now:          cfg.Start,
		rng:          rand.New(rand.NewPCG(cfg.Seed, 0x78307474613662)),
		nodes:        make(map[NodeID]*Node),
		links:        make(map[linkKey]*link),
		HandleErrors: make(map[string]int),
	}
	caKey, err := identity.NewSigningKey(n.seed32())
	if err != nil {
		return nil, err
	}
	n.ca, err = meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "sim.mesh", Name: "sim-root", Duration: 365 * 24 * time.Hour}, cfg.Start)
	if err != nil {
		return nil, err
	}
	if n.verifier, err = meshca.NewVerifier(n.ca.Certificate()); err != nil {
		return nil, err
	}
	n.certs = n.verifier
	if !cfg.NoSharedCache {
		n.cache = routing.NewCache(1 << 16)
		n.verdicts = make(map[*meshca.Certificate]bool)
		n.certs = sharedVerdicts{n}
	}
	return n, nil
}

// sharedVerdicts remembers, for the whole simulation, which certificates the verifier accepted: a
// real node checks each certificate itself, but in a simulation of N nodes the same check would be
// repeated N times with the same answer. A verdict lasts while the certificate is in its validity
// window; UpdateCRL forgets them all.
type sharedVerdicts struct{ n *Network }

func (s sharedVerdicts) Verify(c *meshca.Certificate, now time.Time) error {
	if s.n.verdicts[c] && !now.Before(c.NotBefore) && now.Before(c.NotAfter) {
		return nil
	}
	if err := s.n.verifier.Verify(c, now); err != nil {
		return err
	}
	s.n.verdicts[c] = true
	return nil
}

// UpdateCRL installs a revocation list in the network's verifier and has every router re-check the
// certificates it holds, as a daemon does when a new list arrives.
func (n *Network) UpdateCRL(l *meshca.RevocationList) error {
	if _, err := n.verifier.UpdateCRL(l); err != nil {
		return err
	}
	clear(n.verdicts)
	for _, id := range n.order {
		if node := n.nodes[id]; node.Alive {
			node.Router.Revalidate(n.now)
			n.afterNode(node)
		}
	}
	return nil
}

func (n *Network) seed32() []byte {
	b := make([]byte, 32)
	for i := 0; i < 32; i += 8 {
		v := n.rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// CA returns the network's certificate authority (to issue certificates for forgery tests).
func (n *Network) CA() *meshca.CA { return n.ca }

// Verifier returns the verifier every router uses.
func (n *Network) Verifier() *meshca.Verifier { return n.verifier }

// Cache returns the shared verified-record cache (nil with NoSharedCache).
func (n *Network) Cache() *routing.Cache { return n.cache }

// Now returns the virtual time.
func (n *Network) Now() time.Time { return n.now }

// Elapsed returns the virtual time since the start.
func (n *Network) Elapsed() time.Duration { return n.now.Sub(n.cfg.Start) }

// Rand returns the network's PRNG (for building random topologies deterministically).
func (n *Network) Rand() *rand.Rand { return n.rng }

// Node returns a node.
func (n *Network) Node(id NodeID) *Node { return n.nodes[id] }

// Nodes returns every node ID in creation order.
func (n *Network) Nodes() []NodeID { return slices.Clone(n.order) }

// Router returns a node's current router.
func (n *Network) Router(id NodeID) *routing.Router { return n.nodes[id].Router }

// NewKey derives a node key from the network's PRNG.
func (n *Network) NewKey() (*identity.NodeKey, error) {
	kem, err := identity.NewKEMPrivateKey(n.seed32())
	if err != nil {
		return nil, err
	}
	sk, err := identity.NewSigningKey(n.seed32())
	if err != nil {
		return nil, err
	}
	return &identity.NodeKey{KEM: kem, Sign: sk}, nil
}

// AddNode creates a node with a fresh key, a certificate from the network's CA and a router.
func (n *Network) AddNode(name string) (NodeID, error) { return n.AddNodeInArea(name, 0) }

// AddNodeInArea is AddNode for a node of routing area area.
func (n *Network) AddNodeInArea(name string, area uint32) (NodeID, error) {
	return n.addNode(name, area, false)
}

// AddGateway is AddNodeInArea for a gateway of area.
func (n *Network) AddGateway(name string, area uint32) (NodeID, error) {
	return n.addNode(name, area, true)
}

func (n *Network) addNode(name string, area uint32, gateway bool) (NodeID, error) {
	key, err := n.NewKey()
	if err != nil {
		return NodeID{}, err
	}
	cert, err := n.ca.Issue(meshca.IssueRequest{Name: name, PublicKey: key.Public(), Duration: 30 * 24 * time.Hour}, n.now)
	if err != nil {
		return NodeID{}, fmt.Errorf("issue %s: %w", name, err)
	}
	return n.addKeyed(&Node{ID: cert.SignPublicKey.ID(), Name: name, Key: key, Cert: cert, Area: area, Gateway: gateway})
}

// addKeyed adds a node whose key and certificate are set.
func (n *Network) addKeyed(node *Node) (NodeID, error) {
	if _, dup := n.nodes[node.ID]; dup {
		return NodeID{}, errors.New("duplicate node key")
	}
	if err := n.startRouter(node); err != nil {
		return NodeID{}, err
	}
	n.nodes[node.ID] = node
	n.order = append(n.order, node.ID)
	n.version++
	n.afterNode(node)
	return node.ID, nil
}

// AddNodes adds count nodes named prefix-0, prefix-1, ...
func (n *Network) AddNodes(prefix string, count int) ([]NodeID, error) {
	ids := make([]NodeID, count)
	for i := range ids {
		id, err := n.AddNode(fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

func (n *Network) startRouter(node *Node) error {
	cfg := n.cfg.Router
	cfg.Key, cfg.Certificate, cfg.Verifier, cfg.Cache = node.Key.Sign, node.Cert, n.certs, n.cache
	cfg.Area = node.Area
	cfg.Gateway = node.Gateway && !cfg.Level2
	r, err := routing.New(cfg)
	if err != nil {
		return err
	}
	node.Router = r
	node.Alive = true
	node.incarnation++
	node.tickPending = false
	return nil
}

func (n *Network) schedule(at time.Time, fn func()) {
	if at.Before(n.now) {
		at = n.now
	}
	n.seq++
	n.q.push(event{at: int64(at.Sub(n.cfg.Start)), seq: n.seq, fn: fn})
}

// linkTo returns the link from node to its peer and the peer, or nils.
func (n *Network) linkTo(node *Node, peer NodeID) (*link, *Node) {
	for i := range node.adj {
		if node.adj[i].peer == peer {
			return node.adj[i].l, node.adj[i].node
		}
	}
	return nil, nil
}

// afterNode sends what the node's router produced and (re)schedules its Tick.
func (n *Network) afterNode(node *Node) {
	if !node.Alive {
		return
	}
	n.outBuf = node.Router.DrainTo(n.outBuf[:0])
	for _, o := range n.outBuf {
		n.send(node, o.To, o.Msg)
	}
	clear(n.outBuf)
	d := node.Router.NextDeadline()
	if d.Before(n.now) {
		d = n.now
	}
	if node.tickPending && node.tickAt.Equal(d) {
		return
	}
	node.tickToken++
	node.tickAt, node.tickPending = d, true
	tok, inc := node.tickToken, node.incarnation
	n.schedule(d, func() {
		if !node.Alive || node.incarnation != inc || node.tickToken != tok {
			return
		}
		node.tickPending = false
		if n.now.Equal(node.lastTickNow) {
			node.tickSameNow++
			if node.tickSameNow > 10000 {
				panic(fmt.Sprintf("routingsim: %s ticks forever at %s", node.Name, n.now))
			}
		} else {
			node.lastTickNow, node.tickSameNow = n.now, 0
		}
		node.Router.Tick(n.now)
		n.afterNode(node)
	})
}

func (n *Network) send(from *Node, to NodeID, msg []byte) {
	l, dst := n.linkTo(from, to)
	n.Counters.Sent++
	n.Counters.Bytes += uint64(len(msg))
	from.SentBytes += uint64(len(msg))
	if l == nil || !l.up {
		n.Counters.Undeliver++
		return
	}
	if l.p.Loss > 0 && n.rng.Float64() < l.p.Loss {
		n.Counters.Lost++
		return
	}
	delay := l.p.Delay
	if l.p.Jitter > 0 {
		delay += time.Duration(n.rng.Int64N(int64(l.p.Jitter)))
	}
	n.seq++
	n.q.push(event{at: int64(n.now.Add(delay).Sub(n.cfg.Start)), seq: n.seq,
		delivery: delivery{l: l, epoch: l.epoch, src: from, dst: dst, srcInc: from.incarnation, dstInc: dst.incarnation, msg: msg}})
}

// arrive delivers a message in flight, unless its link, sender or receiver went down meanwhile.
func (n *Network) arrive(d *delivery) {
	l, dst, src := d.l, d.dst, d.src
	if !l.up || l.epoch != d.epoch || !dst.Alive || dst.incarnation != d.dstInc || src.incarnation != d.srcInc {
		n.Counters.Undeliver++
		return
	}
	n.Counters.Delivered++
	if n.OnDeliver != nil {
		n.OnDeliver(src.ID, dst.ID, d.msg)
	}
	n.deliver(src.ID, dst, d.msg)
}

func (n *Network) deliver(from NodeID, dst *Node, msg []byte) {
	if err := dst.Router.HandleMessage(n.now, from, msg); err != nil {
		n.HandleErrors[errKey(err)]++
	}
	n.afterNode(dst)
}

func errKey(err error) string {
	for _, e := range []error{routing.ErrBadSignature, routing.ErrBadCertificate, routing.ErrMalformed,
		routing.ErrNotNeighbour, routing.ErrFuture, routing.ErrTableFull} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}

// Inject delivers msg to node to as if its neighbour from had sent it, now (an attacker's message).
func (n *Network) Inject(from, to NodeID, msg []byte) error {
	dst := n.nodes[to]
	err := dst.Router.HandleMessage(n.now, from, msg)
	n.afterNode(dst)
	return err
}

// Connect creates an up link between a and b; both ends learn of it after UpDelay.
func (n *Network) Connect(a, b NodeID, p LinkParams) error {
	if a == b || n.nodes[a] == nil || n.nodes[b] == nil {
		return errors.New("routingsim: connect: unknown or identical nodes")
	}
	k := keyOf(a, b)
	if n.links[k] != nil {
		return errors.New("routingsim: link exists")
	}
	l := &link{key: k, p: p}
	n.links[k] = l
	n.nodes[a].adj = append(n.nodes[a].adj, nodeLink{b, l, n.nodes[b]})
	n.nodes[b].adj = append(n.nodes[b].adj, nodeLink{a, l, n.nodes[a]})
	n.setUp(l, true)
	return nil
}

// HasLink reports whether a link between a and b exists (up or down).
func (n *Network) HasLink(a, b NodeID) bool { return n.links[keyOf(a, b)] != nil }

func (n *Network) setUp(l *link, up bool) {
	l.up = up
	l.epoch++
	n.version++
	ep := l.epoch
	if up {
		n.schedule(n.now.Add(n.cfg.UpDelay), func() {
			if l.epoch != ep {
				return
			}
			n.linkUpBoth(l)
		})
		return
	}
	n.schedule(n.now.Add(n.cfg.DetectDelay), func() {
		if l.epoch != ep {
			return
		}
		for _, pair := range [][2]NodeID{{l.key.a, l.key.b}, {l.key.b, l.key.a}} {
			if x := n.nodes[pair[0]]; x.Alive {
				x.Router.LinkDown(n.now, pair[1])
				n.afterNode(x)
			}
		}
	})
}

func (n *Network) linkUpBoth(l *link) {
	a, b := n.nodes[l.key.a], n.nodes[l.key.b]
	if !l.up || !a.Alive || !b.Alive {
		return
	}
	m := l.p.Metrics()
	a.Router.LinkUp(n.now, b.ID, m)
	b.Router.LinkUp(n.now, a.ID, m)
	n.afterNode(a)
	n.afterNode(b)
}

// Cut takes the link between a and b down; its ends notice after DetectDelay.
func (n *Network) Cut(a, b NodeID) {
	if l := n.links[keyOf(a, b)]; l != nil && l.up {
		n.setUp(l, false)
	}
}

// Restore brings the link between a and b back up; its ends notice after UpDelay.
func (n *Network) Restore(a, b NodeID) {
	if l := n.links[keyOf(a, b)]; l != nil && !l.up {
		n.setUp(l, true)
	}
}

// SetLinkParams changes a link's behaviour; both ends get the new metrics at once (as if measured).
func (n *Network) SetLinkParams(a, b NodeID, p LinkParams) {
	l := n.links[keyOf(a, b)]
	if l == nil {
		return
	}
	l.p = p
	n.version++
	for _, pair := range [][2]NodeID{{a, b}, {b, a}} {
		if x := n.nodes[pair[0]]; x.Alive {
			x.Router.UpdateMetrics(n.now, pair[1], p.Metrics())
			n.afterNode(x)
		}
	}
}

// Kill stops a node: its messages stop, and its neighbours notice after DetectDelay.
func (n *Network) Kill(id NodeID) {
	node := n.nodes[id]
	if !node.Alive {
		return
	}
	node.Alive = false
	node.Kept = node.Router.Held(n.now)
	node.incarnation++
	n.version++
	inc := node.incarnation
	for _, l := range n.linksOf(id) {
		if !l.up {
			continue
		}
		other := l.key.a
		if other == id {
			other = l.key.b
		}
		n.schedule(n.now.Add(n.cfg.DetectDelay), func() {
			if node.incarnation != inc {
				return
			}
			if x := n.nodes[other]; x.Alive {
				x.Router.LinkDown(n.now, id)
				n.afterNode(x)
			}
		})
	}
}

// Revive restarts a killed node with its old key and certificate and a fresh router (no state); its
// up links come back after UpDelay.
func (n *Network) Revive(id NodeID) error {
	_, err := n.revive(id, false)
	return err
}

// ReviveKeepingRecords restarts a killed node as Revive does, but gives its fresh router the records
// it held when it was killed (Node.Kept) through Router.Restore before its links come back, as a
// node that keeps its records across a restart does. It returns how many of them Restore refused
// (expired while the node was down, for instance).
func (n *Network) ReviveKeepingRecords(id NodeID) (refused int, err error) {
	return n.revive(id, true)
}

func (n *Network) revive(id NodeID, keep bool) (refused int, err error) {
	node := n.nodes[id]
	if node.Alive {
		return 0, nil
	}
	if err := n.startRouter(node); err != nil {
		return 0, err
	}
	if keep {
		for _, h := range node.Kept {
			if node.Router.Restore(n.now, h.Cert, h.Record) != nil {
				refused++
			}
		}
	}
	node.Kept = nil
	n.version++
	n.afterNode(node)
	for _, l := range n.linksOf(id) {
		if !l.up {
			continue
		}
		l.epoch++
		ep := l.epoch
		n.schedule(n.now.Add(n.cfg.UpDelay), func() {
			if l.epoch == ep {
				n.linkUpBoth(l)
			}
		})
	}
	return refused, nil
}

func (n *Network) linksOf(id NodeID) []*link {
	var out []*link
	for _, l := range n.links {
		if l.key.a == id || l.key.b == id {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(x, y *link) int {
		if c := cmpID(x.key.a, y.key.a); c != 0 {
			return c
		}
		return cmpID(x.key.b, y.key.b)
	})
	return out
}

// crossing returns the links with exactly one end in side, in a deterministic order.
func (n *Network) crossing(side []NodeID) []*link {
	in := make(map[NodeID]bool, len(side))
	for _, id := range side {
		in[id] = true
	}
	var out []*link
	for _, l := range n.links {
		if in[l.key.a] != in[l.key.b] {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(x, y *link) int {
		if c := cmpID(x.key.a, y.key.a); c != 0 {
			return c
		}
		return cmpID(x.key.b, y.key.b)
	})
	return out
}

// Partition cuts every link between side and the rest of the network.
func (n *Network) Partition(side []NodeID) {
	for _, l := range n.crossing(side) {
		if l.up {
			n.setUp(l, false)
		}
	}
}

// Heal restores every link between side and the rest of the network.
func (n *Network) Heal(side []NodeID) {
	for _, l := range n.crossing(side) {
		if !l.up {
			n.setUp(l, true)
		}
	}
}

// RunFor advances the virtual clock by d, processing every event due.
func (n *Network) RunFor(d time.Duration) { n.runTo(n.now.Add(d)) }

func (n *Network) runTo(t time.Time) {
	end := int64(t.Sub(n.cfg.Start))
	for {
		f := n.q.front()
		if f == nil || f.at > end {
			break
		}
		e := n.q.pop()
		n.now = n.cfg.Start.Add(time.Duration(e.at))
		n.Counters.Events++
		if e.fn == nil {
			n.arrive(&e.delivery)
		} else {
			e.fn()
		}
	}
	n.now = t
}

// state changes whenever any router's state or the topology may have changed.
func (n *Network) state() uint64 {
	s := n.version
	for _, id := range n.order {
		if node := n.nodes[id]; node.Alive {
			s += node.Router.Generation() + node.incarnation<<40
		}
	}
	return s
}

// RunUntil advances time in steps until cond holds (checked after each step in which anything
// changed, and once at the start) or limit has passed. It returns the virtual time spent and
// whether cond held.
func (n *Network) RunUntil(cond func() bool, step, limit time.Duration) (time.Duration, bool) {
	start := n.now
	last := n.state()
	if cond() {
		return 0, true
	}
	for n.now.Sub(start) < limit {
		n.RunFor(step)
		if s := n.state(); s != last {
			last = s
			if cond() {
				return n.now.Sub(start), true
			}
		}
	}
	return n.now.Sub(start), false
}

// Converged reports whether CheckRoutes passes.
func (n *Network) Converged() bool { return n.CheckRoutes() == nil }

// RunUntilConverged runs until every live node's routes are correct (1 ms resolution).
func (n *Network) RunUntilConverged(limit time.Duration) (time.Duration, error) {
	d, ok := n.RunUntil(n.Converged, time.Millisecond, limit)
	if !ok {
		return d, fmt.Errorf("not converged after %s: %w", d, n.CheckRoutes())
	}
	return d, nil
}

// CheckSynchronised checks that every live node holds the latest record of every live node of its
// area. It starts with the pair that failed last time, so that polling it during a cold start costs
// little until it passes.
func (n *Network) CheckSynchronised() error {
	if n.areas == nil || n.areasVersion != n.version {
		n.areas = make(map[uint32][]NodeID)
		for _, id := range n.order {
			a := n.nodes[id].Area
			n.areas[a] = append(n.areas[a], id)
		}
		n.areaList = n.areaList[:0]
		for a := range n.areas {
			n.areaList = append(n.areaList, a)
		}
		slices.Sort(n.areaList)
		n.areasVersion = n.version
		n.syncHint = [2]int{}
	}
	for k := range len(n.areaList) {
		ai := (n.syncHint[0] + k) % len(n.areaList)
		members := n.areas[n.areaList[ai]]
		m := len(members)
		start := 0
		if k == 0 && n.syncHint[1] < m*m {
			start = n.syncHint[1]
		}
		for j := range m*m - start {
			p := start + j
			id, other := n.nodes[members[p/m]], n.nodes[members[p%m]]
			if !id.Alive || !other.Alive {
				continue
			}
			if rec := other.Router.Record(id.ID); rec == nil || rec.Seq != id.Router.Seq() {
				n.syncHint = [2]int{ai, p}
				return fmt.Errorf("%s does not hold %s's latest record", other.Name, id.Name)
			}
		}
	}
	return nil
}

func (n *Network) truth(cost LinkCostFunc) (idx map[NodeID]int, adj [][]truthEdge) {
	idx = make(map[NodeID]int)
	for _, id := range n.order {
		if n.nodes[id].Alive {
			idx[id] = len(idx)
		}
	}
	adj = make([][]truthEdge, len(idx))
	for _, l := range n.links {
		ia, oka := idx[l.key.a]
		ib, okb := idx[l.key.b]
		if !l.up || !oka || !okb || n.nodes[l.key.a].Area != n.nodes[l.key.b].Area {
			continue // routes stay inside an area
		}
		c := cost(l.key.a, l.key.b, l.p)
		adj[ia] = append(adj[ia], truthEdge{ib, c})
		adj[ib] = append(adj[ib], truthEdge{ia, c})
	}
	return idx, adj
}

type truthEdge struct {
	to   int
	cost uint64
}

func truthDist(adj [][]truthEdge, src int) []uint64 {
	dist := make([]uint64, len(adj))
	for i := range dist {
		dist[i] = math.MaxUint64
	}
	dist[src] = 0
	q := &distHeap{{src, 0}}
	for q.Len() > 0 {
		it := heap.Pop(q).(truthEdge)
		u := it.to
		if it.cost != dist[u] {
			continue
		}
		for _, e := range adj[u] {
			if nd := dist[u] + e.cost; nd < dist[e.to] {
				dist[e.to] = nd
				heap.Push(q, truthEdge{e.to, nd})
			}
		}
	}
	return dist
}

// distHeap is a min-heap of (node, distance) pairs.
type distHeap []truthEdge

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].cost < h[j].cost }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(truthEdge)) }
func (h *distHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// LinkCostFunc gives the cost a check expects for the link between a and b (in either order).
type LinkCostFunc func(a, b NodeID, p LinkParams) uint64

// MeasuredCost is the cost the link's metrics give: what both ends advertise when nothing (no
// damping, no self-healing penalty, no change inside the hysteresis band) says otherwise.
func MeasuredCost(_, _ NodeID, p LinkParams) uint64 { return uint64(routing.LinkCost(p.Metrics())) }

// CheckRoutes compares every live node's routing table with the shortest paths of the true topology
// (live nodes, up links, the costs the links' metrics give). For every pair it checks that a route
// exists exactly when the destination is reachable, that its cost is the true distance, and that
// following each node's own next hop reaches the destination over up links at that cost — so
// forwarding has no loop and no dead end. It assumes links' advertised costs equal their measured
// costs (no change inside the hysteresis band).
func (n *Network) CheckRoutes() error { return n.CheckRoutesWith(MeasuredCost) }

// CheckRoutesWith is CheckRoutes with the link costs cost gives (e.g. a suppressed link's penalty).
func (n *Network) CheckRoutesWith(cost LinkCostFunc) error {
	idx, adj := n.truth(cost)
	live := make([]NodeID, 0, len(idx))
	for _, id := range n.order {
		if _, ok := idx[id]; ok {
			live = append(live, id)
		}
	}
	for _, s := range live {
		dist := truthDist(adj, idx[s])
		rs := n.nodes[s].Router
		for _, d := range n.order {
			if _, ok := rs.NextHop(d); ok && !n.nodes[d].Alive {
				return fmt.Errorf("%s has a route to dead %s", n.nodes[s].Name, n.nodes[d].Name)
			}
		}
		for _, d := range live {
			if d == s {
				continue
			}
			want := dist[idx[d]]
			rt, ok := rs.NextHop(d)
			if want == math.MaxUint64 {
				if ok {
					return fmt.Errorf("%s has a route to unreachable %s", n.nodes[s].Name, n.nodes[d].Name)
				}
				continue
			}
			if !ok {
				return fmt.Errorf("%s has no route to %s", n.nodes[s].Name, n.nodes[d].Name)
			}
			if rt.Cost != want {
				return fmt.Errorf("%s→%s: route cost %d, shortest path %d", n.nodes[s].Name, n.nodes[d].Name, rt.Cost, want)
			}
			cur, total := s, uint64(0)
			for hops := 0; cur != d; hops++ {
				if hops > len(live) {
					return fmt.Errorf("%s→%s: forwarding loop", n.nodes[s].Name, n.nodes[d].Name)
				}
				r, ok := n.nodes[cur].Router.NextHop(d)
				if !ok {
					return fmt.Errorf("%s→%s: %s on the path has no route", n.nodes[s].Name, n.nodes[d].Name, n.nodes[cur].Name)
				}
				l := n.links[keyOf(cur, r.NextHop)]
				if l == nil || !l.up || !n.nodes[r.NextHop].Alive {
					return fmt.Errorf("%s→%s: %s forwards over a dead link", n.nodes[s].Name, n.nodes[d].Name, n.nodes[cur].Name)
				}
				total += cost(l.key.a, l.key.b, l.p)
				cur = r.NextHop
			}
			if total != want {
				return fmt.Errorf("%s→%s: forwarding path costs %d, shortest %d", n.nodes[s].Name, n.nodes[d].Name, total, want)
			}
		}
	}
	return nil
}

// ---- topologies ----

// Line connects ids in a chain.
func (n *Network) Line(ids []NodeID, p LinkParams) error {
	for i := 1; i < len(ids); i++ {
		if err := n.Connect(ids[i-1], ids[i], p); err != nil {
			return err
		}
	}
	return nil
}

// Ring connects ids in a cycle.
func (n *Network) Ring(ids []NodeID, p LinkParams) error {
	if err := n.Line(ids, p); err != nil {
		return err
	}
	if len(ids) > 2 {
		return n.Connect(ids[len(ids)-1], ids[0], p)
	}
	return nil
}

// Grid connects ids (row-major, w columns) as a w×(len/w) grid.
func (n *Network) Grid(ids []NodeID, w int, p LinkParams) error {
	for i := range ids {
		if (i+1)%w != 0 && i+1 < len(ids) {
			if err := n.Connect(ids[i], ids[i+1], p); err != nil {
				return err
			}
		}
		if i+w < len(ids) {
			if err := n.Connect(ids[i], ids[i+w], p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Random connects ids into a connected random graph: a random spanning tree plus extra random links
// until the mean degree reaches degree. Link parameters come from param(i), i counting links.
func (n *Network) Random(ids []NodeID, degree float64, param func(i int) LinkParams) error {
	count := 0
	connect := func(a, b NodeID) error {
		err := n.Connect(a, b, param(count))
		count++
		return err
	}
	perm := n.rng.Perm(len(ids))
	for i := 1; i < len(perm); i++ {
		if err := connect(ids[perm[i]], ids[perm[n.rng.IntN(i)]]); err != nil {
			return err
		}
	}
	want := int(degree * float64(len(ids)) / 2)
	for tries := 0; count < want && tries < 100*want; tries++ {
		a, b := ids[n.rng.IntN(len(ids))], ids[n.rng.IntN(len(ids))]
		if a == b || n.HasLink(a, b) {
			continue
		}
		if err := connect(a, b); err != nil {
			return err
		}
	}
	return nil
}

// SentBytes returns the routing bytes node id sent, or 0 for an unknown node.
func (n *Network) SentBytes(id NodeID) uint64 {
	if nd := n.nodes[id]; nd != nil {
		return nd.SentBytes
	}
	return 0
}
