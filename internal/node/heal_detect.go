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
// other neighbours, from the link-state database), compared with the loss that the link probes of
// A–B and B's own report of B–D explain. A relay that answers its link probes and keeps routing but
// drops what it should forward shows up as path loss far above the link loss. This file is pure:
// time is passed in; heal.go feeds it and sends the probes.

// detectRules are the detector's explicit rules.
type detectRules struct {
	Timeout      time.Duration // 1 s: a probe unanswered this long is lost (4× the target's smoothed RTT if longer)
	Window       int           // 16: outcomes kept per neighbour
	MinProbes    int           // 8: outcomes needed for a grey-hole verdict
	BlackholeRun int           // 3: the most recent this many probes through B all lost
	GreyExcess   float64       // 0.25: path loss at least this far above the explained loss
	MaxLinkLoss  float64       // 0.2: above this, the link itself explains the loss; no verdict
	BaseLoss     float64       // 0.02: loss assumed for the rest of the path (the reply's way back)
	MaxTargets   int           // 3: destinations probed through each neighbour
	MaxPending   int           // 1024: probes in flight at once
}

func (r *detectRules) setDefaults() {
	if r.Timeout <= 0 {
		r.Timeout = time.Second
	}
	if r.Window <= 0 {
		r.Window = 16
	}
	if r.MinProbes <= 0 {
		r.MinProbes = 8
	}
	r.MinProbes = min(r.MinProbes, r.Window)
	if r.BlackholeRun <= 0 {
		r.BlackholeRun = 3
	}
	r.BlackholeRun = min(r.BlackholeRun, r.Window)
	if r.GreyExcess <= 0 {
		r.GreyExcess = 0.25
	}
	if r.MaxLinkLoss <= 0 {
		r.MaxLinkLoss = 0.2
	}
	if r.BaseLoss <= 0 {
		r.BaseLoss = 0.02
	}
	if r.MaxTargets <= 0 {
		r.MaxTargets = 3
	}
	if r.MaxPending <= 0 {
		r.MaxPending = 1024
	}
}

// Detector classes besides mapek's "blackhole" and "greyhole".
const (
	classHealthy   = "healthy"
	classUnknown   = "unknown"    // too few answered-before probes to judge
	classLossyLink = "lossy-link" // the link itself loses; routing's cost already reflects it
)

// healTarget is a destination probed through a neighbour.
type healTarget struct {
	id       routing.NodeID
	addr     netip.Addr
	name     string
	nextLoss float64       // the neighbour's reported loss on its link to the target
	answered bool          // has answered a probe since it became a target: only then do its losses count
	srtt     time.Duration // smoothed RTT of its answered probes
}

type healOutcome struct {
	target routing.NodeID
	lost   bool
}

// nbrView is what the node knows about one neighbour whose link is up, for one step.
type nbrView struct {
	id       routing.NodeID
	name     string
	linkLoss float64      // the link probes' loss
	targets  []healTarget // candidate targets, at most MaxTargets; answered and srtt are ignored
}

type nbrState struct {
	name     string
	linkLoss float64
	targets  []healTarget
	rr       int
	window   []healOutcome // oldest first, at most Window
	last     mapek.Judgement
}

type healProbe struct {
	nbr, target routing.NodeID
	sent        time.Time
}

// detector holds the per-neighbour evidence. Everything in it is bounded: neighbours by the node's
// link limit, targets by MaxTargets, outcomes by Window, probes in flight by MaxPending.
type detector struct {
	r       detectRules
	seq     uint16
	pending map[uint16]healProbe
	nbrs    map[routing.NodeID]*nbrState
	sent    uint64 // probes sent, answered, lost (counted only for answered-before targets)
	ok      uint64
	lost    uint64
}

func newDetector(r detectRules) *detector {
	r.setDefaults()
	return &detector{r: r, pending: map[uint16]healProbe{}, nbrs: map[routing.NodeID]*nbrState{}}
}

