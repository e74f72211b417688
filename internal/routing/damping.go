package routing

import (
	"errors"
	"math"
	"time"
)

// Flap damping (RFC 2439 in spirit, applied to links instead of BGP routes; docs/routing.md, "Flap
// damping"). Every loss of an up link (LinkDown of a neighbour that was up) adds a penalty to that
// neighbour; the penalty decays exponentially with a half-life. A penalty above the suppress
// threshold suppresses the link until it has decayed to the reuse threshold, and a ceiling on the
// penalty bounds how long that can take after the last flap. A suppressed link is not withdrawn —
// in a mesh it may be the only way somewhere — but advertised at the cost of a link losing
// PenaltyLoss of its packets, as self-healing does for a relay it distrusts: every node's SPF routes
// around it and still uses it as a last resort. A link's cost is the larger of its ends' reports, so
// one end's suppression is enough.
//
// LinkUp adds nothing: a flap is a down-and-up cycle and the down is what costs traffic; counting
// the up as well would penalise every new adjacency and every neighbour restart, and make a single
// failure and its repair weigh as much as two flaps.

// DampingConfig configures flap damping. Zero fields take the defaults shown; Disabled turns damping
// off (every link is advertised at its measured cost).
type DampingConfig struct {
	Disabled    bool
	Penalty     float64       // 1000: added each time an up link goes down
	Suppress    float64       // 2000: a link whose penalty exceeds this is suppressed...
	Reuse       float64       // 750: ...until the penalty has decayed to this
	HalfLife    time.Duration // 15 s: the penalty halves in this time
	MaxSuppress time.Duration // 60 s: the longest a link stays suppressed after its last flap
}

func (c *DampingConfig) setDefaults() error {
	if c.Disabled {
		return nil
	}
	def := func(v *float64, d float64) {
		if !(*v > 0) { // zero, negative or NaN
			*v = d
		}
	}
	def(&c.Penalty, 1000)
	def(&c.Suppress, 2000)
	def(&c.Reuse, 750)
	if c.HalfLife <= 0 {
		c.HalfLife = 15 * time.Second
	}
	if c.MaxSuppress <= 0 {
		c.MaxSuppress = 60 * time.Second
	}
	if math.IsInf(c.Penalty, 0) || math.IsInf(c.Suppress, 0) {
		return errors.New("routing: damping penalty and suppress threshold must be finite")
	}
	if c.Reuse >= c.Suppress {
		return errors.New("routing: damping reuse threshold must be below the suppress threshold")
	}
	if c.ceiling() <= c.Suppress {
		return errors.New("routing: damping MaxSuppress is too short for the penalty ever to exceed the suppress threshold")
	}
	return nil
}

// ceiling is the largest penalty kept: Reuse·2^(MaxSuppress/HalfLife), the penalty that takes
// MaxSuppress to decay to Reuse.
func (c *DampingConfig) ceiling() float64 {
	return c.Reuse * math.Exp2(float64(c.MaxSuppress)/float64(c.HalfLife))
}

// flapState is the damping state of one neighbour.
type flapState struct {
	penalty  float64   // at time at
	at       time.Time // the last flap
	reuseAt  time.Time // suppressed before this (zero: not suppressed)
	forgetAt time.Time // the penalty is below Reuse/2 from this time on: the state is forgotten
}

// damper holds the flap penalties. State exists only for neighbours whose link went down recently
// (at most MaxSuppress + HalfLife ago, the time a penalty at the ceiling takes to fall below Reuse/2),
// and never for more than limit neighbours.
type damper struct {
	cfg     DampingConfig
	ceiling float64
	limit   int
	flaps   map[NodeID]*flapState
	due     time.Time // the earliest reuseAt or forgetAt (zero: none)
}

func newDamper(cfg DampingConfig, limit int) damper {
	d := damper{cfg: cfg, limit: limit}
	if !cfg.Disabled {
		d.ceiling = cfg.ceiling()
	}
	return d
}

// penaltyAt returns s's penalty decayed to now.
func (d *damper) penaltyAt(s *flapState, now time.Time) float64 {
	dt := max(now.Sub(s.at), 0)
	return s.penalty * math.Exp2(-float64(dt)/float64(d.cfg.HalfLife))
}

// decayTime returns how long penalty p takes to decay to x, rounded up (at most limit).
func (d *damper) decayTime(p, x float64, limit time.Duration) time.Duration {
	if p <= x {
		return 0
	}
	t := math.Ceil(float64(d.cfg.HalfLife) * math.Log2(p/x))
	if t >= float64(limit) {
		return limit
	}
	return time.Duration(t)
}

