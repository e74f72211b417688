package node

import (
	"math"
	"net/netip"
	"slices"
	"time"

	mapek "x0tta6bl4/internal/mapek/loop"
	"x0tta6bl4/internal/routing"
)

// The node's own relay detector (docs/node.md, "Self-healing"). It judges each neighbour B from the
// node's own evidence: end-to-end echo probes that are forced through B to nodes two hops away (B's
// other neighbours, from the link-state database), compared with the loss that the links they cross
// explain. A relay that answers its link probes and keeps routing but drops what it should forward
// shows up as path loss far above the explained loss. This file is pure: time is passed in; heal.go
// feeds it and sends the probes.
//
// Three things keep a healthy neighbour from being accused:
//
//   - only probes whose answer comes back through B (or straight from the destination) are judged,
//     so that B is the only relay they cross, and the loss every link on the way explains is
//     computed per probe, with a margin for the links' own sampling error;
//   - a verdict needs evidence that the explained loss produces by chance with probability at most
//     FalseAlarm, so that a lossier path needs a longer run of losses, and a path too lossy for a
//     window of evidence to tell anything gets no verdict;
//   - outcomes are set aside while the path is unsettled: during a grace period after B's link
//     comes up (a new adjacency: B, or we, just started) or B restarts, for Settle after the way
//     back from a destination changes, and a destination that restarted must answer again before
//     its losses count;
//   - outcomes are set aside when the node itself stalled: the engine's clock jumped by more than
//     StallTicks tick intervals between two ticks, so the probes in flight across the gap are
//     neither lost nor answered, and every neighbour's evidence starts afresh.

// detectRules are the detector's explicit rules.
type detectRules struct {
	Timeout      time.Duration // 1 s: a probe unanswered this long is lost (4× the target's smoothed RTT if longer)
	Window       int           // 32: outcomes kept per neighbour
	GreyWindow   int           // 16: the grey-hole rule judges the most recent this many, and the whole window
	MinProbes    int           // 8: outcomes needed for a grey-hole verdict
	BlackholeRun int           // 3: the most recent this many probes or more all lost
	GreyExcess   float64       // 0.25: path loss at least this far above the explained loss
	// FalseAlarm (1e-5) is the largest probability with which the explained loss alone may produce
	// the evidence for a verdict. Three losses in a row on a clean path (0.02³ = 8·10⁻⁶) pass.
	FalseAlarm float64
	BaseLoss   float64 // 0.02: loss assumed for what no measurement covers (queues, the hosts)
	// Margin (2) is the number of standard errors added to the measured part of the explained loss:
	// a loss estimated from a few dozen probes may well be lower than the link's real loss.
	Margin float64
	// RecordSamples (24) is the number of probes a loss in a link-state record is taken to rest on
	// (a 32-probe window less those still open at the default probe interval).
	RecordSamples int
	// MinLinkSamples (8): settled link probes to the neighbour before its link's loss is trusted.
	MinLinkSamples int
	// Grace (10 s): after the neighbour's link comes up or it restarts, what is probed through it is
	// not judged: it must first resynchronise routing and re-establish its links.
	Grace time.Duration
	// Settle (2 s): after the way a destination's answer returns changes, its probes are not judged
	// (the destination's routing may lag behind ours).
	Settle     time.Duration
	MaxTargets int // 3: destinations probed through each neighbour
	MaxPending int // 1024: probes in flight at once
	// RestartGraceEvery (1 min): a neighbour's restart reports are honoured at most this often, so
	// that a relay cannot shelter behind a stream of claimed restarts.
	RestartGraceEvery time.Duration
	// Remember (1 min): a target that left a neighbour's list and comes back within this keeps its
	// qualification (it has answered before, and only a restart report takes that away).
	Remember time.Duration
	// ReportLag (3 s): a grey-hole verdict rests only on outcomes settled at least this long ago.
	// Partial loss is also what a link that has just turned lossy produces, and the link's reports
	// (a loss estimate over its window of probes, then a record) take this long to say so.
	ReportLag time.Duration
	// StallTicks (5): a gap between two ticks longer than this many tick intervals is a local stall
	// (the process was not scheduled, or a tick took that long): a stalled node cannot tell a lost
	// probe from its own absence.
	StallTicks int
}

