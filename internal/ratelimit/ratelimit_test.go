package ratelimit

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func mustNew[K comparable](t testing.TB, c Config) *Limiter[K] {
	t.Helper()
	l, err := New[K](c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBucket(t *testing.T) {
	l := mustNew[string](t, Config{Rate: 2, Burst: 3, Max: 100})
	for i := range 3 {
		if r := l.Allow(t0, "a"); !r.OK {
			t.Fatalf("request %d within the burst refused: %+v", i, r)
		}
	}
	if r := l.Allow(t0, "a"); r.OK || r.Wait != 500*time.Millisecond || r.TableFull {
		t.Fatalf("over the burst: %+v, want refused with 500ms", r)
	}
	if r := l.Allow(t0, "b"); !r.OK {
		t.Fatal("another key shares a's bucket")
	}
	if r := l.Allow(t0.Add(499*time.Millisecond), "a"); r.OK || r.Wait != time.Millisecond {
		t.Fatalf("a millisecond early: %+v", r)
	}
	if r := l.Allow(t0.Add(500*time.Millisecond), "a"); !r.OK {
		t.Fatal("not refilled after the announced wait")
	}
	// A long idle period refills to the burst, no further.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if r := l.Allow(later, "a"); !r.OK {
			t.Fatalf("after an hour, request %d refused", i)
		}
	}
	if l.Allow(later, "a").OK {
		t.Fatal("bucket refilled past its burst")
	}
}

func TestClockBackwards(t *testing.T) {
	l := mustNew[string](t, Config{Rate: 1, Burst: 1, Max: 10})
	l.Allow(t0, "a")
	// Going back in time refills nothing, and the bucket's clock restarts from the earlier time.
	if l.Allow(t0.Add(-time.Hour), "a").OK {
		t.Fatal("refilled by a clock going backwards")
	}
	if !l.Allow(t0.Add(-time.Hour+time.Second), "a").OK {
		t.Fatal("not refilled a second after the restarted clock")
	}
}

func TestTableFull(t *testing.T) {
	t.Run("evict", func(t *testing.T) {
		l := mustNew[string](t, Config{Rate: 1, Burst: 2, Max: 10, EvictLRU: true})
		// 1000 distinct keys: the table never grows past 10, and each new key gets a bucket of its
		// own by pushing out the least recently used one.
		allowed, evicted := 0, 0
		for i := range 1000 {
			r := l.Allow(t0, fmt.Sprintf("ip-%d", i))
			if r.OK {
				allowed++
			}
			if r.Evicted {
				evicted++
			}
			if r.TableFull {
				t.Fatalf("key %d refused in a limiter that evicts: %+v", i, r)
			}
			if l.Len() > 10 {
				t.Fatalf("table grew to %d", l.Len())
			}
		}
		if allowed != 1000 || evicted != 990 {
			t.Fatalf("%d allowed, %d evictions; want 1000 and 990", allowed, evicted)
		}
		// A key used again moves to the front: after touching ip-990, the next newcomer evicts
		// ip-991, the least recently used, and ip-990 keeps its bucket with one token left.
		l.Allow(t0, "ip-990")
		l.Allow(t0, "new")
		if r := l.Allow(t0, "ip-990"); r.OK || r.Evicted {
			t.Fatalf("ip-990 lost its bucket: %+v", r)
		}
		if r := l.Allow(t0, "ip-991"); !r.OK || !r.Evicted {
			t.Fatalf("ip-991 was not the one evicted: %+v", r)
		}
		// Once the tracked keys have refilled they are swept, and new keys find room without eviction.
		if r := l.Allow(t0.Add(10*time.Second), "fresh"); !r.OK || r.Evicted {
			t.Fatalf("new key after the idle ones could be swept: %+v", r)
		}
		if l.Len() != 1 {
			t.Fatalf("after the sweep %d keys tracked, want 1", l.Len())
		}
	})
	t.Run("refuse", func(t *testing.T) {
		l := mustNew[int](t, Config{Rate: 1, Burst: 1, Max: 2, SweepEvery: 250 * time.Millisecond})
		l.Allow(t0, 1)
		l.Allow(t0, 2)
		if r := l.Allow(t0, 3); r.OK || !r.TableFull || r.Wait != 0 {
			t.Fatalf("third key in a table of 2: %+v", r)
		}
		// At 1.1 s both buckets have refilled and the last sweep is older than SweepEvery, so the
		// idle keys go and the new one gets a bucket.
		if r := l.Allow(t0.Add(1100*time.Millisecond), 3); !r.OK {
			t.Fatalf("after the others refilled: %+v", r)
		}
	})
	t.Run("sweep period", func(t *testing.T) {
		l := mustNew[int](t, Config{Rate: 10, Burst: 1, Max: 1, SweepEvery: time.Second})
		l.Allow(t0, 1)
		// The table is full; a sweep at t0 finds key 1 empty and is the last for a second.
		if r := l.Allow(t0, 2); !r.TableFull {
			t.Fatalf("%+v", r)
		}
		// Key 1 refilled after 100 ms, but the next sweep waits for the period.
		if r := l.Allow(t0.Add(500*time.Millisecond), 2); !r.TableFull {
			t.Fatalf("swept before the period: %+v", r)
		}
		if r := l.Allow(t0.Add(time.Second), 2); r.TableFull || !r.OK {
			t.Fatalf("not swept after the period: %+v", r)
		}
	})
}

