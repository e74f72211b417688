package handshake

import (
	"net/netip"
	"time"
)

// rateLimiter is a per-source token bucket with a bounded table (docs/protocol.md §7, step 4).
// Tokens are kept in nanoseconds of refill time, as in wireguard-go's ratelimiter.
type rateLimiter struct {
	cost      int64 // nanoseconds per initiation
	capacity  int64 // cost × burst
	max       int
	table     map[netip.Addr]*bucket
	lastPurge time.Time
}

type bucket struct {
	tokens int64
	last   time.Time
}

func newRateLimiter(perSecond, burst, max int) *rateLimiter {
	cost := int64(time.Second) / int64(perSecond)
	return &rateLimiter{cost: cost, capacity: cost * int64(burst), max: max, table: make(map[netip.Addr]*bucket)}
}

// allow takes one token for addr. full reports that the table had no room for a new source.
func (l *rateLimiter) allow(now time.Time, addr netip.Addr) (ok, full bool) {
	b, found := l.table[addr]
	if !found {
		if len(l.table) >= l.max {
			if !expired(l.lastPurge, now, 250*time.Millisecond) {
				return false, true
			}
			l.purge(now)
			if len(l.table) >= l.max {
				return false, true
			}
		}
		b = &bucket{tokens: l.capacity, last: now}
		l.table[addr] = b
	}
	l.refill(b, now)
	if b.tokens < l.cost {
		return false, false
	}
	b.tokens -= l.cost
	return true, false
}

func (l *rateLimiter) refill(b *bucket, now time.Time) {
	elapsed := now.Sub(b.last)
	if elapsed < 0 {
		// The clock went backwards: start the bucket over from now rather than refilling.
		b.last = now
		return
	}
	b.last = now
	if elapsed > time.Duration(l.capacity) {
		b.tokens = l.capacity
		return
	}
	b.tokens = min(l.capacity, b.tokens+int64(elapsed))
}

// purge drops the sources whose buckets are full again: they hold no information.
func (l *rateLimiter) purge(now time.Time) {
	l.lastPurge = now
	for a, b := range l.table {
		l.refill(b, now)
		if b.tokens >= l.capacity {
			delete(l.table, a)
		}
	}
}