func (r *detectRules) setDefaults() {
	if r.Timeout <= 0 {
		r.Timeout = time.Second
	}
	if r.Window <= 0 {
		r.Window = 32
	}
	if r.GreyWindow <= 0 {
		r.GreyWindow = 16
	}
	r.GreyWindow = min(r.GreyWindow, r.Window)
	if r.MinProbes <= 0 {
		r.MinProbes = 8
	}
	r.MinProbes = min(r.MinProbes, r.GreyWindow)
	if r.BlackholeRun <= 0 {
		r.BlackholeRun = 3
	}
	r.BlackholeRun = min(r.BlackholeRun, r.Window)
	if r.GreyExcess <= 0 {
		r.GreyExcess = 0.25
	}
	if r.FalseAlarm <= 0 || r.FalseAlarm >= 1 {
		r.FalseAlarm = 1e-5
	}
	if r.BaseLoss <= 0 {
		r.BaseLoss = 0.02
	}
	if r.Margin <= 0 {
		r.Margin = 2
	}
	if r.RecordSamples <= 0 {
		r.RecordSamples = 24
	}
	if r.MinLinkSamples <= 0 {
		r.MinLinkSamples = 8
	}
	if r.Grace <= 0 {
		r.Grace = 10 * time.Second
	}
	if r.Settle <= 0 {
		r.Settle = 2 * time.Second
	}
	if r.MaxTargets <= 0 {
		r.MaxTargets = 3
	}
	if r.MaxPending <= 0 {
		r.MaxPending = 1024
	}
	if r.RestartGraceEvery <= 0 {
		r.RestartGraceEvery = time.Minute
	}
	if r.Remember <= 0 {
		r.Remember = time.Minute
	}
	if r.ReportLag <= 0 {
		r.ReportLag = 3 * time.Second
	}
	if r.StallTicks <= 0 {
		r.StallTicks = 5
	}
}

// Detector classes besides mapek's "blackhole" and "greyhole".
const (
	classHealthy = "healthy"
	classUnknown = "unknown" // too few judged outcomes
	classGrace   = "grace"   // the neighbour's link is new or it restarted: nothing is judged yet
	// classLossyPath: the links explain so much loss that not even a window of losses in a row would
	// be evidence against the neighbour; routing's costs already reflect the loss.
	classLossyPath = "lossy-path"
)

// healTarget is a destination probed through a neighbour.
type healTarget struct {
	id   routing.NodeID
	addr netip.Addr
	name string
	// From the link-state database, for one step:
	nextLoss  float64        // round-trip loss of the neighbour's link to the target
	backLoss  float64        // round-trip loss of our own link to the target, when its answer comes straight to us
	reply     routing.NodeID // the target's next hop towards us
	soleRelay bool           // the answer returns through the neighbour or straight to us: it is the only relay
	// The detector's:
	answered bool          // has answered a probe since it became a target: only then do its losses count
	srtt     time.Duration // smoothed RTT of its answered probes
	since    time.Time     // the answer's way back has been as it is since then
}

type healOutcome struct {
	target routing.NodeID
	lost   bool
	q      float64   // the loss the links explained for this probe
	at     time.Time // when it was answered or given up
}

// nbrView is what the node knows about one neighbour whose link is up, for one step.
type nbrView struct {
	id          routing.NodeID
	addr        netip.Addr
	name        string
	linkLoss    float64      // the link probes' round-trip loss
	linkSamples int          // the settled link probes it rests on
	linkSince   time.Time    // when the link came up
	targets     []healTarget // candidate targets, at most MaxTargets; the detector's fields are ignored
}

type nbrState struct {
	name        string
	addr        netip.Addr
	linkLoss    float64
	linkSamples int
	linkSince   time.Time
	graceUntil  time.Time
	restarted   time.Time // the last restart report honoured
	targets     []healTarget
	// departed are targets that left the list lately, with the qualification they had: one that
	// comes back within Remember needs no new answer (its session is the same), so that a flicker
	// of the records, or a relay advertising its link to the target as lossy for a moment, cannot
	// make a destination that it now drops unqualified for good.
	departed []departedTarget
	rr       int
	window   []healOutcome // oldest first, at most Window
	last     mapek.Judgement
}

