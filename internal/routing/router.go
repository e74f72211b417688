package routing

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Errors returned by HandleMessage (besides ErrMalformed and ErrBadSignature); test with errors.Is.
var (
	ErrNotNeighbour   = errors.New("routing: message from a node that is not a neighbour")
	ErrBadCertificate = errors.New("routing: originator certificate refused")
	ErrFuture         = errors.New("routing: record expires too far in the future")
	ErrTableFull      = errors.New("routing: link-state database full")
)

// Signer signs with the node's ML-DSA-65 key; *identity.SigningKey is one.
type Signer interface {
	Sign(context string, msg []byte) ([]byte, error)
}

// CertVerifier checks a node certificate at a time; *meshca.Verifier is one.
type CertVerifier interface {
	Verify(c *meshca.Certificate, now time.Time) error
}

// Config configures a Router. Key, Certificate and Verifier are required; zero durations and limits
// take the defaults shown.
type Config struct {
	Key         Signer              // the node's signing key
	Certificate *meshca.Certificate // the node's mesh certificate (its key must be Key's)
	Verifier    CertVerifier        // checks originators' certificates
	Cache       *Cache              // verified records; shared by all routers of a simulation
	// Incarnation is signed into every own record: the node's boot epoch, larger at every start
	// (Unix nanoseconds of the start is the usual choice). Peers that see it grow know the node
	// restarted (Restarts). 0 leaves it unknown.
	Incarnation uint64
	// NoTransit is signed into every own record: routes may end at this node but never pass through
	// it (a node that should not relay for others).
	NoTransit bool
	// Area is the node's routing area, signed into every own record (docs/routing.md, Areas): the
	// router floods and accepts only records of its own area. 0, the default, is a mesh that is a
	// single area, and signs records every earlier release reads.
	Area uint32
	// Level2 makes this router a gateway's level-2 router (docs/routing.md, Level 2): it signs
	// level-2 records of its Area, accepts level-2 records of every area and nothing else, and
	// floods to every neighbour whatever its area. Its neighbours are the gateway's neighbours in
	// other areas and the other gateways of its area, at their level-1 distance (Metrics.Cost).
	Level2 bool
	// Gateway is signed into the records of a level-1 router whose node also runs a level-2
	// router: nodes of its area send traffic for other areas to their nearest gateway.
	Gateway bool

	RefreshInterval        time.Duration // 60 s: re-originate unchanged records this often
	Lifetime               time.Duration // 180 s: a record expires this long after origination
	MaxClockSkew           time.Duration // 60 s: refuse records expiring later than now+Lifetime+this
	MinOriginationInterval time.Duration // 100 ms: initial hold between topology-triggered records
	MaxOriginationHold     time.Duration // 5 s: the hold doubles up to this while changes keep coming
	MetricInterval         time.Duration // 2 s: at most one metric-triggered record per interval
	MinArrival             time.Duration // 50 ms: accept one new record per originator per interval
	RevalidateInterval     time.Duration // 30 s: re-check held certificates (expiry, revocation)
	CostHysteresis         float64       // 0.25: re-advertise a cost only when it moved this much
	MaxNodes               int           // 4096: most originators held
	Damping                DampingConfig // flap damping of links (damping.go); Damping.Disabled turns it off
}

func (c *Config) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RefreshInterval, 60*time.Second)
	def(&c.Lifetime, 180*time.Second)
	def(&c.MaxClockSkew, 60*time.Second)
	def(&c.MinOriginationInterval, 100*time.Millisecond)
	def(&c.MaxOriginationHold, 5*time.Second)
	def(&c.MetricInterval, 2*time.Second)
	def(&c.MinArrival, 50*time.Millisecond)
	def(&c.RevalidateInterval, 30*time.Second)
	if c.CostHysteresis <= 0 {
		c.CostHysteresis = 0.25
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = 4096
	}
	if (c.Level2 || c.Gateway) && c.Area == 0 {
		return errors.New("routing: a gateway or a level-2 router needs an area other than 0")
	}
	if c.Level2 && c.Gateway {
		return errors.New("routing: Gateway is for the level-1 router of a gateway")
	}
	if err := c.Damping.setDefaults(); err != nil {
		return err
	}
	if c.Lifetime <= c.RefreshInterval {
		return fmt.Errorf("routing: lifetime %s must exceed the refresh interval %s", c.Lifetime, c.RefreshInterval)
	}
	if c.MaxOriginationHold < c.MinOriginationInterval {
		c.MaxOriginationHold = c.MinOriginationInterval
	}
	return nil
}

// Outgoing is a message to send to a direct neighbour. Msg may be shared with other Outgoing values
// and with the router: it must not be modified.
type Outgoing struct {
	To  NodeID
	Msg []byte
}

// Stats counts what a router did. Refused and dropped messages are counted here rather than logged.
type Stats struct {
	Originated      uint64 // own records signed
	Accepted        uint64 // new records installed
	Duplicates      uint64 // same record again
	Stale           uint64 // older than the one held
	Expired         uint64 // arrived already expired
	Conflicts       uint64 // same sequence, different bytes
	TooFrequent     uint64 // newer, but inside MinArrival: dropped unacknowledged
	NeedCertificate uint64 // sent without a certificate the router lacks: dropped unacknowledged
	CertRequests    uint64 // level 2: certificates asked for
	CertAnswers     uint64 // level 2: certificates sent on request
	Offered         uint64 // level 2: records offered instead of sent
	Requested       uint64 // level 2: offered records asked for
	Busy            uint64 // requests answered Busy (this version already sent to maxAnswers neighbours)
	TableFull       uint64 // new originator refused because the LSDB is full
	Malformed       uint64
	BadSignature    uint64
	BadCertificate  uint64
	Future          uint64 // expiring too far in the future
	NotNeighbour    uint64 // message from a node that is not an up neighbour
	Retransmitted   uint64 // records sent again for lack of an acknowledgement
	AgedOut         uint64 // records removed at expiry
	Revoked         uint64 // records removed because their certificate stopped verifying
	Suppressed      uint64 // links suppressed by flap damping
	SignErrors      uint64
	AcksDropped     uint64 // acknowledgements not queued because the per-neighbour queue was full
	Restarts        uint64 // records installed with a larger incarnation than the one they replaced
	OtherArea       uint64 // records of another area refused (acknowledged, neither installed nor flooded)
	Adopted         uint64 // own records from before a restart taken back unchanged instead of re-signed
}

// Route is the way to one destination.
type Route struct {
	NextHop NodeID
	Cost    uint64 // sum of link costs
	Hops    int
}

const (
	maxRestarts = 256
	// firstRecordHold bounds how long a router of an area waits for its neighbours' summaries (and
	// its own record from before a restart) before it signs its first record.
	firstRecordHold = time.Second
	maxPendingAcks  = 4096
	// maxAnswers is how many requests for one record version (not its own) a router that pulls
	// answers within busyHold retransmission timeouts; beyond it it answers Busy and the requester
	// asks another neighbour that offered it, so that the routers holding a version first (the
	// gateways of a clique of virtual links, a level-1 hub) do not send it to every neighbour
	// (docs/routing.md, Level 2, "Answers shared", and Restarts inside an area, item 5).
	maxAnswers = 2
	// busyHold is how many retransmission timeouts a record answered Busy waits before it is sent
	// whole to that neighbour anyway, and how long the answers to one version are counted.
	busyHold           = 4
	ackDelay           = 10 * time.Millisecond // acknowledgements wait this long to be batched
	maxRetransmitBurst = 64
	throttleReset      = 10 * time.Second
)

