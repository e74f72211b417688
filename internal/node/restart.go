package node

// Restart detection: a peer that restarted has lost every session, so packets sealed for it are
// dropped until a new handshake. A node learns of it in two ways and handshakes again at once
// (docs/node.md, "Restarts"):
//
//   - the peer's signed link-state record carries a larger incarnation (its boot epoch): routing
//     reports it, and the report is authenticated;
//   - the restarted peer answers a packet for a session it does not know with an unknown-session
//     notice. A notice is not authenticated; it is checked against what we sent (only someone who
//     saw one of our packets can echo its receiver index and counter), rate limited at both ends,
//     and acted on only by starting a handshake while the old session keeps working. At worst a
//     forged one costs a rekey; it can never tear a session down.

import (
	"net/netip"
	"time"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/ratelimit"
	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/session"
)

const (
	// noticeRate and noticeBurst bound the notices a node sends to one source; the global limit
	// bounds them all, whatever sources a flood names.
	noticeRate, noticeBurst             = 4, 2
	noticeGlobalRate, noticeGlobalBurst = 64, 16
	noticeSources                       = 1024
	// noticeRekeyInterval is the least time between two notice-triggered handshakes with one peer.
	noticeRekeyInterval = time.Second
)

// notices rate-limits the unknown-session notices a node sends. Its own mutex keeps a flood of
// unknown indices off the node lock.
type notices struct {
	perSource *ratelimit.Limiter[netip.Addr]
	all       *ratelimit.Limiter[struct{}]
}

func newNotices() (*notices, error) {
	per, err := ratelimit.New[netip.Addr](ratelimit.Config{Rate: noticeRate, Burst: noticeBurst, Max: noticeSources})
	if err != nil {
		return nil, err
	}
	all, err := ratelimit.New[struct{}](ratelimit.Config{Rate: noticeGlobalRate, Burst: noticeGlobalBurst, Max: 1})
	if err != nil {
		return nil, err
	}
	return &notices{perSource: per, all: all}, nil
}

// noticeUnknownSession answers an end-to-end packet from src, received over the link via, whose
// receiver index h names no session of ours: src still seals with a session we no longer have.
func (n *Node) noticeUnknownSession(now time.Time, via *tunnel, src netip.Addr, h session.DataHeader) {
	n.noticeMu.Lock()
	ok := n.notices.all.Allow(now, struct{}{}).OK && n.notices.perSource.Allow(now, src).OK
	n.noticeMu.Unlock()
	if !ok {
		n.stats.noticesLimited.Add(1)
		return
	}
	// The answer goes by our route to src, or back the way the packet came while we have none
	// (just after a restart, routing may not have src's record yet).
	e, found := n.fib.Load().byAddr[src]
	if !found {
		e = fibEntry{nextHop: via}
	}
	frame := overlay.AppendRouted(make([]byte, 0, overlay.RoutedHeaderSize+session.NoticeSize),
		overlay.RoutedHeader{HopLimit: overlay.DefaultHopLimit, Src: n.addr, Dst: src})
	if n.sendOwnFrame(now, e, session.AppendUnknownSession(frame, h)) {
		n.stats.noticesSent.Add(1)
	}
}

// handleNotice acts on an unknown-session notice from src: when it echoes a packet our current
// session with src sealed, src lost that session, and we handshake again.
func (n *Node) handleNotice(now time.Time, src netip.Addr, msg []byte) {
	h, err := session.ParseUnknownSession(msg)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.e2e[src]
	if t == nil || !t.installed || !t.sess.SentUnder(h) {
		n.stats.noticesIgnored.Add(1)
		return
	}
	if !t.lastNoticeRekey.IsZero() && now.Sub(t.lastNoticeRekey) < noticeRekeyInterval {
		n.stats.noticesLimited.Add(1)
		return
	}
	t.lastNoticeRekey = now
	n.stats.noticesAccepted.Add(1)
	n.rehandshakeLocked(now, t, "peer does not know our session")
}

// peersRestartedLocked handshakes again with every peer whose new incarnation routing reported.
func (n *Node) peersRestartedLocked(now time.Time, ids []routing.NodeID) {
	for _, id := range ids {
		n.stats.peerRestarts.Add(1)
		if t := n.links[id]; t != nil {
			// The new process may be a build without piece frames, and holds no half-made
			// message of the old one's: large frames go whole as well until it sends a piece.
			n.forgetPieces(t)
		}
		cert := n.router.Certificate(id)
		if cert == nil {
			continue
		}
		n.heal.neighbourRestarted(now, cert.Overlay) // nothing from its old process is judged (heal.go)
		n.heal.targetRestarted(now, cert.Overlay)
		if t := n.e2e[cert.Overlay]; t != nil && t.installed {
			n.rehandshakeLocked(now, t, "peer restarted")
		}
	}
}

// rehandshakeLocked starts a new end-to-end handshake with t's peer at once, abandoning one that
// was pending (it went to the process the peer no longer runs). The session keeps its keys until
// the new ones are installed, as in any rekey.
func (n *Node) rehandshakeLocked(now time.Time, t *tunnel, why string) {
	n.log.Info("handshaking again", "peer", t.peer().Name, "why", why)
	n.e2eHS.Abandon(t.peer())
	out, err := n.e2eHS.Initiate(now, netip.AddrPortFrom(t.addr, 0), t.peer())
	n.handleE2EOutputLocked(now, out, err, nil)
}
