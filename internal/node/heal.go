package node

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mapek "x0tta6bl4/internal/mapek/loop"
	"x0tta6bl4/internal/routing"
)

// Self-healing in the daemon (docs/node.md, "Self-healing"): every ProbeInterval the node
//
//   - monitors: sends one authenticated end-to-end echo probe through each neighbour B whose link is
//     up, to one of B's other neighbours (round robin, at most 3 per neighbour), forced through B
//     whatever the forwarding table says; a probe unanswered within the timeout is lost;
//   - analyses: judges B from its window of probe outcomes against the loss the links they cross
//     explain, setting aside what was probed while B or the way back was unsettled (heal_detect.go:
//     "blackhole", "greyhole", "healthy", "grace", ...);
//   - plans and executes with the same pure loop as the simulator (internal/mapek): B judged a
//     blackhole or grey hole with confidence ≥ 0.99 in 2 consecutive steps has the advertised cost of
//     the link to it raised (routing.UpdateMetrics with loss 0.95, ×400), so every node's SPF avoids
//     the link but can still use it when it is the only way; after the hold (10 s, doubling on each
//     repeat, at most 5 min) the cost is restored and B is judged afresh.
//
// Every decision goes to the log, to a bounded journal (admin op "heal", `x0tta6bl4 heal`) and to the
// Prometheus counters (heal_metrics.go). Probing goes on while B is penalised, so the re-probe judges
// fresh evidence.

// HealConfig tunes self-healing. The zero value is the defaults, enabled.
type HealConfig struct {
	Disabled      bool
	ProbeInterval time.Duration // 200 ms: one probe through each neighbour, and one judgement, per interval
	ProbeTimeout  time.Duration // 1 s
	Confidence    float64       // 0.99
	Consecutive   int           // 2 intervals
	Hold          time.Duration // 10 s before the first re-probe
	MaxHold       time.Duration // 5 min
	// Grace (10 s): after a neighbour's link comes up or it restarts, what is probed through it is
	// not judged while it resynchronises routing and re-establishes its links.
	Grace time.Duration
}

