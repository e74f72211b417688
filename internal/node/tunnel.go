package node

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/linkmon"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/session"
)

type tunnelKind uint8

const (
	kindLink tunnelKind = iota + 1 // a session with a neighbour, carried directly over UDP
	kindE2E                        // an end-to-end session, carried inside routed frames
)

// tunnel is one transport session with one peer.
type tunnel struct {
	kind tunnelKind
	id   routing.NodeID
	addr netip.Addr // the peer's overlay address
	sess *session.Session
	cert atomic.Pointer[meshca.Certificate] // replaced when the peer presents a renewed certificate

	// Read on the packet path without the node lock.
	remote    atomic.Pointer[netip.AddrPort] // link: the neighbour's UDP address
	lastHeard atomic.Int64                   // Unix nanoseconds of the last authenticated packet
	lastSent  atomic.Int64
	// link: Unix nanoseconds we last told the neighbour where we see it (connect.go)
	lastObserved atomic.Int64
	queued       atomic.Bool // e2e: queue is not empty (read on the packet path)
	// Link: transit packets handed to the neighbour for a node beyond it, and transit packets the
	// neighbour relayed to us from a node beyond it. Honest neighbours' counts are the evidence a
	// relay that drops what it should forward cannot falsify (docs/intelligence.md).
	transitOut, transitIn atomic.Uint64
	// Link: UDP payload bytes sent to and authenticated from the neighbour, for the control
	// plane's per-link throughput (the agent's reports).
	txBytes, rxBytes atomic.Uint64

	// End-to-end bursts (burst.go).
	burstOffUntil atomic.Int64 // Unix nanoseconds until which bursts to the peer are split
	// Unix nanoseconds until which the last answered burst probe lets bursts go to the peer, and of
	// the last probe sent.
	burstConfirmedUntil, lastBurstProbe atomic.Int64
	lastLossReport                      atomic.Int64  // Unix nanoseconds of our last loss report to the peer
	burstMu                             sync.Mutex    // guards burstBackoff
	burstBackoff                        time.Duration // the last back-off

	pieces tunnelPieces // link: piece frames (linkfrag.go)

	// Guarded by Node.mu.
	mon         *linkmon.Monitor // link only
	up          bool             // link: announced to routing
	static      *Peer            // link: configured peer, redialled when down
	how         string           // link: how it came to be: configured, punched, discovered, dialled us
	lastDial    time.Time        // link: last handshake we started
	lastMetrics time.Time        // link: last metrics handed to routing
	installed   bool             // a handshake completed at least once
	queue       [][]byte         // e2e: packets waiting for keys
	// e2e: the last handshake an unknown-session notice started (restart.go).
	lastNoticeRekey time.Time
}

func (t *tunnel) peer() *meshca.Certificate { return t.cert.Load() }

func (t *tunnel) heard(now time.Time) { t.lastHeard.Store(now.UnixNano()) }

func (t *tunnel) remoteAddr() netip.AddrPort {
	if p := t.remote.Load(); p != nil {
		return *p
	}
	return netip.AddrPort{}
}

func (t *tunnel) setRemote(a netip.AddrPort) { t.remote.Store(&a) }