type neighbour struct {
	id      NodeID
	metrics Metrics
	advCost uint32        // the cost this router advertises for the link
	rto     time.Duration // retransmission timeout
	adj     uint32        // current adjacency number (echoed by SummaryAcks)
	// area is the neighbour's routing area as its Summary says (0 until one arrives): records are
	// flooded only to neighbours of the router's own area.
	area uint32
	// sumSeen: its summary on this adjacency arrived (the last part, which covers the highest IDs).
	sumSeen bool

	sumParts map[uint16][]byte // summary parts not yet acknowledged; nil when none
	sumTotal uint16            // parts in this adjacency's summary
	sumDue   time.Time

	rxmtDue time.Time // no record sent to it is due for retransmission before this (zero: none)
	// sent lists the entries sent to it on this adjacency, among them every one still outstanding
	// (unacknowledged), so that a retransmission need not scan the LSDB. outstanding counts those,
	// or more (an entry superseded or removed while outstanding stays counted until the next
	// retransmission); at zero sent is emptied.
	sent        []*lsa
	outstanding int

	acks   []entry   // acknowledgements to send
	offers []entry   // level 2: records to offer it (sent with the acknowledgements)
	ackBy  time.Time // when the oldest of them must go

	// certSent: level 2, when a certificate went to it on request, by originator, so that requests
	// are answered at most once per retransmission timeout (at most MaxNodes entries).
	certSent map[NodeID]time.Time
	// answered: level 2, when a record went to it on request, by originator, so that requests are
	// answered at most once per retransmission timeout (at most MaxNodes entries).
	answered map[NodeID]time.Time
	// busyCert: level 2, the record versions it asked for with their certificates and was told
	// Busy about, by originator: if nobody else serves it, the record sent when the offer times
	// out carries the certificate, which it would otherwise ask for at once (at most MaxNodes).
	busyCert map[NodeID]uint64
}

// Router is one node's link-state routing core. It is not safe for concurrent use.
type Router struct {
	cfg    Config
	self   NodeID
	cert   *meshca.Certificate
	certFP meshca.Fingerprint
	cache  *Cache
	now    time.Time // the latest time the owner passed in

	lsdb     lsaTable
	entries  []*lsa // the same entries, sorted by origin unless unsorted (see sorted)
	unsorted bool
	byAddr   map[netip.Addr]NodeID // built on demand by NodeByAddr, for generation addrGen
	addrGen  uint64
	nbrs     map[NodeID]*neighbour
	nbl      []*neighbour          // the same neighbours, sorted by ID
	nbIDs    []NodeID              // their IDs, in the same order
	byAdj    map[uint32]*neighbour // neighbours by current adjacency number
	damp     damper                // flap penalties (damping.go)

	seq           uint64
	originated    bool
	lastOrig      time.Time
	lastTopoOrig  time.Time
	topoHold      time.Duration
	pendingTopo   bool
	pendingMetric bool
	originateNow  bool
	nextAdj       uint32
	firstLinkUp   time.Time // when the first link came up before the first own record (zero: none yet)
	nextExpiry    time.Time
	nextRevalid   time.Time

	gen      uint64 // changes whenever the graph may have changed
	spfGen   uint64
	spfValid bool
	routes   map[NodeID]Route
	reach    map[NodeID]bool

	// nbDue is the earliest of the neighbours' timers (summary, retransmission, acknowledgements;
	// zero: none), valid when nbDueOK: timers that move earlier lower it, anything else clears
	// nbDueOK, so NextDeadline, called after every message, rarely visits every neighbour.
	nbDue   time.Time
	nbDueOK bool
	// acksDue is at or before the earliest time acknowledgements must go (zero: none queued).
	acksDue time.Time

	out       []Outgoing
	restarts  []NodeID   // originators seen restarting since the last Restarts call
	endpoints []Endpoint // published in own records (SetEndpoints); never modified, only replaced
	scratch   []entry    // decoded Ack and Summary entries, reused
	stats     Stats

	// certWanted: level 2, the certificates asked for and until when the request stands, so that
	// copies arriving meanwhile from other neighbours ask nobody else (at most MaxNodes entries).
	certWanted map[meshca.Fingerprint]time.Time
	// waiting: level 2, the records asked for after an offer, by originator, with the neighbours
	// that offered the same version meanwhile (at most MaxNodes entries).
	waiting map[NodeID]*offerWait
	// kept is the router's own record from before a restart that Restore gave back, taken back
	// instead of a new record if nothing changed when the first one is due (nil: none).
	kept *Record
}

// offerWait is a record a level-2 router asked a neighbour for.
type offerWait struct {
	seq   uint64
	due   time.Time // until then, offers of it from other neighbours ask nobody else
	from  []NodeID  // neighbours that offered this version
	asked int       // the one of them asked (the next is asked when it answers Busy)
}