func (c *HealConfig) setDefaults() {
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 200 * time.Millisecond
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	if c.Confidence == 0 {
		c.Confidence = 0.99
	}
	if c.Consecutive <= 0 {
		c.Consecutive = 2
	}
	if c.Hold <= 0 {
		c.Hold = 10 * time.Second
	}
	if c.MaxHold < c.Hold {
		c.MaxHold = max(5*time.Minute, c.Hold)
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
}

// HealFile is the heal section of the configuration file.
type HealFile struct {
	Enabled       *bool         `yaml:"enabled,omitempty"` // default true
	ProbeInterval time.Duration `yaml:"probe_interval,omitempty"`
	ProbeTimeout  time.Duration `yaml:"probe_timeout,omitempty"`
	Confidence    float64       `yaml:"confidence,omitempty"`
	Hold          time.Duration `yaml:"hold,omitempty"`
	MaxHold       time.Duration `yaml:"max_hold,omitempty"`
	Grace         time.Duration `yaml:"grace,omitempty"`
}

func (f HealFile) config() HealConfig {
	return HealConfig{Disabled: f.Enabled != nil && !*f.Enabled, ProbeInterval: f.ProbeInterval,
		ProbeTimeout: f.ProbeTimeout, Confidence: f.Confidence, Hold: f.Hold, MaxHold: f.MaxHold, Grace: f.Grace}
}

// Ranges of the healing settings (0 means the default). Outside them the loop would probe faster
// than links are measured or the probes could answer, give up before a probe could return, judge
// on a coin toss, or hold a penalty for longer than an operator would wait; such values are refused
// with the field's name, never clamped.
var healRanges = []durationRange{
	{"heal.probe_interval", 50 * time.Millisecond, time.Minute},
	{"heal.probe_timeout", 100 * time.Millisecond, time.Minute},
	{"heal.hold", time.Second, time.Hour},
	{"heal.max_hold", time.Second, 24 * time.Hour},
	{"heal.grace", time.Second, time.Hour},
}

const minHealConfidence, maxHealConfidence = 0.5, 1.0

// Validate refuses settings outside their ranges.
func (c HealConfig) Validate() error {
	for i, v := range []time.Duration{c.ProbeInterval, c.ProbeTimeout, c.Hold, c.MaxHold, c.Grace} {
		if err := healRanges[i].check(v); err != nil {
			return err
		}
	}
	if c.Confidence != 0 && !(c.Confidence >= minHealConfidence && c.Confidence <= maxHealConfidence) {
		return fmt.Errorf("heal.confidence %v: want %v to %v (or 0 for the default 0.99)", c.Confidence, minHealConfidence, maxHealConfidence)
	}
	if c.Consecutive < 0 || c.Consecutive > 100 {
		return fmt.Errorf("heal consecutive %d: want 1 to 100 (or 0 for the default 2)", c.Consecutive)
	}
	if c.Hold != 0 && c.MaxHold != 0 && c.MaxHold < c.Hold {
		return fmt.Errorf("heal.max_hold %s: want at least heal.hold %s", c.MaxHold, c.Hold)
	}
	return nil
}

// durationRange is the allowed range of a duration setting; 0 (unset: the default) is allowed too.
type durationRange struct {
	field    string
	min, max time.Duration
}

func (r durationRange) check(v time.Duration) error {
	if v != 0 && (v < r.min || v > r.max) {
		return fmt.Errorf("%s %s: want %s to %s (or unset for the default)", r.field, v, r.min, r.max)
	}
	return nil
}

const (
	healIdent            = 0xb6a1 // ICMPv6 echo identifier of the probes
	healPenaltyLoss      = 0.95   // the loss advertised for a penalised link: cost ×400, as in the simulator
	maxHealProbesPerStep = 64     // probes sent per interval at most (neighbours beyond wait their turn)
	maxHealJournal       = 256    // decisions kept for the admin socket
	maxHealKeys          = 4096   // neighbours the loop remembers before it starts afresh
	maxTargetLinkLoss    = 0.5    // a target whose link to the neighbour loses more (one way) is not used
)

var healPayload = []byte("x0tta6bl4 heal probe")

// HealDecision is one recorded decision of the self-healing loop.
type HealDecision struct {
	Time       time.Time          `json:"time"`
	Peer       string             `json:"peer"`
	Action     string             `json:"action"` // penalise or restore
	Rule       string             `json:"rule"`
	Class      string             `json:"class"`
	Confidence float64            `json:"confidence"`
	Evidence   map[string]float64 `json:"evidence"`
}

// HealPeer is the detector's current view of one neighbour.
type HealPeer struct {
	Name       string             `json:"name"`
	Penalised  bool               `json:"penalised"`
	Targets    []string           `json:"targets"`
	Class      string             `json:"class"`
	Confidence float64            `json:"confidence"`
	Evidence   map[string]float64 `json:"evidence,omitempty"`
}

// HealStatus is the self-healing loop's state: rules, counters, neighbours and recent decisions.
type HealStatus struct {
	Enabled       bool          `json:"enabled"`
	ProbeInterval time.Duration `json:"probe_interval_ns"`
	ProbeTimeout  time.Duration `json:"probe_timeout_ns"`
	Confidence    float64       `json:"confidence"`
	Consecutive   int           `json:"consecutive"`
	Hold          time.Duration `json:"hold_ns"`
	MaxHold       time.Duration `json:"max_hold_ns"`
	Grace         time.Duration `json:"grace_ns"`
	ProbesSent    uint64        `json:"probes_sent"`
	ProbesOK      uint64        `json:"probes_answered"`
	ProbesLost    uint64        `json:"probes_lost"`
	// ProbesUnjudged are the probes whose outcome was set aside: sent in a grace period or on an
	// unsettled way back, to a destination that restarted or has not answered yet, or cut short
	// when their neighbour or destination went away.
	ProbesUnjudged uint64         `json:"probes_unjudged"`
	Penalties      uint64         `json:"penalties"`
	Restores       uint64         `json:"restores"`
	Peers          []HealPeer     `json:"peers"`
	Decisions      []HealDecision `json:"decisions"` // oldest first, the last 256
}

type healer struct {
	cfg   HealConfig
	start time.Time

	mu        sync.Mutex // taken after Node.mu when both are held
	det       *detector
	loop      *mapek.Loop
	ids       []routing.NodeID // the loop's node keys
	keys      map[routing.NodeID]int
	penalised map[routing.NodeID]bool
	journal   []HealDecision
	penalties uint64
	restores  uint64

	// transitDrop is a fault for tests only: the fraction (of 1<<16) of transit packets this node
	// drops while still answering link probes and routing (SetTransitFault).
	transitDrop, transitDropAcc atomic.Uint32
}

func newHealer(cfg HealConfig, now time.Time) *healer {
	cfg.setDefaults()
	h := &healer{cfg: cfg, start: now}
	h.reset()
	return h
}

// schedule reports whether the loop runs and its probe interval; a governance decision may change
// the interval while the node runs.
func (h *healer) schedule() (bool, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.cfg.Disabled, h.cfg.ProbeInterval
}

// setThresholds makes the running loop use cfg's thresholds from its next step on, keeping what it
// knows (penalties in force, probes in flight, the evidence gathered). Disabled stays as it was.
func (h *healer) setThresholds(cfg HealConfig) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg.Disabled = h.cfg.Disabled
	cfg.setDefaults()
	h.cfg = cfg
	h.det.r.Timeout, h.det.r.Grace = cfg.ProbeTimeout, cfg.Grace
	h.loop.SetRules(h.loopRules())
}

