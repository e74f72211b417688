package auth

import (
	"sync"
	"time"

	"x0tta6bl4/internal/ratelimit"
)

// Limiter is a set of token buckets keyed by a string (a client address key, an API key prefix),
// safe for concurrent use. Each bucket holds up to Burst tokens and refills at Rate per second; a
// request takes one.
//
// The table is bounded: when it holds max keys, buckets that have refilled completely (idle
// clients) are dropped, at most once a second; if it is still full, the key used least recently
// is dropped to make room. Filling the table therefore never locks a newcomer out: it only pushes
// out keys that have gone quiet, and costs no memory beyond max entries. Callers key clients with
// ratelimit.AddrKey, so that one IPv6 /64 or IPv4 /24 counts as one client.
type Limiter struct {
	mu sync.Mutex
	l  *ratelimit.Limiter[string]
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
	l, err := ratelimit.New[string](ratelimit.Config{Rate: cfg.Rate, Burst: cfg.Burst, Max: max, SweepEvery: time.Second, EvictLRU: true})
	if err != nil {
		return nil, err
	}
	return &Limiter{l: l}, nil
}

// Allow takes a token from key's bucket at time now. When none is left it returns false and how
// long until one will be.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.l.Allow(now, key)
	return r.OK, r.Wait
}

// Len returns the number of keys tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.l.Len()
}
