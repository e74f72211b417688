package firewall

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/meshca"
)

// Reason says why a packet was allowed or denied.
type Reason uint8

// Reasons. The allowing ones come first; Verdict.Allowed tests against reasonFirstDeny.
const (
	ReasonRule     Reason = iota // a rule of this direction matched
	ReasonTracked                // part of a tracked flow (a reply, or a later packet of an allowed flow)
	ReasonRelated                // ICMPv6 error quoting a packet of a tracked flow with this peer
	ReasonFragment               // later fragment of a datagram whose first fragment passed

	ReasonNoRule           // default deny: no rule matched
	ReasonMalformed        // not a well-formed IPv6 packet (Verdict.Err says why)
	ReasonSpoofedSource    // inbound: source address is not the peer's certified overlay address
	ReasonWrongDestination // outbound: destination address is not the peer's certified overlay address
	ReasonNoIdentity       // no peer certificate, or not a node certificate with an overlay address
	ReasonConntrackFull    // a rule matched but the flow table is full of live, replied flows
	ReasonPeerLimit        // a rule matched but this peer already holds max_per_peer flows
	ReasonPolicy           // a local rule matched but no rule of the policy layer (Config.Policy) did
	numReasons

	reasonFirstDeny = ReasonNoRule
)

var reasonNames = [numReasons]string{
	ReasonRule:             "rule",
	ReasonTracked:          "tracked",
	ReasonRelated:          "related",
	ReasonFragment:         "fragment",
	ReasonNoRule:           "no-rule",
	ReasonMalformed:        "malformed",
	ReasonSpoofedSource:    "spoofed-source",
	ReasonWrongDestination: "wrong-destination",
	ReasonNoIdentity:       "no-identity",
	ReasonConntrackFull:    "conntrack-full",
	ReasonPeerLimit:        "peer-limit",
	ReasonPolicy:           "policy",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// NumReasons is the number of Reason values, for callers that keep a counter per reason.
const NumReasons = int(numReasons)

// Verdict is the firewall's decision on one packet.
type Verdict struct {
	Reason Reason
	// Rule is the index of the matching rule in Config.Inbound or Config.Outbound (whichever
	// direction was checked) when Reason is ReasonRule, ReasonConntrackFull or ReasonPeerLimit; else -1.
	Rule int
	// Err is the parse error when Reason is ReasonMalformed (a package-level value); else nil.
	Err error
}

// Allowed reports whether the packet may pass.
func (v Verdict) Allowed() bool { return v.Reason < reasonFirstDeny }

func (v Verdict) String() string {
	action := "deny"
	if v.Allowed() {
		action = "allow"
	}
	switch {
	case v.Err != nil:
		return fmt.Sprintf("%s (%s: %v)", action, v.Reason, v.Err)
	case v.Rule >= 0:
		return fmt.Sprintf("%s (%s %d)", action, v.Reason, v.Rule)
	}
	return fmt.Sprintf("%s (%s)", action, v.Reason)
}

// Stats are the connection-tracking table's size and event counts since New.
type Stats struct {
	Flows            int    // flows in the table (live or expired but not yet reclaimed)
	Peers            int    // peers holding at least one flow
	Generation       uint64 // rules generation: 1 after New, +1 per successful Reload
	Created          uint64 // flows added
	Expired          uint64 // flows removed after their idle timeout
	EarlyDropped     uint64 // unreplied flows or fragments evicted to make room
	RefusedFull      uint64 // new flows refused: table full of live, replied flows
	RefusedPeerLimit uint64 // new flows refused: the peer holds max_per_peer flows
	Revoked          uint64 // flows dropped because a reload no longer allows them
}

// Firewall decides which overlay packets may pass. It is safe for concurrent use.
type Firewall struct {
	epoch time.Time
	rules atomic.Pointer[ruleset]
	ct    *conntrack
}

// New validates cfg and returns a firewall whose clock starts at now; every later call passes a
// time from the same clock.
func New(cfg Config, now time.Time) (*Firewall, error) {
	rs, err := compile(&cfg)
	if err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	rs.gen = 1
	fw := &Firewall{epoch: now, ct: newConntrack(rs.ct.MaxEntries, rs.ct.MaxPerPeer)}
	fw.rules.Store(rs)
	fw.ct.stats.Generation = 1
	return fw, nil
}

// Reload validates cfg and, if it is valid, replaces the rules atomically. Tracked flows are kept;
// each is checked against the new rules at its next packet and dropped if they no longer allow it.
// On error the old rules stay in force.
func (fw *Firewall) Reload(cfg Config) error {
	rs, err := compile(&cfg)
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	ct := fw.ct
	ct.mu.Lock()
	defer ct.mu.Unlock()
	rs.gen = fw.rules.Load().gen + 1
	ct.max, ct.perPeer = rs.ct.MaxEntries, rs.ct.MaxPerPeer
	ct.stats.Generation = rs.gen
	fw.rules.Store(rs)
	return nil
}

// Inbound decides on a packet received from peer: pkt is the decrypted inner IPv6 packet and peer
// the certificate of its end-to-end sender, already verified by the caller.
func (fw *Firewall) Inbound(now time.Time, pkt []byte, peer *meshca.Certificate) Verdict {
	return fw.check(now, pkt, peer, dirIn)
}

// Outbound decides on a packet about to be sent to peer, the certificate of its end-to-end
// destination.
func (fw *Firewall) Outbound(now time.Time, pkt []byte, peer *meshca.Certificate) Verdict {
	return fw.check(now, pkt, peer, dirOut)
}

// Expire removes expired flows and returns how many; the owner may call it from a timer. New flows
// also reclaim a few expired ones each, so calling it is optional.
func (fw *Firewall) Expire(now time.Time) int {
	fw.ct.mu.Lock()
	defer fw.ct.mu.Unlock()
	return fw.ct.reclaim(fw.stamp(now), -1)
}

// Stats returns the conntrack counters.
func (fw *Firewall) Stats() Stats {
	fw.ct.mu.Lock()
	defer fw.ct.mu.Unlock()
	s := fw.ct.stats
	s.Flows, s.Peers = len(fw.ct.index), len(fw.ct.peers)
	return s
}

func (fw *Firewall) stamp(now time.Time) int64 { return int64(now.Sub(fw.epoch)) }

func verdict(r Reason) Verdict { return Verdict{Reason: r, Rule: -1} }

// setAddrs fills k's addresses and ports from p travelling in direction d: remote is the peer,
// local this node.
func (k *flowKey) setAddrs(p *Packet, d direction) {
	if d == dirIn {
		k.remote, k.local = p.Src.As16(), p.Dst.As16()
		k.remotePort, k.localPort = p.SrcPort, p.DstPort
	} else {
		k.remote, k.local = p.Dst.As16(), p.Src.As16()
		k.remotePort, k.localPort = p.DstPort, p.SrcPort
	}
}

// flowKeyOf sets k to the conntrack key of p travelling in direction d and reports whether p is
// tracked at all (not: ICMPv6 other than echo, later fragments).
func flowKeyOf(k *flowKey, p *Packet, d direction) bool {
	if p.Fragment == LaterFragment {
		return false
	}
	k.setAddrs(p, d)
	k.proto, k.kind = p.Proto, kindFlow
	if p.Proto == ProtoICMPv6 {
		if p.ICMPType != ICMPEchoRequest && p.ICMPType != ICMPEchoReply {
			return false
		}
		// An echo flow starts with a request: requests travel in its origin direction, replies in
		// the other. The origin is part of the key, so a request can never ride on a flow the
		// other side started (nor a reply on one this side started).
		origin := d
		if p.ICMPType == ICMPEchoReply {
			origin ^= 1
		}
		k.kind, k.localPort, k.remotePort = kindEcho, p.ICMPID, uint16(origin)
	}
	return true
}

func fragmentKey(k *flowKey, p *Packet, d direction) {
	k.setAddrs(p, d)
	k.proto, k.kind = 0, kindFragment
	k.remotePort, k.localPort = uint16(p.FragmentID>>16), uint16(p.FragmentID)
}

func (fw *Firewall) check(now time.Time, b []byte, peer *meshca.Certificate, d direction) Verdict {
	if peer == nil || peer.Kind != meshca.KindNode || !peer.Overlay.Is6() || peer.Overlay.Is4In6() {
		return verdict(ReasonNoIdentity)
	}
	p, err := parse(b, false)
	if err != nil {
		return Verdict{Reason: ReasonMalformed, Rule: -1, Err: err}
	}
	peerAddr := peer.Overlay.As16()
	if d == dirIn && p.Src.As16() != peerAddr {
		return verdict(ReasonSpoofedSource)
	}
	if d == dirOut && p.Dst.As16() != peerAddr {
		return verdict(ReasonWrongDestination)
	}
	rs := fw.rules.Load()
	t := fw.stamp(now)
	ct := fw.ct

	// 1. State: tracked flow, related ICMPv6 error, later fragment.
	var key flowKey
	tracked := flowKeyOf(&key, &p, d)
	switch {
	case p.Fragment == LaterFragment:
		fragmentKey(&key, &p, d)
		ct.mu.Lock()
		if i, ok := ct.lookup(&key, t); ok && ct.entries[i].origin == d {
			ct.touch(i, classFragment, t+int64(fragmentTimeout))
			ct.mu.Unlock()
			return verdict(ReasonFragment)
		}
		ct.mu.Unlock()
	case p.IsICMPError():
		if fw.related(b, &p, d, peer, rs, t) {
			return verdict(ReasonRelated)
		}
	case tracked:
		ct.mu.Lock()
		if i, ok := ct.lookup(&key, t); ok && ct.current(i, rs, peer) {
			ct.update(i, &p, d, rs, t)
			if p.Fragment == FirstFragment {
				ct.addFragment(&p, d, rs, t)
			}
			ct.mu.Unlock()
			return verdict(ReasonTracked)
		}
		ct.mu.Unlock()
	}

	// 2. Rules.
	list := &rs.in
	if d == dirOut {
		list = &rs.out
	}
	idx := list.match(p.Proto, p.HasPorts(), p.DstPort, peer)
	if idx < 0 {
		return verdict(ReasonNoRule)
	}
	if !rs.policyAllows(d, p.Proto, p.HasPorts(), p.DstPort, peer) {
		return verdict(ReasonPolicy)
	}
	// Start tracking, except for packets that never open a flow: later fragments and ICMPv6 other
	// than echo (both untracked), echo replies and RST segments.
	if !tracked || (p.Proto == ProtoICMPv6 && p.ICMPType != ICMPEchoRequest) || (p.Proto == ProtoTCP && p.TCPFlags&TCPRst != 0) {
		return Verdict{Reason: ReasonRule, Rule: idx}
	}
	ct.mu.Lock()
	r := ct.insert(&key, t, classUnreplied, t+rs.timeout(classUnreplied, p.Proto), d, rs.gen)
	if r == ReasonRule && p.Fragment == FirstFragment {
		ct.addFragment(&p, d, rs, t)
	}
	ct.mu.Unlock()
	return Verdict{Reason: r, Rule: idx}
}

// localAddr returns this node's address in p travelling in direction d.
func localAddr(p *Packet, d direction) [16]byte {
	if d == dirIn {
		return p.Dst.As16()
	}
	return p.Src.As16()
}

// related reports whether ICMPv6 error p (travelling in direction d) quotes a packet of a live flow
// with peer: for an inbound error, a packet this node sent to peer; for an outbound one, a packet
// peer sent to this node.
func (fw *Firewall) related(b []byte, p *Packet, d direction, peer *meshca.Certificate, rs *ruleset, t int64) bool {
	q, ok := quotedPacket(b, p)
	if !ok {
		return false
	}
	qd := dirOut // the quoted packet travelled the other way
	if d == dirOut {
		qd = dirIn
	}
	var key flowKey
	if !flowKeyOf(&key, &q, qd) || key.remote != peer.Overlay.As16() || key.local != localAddr(p, d) {
		return false
	}
	ct := fw.ct
	ct.mu.Lock()
	defer ct.mu.Unlock()
	i, ok := ct.lookup(&key, t)
	return ok && ct.current(i, rs, peer)
}

// current reports whether flow i is allowed by ruleset rs, re-checking it against rs's rules if it
// was last allowed by an older generation; a flow they no longer allow is removed. Fragment flows
// live only seconds and are never re-checked.
func (ct *conntrack) current(i int32, rs *ruleset, peer *meshca.Certificate) bool {
	e := &ct.entries[i]
	if e.gen >= rs.gen || e.key.kind == kindFragment {
		return true
	}
	list := &rs.in
	if e.origin == dirOut {
		list = &rs.out
	}
	proto, hasPort, port := e.key.proto, false, uint16(0)
	switch {
	case e.key.kind == kindEcho:
		proto = ProtoICMPv6
	case e.key.proto == ProtoTCP || e.key.proto == ProtoUDP:
		hasPort, port = true, e.key.localPort // the destination port of the flow's first packet
		if e.origin == dirOut {
			port = e.key.remotePort
		}
	}
	if list.match(proto, hasPort, port, peer) < 0 || !rs.policyAllows(e.origin, proto, hasPort, port, peer) {
		ct.remove(i)
		ct.stats.Revoked++
		return false
	}
	e.gen = rs.gen
	return true
}

// update advances flow i's state with packet p travelling in direction d and restarts its timer.
func (ct *conntrack) update(i int32, p *Packet, d direction, rs *ruleset, t int64) {
	e := &ct.entries[i]
	if d != e.origin {
		e.replied = true
	}
	c := classOther
	switch p.Proto {
	case ProtoTCP:
		f := p.TCPFlags
		closing := e.rst || e.finOrig && e.finRepl
		if closing && f&(TCPSyn|TCPAck) == TCPSyn && d == e.origin {
			// A new connection reusing the ports of a closed one.
			e.replied, e.rst, e.finOrig, e.finRepl = false, false, false, false
		}
		if f&TCPFin != 0 {
			if d == e.origin {
				e.finOrig = true
			} else {
				e.finRepl = true
			}
		}
		if f&TCPRst != 0 {
			e.rst = true
		}
		c = classTCP
		if e.rst || e.finOrig && e.finRepl {
			c = classClosing
		}
	case ProtoUDP:
		c = classUDP
	}
	if !e.replied && c != classClosing {
		c = classUnreplied
	}
	ct.touch(i, c, t+rs.timeout(c, p.Proto))
}

// addFragment starts tracking the datagram of first fragment p so its later fragments pass. A full
// table is not an error here: the later fragments then need a port-any rule.
func (ct *conntrack) addFragment(p *Packet, d direction, rs *ruleset, t int64) {
	var fk flowKey
	fragmentKey(&fk, p, d)
	if i, ok := ct.lookup(&fk, t); ok {
		ct.entries[i].origin = d
		ct.touch(i, classFragment, t+int64(fragmentTimeout))
		return
	}
	ct.insert(&fk, t, classFragment, t+int64(fragmentTimeout), d, rs.gen)
}

// timeout returns the idle timeout of a flow of protocol proto in class c, in nanoseconds.
func (rs *ruleset) timeout(c class, proto uint8) int64 {
	var est int64
	switch proto {
	case ProtoTCP:
		est = rs.tcpEst
	case ProtoUDP:
		est = rs.udpEst
	default:
		est = rs.otherEst
	}
	switch c {
	case classUnreplied:
		return min(rs.unreply, est)
	case classClosing:
		return min(rs.closing, est)
	case classFragment:
		return int64(fragmentTimeout)
	}
	return est
}