// update sets the neighbours whose links are up and their candidate targets. Neighbours not listed
// are forgotten with their probes; a target that left a neighbour's list loses its outcomes and its
// probes, and is unqualified again if it comes back (it must answer before its losses count).
func (d *detector) update(views []nbrView) {
	seen := make(map[routing.NodeID]bool, len(views))
	for _, v := range views {
		seen[v.id] = true
		s := d.nbrs[v.id]
		if s == nil {
			s = &nbrState{}
			d.nbrs[v.id] = s
		}
		s.name, s.linkLoss = v.name, v.linkLoss
		targets := make([]healTarget, 0, min(len(v.targets), d.r.MaxTargets))
		for _, t := range v.targets[:min(len(v.targets), d.r.MaxTargets)] {
			if i := slices.IndexFunc(s.targets, func(o healTarget) bool { return o.id == t.id }); i >= 0 {
				t.answered, t.srtt = s.targets[i].answered, s.targets[i].srtt
			} else {
				t.answered, t.srtt = false, 0
			}
			targets = append(targets, t)
		}
		s.targets = targets
		s.window = slices.DeleteFunc(s.window, func(o healOutcome) bool { return s.target(o.target) == nil })
	}
	for id := range d.nbrs {
		if !seen[id] {
			delete(d.nbrs, id)
		}
	}
	for seq, p := range d.pending {
		if s := d.nbrs[p.nbr]; s == nil || s.target(p.target) == nil {
			delete(d.pending, seq)
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
	d.pending[d.seq] = healProbe{nbr: nbr, target: t.id, sent: now}
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
	d.ok++
	s.add(d.r.Window, healOutcome{target: t.id})
	return true
}

func (s *nbrState) add(window int, o healOutcome) {
	if len(s.window) >= window {
		s.window = append(s.window[:0], s.window[len(s.window)-window+1:]...)
	}
	s.window = append(s.window, o)
}

// expire turns the probes that have waited longer than their timeout into losses, oldest first.
// A target that has never answered contributes nothing: a destination whose firewall refuses echo,
// or which never answered for any reason, is no evidence against the relay.
func (d *detector) expire(now time.Time) {
	var due []healProbe
	for seq, p := range d.pending {
		s := d.nbrs[p.nbr]
		t := s.target(p.target)
		if now.Sub(p.sent) >= max(d.r.Timeout, 4*t.srtt) {
			delete(d.pending, seq)
			if t.answered {
				due = append(due, p)
			}
		}
	}
	slices.SortFunc(due, func(a, b healProbe) int { return a.sent.Compare(b.sent) })
	for _, p := range due {
		d.lost++
		d.nbrs[p.nbr].add(d.r.Window, healOutcome{target: p.target, lost: true})
	}
}

// judge is the detector's verdict on one neighbour (node is the loop's key for it).
func (d *detector) judge(node int, nbr routing.NodeID) mapek.Judgement {
	s := d.nbrs[nbr]
	nextLoss := 0.0
	for _, t := range s.targets {
		nextLoss = max(nextLoss, t.nextLoss)
	}
	j := judgePath(d.r, node, s.window, s.linkLoss, nextLoss)
	s.last = j
	return j
}

// judgePath applies the rules to a window of outcomes (oldest first):
//
//   - explained loss q = 1 − (1 − link loss)(1 − the neighbour's loss to the targets)(1 − BaseLoss);
//   - link loss > MaxLinkLoss: "lossy-link", no verdict (routing prices a lossy link already);
//   - the last BlackholeRun or more probes all lost: "blackhole", confidence 1 − q^run (the chance
//     that so long a run is not explained by q);
//   - at least MinProbes outcomes and path loss ≥ q + GreyExcess: "greyhole", confidence
//     1 − P(Binomial(n, q) ≥ lost);
//   - otherwise "healthy" (or "unknown" with too few outcomes).
func judgePath(r detectRules, node int, window []healOutcome, linkLoss, nextLoss float64) mapek.Judgement {
	n, lost, run := len(window), 0, 0
	for _, o := range window {
		if o.lost {
			lost, run = lost+1, run+1
		} else {
			run = 0
		}
	}
	q := 1 - (1-clamp01(linkLoss))*(1-clamp01(nextLoss))*(1-r.BaseLoss)
	pathLoss := 0.0
	if n > 0 {
		pathLoss = float64(lost) / float64(n)
	}
	j := mapek.Judgement{Node: node, Evidence: map[string]float64{
		"link_loss": linkLoss, "next_loss": nextLoss, "explained_loss": q, "path_loss": pathLoss,
		"probes": float64(n), "lost": float64(lost), "run": float64(run),
	}}
	switch {
	case linkLoss > r.MaxLinkLoss:
		j.Class = classLossyLink
	case run >= r.BlackholeRun:
		j.Class, j.Confidence = "blackhole", 1-math.Pow(q, float64(run))
	case n >= r.MinProbes && pathLoss >= q+r.GreyExcess:
		j.Class, j.Confidence = "greyhole", 1-binomialTail(n, lost, q)
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

// binomialTail is P(X ≥ k) for X ~ Binomial(n, p).
func binomialTail(n, k int, p float64) float64 {
	if k <= 0 || p >= 1 {
		return 1
	}
	sum := 0.0
	for i := k; i <= n; i++ {
		lg, _ := math.Lgamma(float64(n + 1))
		a, _ := math.Lgamma(float64(i + 1))
		b, _ := math.Lgamma(float64(n - i + 1))
		sum += math.Exp(lg - a - b + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return min(sum, 1)
}