type departedTarget struct {
	id       routing.NodeID
	addr     netip.Addr
	answered bool
	srtt     time.Duration
	left     time.Time
}

// maxDeparted bounds the departed targets remembered per neighbour.
const maxDeparted = 8

type healProbe struct {
	nbr, target routing.NodeID
	sent        time.Time
	q           float64
	judged      bool // sent outside any grace, on a settled way back
}

// detector holds the per-neighbour evidence. Everything in it is bounded: neighbours by the node's
// link limit, targets by MaxTargets, outcomes by Window, probes in flight by MaxPending.
type detector struct {
	r        detectRules
	seq      uint16
	pending  map[uint16]healProbe
	nbrs     map[routing.NodeID]*nbrState
	sent     uint64 // probes sent, answered and lost (judged outcomes only), and not judged
	ok       uint64
	lost     uint64
	unjudged uint64
	lastTick time.Time // the engine's time at the last tick, to see local stalls
	stalls   uint64    // local stalls seen
}

func newDetector(r detectRules) *detector {
	r.setDefaults()
	return &detector{r: r, pending: map[uint16]healProbe{}, nbrs: map[routing.NodeID]*nbrState{}}
}

// update sets the neighbours whose links are up and their candidate targets at now. Neighbours not
// listed are forgotten with their probes, and so is a neighbour whose link came up again since the
// last step (a new adjacency starts afresh, in grace). A target that left a neighbour's list loses
// its outcomes and its probes; if it comes back within Remember it keeps its qualification, later it
// must answer again before its losses count.
func (d *detector) update(now time.Time, views []nbrView) {
	seen := make(map[routing.NodeID]bool, len(views))
	for _, v := range views {
		seen[v.id] = true
		s := d.nbrs[v.id]
		if s != nil && !s.linkSince.Equal(v.linkSince) {
			d.dropPending(func(p healProbe) bool { return p.nbr == v.id })
			s = nil
		}
		if s == nil {
			s = &nbrState{linkSince: v.linkSince, graceUntil: v.linkSince.Add(d.r.Grace)}
			d.nbrs[v.id] = s
		}
		s.name, s.addr, s.linkLoss, s.linkSamples = v.name, v.addr, v.linkLoss, v.linkSamples
		targets := make([]healTarget, 0, min(len(v.targets), d.r.MaxTargets))
		for _, t := range v.targets[:min(len(v.targets), d.r.MaxTargets)] {
			t.answered, t.srtt, t.since = false, 0, now
			if old := s.target(t.id); old != nil {
				t.answered, t.srtt, t.since = old.answered, old.srtt, old.since
				if old.reply != t.reply || old.soleRelay != t.soleRelay {
					t.since = now
				}
			} else if i := slices.IndexFunc(s.departed, func(g departedTarget) bool { return g.id == t.id }); i >= 0 {
				if g := s.departed[i]; now.Sub(g.left) <= d.r.Remember {
					t.answered, t.srtt = g.answered, g.srtt
				}
				s.departed = slices.Delete(s.departed, i, i+1)
			}
			targets = append(targets, t)
		}
		for _, old := range s.targets {
			if !slices.ContainsFunc(targets, func(t healTarget) bool { return t.id == old.id }) {
				if len(s.departed) >= maxDeparted {
					s.departed = slices.Delete(s.departed, 0, 1)
				}
				s.departed = append(s.departed, departedTarget{id: old.id, addr: old.addr, answered: old.answered,
					srtt: old.srtt, left: now})
			}
		}
		s.targets = targets
		s.window = slices.DeleteFunc(s.window, func(o healOutcome) bool { return s.target(o.target) == nil })
	}
	for id := range d.nbrs {
		if !seen[id] {
			delete(d.nbrs, id)
		}
	}
	d.dropPending(func(p healProbe) bool { s := d.nbrs[p.nbr]; return s == nil || s.target(p.target) == nil })
}