// New returns a router for the node whose key and certificate are in cfg. It originates its first
// record at the first Tick after the first LinkUp.
func New(cfg Config) (*Router, error) {
	if cfg.Key == nil || cfg.Certificate == nil || cfg.Verifier == nil {
		return nil, errors.New("routing: Key, Certificate and Verifier are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Certificate.Kind != meshca.KindNode || cfg.Certificate.SignPublicKey == nil {
		return nil, errors.New("routing: own certificate is not a node certificate")
	}
	self := cfg.Certificate.SignPublicKey.ID()
	if k, ok := cfg.Key.(interface{ PublicKey() *identity.VerifyKey }); ok && k.PublicKey().ID() != self {
		return nil, errors.New("routing: signing key does not match the certificate")
	}
	if cfg.Cache == nil {
		cfg.Cache = NewCache(0)
	}
	return &Router{
		cfg:    cfg,
		self:   self,
		cert:   cfg.Certificate,
		certFP: cfg.Certificate.Fingerprint(),
		cache:  cfg.Cache,
		nbrs:   make(map[NodeID]*neighbour),
		byAdj:  make(map[uint32]*neighbour),
		damp:   newDamper(cfg.Damping, cfg.MaxNodes),
		gen:    1,
	}, nil
}

// ID returns the router's own node ID.
func (r *Router) ID() NodeID { return r.self }

// Stats returns the counters.
func (r *Router) Stats() Stats { return r.stats }

// Generation changes whenever routes or the graph may have changed.
func (r *Router) Generation() uint64 { return r.gen }

// Restarts returns the nodes whose records showed a new incarnation since the last call: they
// restarted, so every session with them is gone on their side. The owner calls it after every call
// that can install records (HandleMessage), as it calls Drain; between two calls at most
// maxRestarts are kept (Stats.Restarts counts them all).
func (r *Router) Restarts() []NodeID {
	out := r.restarts
	r.restarts = nil
	return out
}

// Seq returns the sequence number of the router's latest record (0 before the first).
func (r *Router) Seq() uint64 { return r.seq }

func (r *Router) setNow(now time.Time) {
	r.now = now
}

// ---- link events ----

// LinkUp tells the router that a session with direct neighbour id is established (again): it starts
// a new adjacency and synchronises databases. Call it again after any new handshake with the same
// neighbour, since the neighbour may have restarted.
func (r *Router) LinkUp(now time.Time, id NodeID, m Metrics) {
	r.setNow(now)
	if id == r.self {
		return
	}
	nb := r.nbrs[id]
	cost := LinkCost(m)
	if nb == nil {
		nb = &neighbour{id: id, advCost: cost}
		r.nbrs[id] = nb
		i, _ := slices.BinarySearchFunc(r.nbl, id, func(x *neighbour, id NodeID) int { return cmpID(x.id, id) })
		r.nbl = slices.Insert(r.nbl, i, nb)
		r.nbIDs = slices.Insert(r.nbIDs, i, id)
		r.pendingTopo = true
	} else if m == (Metrics{}) {
		// A new session with a neighbour we had (it restarted, or rekeyed from scratch) and no
		// measurement of it yet: the last measured metrics and the advertised cost stand until
		// the first measurement, instead of the placeholder re-signing our record and theirs.
		m = nb.metrics
	} else if beyondHysteresis(nb.advCost, cost, r.cfg.CostHysteresis) {
		nb.advCost = cost
		r.pendingTopo = true
	}
	nb.metrics = m
	nb.rto = rto(m.RTT)
	nb.rxmtDue, nb.outstanding, nb.sent = time.Time{}, 0, nil
	nb.acks, nb.offers = nil, nil
	nb.sumSeen = false
	if !r.originated && r.firstLinkUp.IsZero() {
		r.firstLinkUp = now
	}
	delete(r.byAdj, nb.adj)
	r.nextAdj++
	nb.adj = r.nextAdj
	r.byAdj[nb.adj] = nb
	nb.sumParts = r.buildSummary(nb.adj)
	nb.sumTotal = uint16(len(nb.sumParts))
	for p := range nb.sumTotal {
		r.out = append(r.out, Outgoing{To: id, Msg: nb.sumParts[p]})
	}
	nb.sumDue = now.Add(nb.rto)
	r.nbDueOK = false
	r.gen++
}

// LinkDown tells the router that the session with neighbour id is gone (keepalive timeout, closed).
func (r *Router) LinkDown(now time.Time, id NodeID) {
	r.setNow(now)
	nb := r.nbrs[id]
	if nb == nil {
		return
	}
	r.dampLinkDown(now, id)
	delete(r.nbrs, id)
	delete(r.byAdj, nb.adj)
	if i, found := slices.BinarySearchFunc(r.nbl, id, func(x *neighbour, id NodeID) int { return cmpID(x.id, id) }); found {
		r.nbl = slices.Delete(r.nbl, i, i+1)
		r.nbIDs = slices.Delete(r.nbIDs, i, i+1)
	}
	r.pendingTopo = true
	r.nbDueOK = false
	r.gen++
}

// UpdateMetrics gives the router new smoothed measurements of the link to neighbour id. A cost change
// beyond the hysteresis triggers a (rate-limited) new record.
func (r *Router) UpdateMetrics(now time.Time, id NodeID, m Metrics) {
	r.setNow(now)
	nb := r.nbrs[id]
	if nb == nil {
		return
	}
	nb.metrics = m
	nb.rto = rto(m.RTT)
	if c := LinkCost(m); beyondHysteresis(nb.advCost, c, r.cfg.CostHysteresis) {
		nb.advCost = c
		r.pendingMetric = true
	}
}

// Neighbours returns the IDs of the neighbours that are up, sorted.
func (r *Router) Neighbours() []NodeID {
	ids := make([]NodeID, len(r.nbl))
	for i, nb := range r.nbl {
		ids[i] = nb.id
	}
	return ids
}

// SetCertificate replaces the node's own certificate (after renewal) and re-originates at once.
func (r *Router) SetCertificate(now time.Time, cert *meshca.Certificate) error {
	r.setNow(now)
	if cert == nil || cert.Kind != meshca.KindNode || cert.SignPublicKey == nil || cert.SignPublicKey.ID() != r.self {
		return errors.New("routing: new certificate is not for this node's key")
	}
	if err := r.cfg.Verifier.Verify(cert, now); err != nil {
		return fmt.Errorf("routing: new certificate: %w", err)
	}
	r.cert, r.certFP = cert, cert.Fingerprint()
	r.originateNow = true
	return nil
}

// ---- messages ----

// HandleMessage processes a routing message from direct neighbour from. The router keeps no
// reference to msg (what it keeps, it copies), so the caller may reuse the buffer. Errors report why
// a message was refused; they need no action beyond, perhaps, accounting against the neighbour.
func (r *Router) HandleMessage(now time.Time, from NodeID, msg []byte) error {
	r.setNow(now)
	nb := r.neighbour(from)
	if nb == nil {
		r.stats.NotNeighbour++
		return ErrNotNeighbour
	}
	m, err := parseMessageInto(msg, r.scratch)
	if err != nil {
		r.stats.Malformed++
		return err
	}
	if cap(m.entries) > cap(r.scratch) {
		r.scratch = m.entries[:0]
	}
	switch m.typ {
	case MsgRecord:
		return r.handleRecord(now, nb, m.cert, m.record)
	case MsgCertRequest:
		r.handleCertRequest(now, nb, m.lo, m.certFP)
	case MsgOffer:
		if r.pulls() {
			r.handleOffer(now, nb, m.entries)
		}
	case MsgRequest, MsgRequestCert:
		if r.pulls() {
			r.handleRequest(now, nb, m.entries, m.typ == MsgRequestCert)
		}
	case MsgBusy:
		if r.pulls() {
			r.handleBusy(now, nb, m.entries)
		}
	case MsgAck:
		// Look the entries up a chunk at a time before touching them: independent lookups let the
		// processor overlap their cache misses.
		var ls [32]*lsa
		for es := m.entries; len(es) > 0; es = es[min(len(es), len(ls)):] {
			chunk := es[:min(len(es), len(ls))]
			for i := range chunk {
				ls[i] = r.lsdb.get(chunk[i].origin)
			}
			for i, e := range chunk {
				if l := ls[i]; l != nil && l.seq <= e.seq {
					r.clearPending(l, nb)
					if l.seq == e.seq && r.areaPull() {
						r.addHolder(l, nb.adj) // it holds this version, so its certificate
					}
				}
			}
		}
	case MsgSummary, MsgAreaSummary:
		r.handleSummary(now, nb, m)
	case MsgSummaryAck:
		if m.adj == nb.adj {
			delete(nb.sumParts, m.part)
			if len(nb.sumParts) == 0 {
				nb.sumParts = nil // NextDeadline, called after every message, need not look into the map
				r.nbDueOK = false
			}
		}
	}
	return nil
}

func (r *Router) ack(nb *neighbour, origin NodeID, seq uint64) {
	if len(nb.acks) >= maxPendingAcks {
		r.stats.AcksDropped++
		return
	}
	r.queueEntry(nb, &nb.acks, entry{origin, seq})
}

// queueEntry queues an acknowledgement or an offer for nb; both wait up to ackDelay to be batched.
func (r *Router) queueEntry(nb *neighbour, list *[]entry, e entry) {
	if len(nb.acks) == 0 && len(nb.offers) == 0 {
		nb.ackBy = r.now.Add(ackDelay)
		r.lowerNbDue(nb.ackBy)
		if r.acksDue.IsZero() || nb.ackBy.Before(r.acksDue) {
			r.acksDue = nb.ackBy
		}
	}
	*list = append(*list, e)
}

// neighbour returns the up neighbour id, or nil. With a few neighbours a scan of their IDs, which sit
// together in memory, is cheaper than the map.
func (r *Router) neighbour(id NodeID) *neighbour {
	if len(r.nbIDs) > 16 {
		return r.nbrs[id]
	}
	for i := range r.nbIDs {
		if r.nbIDs[i] == id {
			return r.nbl[i]
		}
	}
	return nil
}

// ackedBy treats a copy of l's record received from nb (so nb holds it and its certificate) as nb's
// acknowledgement.
func (r *Router) ackedBy(nb *neighbour, l *lsa) {
	r.clearPending(l, nb)
	r.addHolder(l, nb.adj)
}

func (r *Router) handleRecord(now time.Time, nb *neighbour, certRaw, raw []byte) error {
	h, ok := peekRecord(raw)
	if !ok {
		r.stats.Malformed++
		return fmt.Errorf("%w: record header", ErrMalformed)
	}
	if !r.accepts(h) {
		// A record of another area (a neighbour across a border, or a node lying about its area)
		// or of the other level: it has no place in this database, so it is neither verified nor
		// flooded.
		r.stats.OtherArea++
		r.ack(nb, h.origin, h.seq)
		return nil
	}
	if h.origin == r.self {
		return r.handleOwnRecord(now, nb, h, certRaw, raw)
	}
	expires := time.UnixMilli(h.expires)
	if !expires.After(now) {
		r.stats.Expired++
		r.ack(nb, h.origin, h.seq)
		return nil
	}
	if expires.After(now.Add(r.cfg.Lifetime + r.cfg.MaxClockSkew)) {
		r.stats.Future++
		r.ack(nb, h.origin, h.seq)
		return fmt.Errorf("%w: %s", ErrFuture, expires.UTC().Format(time.RFC3339))
	}
	cur := r.lsdb.get(h.origin)
	if cur != nil {
		switch {
		case h.seq < cur.seq:
			r.stats.Stale++
			r.ack(nb, h.origin, h.seq)
			if cur.rec.Expires.After(now) {
				r.sendRecord(nb, cur, now, false) // nb is behind: give it ours
			}
			return nil
		case h.seq == cur.seq:
			if sameBytes(raw, cur.rec) {
				r.stats.Duplicates++
				r.ackedBy(nb, cur)
				r.ack(nb, h.origin, h.seq)
				return nil
			}
			// Only an originator that signed twice with one sequence number gets here. Every router
			// keeps the encoding with the larger hash, so all databases agree.
			r.stats.Conflicts++
			if hash := sha256.Sum256(raw); bytes.Compare(hash[:], cur.rec.hash[:]) <= 0 {
				r.ack(nb, h.origin, h.seq)
				r.sendRecord(nb, cur, now, false)
				return nil
			}
		}
		if now.Sub(cur.arrival) < r.cfg.MinArrival {
			r.stats.TooFrequent++
			return nil // unacknowledged: nb sends it again after its retransmission timeout
		}
	} else if r.lsdb.len() >= r.cfg.MaxNodes {
		r.stats.TableFull++
		r.ack(nb, h.origin, h.seq)
		return ErrTableFull
	}

	cert, held, err := r.resolveCert(nb, h, cur, certRaw)
	if err != nil {
		return err
	}
	if cert == nil {
		r.stats.NeedCertificate++
		if r.pulls() {
			r.requestCert(now, nb, h)
		}
		return nil // unacknowledged: the retransmission (level 1) or the answer (level 2) carries the certificate
	}
	// The certificate of the held record was checked when that record was installed and is
	// re-checked by Revalidate; any other is checked now.
	if !held {
		if err := r.checkCert(cert, now); err != nil {
			r.stats.BadCertificate++
			r.ack(nb, h.origin, h.seq)
			return err
		}
	}
	rec, err := r.cache.verify(raw, cert)
	if err != nil {
		if errors.Is(err, ErrBadSignature) {
			r.stats.BadSignature++
			r.ack(nb, h.origin, h.seq)
		} else {
			r.stats.Malformed++
		}
		return err
	}
	r.ack(nb, h.origin, h.seq)
	r.install(now, rec, nb, cur)
	return nil
}

// resolveCert finds the originator's certificate: the one attached, or the one already held with the
// record's fingerprint (held is then true). It returns a nil certificate and no error when the
// certificate is unknown and not attached. A returned certificate is for the record's originator.
func (r *Router) resolveCert(nb *neighbour, h recordHead, cur *lsa, certRaw []byte) (cert *meshca.Certificate, held bool, err error) {
	// A certificate is named by its SHA-256 fingerprint, which the record signs: holding one with
	// that fingerprint makes an attached copy redundant (and a corrupt one harmless).
	if cur != nil && cur.rec.CertFingerprint == h.certFP {
		return cur.rec.cert, true, nil
	}
	if certRaw == nil {
		return nil, false, nil
	}
	cert, id, err := r.cache.certificate(h.certFP, certRaw)
	if err == nil && id != h.origin {
		err = errors.New("certificate is not for the record's originator")
	}
	if err != nil {
		r.stats.BadCertificate++
		r.ack(nb, h.origin, h.seq)
		return nil, false, fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
	return cert, false, nil
}

func (r *Router) checkCert(cert *meshca.Certificate, now time.Time) error {
	if err := r.cfg.Verifier.Verify(cert, now); err != nil {
		return fmt.Errorf("%w: %w", ErrBadCertificate, err)
	}
	return nil
}

// accepts reports whether a record belongs in this router's database: level 1 holds the records of
// its own area, level 2 the level-2 records of every area.
func (r *Router) accepts(h recordHead) bool {
	if r.cfg.Level2 {
		return h.level2
	}
	return !h.level2 && h.area == r.cfg.Area
}

// pulls reports whether the router synchronises by digest (offers, requests): level 2 for flooding
// and synchronisation, level-1 routers of an area other than 0 for synchronisation only (docs/
// routing.md, Restarts inside an area). Area 0 pushes, as earlier releases do.
func (r *Router) pulls() bool { return r.cfg.Level2 || r.cfg.Area != 0 }

// areaPull reports whether the router is a level-1 router of an area other than 0, which lets its
// neighbours pull what they hold no record of (offers, certificates on request), holds its first
// record for its neighbours' digests and takes back an unchanged own record after a restart
// (docs/routing.md, Restarts inside an area, and Level 1: pulling first records).
func (r *Router) areaPull() bool { return !r.cfg.Level2 && r.cfg.Area != 0 }

// floodsTo reports whether records are flooded to a neighbour: at level 1 only inside the area, at
// level 2 to every neighbour.
func (r *Router) floodsTo(nb *neighbour) bool {
	if r.cfg.Level2 {
		return !nb.metrics.NoFlood
	}
	return nb.area == r.cfg.Area
}

// handleOwnRecord deals with a copy of one of our own records: an echo of the current one, an older
// one, or one from a previous incarnation with a sequence number at or above ours.
func (r *Router) handleOwnRecord(now time.Time, nb *neighbour, h recordHead, certRaw, raw []byte) error {
	cur := r.lsdb.get(r.self)
	if cur != nil && h.seq == cur.seq && sameBytes(raw, cur.rec) {
		r.stats.Duplicates++
		r.ackedBy(nb, cur)
		r.ack(nb, h.origin, h.seq)
		return nil
	}
	if cur != nil && h.seq < cur.seq {
		r.stats.Stale++
		r.ack(nb, h.origin, h.seq)
		r.sendRecord(nb, cur, now, false)
		return nil
	}
	if cur == nil && r.keeps(h.seq) {
		r.stats.Duplicates++
		r.ack(nb, h.origin, h.seq)
		return nil
	}
	// As new as ours or newer: check it is really ours (not a forgery) before jumping over it.
	rec, err := r.verifyOwn(h, raw)
	if err != nil {
		if errors.Is(err, ErrBadSignature) {
			r.ack(nb, h.origin, h.seq)
		}
		return err
	}
	r.ack(nb, h.origin, h.seq)
	if w := r.waiting[r.self]; w != nil && w.seq <= h.seq {
		delete(r.waiting, r.self)
	}
	if rec != nil && r.adopt(now, nb, rec) {
		return nil
	}
	r.seq = max(r.seq, h.seq)
	r.originateNow = true
	return nil
}

// verifyOwn checks a record that names the router as its originator with the router's own key.
// The cache remembers forgeries, so replaying one costs no second verification; it is used only
// when the record names our current certificate, the one its parsed form is then tied to, and only
// then is the record returned (nil otherwise: it names an earlier certificate, and only its
// sequence number counts). Refusals are counted.
func (r *Router) verifyOwn(h recordHead, raw []byte) (*Record, error) {
	var err error
	var rec *Record
	if h.certFP == r.certFP {
		rec, err = r.cache.verify(raw, r.cert)
	} else {
		var old *Record
		if old, err = ParseRecord(raw); err == nil {
			if err = r.cert.SignPublicKey.Verify(SignatureContext, old.tbs(), old.Signature); err != nil {
				err = fmt.Errorf("%w: %w", ErrBadSignature, err)
			}
		}
	}
	if err != nil {
		if errors.Is(err, ErrBadSignature) {
			r.stats.BadSignature++
		} else {
			r.stats.Malformed++
		}
		return nil, err
	}
	return rec, nil
}

// adopt takes back rec, the router's own record from before a restart, verified with its own key,
// instead of signing a new one, when it says what the router would sign now: the same certificate,
// area, flags and endpoints, and links to exactly the neighbours that are up at costs within the
// hysteresis of what it advertises (docs/routing.md, Restarts inside an area). The periodic refresh
// then comes when it would have without the restart, and carries the new incarnation.
func (r *Router) adopt(now time.Time, from *neighbour, rec *Record) bool {
	origination := rec.Expires.Add(-r.cfg.Lifetime)
	if !r.areaPull() || r.originated || r.originateNow || r.pendingMetric ||
		!now.Before(origination.Add(r.cfg.RefreshInterval)) || origination.After(now) ||
		rec.CertFingerprint != r.certFP || rec.Area != r.cfg.Area || rec.Level2 || rec.Gateway != r.cfg.Gateway ||
		rec.NoTransit != r.cfg.NoTransit || !slices.Equal(rec.Endpoints, r.endpoints) {
		return false
	}
	links := r.localLinks()
	if len(links) != len(rec.Links) || len(links) != len(r.nbl) {
		return false
	}
	for i, l := range links {
		// A link not measured yet (a node brings a link up before its first probe answers) has
		// only the placeholder cost of no measurement: the record's cost is the last measured,
		// and the first measurement beyond the hysteresis of it re-signs, as for any link.
		measured := r.nbl[i].metrics != (Metrics{})
		if l.Neighbour != rec.Links[i].Neighbour || measured && beyondHysteresis(rec.Links[i].Cost, l.Cost, r.cfg.CostHysteresis) {
			return false
		}
	}
	for i, nb := range r.nbl { // r.nbl and links are both sorted by neighbour
		nb.advCost = rec.Links[i].Cost
	}
	r.seq = rec.Seq
	r.originated, r.lastOrig = true, origination
	r.pendingTopo = false
	r.stats.Adopted++
	l := newLSA(rec, now, nil)
	r.put(l, nil)
	if from != nil {
		r.ackedBy(from, l)
	}
	return true
}

// install puts a verified record into the LSDB in place of old (the entry held until now, or nil)
// and floods it to every neighbour except from and the originator.
func (r *Router) install(now time.Time, rec *Record, from *neighbour, old *lsa) {
	if old != nil && rec.Incarnation > old.rec.Incarnation {
		r.stats.Restarts++
		if len(r.restarts) < maxRestarts && !slices.Contains(r.restarts, rec.Origin) {
			r.restarts = append(r.restarts, rec.Origin)
		}
	}
	l := newLSA(rec, now, old)
	r.put(l, old)
	if r.out == nil {
		r.out = make([]Outgoing, 0, len(r.nbl)+1)
	}
	if r.nextExpiry.IsZero() || rec.Expires.Before(r.nextExpiry) {
		r.nextExpiry = rec.Expires
	}
	r.stats.Accepted++
	var offeredBy []NodeID // level 2: neighbours that offered this version while it was asked for
	if w := r.waiting[rec.Origin]; w != nil {
		if w.seq == rec.Seq {
			offeredBy = w.from
		}
		delete(r.waiting, rec.Origin)
	}
	for _, nb := range r.nbl {
		switch {
		case nb == from:
			r.addHolder(l, nb.adj)
		case nb.id == rec.Origin, !r.floodsTo(nb):
			// The originator has it (or something newer); a neighbour of another area refuses it.
		case slices.Contains(offeredBy, nb.id):
			r.addHolder(l, nb.adj) // it has it: acknowledge its offer instead of offering it back
			r.ack(nb, rec.Origin, rec.Seq)
		case r.cfg.Level2, r.areaPull() && !l.holds(nb.adj):
			r.offerRecord(nb, l, now)
		default:
			r.sendRecord(nb, l, now, false)
		}
	}
}

// offerRecord offers l to nb (level 2): nb asks for it if it lacks it and acknowledges it if not.
// It stays outstanding as a sent record does, so that a lost offer, request or answer ends in the
// record itself being sent when the retransmission timer fires.
func (r *Router) offerRecord(nb *neighbour, l *lsa, now time.Time) {
	due := now.Add(nb.rto + 2*ackDelay) // the offer and the acknowledgement each wait to be batched
	r.setPending(l, nb, due)
	if nb.rxmtDue.IsZero() || due.Before(nb.rxmtDue) {
		nb.rxmtDue = due
		r.lowerNbDue(due)
	}
	if len(nb.offers) >= maxPendingAcks {
		return // sent whole when the timer fires
	}
	r.stats.Offered++
	r.queueEntry(nb, &nb.offers, entry{l.origin, l.seq})
}

// handleOffer asks nb for the offered records the router lacks, unless it asked another neighbour
// for the same version less than a retransmission timeout ago, and acknowledges those it holds.
func (r *Router) handleOffer(now time.Time, nb *neighbour, es []entry) {
	var req, reqCert []entry // the second for originators it holds no record of, so no certificate
	for _, e := range es {
		if e.origin == r.self && r.keeps(e.seq) {
			r.ack(nb, e.origin, e.seq)
			continue
		}
		l := r.lsdb.get(e.origin)
		if l != nil && l.seq >= e.seq {
			r.ack(nb, e.origin, e.seq)
			if l.seq == e.seq {
				r.addHolder(l, nb.adj)
				r.clearPending(l, nb) // it has what we would have offered
			}
			continue
		}
		if w := r.waiting[e.origin]; w != nil && w.seq >= e.seq && now.Before(w.due) {
			if w.seq == e.seq && !slices.Contains(w.from, nb.id) && len(w.from) < len(r.nbl) {
				w.from = append(w.from, nb.id)
			}
			continue
		}
		if r.waiting == nil {
			r.waiting = make(map[NodeID]*offerWait)
		}
		if _, held := r.waiting[e.origin]; !held && len(r.waiting) >= r.cfg.MaxNodes {
			maps.DeleteFunc(r.waiting, func(_ NodeID, w *offerWait) bool { return !now.Before(w.due) })
			if len(r.waiting) >= r.cfg.MaxNodes {
				continue // nb sends it whole when its timer fires
			}
		}
		r.waiting[e.origin] = &offerWait{seq: e.seq, due: now.Add(nb.rto), from: []NodeID{nb.id}}
		if l == nil && e.origin != r.self {
			reqCert = append(reqCert, e)
		} else {
			req = append(req, e)
		}
	}
	r.stats.Requested += uint64(len(req) + len(reqCert))
	for _, q := range [...]struct {
		typ byte
		es  []entry
	}{{MsgRequest, req}, {MsgRequestCert, reqCert}} {
		for typ, es := q.typ, q.es; len(es) > 0; {
			k := min(len(es), MaxEntries)
			r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeEntries(typ, es[:k])})
			es = es[k:]
		}
	}
}

