package handshake

import "time"

// replayCache remembers the hashes of recently processed initiations (SHA-256 of ct1) so that an
// exact replay is dropped before any KEM work (docs/protocol.md §8). It is a FIFO of bounded size;
// entries also expire after ReplayCacheLifetime.
type replayCache struct {
	max    int
	seenAt map[[32]byte]time.Time
	ring   [][32]byte // grows to max, then overwrites the oldest entry at next
	next   int
}

func newReplayCache(size int) *replayCache {
	return &replayCache{max: size, seenAt: make(map[[32]byte]time.Time)}
}

func (c *replayCache) seen(now time.Time, key [32]byte) bool {
	t, ok := c.seenAt[key]
	// A clock that went backwards keeps entries: replay protection must not depend on the clock.
	return ok && (now.Before(t) || now.Sub(t) < ReplayCacheLifetime)
}

func (c *replayCache) add(now time.Time, key [32]byte) {
	if _, ok := c.seenAt[key]; ok {
		c.seenAt[key] = now
		return
	}
	if len(c.ring) < c.max {
		c.ring = append(c.ring, key)
	} else {
		delete(c.seenAt, c.ring[c.next])
		c.ring[c.next] = key
		c.next = (c.next + 1) % len(c.ring)
	}
	c.seenAt[key] = now
}