func TestSweepKeepsBusyKeys(t *testing.T) {
	l := mustNew[string](t, Config{Rate: 1, Burst: 2, Max: 10})
	l.Allow(t0, "idle")
	l.Allow(t0, "busy")
	l.Allow(t0.Add(900*time.Millisecond), "busy")
	l.Sweep(t0.Add(1500 * time.Millisecond))
	if l.Len() != 1 {
		t.Fatalf("%d keys after the sweep, want only the busy one", l.Len())
	}
	if r := l.Allow(t0.Add(1500*time.Millisecond), "busy"); !r.OK {
		t.Fatalf("busy key lost its tokens: %+v", r)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Rate: 0, Burst: 1, Max: 1}, {Rate: -1, Burst: 1, Max: 1}, {Rate: 2e9, Burst: 1, Max: 1},
		{Rate: 1, Burst: 0, Max: 1}, {Rate: 1, Burst: 1, Max: 0}, {Rate: 1e-9, Burst: 1e6, Max: 1},
	} {
		if _, err := New[string](c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := New[string](Config{Rate: 0.01, Burst: 1000000, Max: 1}); err != nil {
		t.Errorf("slow rate with a large burst refused: %v", err)
	}
}

func TestAddrKey(t *testing.T) {
	for _, c := range []struct{ addr, key string }{
		{"192.0.2.7", "192.0.2.0/24"},
		{"::ffff:192.0.2.7", "192.0.2.0/24"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := AddrKey(netip.MustParseAddr(c.addr)).String(); got != c.key {
			t.Errorf("AddrKey(%s) = %s, want %s", c.addr, got, c.key)
		}
	}
}

// TestPrefixFloodLocksNoOneOut is the login-table finding: one party that sends from many
// addresses, whether of one /64 or of many prefixes, must not lock a newcomer out.
func TestPrefixFloodLocksNoOneOut(t *testing.T) {
	// One /64 can hold only one slot of a table, however many addresses it sends from.
	l := mustNew[netip.Prefix](t, Config{Rate: 1, Burst: 1, Max: 4, EvictLRU: true})
	base := netip.MustParseAddr("2001:db8::").As16()
	for i := range 1000 {
		a := base
		binary.BigEndian.PutUint64(a[8:], uint64(i))
		l.Allow(t0, AddrKey(netip.AddrFrom16(a)))
	}
	if l.Len() != 1 {
		t.Fatalf("one /64 took %d slots", l.Len())
	}
	if r := l.Allow(t0, AddrKey(netip.MustParseAddr("2001:db8:0:1::1"))); !r.OK || r.TableFull {
		t.Fatalf("another /64 after a flood from one: %+v", r)
	}
	// A party holding many /64s fills the table and keeps hammering it; a newcomer still gets a
	// bucket of its own with its whole burst, rather than a share of a bucket the flood has drained.
	for i := range 10000 {
		a := base
		binary.BigEndian.PutUint64(a[:8], 0x20010db8_00010000|uint64(i))
		l.Allow(t0, AddrKey(netip.AddrFrom16(a)))
	}
	for _, a := range []string{"192.0.2.7", "2001:db8:ffff:1::1"} {
		if r := l.Allow(t0, AddrKey(netip.MustParseAddr(a))); !r.OK || r.TableFull {
			t.Fatalf("%s locked out after a flood of /64s: %+v", a, r)
		}
	}
	if l.Len() > 4 {
		t.Fatalf("table grew to %d", l.Len())
	}
}

// FuzzLimiter drives a limiter with arbitrary keys and forward time steps and checks the bounds
// that must hold whatever the callers do: the table never holds more than Max keys; no key's own
// bucket grants more than Burst plus what the elapsed time refills while the key stays tracked;
// and a refusal with a wait is lifted exactly when the wait is over.
func FuzzLimiter(f *testing.F) {
	f.Add([]byte{0x21, 0, 0, 1, 0, 2, 0, 3, 0, 0, 40, 1, 1})
	f.Add([]byte{0xff, 5, 1, 5, 1, 5, 1, 6, 200, 7, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 1 {
			return
		}
		burst, maxKeys, evict := int(b[0]&3)+1, int(b[0]>>2&7)+1, b[0]&0x20 != 0
		const rate = 4 // tokens per second: one every 250 ms
		l, err := New[byte](Config{Rate: rate, Burst: burst, Max: maxKeys, EvictLRU: evict, SweepEvery: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		type use struct {
			first time.Time
			n     int
		}
		budget := func(u *use, now time.Time) int { return burst + int(now.Sub(u.first)/(time.Second/rate)) }
		own := map[byte]*use{}
		now := t0
		for i := 1; i+1 < len(b); i += 2 {
			key := b[i] & 15
			now = now.Add(time.Duration(b[i+1]) * 10 * time.Millisecond)
			r := l.Allow(now, key)
			if l.Len() > maxKeys {
				t.Fatalf("%d keys tracked, max %d", l.Len(), maxKeys)
			}
			if r.TableFull && (evict || r.OK || r.Wait != 0) {
				t.Fatalf("table full: %+v", r)
			}
			if r.Evicted && !evict {
				t.Fatalf("evicted without EvictLRU: %+v", r)
			}
			if r.TableFull {
				continue
			}
			if r.Evicted {
				// Some key lost its bucket and will come back with a full one. No bucket ever
				// holds more than Burst, so restarting every budget now keeps them upper bounds.
				clear(own)
			}
			u := own[key]
			if u == nil {
				u = &use{first: now}
				own[key] = u
			}
			if r.OK {
				u.n++
				if u.n > budget(u, now) {
					t.Fatalf("key %d: %d granted, budget %d", key, u.n, budget(u, now))
				}
			}
			if !r.OK && r.Wait > 0 && !r.TableFull {
				if l.Allow(now.Add(r.Wait-1), key).OK {
					t.Fatalf("key %d allowed before its wait %v was over", key, r.Wait)
				}
				now = now.Add(r.Wait)
				if !l.Allow(now, key).OK {
					t.Fatalf("key %d refused after its wait %v", key, r.Wait)
				}
				u.n++
			}
		}
	})
}