// handleRequest sends nb the records it asked for, with their certificates if it asked so, each at
// most once per retransmission timeout (a request of 40 bytes per record cannot make the router send
// a record more often than its own retransmissions would).
func (r *Router) handleRequest(now time.Time, nb *neighbour, es []entry, withCert bool) {
	var busy []entry
	for _, e := range es {
		l := r.lsdb.get(e.origin)
		if l == nil || l.seq < e.seq || !l.rec.Expires.After(now) || !r.floodsTo(nb) {
			continue
		}
		if !r.oncePerRTO(&nb.answered, nb, e.origin, now) {
			continue
		}
		if !now.Before(l.answersFrom.Add(busyHold * nb.rto)) {
			// The neighbours answered then have long offered it on: a request now (a restart, a
			// new link) is not sent round the others by a count left from the cold start.
			l.answers, l.answersFrom = 0, now
		}
		if l.answers >= maxAnswers && l.origin != r.self && (r.cfg.Level2 || r.holderLinkedTo(l, nb)) {
			// The record stays offered (outstanding) to nb: if nobody else gives it to nb, the
			// retransmission timer sends it whole, but only after the neighbours it did answer
			// have had time to install and offer it (busyHold retransmission timeouts).
			busy = append(busy, entry{l.origin, l.seq})
			if l.pendingTo(nb.adj) >= 0 {
				r.setPending(l, nb, now.Add(busyHold*nb.rto))
				if withCert && r.cfg.Level2 {
					if nb.busyCert == nil {
						nb.busyCert = make(map[NodeID]uint64)
					}
					if _, ok := nb.busyCert[l.origin]; ok || len(nb.busyCert) < r.cfg.MaxNodes {
						nb.busyCert[l.origin] = l.seq
					}
				}
			}
			continue
		}
		l.answers++
		r.queueRecord(nb, l, now, false, withCert)
	}
	if len(busy) > 0 {
		r.stats.Busy += uint64(len(busy))
		r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeEntries(MsgBusy, busy)})
	}
}

