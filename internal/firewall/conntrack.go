package firewall

import (
	"sync"
	"time"
)

// Fixed conntrack timeouts (the configurable ones are in ConntrackConfig).
const (
	unrepliedTimeout = 30 * time.Second // a flow seen in one direction only
	closingTimeout   = 10 * time.Second // TCP after RST, or FIN both ways
	fragmentTimeout  = 5 * time.Second  // after the previous fragment of a datagram
	// reclaimPerInsert bounds the expired flows removed from each list's tail when a flow is added.
	reclaimPerInsert = 2
)

type direction uint8

const (
	dirIn direction = iota
	dirOut
)

type flowKind uint8

const (
	kindFlow     flowKind = iota // TCP, UDP (ports) or another protocol (no ports)
	kindEcho                     // ICMPv6 echo: localPort holds the identifier, remotePort the origin direction
	kindFragment                 // remotePort, localPort hold the fragment identification
)

// flowKey names a flow from the local node's point of view. remote is the peer's certified overlay
// address (checked before any lookup), so a key is bound to the peer's key pair.
type flowKey struct {
	remote, local         [16]byte
	remotePort, localPort uint16
	proto                 uint8
	kind                  flowKind
}

// class is a flow's state; flows of one class share an idle timeout and an LRU list.
type class uint8

const (
	classUnreplied class = iota
	classFragment
	classTCP
	classUDP
	classOther
	classClosing
	numClasses
)

type entry struct {
	key     flowKey
	expires int64  // nanoseconds since the firewall's epoch
	gen     uint64 // ruleset generation that last allowed the flow
	prev    int32  // towards the list head (more recent); -1 at the head
	next    int32  // towards the tail (older); -1 at the tail; free-list link when unused
	class   class
	origin  direction
	replied bool
	finOrig bool
	finRepl bool
	rst     bool
}

type list struct{ head, tail int32 }

// conntrack is the flow table: a map from key to a slot of entries, one LRU list per class (so the
// oldest flows of a class are at its tail) and a count of flows per peer. All fields are guarded by mu.
type conntrack struct {
	mu      sync.Mutex
	max     int
	perPeer int
	index   map[flowKey]int32
	entries []entry
	free    int32
	lists   [numClasses]list
	peers   map[[16]byte]int32
	stats   Stats
}

func newConntrack(maxEntries, perPeer int) *conntrack {
	ct := &conntrack{
		max:     maxEntries,
		perPeer: perPeer,
		index:   make(map[flowKey]int32),
		peers:   make(map[[16]byte]int32),
		free:    -1,
	}
	for i := range ct.lists {
		ct.lists[i] = list{-1, -1}
	}
	return ct
}

func (ct *conntrack) unlink(i int32) {
	e := &ct.entries[i]
	l := &ct.lists[e.class]
	if e.prev >= 0 {
		ct.entries[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next >= 0 {
		ct.entries[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (ct *conntrack) pushFront(i int32) {
	e := &ct.entries[i]
	l := &ct.lists[e.class]
	e.prev, e.next = -1, l.head
	if l.head >= 0 {
		ct.entries[l.head].prev = i
	} else {
		l.tail = i
	}
	l.head = i
}

// touch moves flow i to class c with a new expiry, as the most recent flow of c.
func (ct *conntrack) touch(i int32, c class, expires int64) {
	ct.unlink(i)
	ct.entries[i].class = c
	ct.entries[i].expires = expires
	ct.pushFront(i)
}

func (ct *conntrack) remove(i int32) {
	ct.unlink(i)
	e := &ct.entries[i]
	delete(ct.index, e.key)
	if n := ct.peers[e.key.remote] - 1; n > 0 {
		ct.peers[e.key.remote] = n
	} else {
		delete(ct.peers, e.key.remote)
	}
	*e = entry{prev: -1, next: ct.free}
	ct.free = i
}

// lookup returns the live flow of key, removing it if it has expired.
func (ct *conntrack) lookup(key *flowKey, t int64) (int32, bool) {
	i, ok := ct.index[*key]
	if !ok {
		return -1, false
	}
	if t >= ct.entries[i].expires {
		ct.remove(i)
		ct.stats.Expired++
		return -1, false
	}
	return i, true
}

// reclaim removes up to n expired flows from the tail of every list (n < 0: all it finds) and
// returns how many it removed. Flows are ordered by last use within a class, so the tail expires first.
func (ct *conntrack) reclaim(t int64, n int) int {
	removed := 0
	for c := range ct.lists {
		for k := 0; n < 0 || k < n; k++ {
			i := ct.lists[c].tail
			if i < 0 || t < ct.entries[i].expires {
				break
			}
			ct.remove(i)
			removed++
		}
	}
	ct.stats.Expired += uint64(removed)
	return removed
}

// insert adds a flow. It reports reasonRule on success, or why the table refused it.
func (ct *conntrack) insert(key *flowKey, t int64, c class, expires int64, origin direction, gen uint64) Reason {
	if i, ok := ct.lookup(key, t); ok { // another goroutine added it meanwhile
		ct.entries[i].gen = max(ct.entries[i].gen, gen)
		return ReasonRule
	}
	ct.reclaim(t, reclaimPerInsert)
	if int(ct.peers[key.remote]) >= ct.perPeer {
		ct.reclaim(t, -1)
		if int(ct.peers[key.remote]) >= ct.perPeer {
			ct.stats.RefusedPeerLimit++
			return ReasonPeerLimit
		}
	}
	if len(ct.index) >= ct.max {
		ct.reclaim(t, -1)
	}
	for len(ct.index) >= ct.max {
		if !ct.earlyDrop() {
			ct.stats.RefusedFull++
			return ReasonConntrackFull
		}
	}
	i := ct.free
	if i >= 0 {
		ct.free = ct.entries[i].next
	} else {
		ct.entries = append(ct.entries, entry{})
		i = int32(len(ct.entries) - 1)
	}
	ct.entries[i] = entry{key: *key, expires: expires, gen: gen, class: c, origin: origin, prev: -1, next: -1}
	ct.pushFront(i)
	ct.index[*key] = i
	ct.peers[key.remote]++
	ct.stats.Created++
	return ReasonRule
}

// earlyDrop evicts the least recently used unreplied flow or fragment; false if there is none.
func (ct *conntrack) earlyDrop() bool {
	a, b := ct.lists[classUnreplied].tail, ct.lists[classFragment].tail
	i := a
	if i < 0 || b >= 0 && ct.entries[b].expires < ct.entries[a].expires {
		i = b
	}
	if i < 0 {
		return false
	}
	ct.remove(i)
	ct.stats.EarlyDropped++
	return true
}
