package handshake

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// answer is what the responder did with one complete initiation (docs/protocol.md §12.3).
type answer struct {
	src     netip.AddrPort
	at      time.Time
	packets [][]byte // the response packets as sent; nil: the initiation failed after the KEM step
	wire    int      // total bytes of packets
	largest int      // largest packet
}

// answeredCache remembers, for AnsweredLifetime, how the responder answered recent complete
// initiations, so that a duplicate from the same source costs no asymmetric work: it gets a copy of
// the same response, or is dropped if the original failed. It holds at most max entries and evicts
// the oldest first. A nil cache (retransmission disabled) holds nothing.
type answeredCache struct {
	max     int
	entries map[[32]byte]*answer
	order   [][32]byte // insertion order; order[head:] are the live keys
	head    int
}

func newAnsweredCache(max int) *answeredCache {
	return &answeredCache{max: max, entries: make(map[[32]byte]*answer)}
}

// initiationDigest identifies a complete initiation: its index (not part of the logical message)
// and every byte of the logical message.
func initiationDigest(indexI uint32, msg []byte) [32]byte {
	h := sha256.New()
	var idx [4]byte
	binary.LittleEndian.PutUint32(idx[:], indexI)
	h.Write(idx[:])
	h.Write(msg)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// lookup returns the live answer for key from src, or nil.
func (c *answeredCache) lookup(now time.Time, key [32]byte, src netip.AddrPort) *answer {
	if c == nil {
		return nil
	}
	c.expire(now)
	a, ok := c.entries[key]
	if !ok || a.src != src {
		return nil
	}
	return a
}

// add records an answer for key. The packets are copied: the caller hands the originals out.
func (c *answeredCache) add(now time.Time, key [32]byte, src netip.AddrPort, packets []Packet) {
	if c == nil {
		return
	}
	c.expire(now)
	a := &answer{src: src, at: now}
	for _, p := range packets {
		a.packets = append(a.packets, append([]byte(nil), p.Data...))
		a.wire += len(p.Data)
		a.largest = max(a.largest, len(p.Data))
	}
	if _, ok := c.entries[key]; !ok {
		if len(c.entries) >= c.max {
			c.evictOldest()
		}
		c.order = append(c.order, key)
	}
	c.entries[key] = a
}

func (c *answeredCache) len() int {
	if c == nil {
		return 0
	}
	return len(c.entries)
}

// expire drops entries older than AnsweredLifetime from the old end. Entries are in insertion
// order, so it stops at the first live one; a clock that went backwards expires everything.
func (c *answeredCache) expire(now time.Time) {
	if c == nil {
		return
	}
	for c.head < len(c.order) {
		a := c.entries[c.order[c.head]]
		if !expired(a.at, now, AnsweredLifetime) {
			break
		}
		c.evictOldest()
	}
}

func (c *answeredCache) evictOldest() {
	delete(c.entries, c.order[c.head])
	c.order[c.head] = [32]byte{}
	c.head++
	// Compact once the dead prefix is as long as the live part, so order stays within 2 × max.
	if c.head*2 >= len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}