func (h *healer) loopRules() mapek.Rules {
	return mapek.Rules{Confidence: h.cfg.Confidence, Consecutive: h.cfg.Consecutive, Hold: h.cfg.Hold, MaxHold: h.cfg.MaxHold}
}

func (h *healer) reset() {
	h.det = newDetector(detectRules{Timeout: h.cfg.ProbeTimeout, Grace: h.cfg.Grace})
	h.loop = mapek.New(h.loopRules())
	h.ids, h.keys, h.penalised = nil, map[routing.NodeID]int{}, map[routing.NodeID]bool{}
}

// key is the loop's key for neighbour id.
func (h *healer) key(id routing.NodeID) int {
	k, ok := h.keys[id]
	if !ok {
		k = len(h.ids)
		h.ids = append(h.ids, id)
		h.keys[id] = k
	}
	return k
}

// adjustLocked returns the metrics to advertise for the link to id: penalised links report the
// penalty loss. h.mu is held.
func (h *healer) adjustLocked(id routing.NodeID, m routing.Metrics) routing.Metrics {
	if h.penalised[id] {
		m.Loss = max(m.Loss, healPenaltyLoss)
	}
	return m
}

// healMetrics is what the node gives routing for the link to id instead of m: the link's own
// measurements, or the penalty while the loop routes around the neighbour. Called with Node.mu held.
func (n *Node) healMetrics(id routing.NodeID, m routing.Metrics) routing.Metrics {
	h := n.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.adjustLocked(id, m)
}

// neighbourRestarted is told, on authenticated evidence (the peer's signed link-state record),
// that the peer at overlay address addr restarted. If it is a neighbour whose link stayed up, the
// outcomes of probes through its old process are dropped and its grace period starts again (at
// most once a minute); otherwise nothing happens. A restarted peer is also a destination: call
// targetRestarted for it as well. It takes healer.mu, after Node.mu if the caller holds that.
func (h *healer) neighbourRestarted(now time.Time, addr netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.det.neighbourRestarted(now, addr)
}

// targetRestarted is told, on authenticated evidence, that the peer at addr restarted and lost its
// end-to-end sessions: the outcomes of probes to it are dropped, and its losses count again only
// once it has answered under a new session. An unauthenticated hint (an unknown-session notice,
// which a relay on the path could forge) must not call it: a relay that drops our probes could
// otherwise keep its destinations forever unqualified. It takes healer.mu.
func (h *healer) targetRestarted(now time.Time, addr netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.det.targetRestarted(now, addr)
}