// holderLinkedTo reports whether nb's record lists a link to another neighbour known to hold l (one
// the router answered, or the one it came from): that neighbour offers it to nb within a round trip,
// so a Busy answer costs nb that round trip rather than the wait for the retransmission timer. A
// level-1 router answers Busy only then; a leaf on a hub is answered at once.
func (r *Router) holderLinkedTo(l *lsa, nb *neighbour) bool {
	rec := r.lsdb.get(nb.id)
	if rec == nil {
		return false
	}
	for _, adj := range l.holders {
		h := r.byAdj[adj]
		if h == nil || h == nb {
			continue
		}
		if _, ok := slices.BinarySearchFunc(rec.rec.Links, h.id, func(li LinkInfo, id NodeID) int { return cmpID(li.Neighbour, id) }); ok {
			return true
		}
	}
	return false
}

// handleBusy asks the next neighbour that offered each record nb will not send now; when none
// is left, the next offer asks at once (and nb's retransmission timer still sends the record).
func (r *Router) handleBusy(now time.Time, nb *neighbour, es []entry) {
	type ask struct {
		to           *neighbour
		req, reqCert []entry
	}
	var asks []ask
	for _, e := range es {
		w := r.waiting[e.origin]
		if w == nil || w.seq != e.seq || w.asked >= len(w.from) || w.from[w.asked] != nb.id {
			continue
		}
		w.asked++
		for w.asked < len(w.from) && r.neighbour(w.from[w.asked]) == nil {
			w.asked++
		}
		if w.asked == len(w.from) {
			w.due = now
			continue
		}
		next := r.neighbour(w.from[w.asked])
		w.due = now.Add(next.rto)
		i := slices.IndexFunc(asks, func(a ask) bool { return a.to == next })
		if i < 0 {
			asks = append(asks, ask{to: next})
			i = len(asks) - 1
		}
		if r.lsdb.get(e.origin) == nil && e.origin != r.self {
			asks[i].reqCert = append(asks[i].reqCert, e)
		} else {
			asks[i].req = append(asks[i].req, e)
		}
	}
	for _, a := range asks {
		r.stats.Requested += uint64(len(a.req) + len(a.reqCert))
		if len(a.req) > 0 {
			r.out = append(r.out, Outgoing{To: a.to.id, Msg: encodeEntries(MsgRequest, a.req)})
		}
		if len(a.reqCert) > 0 {
			r.out = append(r.out, Outgoing{To: a.to.id, Msg: encodeEntries(MsgRequestCert, a.reqCert)})
		}
	}
}