// flap records that the link to id went down at now. It reports whether the link became suppressed.
func (d *damper) flap(now time.Time, id NodeID) bool {
	if d.cfg.Disabled {
		return false
	}
	s := d.flaps[id]
	if s == nil {
		if d.flaps == nil {
			d.flaps = make(map[NodeID]*flapState)
		}
		if len(d.flaps) >= d.limit {
			d.evict()
		}
		s = &flapState{}
		d.flaps[id] = s
	}
	wasSuppressed := now.Before(s.reuseAt)
	if !wasSuppressed {
		s.reuseAt = time.Time{}
	}
	s.penalty = min(d.penaltyAt(s, now)+d.cfg.Penalty, d.ceiling)
	s.at = now
	if wasSuppressed || s.penalty > d.cfg.Suppress {
		s.reuseAt = now.Add(d.decayTime(s.penalty, d.cfg.Reuse, d.cfg.MaxSuppress))
	}
	s.forgetAt = now.Add(d.decayTime(s.penalty, d.cfg.Reuse/2, d.cfg.MaxSuppress+d.cfg.HalfLife))
	d.lowerDue(s.forgetAt)
	if !s.reuseAt.IsZero() {
		d.lowerDue(s.reuseAt)
	}
	return !wasSuppressed && now.Before(s.reuseAt)
}

func (d *damper) lowerDue(t time.Time) {
	if d.due.IsZero() || t.Before(d.due) {
		d.due = t
	}
}

// evict forgets the neighbour whose state would be forgotten first. Only a router with more
// flapping neighbours than the LSDB holds nodes gets here.
func (d *damper) evict() {
	var victim NodeID
	var first time.Time
	for id, s := range d.flaps {
		if first.IsZero() || s.forgetAt.Before(first) || s.forgetAt.Equal(first) && cmpID(id, victim) < 0 {
			victim, first = id, s.forgetAt
		}
	}
	delete(d.flaps, victim)
}

// suppressed reports whether the link to id is suppressed at now.
func (d *damper) suppressed(id NodeID, now time.Time) bool {
	s := d.flaps[id]
	return s != nil && now.Before(s.reuseAt)
}

// expire ends the suppressions that are over and forgets decayed state; it calls reused with each
// neighbour whose suppression ended.
func (d *damper) expire(now time.Time, reused func(NodeID)) {
	if d.due.IsZero() || now.Before(d.due) {
		return
	}
	d.due = time.Time{}
	for id, s := range d.flaps {
		if !s.reuseAt.IsZero() && !now.Before(s.reuseAt) {
			s.reuseAt = time.Time{}
			reused(id)
		}
		if !now.Before(s.forgetAt) {
			delete(d.flaps, id)
			continue
		}
		d.lowerDue(s.forgetAt)
		if !s.reuseAt.IsZero() {
			d.lowerDue(s.reuseAt)
		}
	}
}

// ---- the router's side ----

// dampTick ends suppressions that are over: a link that is up is advertised at its measured cost
// again, as a topology change (origination at once unless the topology hold-down is running), not
// as a metric change, which could wait MetricInterval.
func (r *Router) dampTick(now time.Time) {
	r.damp.expire(now, func(id NodeID) {
		if r.nbrs[id] != nil {
			r.pendingTopo = true
		}
	})
}

// dampLinkDown counts the loss of the up link to id as a flap.
func (r *Router) dampLinkDown(now time.Time, id NodeID) {
	if r.damp.flap(now, id) {
		r.stats.Suppressed++
	}
}

// advertisedCost is the cost the router advertises for the link to nb: the measured cost (after
// hysteresis), or while the link is suppressed the cost of the same link losing PenaltyLoss of its
// packets, if that is higher.
func (r *Router) advertisedCost(nb *neighbour) uint32 {
	if !r.damp.suppressed(nb.id, r.now) {
		return nb.advCost
	}
	return max(nb.advCost, LinkCost(Metrics{RTT: nb.metrics.RTT, Loss: PenaltyLoss}))
}

// FlapPenalty returns the flap-damping penalty of the link to neighbour id at the latest time the
// router was given, and whether the link is suppressed (advertised at the penalty cost).
func (r *Router) FlapPenalty(id NodeID) (penalty float64, suppressed bool) {
	s := r.damp.flaps[id]
	if s == nil {
		return 0, false
	}
	return r.damp.penaltyAt(s, r.now), r.now.Before(s.reuseAt)
}