// tick is told the engine's time at every tick (tick apart, if the node keeps its schedule). When
// the gap since the last tick is longer than StallTicks intervals, the node itself stalled: the
// answers to the probes in flight may be waiting unread, or their neighbours may have stalled with
// it, so those probes are dropped unjudged (an answer still to come is no longer one of ours) and
// every neighbour's window of outcomes starts afresh. It reports the gap and whether it was a stall.
func (d *detector) tick(now time.Time, tick time.Duration) (time.Duration, bool) {
	last := d.lastTick
	d.lastTick = now
	if last.IsZero() || tick <= 0 {
		return 0, false
	}
	gap := now.Sub(last)
	if gap <= time.Duration(d.r.StallTicks)*tick {
		return gap, false
	}
	d.stalls++
	d.dropPending(func(healProbe) bool { return true })
	for _, s := range d.nbrs {
		s.window = s.window[:0]
	}
	return gap, true
}

// dropPending forgets the probes in flight that match; their outcomes will not be judged.
func (d *detector) dropPending(match func(healProbe) bool) {
	for seq, p := range d.pending {
		if match(p) {
			delete(d.pending, seq)
			d.unjudged++
		}
	}
}

func (s *nbrState) target(id routing.NodeID) *healTarget {
	for i := range s.targets {
		if s.targets[i].id == id {
			return &s.targets[i]
		}
	}
	return nil
}

// afresh forgets the neighbour's outcomes, so that the re-probe after a penalty is judged on evidence
// gathered after it (probes still in flight count: they are at most one timeout old).
func (d *detector) afresh(nbr routing.NodeID) {
	if s := d.nbrs[nbr]; s != nil {
		s.window = s.window[:0]
	}
}

// neighbourRestarted handles an authenticated report that the neighbour at addr restarted while its
// link stayed up: the evidence gathered through the old process is dropped and a grace period starts,
// at most once per RestartGraceEvery (more often, the report is ignored: the evidence stays).
func (d *detector) neighbourRestarted(now time.Time, addr netip.Addr) {
	for id, s := range d.nbrs {
		if s.addr != addr {
			continue
		}
		if !s.restarted.IsZero() && now.Sub(s.restarted) < d.r.RestartGraceEvery {
			return
		}
		s.restarted = now
		s.window = s.window[:0]
		s.graceUntil = later(s.graceUntil, now.Add(d.r.Grace))
		d.dropPending(func(p healProbe) bool { return p.nbr == id })
		return
	}
}