// sendRecord queues l for nb and keeps it pending until nb acknowledges it. At level 1 the
// certificate goes along when nb is not known to hold it, and always on retransmission; at level 2
// only when nb asks for it (handleCertRequest).
func (r *Router) sendRecord(nb *neighbour, l *lsa, now time.Time, retransmission bool) {
	var withCert bool
	switch {
	case r.cfg.Level2: // only on request, or told Busy after a request for it (busyCert)
		if seq, ok := nb.busyCert[l.origin]; ok && retransmission {
			withCert = seq == l.seq
			delete(nb.busyCert, l.origin)
		}
	case r.areaPull(): // on request, and on the retransmission of an offer nobody asked for
		withCert = retransmission && !l.holds(nb.adj)
	default:
		withCert = retransmission || !l.holds(nb.adj)
	}
	r.queueRecord(nb, l, now, retransmission, withCert)
}

func (r *Router) queueRecord(nb *neighbour, l *lsa, now time.Time, retransmission, withCert bool) {
	r.out = append(r.out, Outgoing{To: nb.id, Msg: l.rec.message(withCert)})
	r.addHolder(l, nb.adj)
	due := now.Add(nb.rto)
	r.setPending(l, nb, due)
	if nb.rxmtDue.IsZero() || due.Before(nb.rxmtDue) {
		nb.rxmtDue = due
		r.lowerNbDue(due)
	}
	if retransmission {
		r.stats.Retransmitted++
	}
}

// requestCert asks nb for the certificate of the record h it sent without one, unless a request
// for that certificate already stands: the copies other neighbours send meanwhile stay
// unacknowledged and are acknowledged by the flood once the record is installed.
func (r *Router) requestCert(now time.Time, nb *neighbour, h recordHead) {
	if due, ok := r.certWanted[h.certFP]; ok && now.Before(due) {
		return
	}
	if r.certWanted == nil {
		r.certWanted = make(map[meshca.Fingerprint]time.Time)
	}
	if len(r.certWanted) >= r.cfg.MaxNodes {
		maps.DeleteFunc(r.certWanted, func(_ meshca.Fingerprint, due time.Time) bool { return !now.Before(due) })
		if len(r.certWanted) >= r.cfg.MaxNodes {
			return // asked again by the next copy, once requests expire
		}
	}
	r.certWanted[h.certFP] = now.Add(nb.rto)
	r.stats.CertRequests++
	r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeCertRequest(h.origin, h.certFP)})
}

// handleCertRequest sends nb the held record of origin with its certificate, when that record
// names the certificate asked for, at most once per retransmission timeout per originator: a
// request costs 65 bytes and its answer some 10 KB.
func (r *Router) handleCertRequest(now time.Time, nb *neighbour, origin NodeID, fp meshca.Fingerprint) {
	l := r.lsdb.get(origin)
	if !r.pulls() || l == nil || l.rec.CertFingerprint != fp || !l.rec.Expires.After(now) || !r.floodsTo(nb) {
		return
	}
	if !r.oncePerRTO(&nb.certSent, nb, origin, now) {
		return
	}
	r.stats.CertAnswers++
	r.queueRecord(nb, l, now, false, true)
}

// oncePerRTO reports whether an answer to nb about origin may go now, at most one per nb's
// retransmission timeout, and notes it in *sent (at most MaxNodes entries; when full, the answer
// waits for entries to expire).
func (r *Router) oncePerRTO(sent *map[NodeID]time.Time, nb *neighbour, origin NodeID, now time.Time) bool {
	if t, ok := (*sent)[origin]; ok && now.Before(t.Add(nb.rto)) {
		return false
	}
	if *sent == nil {
		*sent = make(map[NodeID]time.Time)
	}
	if len(*sent) >= r.cfg.MaxNodes {
		maps.DeleteFunc(*sent, func(_ NodeID, t time.Time) bool { return !now.Before(t.Add(nb.rto)) })
		if len(*sent) >= r.cfg.MaxNodes {
			return false
		}
	}
	(*sent)[origin] = now
	return true
}

// ---- database synchronisation ----

// buildSummary splits the LSDB's (origin, sequence) pairs into parts of at most MaxEntries, each
// covering a contiguous range of origins; together they cover every possible ID.
func (r *Router) buildSummary(adj uint32) map[uint16][]byte {
	ids := r.sortedIDs()
	parts := make(map[uint16][]byte)
	var lo NodeID
	for p := 0; ; p++ {
		n := min(len(ids), MaxEntries)
		es := make([]entry, n)
		for i, id := range ids[:n] {
			es[i] = entry{id, r.lsdb.get(id).rec.Seq}
		}
		ids = ids[n:]
		hi := maxID
		if len(ids) > 0 {
			hi = es[n-1].origin
		}
		parts[uint16(p)] = encodeSummary(r.cfg.Area, adj, uint16(p), lo, hi, es)
		if len(ids) == 0 {
			return parts
		}
		lo = incID(hi)
	}
}