// SetTransitFault makes the node a blackhole (fraction 1) or grey hole relay: it drops that fraction
// of the transit packets it should relay while it still answers link probes and routing. It exists
// for tests (the netns tests' helper processes, internal/meshtest); nothing in configuration or on
// the network sets it.
func (n *Node) SetTransitFault(fraction float64) {
	n.heal.transitDrop.Store(uint32(min(max(fraction, 0), 1) * (1 << 16)))
}

// dropTransit applies the test-only transit fault (healer.transitDrop): it drops exactly that
// fraction of transit packets, evenly spread, so that a test gives the same result on every run.
func (n *Node) dropTransit() bool {
	p := n.heal.transitDrop.Load()
	switch {
	case p == 0:
		return false
	case p >= 1<<16:
		return true
	}
	v := n.heal.transitDropAcc.Add(p)
	return v>>16 != (v-p)>>16 // the running sum crossed a multiple of 1<<16
}

// healViewsLocked lists the neighbours whose links are up, sorted by ID, each with its candidate
// targets: its other neighbours that confirm the link in their own records, that neither report
// shows as lossy, and that we have a route to, with the losses of the links a probe to them and its
// answer cross, and whether the neighbour is the only relay on the way.
func (n *Node) healViewsLocked(now time.Time) []nbrView {
	f := n.fib.Load()
	views := make([]nbrView, 0, len(n.links))
	for id, t := range n.links {
		if !t.up || !t.installed {
			continue
		}
		m := t.mon.Metrics(now)
		v := nbrView{id: id, addr: t.addr, name: t.peer().Name, linkLoss: m.RoundTripLoss,
			linkSamples: m.LossSamples, linkSince: t.mon.Since()}
		if rec := n.router.Record(id); rec != nil {
			backDirect := -1 // whether the neighbour's own way back to us is its link to us; -1: not known yet
			for _, li := range rec.Links {
				if len(v.targets) >= n.heal.det.r.MaxTargets {
					break
				}
				d := li.Neighbour
				if d == n.selfID || li.Loss >= maxTargetLinkLoss {
					continue
				}
				drec, cert := n.router.Record(d), n.router.Certificate(d)
				if drec == nil || cert == nil {
					continue
				}
				back, ok := linkTo(drec, id)
				if !ok || back.Loss >= maxTargetLinkLoss {
					continue
				}
				if _, ok := f.byAddr[cert.Overlay]; !ok {
					continue
				}
				tg := healTarget{id: d, addr: cert.Overlay, name: cert.Name, nextLoss: roundTrip(max(li.Loss, back.Loss))}
				tg.reply, _ = n.replyHopLocked(d, drec)
				switch tg.reply {
				case n.selfID: // the answer comes straight back over our own link to d
					if l := n.links[d]; l != nil && l.up {
						tg.soleRelay, tg.backLoss = true, l.mon.Metrics(now).RoundTripLoss
					}
				case id: // back through the neighbour, which must then hand it straight to us
					if backDirect < 0 {
						backDirect = 0
						if hop, ok := n.replyHopLocked(id, rec); ok && hop == n.selfID {
							backDirect = 1
						}
					}
					tg.soleRelay = backDirect == 1
				}
				v.targets = append(v.targets, tg)
			}
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b nbrView) int { return cmpNodeID(a.id, b.id) })
	return views
}

