package control

import (
	"fmt"
	"math"
	"time"
)

// How long the advisor holds an advisory (docs/intelligence.md, "Holding an advisory"; docs/control.md,
// "Cost advisories"). A relay named and then left by the traffic has nothing left to lose, so its
// deficit fades: that is absence of evidence, which holds the advisory, never evidence of repair.
// Every naming therefore starts a hold, damped as BGP damps flapping routes (RFC 2439): each naming
// adds 1 to the relay's penalty, which halves every half-life while the relay is not named (while
// held it carries no traffic and earns nothing, so the penalty stands still; RFC 2439 likewise
// decays the penalty of an unreachable route at its own rate); a naming with penalty P holds for
// hold·2^(P−1), at most max_hold; a naming that brings P to suppress or above holds absolutely (clean
// judgements do not end it early); and a relay not named whose penalty has decayed below reuse is
// forgotten.

// AdvisoryDamping is the ai.advisories.damping section.
type AdvisoryDamping struct {
	Hold     time.Duration `yaml:"hold"`      // 2 min: the hold of a first naming
	MaxHold  time.Duration `yaml:"max_hold"`  // 30 min: the longest hold
	HalfLife time.Duration `yaml:"half_life"` // 15 min: the penalty halves in this time, while not named
	Suppress float64       `yaml:"suppress"`  // 1.5: a naming with at least this penalty holds absolutely
	Reuse    float64       `yaml:"reuse"`     // 0.5: below this, a relay not named is forgotten
}

func (c *AdvisoryDamping) setDefaults() {
	orDefault(&c.Hold, 2*time.Minute)
	orDefault(&c.MaxHold, 30*time.Minute)
	orDefault(&c.HalfLife, 15*time.Minute)
	orDefault(&c.Suppress, 1.5)
	orDefault(&c.Reuse, 0.5)
}

// orDefault sets *v to def where it is the zero value (the key was left out).
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *AdvisoryDamping) validate() error {
	switch {
	case c.Hold < 10*time.Second || c.Hold > 24*time.Hour:
		return fmt.Errorf("config: ai.advisories.damping.hold %s: want 10s to 24h", c.Hold)
	case c.MaxHold < c.Hold || c.MaxHold > 24*time.Hour:
		return fmt.Errorf("config: ai.advisories.damping.max_hold %s: want hold (%s) to 24h", c.MaxHold, c.Hold)
	case c.HalfLife < time.Minute || c.HalfLife > 24*time.Hour:
		return fmt.Errorf("config: ai.advisories.damping.half_life %s: want 1m to 24h", c.HalfLife)
	case !(c.Reuse > 0 && c.Reuse < 1):
		return fmt.Errorf("config: ai.advisories.damping.reuse %v: want more than 0 and less than 1 (a first naming's penalty)", c.Reuse)
	case !(c.Suppress > 1 && c.Suppress <= c.ceiling()):
		return fmt.Errorf("config: ai.advisories.damping.suppress %v: want more than 1 (a first naming's penalty) and at most the ceiling 1 + log2(max_hold/hold) = %.3g", c.Suppress, c.ceiling())
	}
	return nil
}

// ceiling is the largest penalty kept: the one whose hold is max_hold.
func (c *AdvisoryDamping) ceiling() float64 {
	return 1 + math.Log2(float64(c.MaxHold)/float64(c.Hold))
}

// holdFor is how long a naming that brought the penalty to p holds.
func (c *AdvisoryDamping) holdFor(p float64) time.Duration {
	return time.Duration(min(float64(c.Hold)*math.Exp2(p-1), float64(c.MaxHold)))
}

// namingRecord is a relay's damping state: its penalty at a time, which is its last release while
// it is not named.
type namingRecord struct {
	penalty float64
	at      time.Time
}

// decayed returns the penalty decayed to now.
func (r namingRecord) decayed(c *AdvisoryDamping, now time.Time) float64 {
	if r.penalty == 0 {
		return 0
	}
	return r.penalty * math.Exp2(-float64(max(now.Sub(r.at), 0))/float64(c.HalfLife))
}

// named charges a naming at now and returns the new penalty and the naming's hold.
func (r *namingRecord) named(c *AdvisoryDamping, now time.Time) (float64, time.Duration) {
	r.penalty, r.at = min(r.decayed(c, now)+1, c.ceiling()), now
	return r.penalty, c.holdFor(r.penalty)
}

// released notes the end of a naming at now: the penalty, which stood still while the relay was
// held, decays from here.
func (r *namingRecord) released(now time.Time) { r.at = now }

// forgetIfDecayed clears the record once its penalty has decayed below reuse.
func (r *namingRecord) forgetIfDecayed(c *AdvisoryDamping, now time.Time) {
	if r.penalty != 0 && r.decayed(c, now) < c.Reuse {
		*r = namingRecord{}
	}
}
