package node

import "sync/atomic"

// counters are the node's packet counters, read by status and (later) metrics.
type counters struct {
	rxPackets, txPackets         atomic.Uint64 // UDP datagrams
	rxBytes, txBytes             atomic.Uint64
	delivered, sent              atomic.Uint64 // IPv6 packets to / from the device
	forwarded                    atomic.Uint64 // routed frames relayed for others
	transitIn                    atomic.Uint64 // transit packets received for others (relayed or dropped)
	dropNoRoute, dropHopLimit    atomic.Uint64
	dropFirewall, dropSpoofed    atomic.Uint64
	dropAuth, dropMalformed      atomic.Uint64
	dropQueueFull, dropNoSession atomic.Uint64
	dropNotOverlay               atomic.Uint64 // from the device but not from our overlay address
	routeChanges                 atomic.Uint64 // forwarding table rebuilds
	handshakeErrors              atomic.Uint64
	// Handshakes completed: link (hop-by-hop) and end-to-end, as initiator and as responder.
	linkHSInitiated, linkHSAnswered atomic.Uint64
	e2eHSInitiated, e2eHSAnswered   atomic.Uint64
	// Bursts (burst.go): sent whole, delivered whole, given up on before they were complete, and
	// loss reports that made us split ours.
	burstsSent, burstsDelivered atomic.Uint64
	burstsLost, burstBackoffs   atomic.Uint64
	// Restarts (restart.go): peers seen restarting in their records; unknown-session notices sent,
	// and received and acted on, ignored (not about a packet we sent) or rate limited.
	peerRestarts                   atomic.Uint64
	noticesSent, noticesAccepted   atomic.Uint64
	noticesIgnored, noticesLimited atomic.Uint64
	// Hole punching (connect.go): attempts, direct links they made, attempts that ended without one,
	// and initiations the punch budget held back.
	punchAttempts, punchDirect atomic.Uint64
	punchFailed, punchLimited  atomic.Uint64
	// Bytes of the packets sent from the device: to a neighbour directly, or through relays.
	sentDirectBytes, sentRelayedBytes atomic.Uint64
	// Level 2 (level2.go): packets a gateway carried towards another area's gateway or handed, at
	// the destination's area, to level 1.
	level2Forwarded atomic.Uint64
}

// Stats is a snapshot of the counters.
type Stats struct {
	RxPackets, TxPackets, RxBytes, TxBytes uint64
	Delivered, Sent, Forwarded             uint64
	TransitIn                              uint64
	DropNoRoute, DropHopLimit              uint64
	DropFirewall, DropSpoofed              uint64
	DropAuth, DropMalformed                uint64
	DropQueueFull, DropNoSession           uint64
	DropNotOverlay                         uint64
	RouteChanges                           uint64
	HandshakeErrors                        uint64
	LinkHandshakesInitiated                uint64
	LinkHandshakesAnswered                 uint64
	E2EHandshakesInitiated                 uint64
	E2EHandshakesAnswered                  uint64
	BurstsSent, BurstsDelivered            uint64
	BurstsLost, BurstBackoffs              uint64
	PeerRestarts                           uint64
	NoticesSent, NoticesAccepted           uint64
	NoticesIgnored, NoticesLimited         uint64
	PunchAttempts, PunchDirect             uint64
	PunchFailed, PunchLimited              uint64
	SentDirectBytes, SentRelayedBytes      uint64
	Level2Forwarded                        uint64
	// Piece frames (linkfrag.go): large frames we sent in pieces, pieces sent, frames put back
	// together from a neighbour's pieces, pieces refused, and messages dropped incomplete (timed out
	// or evicted).
	FramesCut, PiecesSent            uint64
	FramesReassembled, PiecesDropped uint64
	ReassembliesAbandoned            uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		RxPackets: c.rxPackets.Load(), TxPackets: c.txPackets.Load(), RxBytes: c.rxBytes.Load(), TxBytes: c.txBytes.Load(),
		Delivered: c.delivered.Load(), Sent: c.sent.Load(), Forwarded: c.forwarded.Load(), TransitIn: c.transitIn.Load(),
		DropNoRoute: c.dropNoRoute.Load(), DropHopLimit: c.dropHopLimit.Load(),
		DropFirewall: c.dropFirewall.Load(), DropSpoofed: c.dropSpoofed.Load(),
		DropAuth: c.dropAuth.Load(), DropMalformed: c.dropMalformed.Load(),
		DropQueueFull: c.dropQueueFull.Load(), DropNoSession: c.dropNoSession.Load(),
		DropNotOverlay: c.dropNotOverlay.Load(), HandshakeErrors: c.handshakeErrors.Load(),
		RouteChanges:            c.routeChanges.Load(),
		LinkHandshakesInitiated: c.linkHSInitiated.Load(), LinkHandshakesAnswered: c.linkHSAnswered.Load(),
		E2EHandshakesInitiated: c.e2eHSInitiated.Load(), E2EHandshakesAnswered: c.e2eHSAnswered.Load(),
		BurstsSent: c.burstsSent.Load(), BurstsDelivered: c.burstsDelivered.Load(),
		BurstsLost: c.burstsLost.Load(), BurstBackoffs: c.burstBackoffs.Load(),
		PeerRestarts: c.peerRestarts.Load(),
		NoticesSent:  c.noticesSent.Load(), NoticesAccepted: c.noticesAccepted.Load(),
		NoticesIgnored: c.noticesIgnored.Load(), NoticesLimited: c.noticesLimited.Load(),
		PunchAttempts: c.punchAttempts.Load(), PunchDirect: c.punchDirect.Load(),
		PunchFailed: c.punchFailed.Load(), PunchLimited: c.punchLimited.Load(),
		SentDirectBytes: c.sentDirectBytes.Load(), SentRelayedBytes: c.sentRelayedBytes.Load(),
		Level2Forwarded: c.level2Forwarded.Load(),
	}
}