// replyHopLocked is x's next hop towards us as x's own routing chooses it from the link-state
// database we share (x's record is rec): the neighbour y with the least link cost (the larger of
// the two ends' reports) plus our distance to y, which is y's distance to us since costs are
// symmetric; among equals the lowest ID, as routing's SPF breaks ties. Called with Node.mu held.
func (n *Node) replyHopLocked(x routing.NodeID, rec *routing.Record) (routing.NodeID, bool) {
	var best routing.NodeID
	bestCost, found := uint64(0), false
	for _, l := range rec.Links {
		y := l.Neighbour
		var dist uint64
		if y != n.selfID {
			r, ok := n.router.NextHop(y)
			if !ok {
				continue
			}
			dist = r.Cost
		}
		yrec := n.router.Record(y)
		if yrec == nil {
			continue
		}
		back, ok := linkTo(yrec, x)
		if !ok {
			continue
		}
		c := dist + uint64(max(l.Cost, back.Cost))
		if !found || c < bestCost || (c == bestCost && cmpNodeID(y, best) < 0) {
			best, bestCost, found = y, c, true
		}
	}
	return best, found
}

// linkTo returns rec's report of its link to id.
func linkTo(rec *routing.Record, id routing.NodeID) (routing.LinkInfo, bool) {
	i := slices.IndexFunc(rec.Links, func(l routing.LinkInfo) bool { return l.Neighbour == id })
	if i < 0 {
		return routing.LinkInfo{}, false
	}
	return rec.Links[i], true
}

// roundTrip is the round-trip loss of a link whose one-way loss (as records carry it) is oneWay.
func roundTrip(oneWay float64) float64 {
	d := 1 - clamp01(oneWay)
	return 1 - d*d
}

func cmpNodeID(a, b routing.NodeID) int { return bytes.Compare(a[:], b[:]) }

type healSend struct {
	link, e2e *tunnel
	addr      netip.Addr
	seq       uint16
}

// healStep is one iteration of the loop at now.
func (n *Node) healStep(now time.Time) {
	h := n.heal
	var sends []healSend
	var kicks []netip.Addr
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	views := n.healViewsLocked(now)
	h.mu.Lock()
	if len(h.ids) > maxHealKeys && len(h.penalised) == 0 {
		h.reset()
	}
	h.det.update(now, views)
	h.det.expire(now)
	js := make([]mapek.Judgement, 0, len(views))
	for _, v := range views {
		js = append(js, h.det.judge(now, h.key(v.id), v.id))
	}
	for _, d := range h.loop.Step(now.Sub(h.start), js, healActuator{n: n, now: now}) {
		n.recordHealLocked(now, d)
	}
	h.loop.Log = h.loop.Log[:0] // the journal keeps the decisions, bounded
	for _, v := range views {
		if len(sends)+len(kicks) >= maxHealProbesPerStep {
			break
		}
		tg, seq, ok := h.det.next(now, v.id)
		if !ok {
			continue
		}
		e2e := n.e2e[tg.addr]
		if e2e == nil || !e2e.installed {
			h.det.cancel(seq)
			if e2e == nil {
				kicks = append(kicks, tg.addr) // no session yet: start one (the probe goes the usual way)
			}
			continue
		}
		sends = append(sends, healSend{link: n.links[v.id], e2e: e2e, addr: tg.addr, seq: seq})
	}
	h.mu.Unlock()
	n.mu.Unlock()

	for _, a := range kicks {
		n.sendPacket(now, echoPacket(n.addr, a, icmpEchoRequest, healIdent, 0, healPayload))
	}
	for _, s := range sends {
		if !n.sendHealProbe(now, s) {
			h.mu.Lock()
			h.det.cancel(s.seq)
			h.mu.Unlock()
		}
	}
}

// sendHealProbe seals an echo request under the end-to-end session with the target and hands it to
// the chosen neighbour as a transit packet, whatever the forwarding table says (the same framing as
// sendE2E).
func (n *Node) sendHealProbe(now time.Time, s healSend) bool {
	pkt := echoPacket(n.addr, s.addr, icmpEchoRequest, healIdent, s.seq, healPayload)
	if !n.fw.Outbound(now, pkt, s.e2e.peer()).Allowed() {
		return false
	}
	sent, _ := n.sendE2EVia(now, s.e2e, s.link, pkt)
	return sent
}