// maxID is the highest node ID, the upper end of a summary's last part.
var maxID = func() (id NodeID) {
	for i := range id {
		id[i] = 0xff
	}
	return id
}()

func incID(id NodeID) NodeID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

// sortedIDs returns the originators of unexpired LSDB entries, sorted.
func (r *Router) sortedIDs() []NodeID {
	ids := make([]NodeID, 0, len(r.entries))
	for _, l := range r.sorted() {
		if l.rec.Expires.After(r.now) {
			ids = append(ids, l.rec.Origin)
		}
	}
	return ids
}

// handleSummary sends nb every record in the summary's range that nb lacks or holds an older
// version of, and acknowledges the part.
func (r *Router) handleSummary(now time.Time, nb *neighbour, m message) {
	r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeSummaryAck(m.adj, m.part)})
	nb.area = m.area
	if m.hi == maxID && !nb.sumSeen {
		nb.sumSeen = true
		r.nbDueOK = false // a held first record may be due now
	}
	if !r.floodsTo(nb) {
		return // a border link: nothing of this area goes across it
	}
	if r.areaPull() {
		// Our own record from before a restart: ask for it at once, so that the first record waits
		// for it and takes it back if nothing changed (adopt).
		if j, found := slices.BinarySearchFunc(m.entries, r.self, func(e entry, id NodeID) int { return cmpID(e.origin, id) }); found && m.entries[j].seq > r.seq {
			r.handleOffer(now, nb, []entry{m.entries[j]})
		}
	}
	i, _ := r.entryIndex(m.lo)
	for _, l := range r.entries[i:] {
		id := l.rec.Origin
		if cmpID(id, m.hi) > 0 {
			break
		}
		if !l.rec.Expires.After(now) {
			continue
		}
		j, found := slices.BinarySearchFunc(m.entries, id, func(e entry, id NodeID) int { return cmpID(e.origin, id) })
		switch {
		case !found && r.cfg.Level2:
			r.queueRecord(nb, l, now, false, true) // it holds nothing of this originator: nor its certificate
		case (!found || m.entries[j].seq < l.rec.Seq) && r.areaPull():
			r.offerRecord(nb, l, now) // it asks for it from one of the neighbours that offer it
		case !found || m.entries[j].seq < l.rec.Seq:
			r.sendRecord(nb, l, now, false)
		case m.entries[j].seq == l.rec.Seq:
			r.addHolder(l, nb.adj)
		}
	}
}

// ---- timers ----

// originationDue returns when the next own record is due; ok is false when none is (a router that
// has never had a neighbour has nobody to tell anything).
func (r *Router) originationDue() (due time.Time, ok bool) {
	if r.originateNow {
		return r.now, true
	}
	if !r.originated {
		if len(r.nbl) == 0 {
			return r.now, false
		}
		if hold := r.firstLinkUp.Add(firstRecordHold); r.areaPull() && r.now.Before(hold) && r.awaitingDigests() {
			return hold, true
		}
		return r.now, true
	}
	due = r.lastOrig.Add(r.cfg.RefreshInterval)
	if r.pendingTopo {
		t := r.lastOrig.Add(r.cfg.MinOriginationInterval)
		if !r.lastTopoOrig.IsZero() {
			if u := r.lastTopoOrig.Add(r.topoHold); u.After(t) {
				t = u
			}
		}
		due = minTime(due, t)
	}
	if r.pendingMetric {
		due = minTime(due, r.lastOrig.Add(r.cfg.MetricInterval))
	}
	return due, true
}

