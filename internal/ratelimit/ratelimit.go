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
	// EvictLRU makes room for a new key in a full table by dropping the key used least recently.
	// Without it a new key is refused until a sweep frees a slot. Eviction suits tables that must
	// never lock a newcomer out (logins, DNS): filling the table only pushes out the filler's own
	// stale keys, and an evicted key comes back with a full bucket, which a second, global limiter
	// bounds. Refusal suits tables where a newcomer may be made to wait (handshakes under load).
	EvictLRU bool
}

// Limiter is the table of buckets. Tokens are kept as nanoseconds of refill time (one token is
// cost nanoseconds), as in wireguard-go's ratelimiter, so refilling is exact integer arithmetic.
type Limiter[K comparable] struct {
	cost       int64 // nanoseconds per token
	capacity   int64 // cost × burst
	maxKeys    int
	sweepEvery time.Duration
	evict      bool
	table      map[K]*bucket[K]
	// lru is the sentinel of a circular list of the table's buckets, most recently used first.
	lru       bucket[K]
	lastSweep time.Time
}

type bucket[K comparable] struct {
	key        K
	tokens     int64
	last       time.Time
	prev, next *bucket[K]
}

// Result is the answer to one request.
type Result struct {
	OK bool
	// Wait, when not OK, is how long until the bucket holds a token; 0 when the key was refused
	// because the table was full.
	Wait time.Duration
	// TableFull says the key was new and found no room, so it was refused (limiters without
	// EvictLRU).
	TableFull bool
	// Evicted says the key was new and the least recently used key was dropped to make room.
	Evicted bool
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
	l := &Limiter[K]{cost: cost, capacity: cost * int64(c.Burst), maxKeys: c.Max, sweepEvery: c.SweepEvery,
		evict: c.EvictLRU, table: make(map[K]*bucket[K])}
	l.lru.prev, l.lru.next = &l.lru, &l.lru
	return l, nil
}

// Allow takes one token from key's bucket at time now.
func (l *Limiter[K]) Allow(now time.Time, key K) Result {
	b, found := l.table[key]
	evicted := false
	if found {
		l.unlink(b)
	} else {
		if len(l.table) >= l.maxKeys {
			l.Sweep(now)
		}
		if len(l.table) >= l.maxKeys {
			if !l.evict {
				return Result{TableFull: true}
			}
			oldest := l.lru.prev
			l.unlink(oldest)
			delete(l.table, oldest.key)
			evicted = true
		}
		b = &bucket[K]{key: key, tokens: l.capacity, last: now}
		l.table[key] = b
	}
	l.pushFront(b)
	r := l.take(b, now)
	r.Evicted = evicted
	return r
}

func (l *Limiter[K]) unlink(b *bucket[K]) {
	b.prev.next, b.next.prev = b.next, b.prev
	b.prev, b.next = nil, nil
}

func (l *Limiter[K]) pushFront(b *bucket[K]) {
	b.prev, b.next = &l.lru, l.lru.next
	l.lru.next.prev = b
	l.lru.next = b
}

func (l *Limiter[K]) take(b *bucket[K], now time.Time) Result {
	l.refill(b, now)
	if b.tokens < l.cost {
		return Result{Wait: time.Duration(l.cost - b.tokens)}
	}
	b.tokens -= l.cost
	return Result{OK: true}
}

func (l *Limiter[K]) refill(b *bucket[K], now time.Time) {
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
			l.unlink(b)
			delete(l.table, k)
		}
	}
}

// Len returns the number of keys tracked.
func (l *Limiter[K]) Len() int { return len(l.table) }

// AddrKey is the key that stands for a client address in a per-client table: an IPv4 address
// stands for its /24, an IPv6 address for its /64. One IPv6 subscriber is normally given a whole
// /64 and can send from any address in it, and one IPv4 host or hosting customer often holds many
// addresses of one /24, so keying by address would let a single party take a slot per address
// and push everyone else out of the table. The price is that clients sharing a /24 (a carrier
// NAT pool) share one bucket: the per-address rates are sized for that (docs/control.md).
func AddrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits) // only the invalid Addr fails, giving the zero Prefix
	return p
}
