package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Config configures a Limiter.
type Config struct {
	Rate  float64 // tokens per second, at most 1e9
	Burst int     // bucket size, at least 1
	Max   int     // keys tracked, at least 1
	// SweepEvery is the least time between two sweeps for idle keys; a table that stays full then
	// costs one walk per period, not one per request. 0 means one second.
	SweepEvery time.Duration
	// Overflow lets every new key share one extra bucket while the table is full. Without it a new
	// key is refused until a sweep frees a slot.
	Overflow bool
}

// Limiter is the table of buckets. Tokens are kept as nanoseconds of refill time (one token is
// cost nanoseconds), as in wireguard-go's ratelimiter, so refilling is exact integer arithmetic.
type Limiter[K comparable] struct {
	cost       int64 // nanoseconds per token
	capacity   int64 // cost × burst
	maxKeys    int
	sweepEvery time.Duration
	overflow   bool
	spill      bucket // the overflow bucket
	table      map[K]bucket
	lastSweep  time.Time
}

type bucket struct {
	tokens int64
	last   time.Time
}

// Result is the answer to one request.
type Result struct {
	OK bool
	// Wait, when not OK, is how long until the bucket holds a token; 0 when the key was refused
	// because the table was full.
	Wait time.Duration
	// TableFull says the key was new and found no room: it shared the overflow bucket, or was
	// refused when the limiter has none.
	TableFull bool
}

// New returns an empty limiter.
func New[K comparable](c Config) (*Limiter[K], error) {
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		return nil, fmt.Errorf("rate limit %v: want a positive number", c.Rate)
	}
	if c.Rate > 1e9 {
		return nil, fmt.Errorf("rate limit %v: want at most 1e9 per second", c.Rate)
	}
	if c.Burst < 1 {
		return nil, errors.New("rate limit burst: want at least 1")
	}
	if c.Max < 1 {
		return nil, errors.New("rate limit table size: want at least 1")
	}
	cost := int64(math.Round(float64(time.Second) / c.Rate))
	if int64(c.Burst) > math.MaxInt64/cost {
		return nil, fmt.Errorf("rate limit burst %d at %v per second: a full bucket would take longer than 292 years to refill", c.Burst, c.Rate)
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = time.Second
	}
	capacity := cost * int64(c.Burst)
	return &Limiter[K]{cost: cost, capacity: capacity, maxKeys: c.Max, sweepEvery: c.SweepEvery,
		overflow: c.Overflow, spill: bucket{tokens: capacity}, table: make(map[K]bucket)}, nil
}

// Allow takes one token from key's bucket at time now.
func (l *Limiter[K]) Allow(now time.Time, key K) Result {
	b, found := l.table[key]
	if !found {
		if len(l.table) >= l.maxKeys {
			l.Sweep(now)
		}
		if len(l.table) >= l.maxKeys {
			if !l.overflow {
				return Result{TableFull: true}
			}
			r := l.take(&l.spill, now)
			r.TableFull = true
			return r
		}
		b = bucket{tokens: l.capacity, last: now}
	}
	r := l.take(&b, now)
	l.table[key] = b
	return r
}

func (l *Limiter[K]) take(b *bucket, now time.Time) Result {
	l.refill(b, now)
	if b.tokens < l.cost {
		return Result{Wait: time.Duration(l.cost - b.tokens)}
	}
	b.tokens -= l.cost
	return Result{OK: true}
}

func (l *Limiter[K]) refill(b *bucket, now time.Time) {
	elapsed := now.Sub(b.last)
	b.last = now
	switch {
	case elapsed < 0:
		// The clock went backwards: restart the bucket's clock rather than refill it.
	case elapsed >= time.Duration(l.capacity-b.tokens):
		b.tokens = l.capacity
	default:
		b.tokens += int64(elapsed)
	}
}

// Sweep drops the keys whose buckets have refilled completely, which hold no information, if
// SweepEvery has passed since the last sweep (or the clock went backwards). Allow sweeps a full
// table itself; owners with a timer call Sweep so that idle keys do not linger.
func (l *Limiter[K]) Sweep(now time.Time) {
	if !now.Before(l.lastSweep) && now.Sub(l.lastSweep) < l.sweepEvery {
		return
	}
	l.lastSweep = now
	for k, b := range l.table {
		if el := now.Sub(b.last); el >= 0 && el >= time.Duration(l.capacity-b.tokens) {
			delete(l.table, k)
		}
	}
}

// Len returns the number of keys tracked.
func (l *Limiter[K]) Len() int { return len(l.table) }

// AddrKey is the key that stands for a client address in a per-client table: an IPv4 address
// stands for itself, an IPv6 address for its /64. One IPv6 subscriber is normally given a whole
// /64 and can send from any address in it, so keying by address would let a single host take
// every slot of the table and push everyone else's new addresses into the overflow bucket.
func AddrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits) // only the invalid Addr fails, giving the zero Prefix
	return p
}
