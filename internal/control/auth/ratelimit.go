package auth

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Limiter is a set of token buckets keyed by a string (a client IP, an API key prefix). Each bucket
// holds up to Burst tokens and refills at Rate per second; a request takes one.
//
// The table is bounded: when it holds Max keys, buckets that have refilled completely (idle
// clients) are dropped, at most once a second; if it is still full, every new key shares one
// overflow bucket. Spreading requests over many addresses therefore buys an attacker no more than
// one extra bucket, and costs no memory beyond Max entries.
type Limiter struct {
	rate  float64
	burst float64
	max   int

	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// LimitConfig configures a Limiter. A zero Rate disables limiting.
type LimitConfig struct {
	Rate  float64 `yaml:"rate"`  // requests per second
	Burst int     `yaml:"burst"` // bucket size
}

// NewLimiter returns a limiter tracking at most max keys; cfg.Rate 0 returns nil, which allows
// everything.
func NewLimiter(cfg LimitConfig, max int) (*Limiter, error) {
	if cfg.Rate == 0 {
		return nil, nil
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("rate limit %v: want a positive number", cfg.Rate)
	}
	if cfg.Burst < 1 {
		return nil, errors.New("rate limit burst: want at least 1")
	}
	if max < 1 {
		return nil, errors.New("rate limit table size: want at least 1")
	}
	return &Limiter{rate: cfg.Rate, burst: float64(cfg.Burst), max: max, buckets: make(map[string]*bucket)}, nil
}

// Allow takes a token from key's bucket at time now. When none is left it returns false and how
// long until one will be.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[key] = b
		}
	}
	return l.take(b, now)
}

func (l *Limiter) take(b *bucket, now time.Time) (bool, time.Duration) {
	if b.last.IsZero() {
		b.tokens, b.last = l.burst, now
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that would be full by now; at most once a second, so a flood of new keys
// does not make every call walk the table.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