// targetRestarted handles an authenticated report that the destination at addr restarted: it lost
// its end-to-end sessions, so what was probed to it says nothing about the relays. Its outcomes and
// probes in flight are dropped, and it must answer again (under a new session) before its losses
// count.
func (d *detector) targetRestarted(now time.Time, addr netip.Addr) {
	for id, s := range d.nbrs {
		s.departed = slices.DeleteFunc(s.departed, func(g departedTarget) bool { return g.addr == addr })
		for i := range s.targets {
			t := &s.targets[i]
			if t.addr != addr {
				continue
			}
			t.answered, t.srtt, t.since = false, 0, now
			s.window = slices.DeleteFunc(s.window, func(o healOutcome) bool { return o.target == t.id })
			d.dropPending(func(p healProbe) bool { return p.nbr == id && p.target == t.id })
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// next picks the neighbour's next target (round robin) and registers a probe to it sent at now.
func (d *detector) next(now time.Time, nbr routing.NodeID) (healTarget, uint16, bool) {
	s := d.nbrs[nbr]
	if s == nil || len(s.targets) == 0 || len(d.pending) >= d.r.MaxPending {
		return healTarget{}, 0, false
	}
	s.rr = (s.rr + 1) % len(s.targets)
	t := s.targets[s.rr]
	for {
		d.seq++
		if _, busy := d.pending[d.seq]; !busy && d.seq != 0 {
			break
		}
	}
	judged := t.soleRelay && !now.Before(s.graceUntil) && !now.Before(t.since.Add(d.r.Settle)) &&
		s.linkSamples >= d.r.MinLinkSamples
	d.pending[d.seq] = healProbe{nbr: nbr, target: t.id, sent: now, judged: judged,
		q: explainedLoss(d.r, s.linkLoss, s.linkSamples, t.nextLoss, t.backLoss)}
	d.sent++
	return t, d.seq, true
}

// cancel forgets a probe that could not be sent.
func (d *detector) cancel(seq uint16) {
	if _, ok := d.pending[seq]; ok {
		delete(d.pending, seq)
		d.sent--
	}
}

// counts reports whether the outcome of probe p to t is judged: it was sent outside any grace on a
// settled way back, and the way back has not changed since.
func (p healProbe) counts(t *healTarget) bool { return p.judged && !t.since.After(p.sent) }

// reply records the answer to probe seq from src; it reports whether it was one of ours.
func (d *detector) reply(now time.Time, seq uint16, src netip.Addr) bool {
	p, ok := d.pending[seq]
	if !ok {
		return false
	}
	s := d.nbrs[p.nbr]
	t := s.target(p.target) // update keeps pending probes' targets listed
	if t.addr != src {
		return false
	}
	delete(d.pending, seq)
	rtt := now.Sub(p.sent)
	if t.srtt == 0 {
		t.srtt = rtt
	} else {
		t.srtt = (7*t.srtt + rtt) / 8
	}
	t.answered = true
	if !p.counts(t) {
		d.unjudged++
		return true
	}
	d.ok++
	s.add(d.r.Window, healOutcome{target: t.id, q: p.q, at: now})
	return true
}

func (s *nbrState) add(window int, o healOutcome) {
	if len(s.window) >= window {
		s.window = append(s.window[:0], s.window[len(s.window)-window+1:]...)
	}
	s.window = append(s.window, o)
}

// expire turns the probes that have waited longer than their timeout into losses, oldest first.
// A target that has not answered since it became one (or restarted) contributes nothing: a
// destination whose firewall refuses echo, or which never answered for any reason, is no evidence
// against the relay.
func (d *detector) expire(now time.Time) {
	var due []healProbe
	for seq, p := range d.pending {
		s := d.nbrs[p.nbr]
		t := s.target(p.target)
		if now.Sub(p.sent) < max(d.r.Timeout, 4*t.srtt) {
			continue
		}
		delete(d.pending, seq)
		if t.answered && p.counts(t) {
			due = append(due, p)
		} else {
			d.unjudged++
		}
	}
	slices.SortFunc(due, func(a, b healProbe) int { return a.sent.Compare(b.sent) })
	for _, p := range due {
		d.lost++
		d.nbrs[p.nbr].add(d.r.Window, healOutcome{target: p.target, lost: true, q: p.q, at: now})
	}
}

// judge is the detector's verdict on one neighbour at now (node is the loop's key for it).
func (d *detector) judge(now time.Time, node int, nbr routing.NodeID) mapek.Judgement {
	s := d.nbrs[nbr]
	nextLoss := 0.0
	for _, t := range s.targets {
		nextLoss = max(nextLoss, t.nextLoss)
	}
	var j mapek.Judgement
	if now.Before(s.graceUntil) {
		j = mapek.Judgement{Node: node, Class: classGrace, Evidence: map[string]float64{
			"link_loss": s.linkLoss, "grace_left": s.graceUntil.Sub(now).Seconds()}}
	} else {
		j = judgePath(d.r, now, node, s.current(d.r))
		j.Evidence["link_loss"], j.Evidence["next_loss"] = s.linkLoss, nextLoss
	}
	s.last = j
	return j
}

// current is the window with each outcome's explained loss raised to what the links explain now,
// if that is more: the links' reports lag behind the links (a loss estimate needs its window of
// probes, a record its origination), so a link that has just turned lossy shows up in the probes
// it loses before it shows up in the reports.
func (s *nbrState) current(r detectRules) []healOutcome {
	q := make(map[routing.NodeID]float64, len(s.targets))
	for _, t := range s.targets {
		q[t.id] = explainedLoss(r, s.linkLoss, s.linkSamples, t.nextLoss, t.backLoss)
	}
	out := slices.Clone(s.window)
	for i := range out {
		out[i].q = max(out[i].q, q[out[i].target])
	}
	return out
}

// explainedLoss is the chance that a probe is lost with no fault at the relay: every link the probe
// and its answer cross loses what its measurements say, plus Margin standard errors of those
// measurements, plus BaseLoss for what nothing measures. The probe crosses the link to the
// neighbour and the neighbour's link to the target; its answer crosses them back, or our own link
// to the target (backLoss). A link crossed both ways loses its round-trip loss; one crossed once
// loses at most that, and is charged all of it, since the loss may all be in that direction.
func explainedLoss(r detectRules, linkLoss float64, linkSamples int, nextLoss, backLoss float64) float64 {
	measured := 1 - (1-clamp01(linkLoss))*(1-clamp01(nextLoss))*(1-clamp01(backLoss))
	n := float64(max(1, min(linkSamples, r.RecordSamples)))
	upper := min(1, measured+r.Margin*math.Sqrt(measured*(1-measured)/n))
	return 1 - (1-upper)*(1-r.BaseLoss)
}

// judgePath applies the rules at now to a window of outcomes (oldest first, in the order they
// settled), each with the loss that the links explained for it:
//
//   - the last BlackholeRun or more probes all lost, and the chance of so long a run, the product of
//     their explained losses, at most FalseAlarm: "blackhole", confidence 1 − that chance;
//   - among the outcomes settled at least ReportLag ago, at least MinProbes in the last GreyWindow
//     or in all of them, path loss there at least GreyExcess above the mean explained loss, and the
//     chance of as many losses (a Poisson-binomial tail) at most FalseAlarm: "greyhole", confidence
//     1 − that chance;
//   - a mean explained loss so high that even a full window of losses would be more likely than
//     FalseAlarm: "lossy-path", no verdict;
//   - otherwise "healthy" (or "unknown" with too few outcomes).
func judgePath(r detectRules, now time.Time, node int, window []healOutcome) mapek.Judgement {
	n, lost, run := len(window), 0, 0
	sumQ, runChance := 0.0, 1.0
	for _, o := range window {
		sumQ += o.q
		if o.lost {
			lost, run, runChance = lost+1, run+1, runChance*o.q
		} else {
			run, runChance = 0, 1
		}
	}
	meanQ, pathLoss := 0.0, 0.0
	if n > 0 {
		meanQ, pathLoss = sumQ/float64(n), float64(lost)/float64(n)
	}
	greyChance := 1.0
	m := n // the outcomes settled at least ReportLag ago are a prefix: the window is in settling order
	for m > 0 && window[m-1].at.After(now.Add(-r.ReportLag)) {
		m--
	}
	mature := window[:m]
	for _, size := range []int{min(m, r.GreyWindow), m} {
		if size < r.MinProbes {
			continue
		}
		recent := mature[m-size:]
		k, mean := 0, 0.0
		for _, o := range recent {
			mean += o.q / float64(size)
			if o.lost {
				k++
			}
		}
		if float64(k)/float64(size) >= mean+r.GreyExcess {
			greyChance = min(greyChance, poissonBinomialTail(recent, k))
		}
	}
	j := mapek.Judgement{Node: node, Evidence: map[string]float64{
		"explained_loss": meanQ, "path_loss": pathLoss, "probes": float64(n), "lost": float64(lost),
		"run": float64(run),
	}}
	switch {
	case run >= r.BlackholeRun && runChance <= r.FalseAlarm:
		j.Class, j.Confidence = "blackhole", 1-runChance
		j.Evidence["chance"] = runChance
	case greyChance <= r.FalseAlarm:
		j.Class, j.Confidence = "greyhole", 1-greyChance
		j.Evidence["chance"] = greyChance
	case n > 0 && math.Pow(meanQ, float64(r.Window)) > r.FalseAlarm:
		j.Class = classLossyPath
	case n >= r.MinProbes || (n > 0 && lost == 0):
		j.Class, j.Confidence = classHealthy, 1-pathLoss
	default:
		j.Class = classUnknown
	}
	return j
}

func clamp01(x float64) float64 {
	if !(x > 0) {
		return 0
	}
	return min(x, 1)
}

// poissonBinomialTail is P(X ≥ k) for X the number of lost outcomes, each lost independently with
// its explained loss q.
func poissonBinomialTail(window []healOutcome, k int) float64 {
	if k <= 0 {
		return 1
	}
	// p[j] = P(j losses among the outcomes so far), computed outcome by outcome.
	p := make([]float64, len(window)+1)
	p[0] = 1
	for i, o := range window {
		q := clamp01(o.q)
		for j := i + 1; j >= 1; j-- {
			p[j] = p[j]*(1-q) + p[j-1]*q
		}
		p[0] *= 1 - q
	}
	sum := 0.0
	for j := k; j < len(p); j++ {
		sum += p[j]
	}
	return min(sum, 1)
}