// awaitingDigests reports whether a neighbour that is up has not sent its summary yet, the
// router's own record from before a restart has been asked for and has not arrived, or a
// neighbour its kept own record lists (Restore) is not up yet: links come up one handshake at a
// time, and the record can only be taken back once they all are.
func (r *Router) awaitingDigests() bool {
	for _, nb := range r.nbl {
		if !nb.sumSeen {
			return true
		}
	}
	if r.kept != nil {
		for _, l := range r.kept.Links {
			if r.nbrs[l.Neighbour] == nil {
				return true
			}
		}
	}
	w := r.waiting[r.self]
	return w != nil && r.now.Before(w.due)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// NextDeadline returns the time by which Tick must next be called. Calling Tick earlier or more often
// is harmless.
func (r *Router) NextDeadline() time.Time {
	d, ok := r.originationDue()
	if !ok {
		d = r.now.Add(r.cfg.RefreshInterval) // nothing due: check back now and then
	}
	if !r.nextExpiry.IsZero() {
		d = minTime(d, r.nextExpiry)
	}
	if !r.nextRevalid.IsZero() {
		d = minTime(d, r.nextRevalid)
	}
	if !r.damp.due.IsZero() {
		d = minTime(d, r.damp.due)
	}
	if !r.nbDueOK {
		r.nbDue, r.nbDueOK = time.Time{}, true
		for _, nb := range r.nbl {
			if nb.sumParts != nil {
				r.lowerNbDue(nb.sumDue)
			}
			if !nb.rxmtDue.IsZero() {
				r.lowerNbDue(nb.rxmtDue)
			}
			if len(nb.acks) > 0 || len(nb.offers) > 0 {
				r.lowerNbDue(nb.ackBy)
			}
		}
	}
	if !r.nbDue.IsZero() {
		d = minTime(d, r.nbDue)
	}
	return d
}

// lowerNbDue notes that a neighbour's timer now fires at t.
func (r *Router) lowerNbDue(t time.Time) {
	if r.nbDueOK && (r.nbDue.IsZero() || t.Before(r.nbDue)) {
		r.nbDue = t
	}
}

// Tick runs the timers: origination (triggered, rate-limited and periodic), retransmissions, expiry
// and certificate revalidation.
func (r *Router) Tick(now time.Time) {
	r.setNow(now)
	if !r.nextExpiry.IsZero() && !now.Before(r.nextExpiry) {
		r.expire(now)
	}
	if r.nextRevalid.IsZero() {
		r.nextRevalid = now.Add(r.cfg.RevalidateInterval)
	} else if !now.Before(r.nextRevalid) {
		r.Revalidate(now)
	}
	r.dampTick(now)
	if due, ok := r.originationDue(); ok && !now.Before(due) && !r.adoptKept(now) {
		r.originate(now)
	}
	for _, nb := range r.nbl {
		if nb.sumParts != nil && !now.Before(nb.sumDue) {
			for p := range nb.sumTotal {
				if msg, ok := nb.sumParts[p]; ok {
					r.out = append(r.out, Outgoing{To: nb.id, Msg: msg})
				}
			}
			nb.sumDue = now.Add(nb.rto)
			r.nbDueOK = false
		}
		if !nb.rxmtDue.IsZero() && !now.Before(nb.rxmtDue) {
			r.retransmit(now, nb)
		}
	}
}

func (r *Router) retransmit(now time.Time, nb *neighbour) {
	// The entries still outstanding to nb, in origin order (the order of a scan of the LSDB).
	var out []*lsa
	for _, l := range nb.sent {
		if !l.gone && l.pendingTo(nb.adj) >= 0 {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b *lsa) int { return cmpID(a.origin, b.origin) })
	out = slices.Compact(out) // an entry sent again after an acknowledgement is listed twice
	next, sent := time.Time{}, 0
	kept := nb.sent[:0]
	for _, l := range out {
		k := l.pendingTo(nb.adj)
		if !l.rec.Expires.After(now) {
			l.pending = slices.Delete(l.pending, k, k+1)
			continue
		}
		p := &l.pending[k]
		if !now.Before(p.due) {
			if sent < maxRetransmitBurst {
				r.sendRecord(nb, l, now, true) // updates p.due
				sent++
			} else {
				p.due = now.Add(nb.rto / 4)
			}
		}
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
		kept = append(kept, l)
	}
	clear(nb.sent[len(kept):])
	nb.sent = kept
	nb.rxmtDue, nb.outstanding = next, len(kept)
	r.nbDueOK = false
}

// expire removes records that have expired.
func (r *Router) expire(now time.Time) {
	r.nextExpiry = time.Time{}
	for _, l := range slices.Clone(r.sorted()) {
		if l.rec.Origin == r.self {
			continue
		}
		if !l.rec.Expires.After(now) {
			r.remove(l.rec.Origin)
			r.stats.AgedOut++
			continue
		}
		if r.nextExpiry.IsZero() || l.rec.Expires.Before(r.nextExpiry) {
			r.nextExpiry = l.rec.Expires
		}
	}
}

// Revalidate re-checks every held originator certificate (validity window, revocation) and drops the
// records of those that no longer verify. Tick calls it periodically; call it after installing a new
// revocation list.
func (r *Router) Revalidate(now time.Time) {
	r.setNow(now)
	r.nextRevalid = now.Add(r.cfg.RevalidateInterval)
	for _, l := range slices.Clone(r.sorted()) {
		if l.rec.Origin == r.self {
			continue
		}
		if err := r.cfg.Verifier.Verify(l.rec.cert, now); err != nil {
			r.remove(l.rec.Origin)
			r.stats.Revoked++
		}
	}
}

// localLinks returns the links the router advertises: every up neighbour, the cheapest MaxLinks if
// there are more, sorted by neighbour.
func (r *Router) localLinks() []LinkInfo {
	links := make([]LinkInfo, 0, len(r.nbl))
	for _, nb := range r.nbl {
		links = append(links, LinkInfo{Neighbour: nb.id, Cost: r.advertisedCost(nb), RTT: nb.metrics.RTT, Loss: nb.metrics.Loss})
	}
	if len(links) > MaxLinks {
		slices.SortStableFunc(links, func(a, b LinkInfo) int { return cmp.Compare(a.Cost, b.Cost) })
		links = links[:MaxLinks]
		slices.SortFunc(links, func(a, b LinkInfo) int { return cmpID(a.Neighbour, b.Neighbour) })
	}
	return links
}

// originate signs and floods a new own record.
func (r *Router) originate(now time.Time) {
	topo := r.pendingTopo || !r.originated
	seq := r.seq + 1
	if ns := now.UnixNano(); ns > 0 && uint64(ns) > seq {
		seq = uint64(ns)
	}
	rec := &Record{
		Origin:          r.self,
		Seq:             seq,
		Expires:         time.UnixMilli(now.Add(r.cfg.Lifetime).UnixMilli()),
		CertFingerprint: r.certFP,
		Incarnation:     r.cfg.Incarnation,
		NoTransit:       r.cfg.NoTransit,
		Area:            r.cfg.Area,
		Level2:          r.cfg.Level2,
		Gateway:         r.cfg.Gateway,
		Endpoints:       r.endpoints,
		Links:           r.localLinks(),
		cert:            r.cert,
	}
	tbs := rec.appendTBS(nil)
	sig, err := r.cfg.Key.Sign(SignatureContext, tbs)
	r.lastOrig = now
	r.originated = true
	if err != nil {
		r.stats.SignErrors++ // retried after MinOriginationInterval
		r.originateNow, r.pendingTopo = false, true
		return
	}
	rec.Signature = sig
	rec.raw = rec.encode()
	rec.hash = sha256.Sum256(rec.raw)
	r.seq = seq
	r.originateNow, r.pendingMetric = false, false
	if topo {
		if r.lastTopoOrig.IsZero() || now.Sub(r.lastTopoOrig) > throttleReset {
			r.topoHold = r.cfg.MinOriginationInterval
		} else {
			r.topoHold = min(2*r.topoHold, r.cfg.MaxOriginationHold)
		}
		r.lastTopoOrig = now
		r.pendingTopo = false
	}
	r.stats.Originated++
	old := r.lsdb.get(r.self)
	l := newLSA(rec, now, old)
	r.put(l, old)
	for _, nb := range r.nbl {
		switch {
		case !r.floodsTo(nb):
		case r.cfg.Level2, r.areaPull() && !l.holds(nb.adj):
			r.offerRecord(nb, l, now)
		default:
			r.sendRecord(nb, l, now, false)
		}
	}
}

// ---- output ----

// Drain returns the messages to send and forgets them. Call it after every other call.
// Acknowledgements are held for 10 ms to be batched; NextDeadline accounts for them.
func (r *Router) Drain() []Outgoing {
	r.queueAcks()
	out := r.out
	r.out = nil
	return out
}

// DrainTo is Drain appending to out, which it returns: a caller that reuses out saves an allocation
// per call (a simulator of a thousand routers makes millions of calls).
func (r *Router) DrainTo(out []Outgoing) []Outgoing {
	r.queueAcks()
	out = append(out, r.out...)
	clear(r.out)
	r.out = r.out[:0]
	return out
}

// queueAcks queues the acknowledgements that are due.
func (r *Router) queueAcks() {
	if r.acksDue.IsZero() || r.now.Before(r.acksDue) {
		return
	}
	r.acksDue = time.Time{}
	for _, nb := range r.nbl {
		if len(nb.acks) == 0 && len(nb.offers) == 0 {
			continue
		}
		if r.now.Before(nb.ackBy) {
			if r.acksDue.IsZero() || nb.ackBy.Before(r.acksDue) {
				r.acksDue = nb.ackBy
			}
			continue
		}
		r.nbDueOK = false
		for i := 0; i < len(nb.acks); i += MaxEntries {
			r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeAck(nb.acks[i:min(i+MaxEntries, len(nb.acks))])})
		}
		for i := 0; i < len(nb.offers); i += MaxEntries {
			r.out = append(r.out, Outgoing{To: nb.id, Msg: encodeEntries(MsgOffer, nb.offers[i:min(i+MaxEntries, len(nb.offers))])})
		}
		nb.acks, nb.offers = nb.acks[:0], nb.offers[:0]
	}
}

// ---- lookups ----

// NodeByAddr returns the node whose certificate holds overlay address a.
func (r *Router) NodeByAddr(a netip.Addr) (NodeID, bool) {
	if r.byAddr == nil || r.addrGen != r.gen {
		r.byAddr = make(map[netip.Addr]NodeID, len(r.entries))
		for _, l := range r.entries {
			r.byAddr[l.rec.cert.Overlay] = l.rec.Origin
		}
		r.addrGen = r.gen
	}
	id, ok := r.byAddr[a]
	return id, ok
}

// Certificate returns the mesh certificate of a node in the LSDB (including this node), or nil. The
// daemon uses it to open end-to-end sessions with far nodes.
func (r *Router) Certificate(id NodeID) *meshca.Certificate {
	if id == r.self {
		return r.cert
	}
	if l := r.lsdb.get(id); l != nil {
		return l.rec.cert
	}
	return nil
}

// DatabaseBytes returns the bytes of the records and certificates the router holds: its routing
// state, which grows with the size of its area.
func (r *Router) DatabaseBytes() int {
	n := 0
	for _, l := range r.entries {
		n += len(l.rec.raw)
		if l.rec.cert != nil {
			n += len(l.rec.cert.Bytes())
		}
	}
	return n
}

// Record returns the record held for a node, or nil. It must not be modified.
func (r *Router) Record(id NodeID) *Record {
	if l := r.lsdb.get(id); l != nil {
		return l.rec
	}
	return nil
}

// sameBytes reports whether raw is rec's encoding, with a shortcut for rec's own (immutable) buffers,
// which a simulator delivers to many routers.
func sameBytes(raw []byte, rec *Record) bool {
	return rec.holdsBytes(raw) || bytes.Equal(raw, rec.raw)
}