// consumeHealReply takes the answer to a probe off the packet path.
func (n *Node) consumeHealReply(now time.Time, pkt []byte) bool {
	typ, id, seq, ok := echo(pkt)
	if !ok || typ != icmpEchoReply || id != healIdent {
		return false
	}
	if seq == 0 {
		return true // the answer to a session-starting probe
	}
	h := n.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.det.reply(now, seq, srcOf(pkt))
}

type healActuator struct {
	n   *Node
	now time.Time
}

// Penalise and Restore run inside healStep, with Node.mu and healer.mu held.
func (a healActuator) Penalise(k int) {
	id := a.n.heal.ids[k]
	a.n.heal.penalised[id] = true
	a.n.healApplyLocked(a.now, id)
}

func (a healActuator) Restore(k int) {
	id := a.n.heal.ids[k]
	delete(a.n.heal.penalised, id)
	a.n.heal.det.afresh(id)
	a.n.healApplyLocked(a.now, id)
}

func (n *Node) healApplyLocked(now time.Time, id routing.NodeID) {
	t := n.links[id]
	if t == nil || !t.up {
		return // applied when the link is next measured (healMetrics)
	}
	m := t.mon.Metrics(now)
	n.router.UpdateMetrics(now, id, n.heal.adjustLocked(id, routing.Metrics{RTT: m.RTT, Loss: m.Loss}))
}

func (n *Node) recordHealLocked(now time.Time, d mapek.Decision) {
	h := n.heal
	id := h.ids[d.Node]
	name := id.String()
	if s := h.det.nbrs[id]; s != nil {
		name = s.name
	}
	hd := HealDecision{Time: now, Peer: name, Action: string(d.Action), Rule: d.Rule, Class: d.Evidence.Class,
		Confidence: d.Evidence.Confidence, Evidence: d.Evidence.Evidence}
	if len(h.journal) >= maxHealJournal {
		h.journal = append(h.journal[:0], h.journal[len(h.journal)-maxHealJournal+1:]...)
	}
	h.journal = append(h.journal, hd)
	args := []any{"peer", name, "rule", d.Rule, "class", hd.Class, "confidence", hd.Confidence}
	for _, k := range []string{"link_loss", "next_loss", "explained_loss", "path_loss", "probes", "lost", "run", "chance"} {
		if v, ok := hd.Evidence[k]; ok {
			args = append(args, k, v)
		}
	}
	if d.Action == mapek.Penalise {
		h.penalties++
		n.log.Warn("heal: routing around neighbour", args...)
	} else {
		h.restores++
		n.log.Info("heal: re-probing neighbour", args...)
	}
}

// HealJournal returns the loop's last max decisions, oldest first.
func (n *Node) HealJournal(max int) []HealDecision {
	h := n.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.journal[len(h.journal)-min(max, len(h.journal)):])
}

// Heal returns the self-healing loop's state.
func (n *Node) Heal() HealStatus {
	h := n.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.cfg
	st := HealStatus{Enabled: !c.Disabled, ProbeInterval: c.ProbeInterval, ProbeTimeout: c.ProbeTimeout,
		Confidence: c.Confidence, Consecutive: c.Consecutive, Hold: c.Hold, MaxHold: c.MaxHold, Grace: c.Grace,
		ProbesSent: h.det.sent, ProbesOK: h.det.ok, ProbesLost: h.det.lost, ProbesUnjudged: h.det.unjudged, Penalties: h.penalties,
		Restores: h.restores, Peers: []HealPeer{}, Decisions: slices.Clone(h.journal)}
	for id, s := range h.det.nbrs {
		p := HealPeer{Name: s.name, Penalised: h.penalised[id], Targets: []string{}, Class: s.last.Class,
			Confidence: s.last.Confidence, Evidence: s.last.Evidence}
		for _, t := range s.targets {
			p.Targets = append(p.Targets, t.name)
		}
		st.Peers = append(st.Peers, p)
	}
	slices.SortFunc(st.Peers, func(a, b HealPeer) int { return strings.Compare(a.Name, b.Name) })
	if st.Decisions == nil {
		st.Decisions = []HealDecision{}
	}
	return st
}
