package firewall

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func TestDefaultDeny(t *testing.T) {
	fw := newFW(t, Config{})
	p := peer("a", "ops")
	pkts := []struct {
		name    string
		in, out []byte
	}{
		{"tcp", in(p, tcp(1, 22, TCPSyn)), out(p, tcp(1, 22, TCPSyn))},
		{"udp", in(p, udp(1, 53, 4)), out(p, udp(1, 53, 4))},
		{"icmp", in(p, icmp(ICMPEchoRequest, 0, 1, nil)), out(p, icmp(ICMPEchoRequest, 0, 1, nil))},
		{"no next header", in(p), out(p)},
	}
	for _, c := range pkts {
		want(t, "inbound "+c.name, fw.Inbound(at(0), c.in, p), ReasonNoRule, -1)
		want(t, "outbound "+c.name, fw.Outbound(at(0), c.out, p), ReasonNoRule, -1)
	}
	if s := fw.Stats(); s.Flows != 0 {
		t.Errorf("denied packets created %d flows", s.Flows)
	}
}

func TestIdentityChecks(t *testing.T) {
	fw := newFW(t, mustYAML(t, "inbound: [{proto: any, any: true}]\noutbound: [{proto: any, any: true}]"))
	a, b := peer("a"), peer("b")

	// The source must be the certified address of the peer the packet came from.
	want(t, "b's packet on a's session", fw.Inbound(at(0), in(b, udp(1, 2, 0)), a), ReasonSpoofedSource, -1)
	spoofed := build(netip.MustParseAddr("fd74::1"), self, udp(1, 2, 0))
	want(t, "made-up source", fw.Inbound(at(0), spoofed, a), ReasonSpoofedSource, -1)
	want(t, "genuine", fw.Inbound(at(0), in(a, udp(1, 2, 0)), a), ReasonRule, 0)

	// Outbound: the destination must be the certified address of the end-to-end peer.
	want(t, "a's packet to b's session", fw.Outbound(at(0), out(a, udp(1, 2, 0)), b), ReasonWrongDestination, -1)
	want(t, "genuine out", fw.Outbound(at(0), out(b, udp(1, 2, 0)), b), ReasonRule, 0)

	// A flow with a does not let b's packets in with a's ports: the peer address is in the key.
	fw2 := newFW(t, mustYAML(t, "outbound: [{proto: udp, port: 53, host: a}]"))
	want(t, "query to a", fw2.Outbound(at(0), out(a, udp(5000, 53, 0)), a), ReasonRule, 0)
	want(t, "answer from b", fw2.Inbound(at(0), in(b, udp(53, 5000, 0)), b), ReasonNoRule, -1)
	want(t, "answer from a", fw2.Inbound(at(0), in(a, udp(53, 5000, 0)), a), ReasonTracked, -1)

	ca := &meshca.Certificate{Kind: meshca.KindCA, TrustDomain: testDomain, Name: "root"}
	noAddr := peer("c")
	noAddr.Overlay = netip.Addr{}
	v4 := peer("d")
	v4.Overlay = netip.MustParseAddr("10.0.0.1")
	for name, c := range map[string]*meshca.Certificate{"nil": nil, "CA": ca, "no overlay": noAddr, "IPv4": v4} {
		want(t, name+" inbound", fw.Inbound(at(0), in(a, udp(1, 2, 0)), c), ReasonNoIdentity, -1)
		want(t, name+" outbound", fw.Outbound(at(0), out(a, udp(1, 2, 0)), c), ReasonNoIdentity, -1)
	}
}

func TestReplyViaConntrack(t *testing.T) {
	fw := newFW(t, mustYAML(t, "outbound: [{proto: any, any: true}]"))
	a := peer("a")

	// TCP: SYN out, SYN-ACK in, then idle.
	want(t, "syn", fw.Outbound(at(0), out(a, tcp(40000, 22, TCPSyn)), a), ReasonRule, 0)
	want(t, "syn-ack", fw.Inbound(at(time.Second), in(a, tcp(22, 40000, TCPSyn|TCPAck)), a), ReasonTracked, -1)
	want(t, "other local port", fw.Inbound(at(time.Second), in(a, tcp(22, 40001, TCPAck)), a), ReasonNoRule, -1)
	want(t, "other remote port", fw.Inbound(at(time.Second), in(a, tcp(23, 40000, TCPAck)), a), ReasonNoRule, -1)
	want(t, "udp same ports", fw.Inbound(at(time.Second), in(a, udp(22, 40000, 0)), a), ReasonNoRule, -1)
	// Replied TCP idles out after tcp_timeout (12 min) from the last packet.
	last := time.Second + DefaultTCPTimeout - time.Nanosecond
	want(t, "ack just before timeout", fw.Inbound(at(last), in(a, tcp(22, 40000, TCPAck)), a), ReasonTracked, -1)
	want(t, "ack after timeout", fw.Inbound(at(last+DefaultTCPTimeout), in(a, tcp(22, 40000, TCPAck)), a), ReasonNoRule, -1)

	// UDP: an unreplied flow lasts 30 s, a replied one udp_timeout (3 min).
	want(t, "udp out", fw.Outbound(at(0), out(a, udp(5000, 53, 0)), a), ReasonRule, 0)
	want(t, "udp unreplied expired", fw.Inbound(at(unrepliedTimeout), in(a, udp(53, 5000, 0)), a), ReasonNoRule, -1)
	want(t, "udp out again", fw.Outbound(at(time.Minute), out(a, udp(5000, 53, 0)), a), ReasonRule, 0)
	want(t, "udp reply", fw.Inbound(at(time.Minute+time.Second), in(a, udp(53, 5000, 0)), a), ReasonTracked, -1)
	want(t, "udp reply later", fw.Inbound(at(time.Minute+time.Second+DefaultUDPTimeout-1), in(a, udp(53, 5000, 0)), a), ReasonTracked, -1)
	want(t, "udp replied expired", fw.Inbound(at(time.Minute+time.Second+2*DefaultUDPTimeout), in(a, udp(53, 5000, 0)), a), ReasonNoRule, -1)

	// Other protocols are tracked without ports.
	want(t, "gre out", fw.Outbound(at(0), out(a, layer{47, make([]byte, 4)}), a), ReasonRule, 0)
	want(t, "gre in", fw.Inbound(at(time.Second), in(a, layer{47, make([]byte, 4)}), a), ReasonTracked, -1)
}

func TestInboundFlowLetsRepliesOut(t *testing.T) {
	fw := newFW(t, mustYAML(t, "inbound: [{proto: tcp, port: 443, group: web}]"))
	w := peer("w", "web")
	want(t, "syn in", fw.Inbound(at(0), in(w, tcp(50000, 443, TCPSyn)), w), ReasonRule, 0)
	want(t, "syn-ack out", fw.Outbound(at(0), out(w, tcp(443, 50000, TCPSyn|TCPAck)), w), ReasonTracked, -1)
	want(t, "new flow out", fw.Outbound(at(0), out(w, tcp(443, 50001, TCPSyn)), w), ReasonNoRule, -1)
}

func TestTCPClosing(t *testing.T) {
	fw := newFW(t, mustYAML(t, "outbound: [{proto: tcp, port: any, any: true}]"))
	a := peer("a")
	open := func(sport uint16, now time.Duration) {
		t.Helper()
		want(t, "syn", fw.Outbound(at(now), out(a, tcp(sport, 80, TCPSyn)), a), ReasonRule, 0)
		want(t, "syn-ack", fw.Inbound(at(now), in(a, tcp(80, sport, TCPSyn|TCPAck)), a), ReasonTracked, -1)
	}

	// RST: the flow lingers for 10 s, then is gone.
	open(1000, 0)
	want(t, "rst in", fw.Inbound(at(time.Second), in(a, tcp(80, 1000, TCPRst)), a), ReasonTracked, -1)
	want(t, "ack within 10s", fw.Inbound(at(time.Second+closingTimeout-1), in(a, tcp(80, 1000, TCPAck)), a), ReasonTracked, -1)
	// The late ACK did not revive the flow: its timer stays at 10 s.
	want(t, "ack after 10s", fw.Inbound(at(time.Second+2*closingTimeout), in(a, tcp(80, 1000, TCPAck)), a), ReasonNoRule, -1)

	// FIN both ways.
	open(1001, 0)
	want(t, "fin out", fw.Outbound(at(time.Second), out(a, tcp(1001, 80, TCPFin|TCPAck)), a), ReasonTracked, -1)
	want(t, "half-closed stays open", fw.Inbound(at(time.Second+5*time.Minute), in(a, tcp(80, 1001, TCPAck)), a), ReasonTracked, -1)
	want(t, "fin in", fw.Inbound(at(time.Second+5*time.Minute), in(a, tcp(80, 1001, TCPFin|TCPAck)), a), ReasonTracked, -1)
	want(t, "last ack", fw.Outbound(at(time.Second+5*time.Minute), out(a, tcp(1001, 80, TCPAck)), a), ReasonTracked, -1)
	want(t, "closed after 10s", fw.Inbound(at(time.Second+5*time.Minute+closingTimeout), in(a, tcp(80, 1001, TCPAck)), a), ReasonNoRule, -1)

	// A new SYN on a closing flow's ports starts a fresh connection with full timeouts.
	open(1002, 0)
	want(t, "rst", fw.Outbound(at(time.Second), out(a, tcp(1002, 80, TCPRst)), a), ReasonTracked, -1)
	want(t, "syn again", fw.Outbound(at(2*time.Second), out(a, tcp(1002, 80, TCPSyn)), a), ReasonTracked, -1)
	want(t, "syn-ack again", fw.Inbound(at(3*time.Second), in(a, tcp(80, 1002, TCPSyn|TCPAck)), a), ReasonTracked, -1)
	want(t, "alive after a minute", fw.Inbound(at(time.Minute), in(a, tcp(80, 1002, TCPAck)), a), ReasonTracked, -1)

	// A RST allowed by a rule does not create a flow.
	want(t, "bare rst", fw.Outbound(at(0), out(a, tcp(1003, 80, TCPRst)), a), ReasonRule, 0)
	want(t, "no flow for rst", fw.Inbound(at(0), in(a, tcp(80, 1003, TCPAck)), a), ReasonNoRule, -1)
}

func TestICMPEcho(t *testing.T) {
	fw := newFW(t, mustYAML(t, "outbound: [{proto: icmp, any: true}]"))
	a, b := peer("a"), peer("b")
	want(t, "request out", fw.Outbound(at(0), out(a, icmp(ICMPEchoRequest, 0, 77, nil)), a), ReasonRule, 0)
	want(t, "reply in", fw.Inbound(at(time.Second), in(a, icmp(ICMPEchoReply, 0, 77, []byte("data"))), a), ReasonTracked, -1)
	want(t, "reply other id", fw.Inbound(at(time.Second), in(a, icmp(ICMPEchoReply, 0, 78, nil)), a), ReasonNoRule, -1)
	want(t, "reply from other peer", fw.Inbound(at(time.Second), in(b, icmp(ICMPEchoReply, 0, 77, nil)), b), ReasonNoRule, -1)
	// Our ping does not let the peer ping us with the same identifier.
	want(t, "request in same id", fw.Inbound(at(time.Second), in(a, icmp(ICMPEchoRequest, 0, 77, nil)), a), ReasonNoRule, -1)
	// An echo reply allowed by a rule creates no flow; neither do other ICMPv6 messages.
	want(t, "reply out by rule", fw.Outbound(at(0), out(b, icmp(ICMPEchoReply, 0, 5, nil)), b), ReasonRule, 0)
	want(t, "no flow for it", fw.Inbound(at(0), in(b, icmp(ICMPEchoRequest, 0, 5, nil)), b), ReasonNoRule, -1)
	if got := fw.Stats().Flows; got != 1 {
		t.Errorf("flows = %d, want 1 (the echo request)", got)
	}
	want(t, "expired", fw.Inbound(at(time.Second+DefaultDefaultTimeout), in(a, icmp(ICMPEchoReply, 0, 77, nil)), a), ReasonNoRule, -1)
}

func TestICMPErrorsRelated(t *testing.T) {
	fw := newFW(t, mustYAML(t, "outbound: [{proto: udp, port: 443, any: true}]\ninbound: [{proto: tcp, port: 80, any: true}]"))
	a, b := peer("a"), peer("b")
	sent := out(a, udp(6000, 443, 1400))
	want(t, "quic out", fw.Outbound(at(0), sent, a), ReasonRule, 0)

	quote := func(p []byte, n int) []byte { return p[:min(n, len(p))] }
	want(t, "packet too big quoting it", fw.Inbound(at(time.Second), in(a, icmp(ICMPPacketTooBig, 0, 0, quote(sent, 1232))), a), ReasonRelated, -1)
	want(t, "unreachable quoting 44 bytes", fw.Inbound(at(time.Second), in(a, icmp(ICMPDestUnreachable, 4, 0, quote(sent, 44))), a), ReasonRelated, -1)
	want(t, "quote too short for ports", fw.Inbound(at(time.Second), in(a, icmp(ICMPDestUnreachable, 4, 0, quote(sent, 43))), a), ReasonNoRule, -1)
	other := out(a, udp(6001, 443, 10))
	want(t, "quoting an unknown flow", fw.Inbound(at(time.Second), in(a, icmp(ICMPDestUnreachable, 4, 0, other)), a), ReasonNoRule, -1)
	// b cannot send errors about our flow with a.
	want(t, "error from another peer", fw.Inbound(at(time.Second), in(b, icmp(ICMPDestUnreachable, 4, 0, sent)), b), ReasonNoRule, -1)
	// Errors do not keep a flow alive, and are not related once it expired.
	want(t, "after expiry", fw.Inbound(at(unrepliedTimeout), in(a, icmp(ICMPDestUnreachable, 4, 0, sent)), a), ReasonNoRule, -1)

	// Outbound errors about an inbound flow (e.g. our stack's RST is TCP, but port unreachable
	// or packet too big for a peer's flow are ICMPv6).
	got := in(b, tcp(7000, 80, TCPSyn))
	want(t, "syn in", fw.Inbound(at(0), got, b), ReasonRule, 0)
	want(t, "error out", fw.Outbound(at(0), out(b, icmp(ICMPDestUnreachable, 1, 0, got)), b), ReasonRelated, -1)
	want(t, "error out to a", fw.Outbound(at(0), out(a, icmp(ICMPDestUnreachable, 1, 0, got)), a), ReasonNoRule, -1)
	// An error quoting an error is never related.
	nested := in(a, icmp(ICMPDestUnreachable, 4, 0, sent))
	want(t, "nested error", fw.Inbound(at(0), in(a, icmp(ICMPParamProblem, 0, 0, nested)), a), ReasonNoRule, -1)
}

func TestFragments(t *testing.T) {
	fw := newFW(t, mustYAML(t, "outbound: [{proto: udp, port: 53, any: true}]"))
	a := peer("a")
	want(t, "query", fw.Outbound(at(0), out(a, udp(5353, 53, 20)), a), ReasonRule, 0)

	// The answer comes back in three fragments.
	first := in(a, frag(0, true, 0xabcd1234), udp(53, 5353, 1500))
	middle := in(a, frag(100, true, 0xabcd1234), layer{ProtoUDP, make([]byte, 800)})
	last := in(a, frag(200, false, 0xabcd1234), layer{ProtoUDP, make([]byte, 100)})
	stray := in(a, frag(100, true, 0xabcd1235), layer{ProtoUDP, make([]byte, 800)})
	want(t, "later fragment before the first", fw.Inbound(at(time.Second), middle, a), ReasonNoRule, -1)
	want(t, "first fragment", fw.Inbound(at(time.Second), first, a), ReasonTracked, -1)
	want(t, "middle", fw.Inbound(at(time.Second), middle, a), ReasonFragment, -1)
	want(t, "other datagram", fw.Inbound(at(time.Second), stray, a), ReasonNoRule, -1)
	want(t, "last, 4s later", fw.Inbound(at(5*time.Second), last, a), ReasonFragment, -1)
	want(t, "after 5s of silence", fw.Inbound(at(10*time.Second), last, a), ReasonNoRule, -1)
	// A fragment entry serves only the direction it was made for.
	want(t, "same id outbound", fw.Outbound(at(time.Second), out(a, frag(100, true, 0xabcd1234), layer{ProtoUDP, make([]byte, 8)}), a), ReasonNoRule, -1)

	// Without state, only a port-any rule lets a later fragment through.
	fw2 := newFW(t, mustYAML(t, "inbound: [{proto: udp, port: 53, any: true}, {proto: udp, port: any, host: a}]"))
	want(t, "port-any rule", fw2.Inbound(at(0), middle, a), ReasonRule, 1)
	b := peer("b")
	want(t, "no port-any rule for b", fw2.Inbound(at(0), in(b, frag(100, true, 1), layer{ProtoUDP, make([]byte, 8)}), b), ReasonNoRule, -1)
	want(t, "first fragment by port rule", fw2.Inbound(at(0), in(b, frag(0, true, 1), udp(9, 53, 100)), b), ReasonRule, 0)
	want(t, "then its later fragment", fw2.Inbound(at(0), in(b, frag(100, true, 1), layer{ProtoUDP, make([]byte, 8)}), b), ReasonFragment, -1)
}

func TestConntrackFull(t *testing.T) {
	cfg := mustYAML(t, `
outbound: [{proto: any, any: true}]
conntrack: {max_entries: 4, max_per_peer: 3}
`)
	a, b := peer("a"), peer("b")
	var fw *Firewall
	established := func(p *meshca.Certificate, port uint16, now time.Duration) {
		t.Helper()
		want(t, "out", fw.Outbound(at(now), out(p, udp(port, 53, 0)), p), ReasonRule, 0)
		want(t, "reply", fw.Inbound(at(now), in(p, udp(53, port, 0)), p), ReasonTracked, -1)
	}
	fw = newFW(t, cfg)
	established(a, 1, 0)
	established(a, 2, 0)
	established(b, 1, 0)
	established(b, 2, 0)
	// Full of live, replied flows: a new one is refused and counted; the old ones are untouched.
	want(t, "fifth flow", fw.Outbound(at(time.Second), out(a, udp(5, 53, 0)), a), ReasonConntrackFull, 0)
	want(t, "old flow still there", fw.Inbound(at(time.Second), in(a, udp(53, 1, 0)), a), ReasonTracked, -1)
	if s := fw.Stats(); s.RefusedFull != 1 || s.Flows != 4 || s.Peers != 2 {
		t.Errorf("stats %+v, want RefusedFull 1, Flows 4, Peers 2", s)
	}
	// Once flows expire, their slots are reclaimed for new ones.
	want(t, "after expiry", fw.Outbound(at(time.Second+DefaultUDPTimeout), out(a, udp(5, 53, 0)), a), ReasonRule, 0)
	// Each new flow reclaims a few expired ones (2 per class here); Expire takes the rest.
	if s := fw.Stats(); s.Flows != 3 || s.Expired != 2 {
		t.Errorf("stats %+v, want Flows 3, Expired 2", s)
	}
	if n := fw.Expire(at(time.Second + DefaultUDPTimeout)); n != 2 {
		t.Errorf("Expire removed %d, want 2", n)
	}
	if s := fw.Stats(); s.Flows != 1 || s.Expired != 4 || s.Peers != 1 {
		t.Errorf("stats %+v, want Flows 1, Expired 4, Peers 1", s)
	}

	// Unreplied flows are evicted (oldest first) to make room.
	fw = newFW(t, cfg)
	established(a, 1, 0)
	established(b, 1, 0)
	want(t, "unreplied a3", fw.Outbound(at(time.Second), out(a, udp(3, 53, 0)), a), ReasonRule, 0)
	want(t, "unreplied b4", fw.Outbound(at(2*time.Second), out(b, udp(4, 53, 0)), b), ReasonRule, 0)
	want(t, "new a5 evicts a3", fw.Outbound(at(3*time.Second), out(a, udp(5, 53, 0)), a), ReasonRule, 0)
	want(t, "a3 gone", fw.Inbound(at(3*time.Second), in(a, udp(53, 3, 0)), a), ReasonNoRule, -1)
	want(t, "b4 kept", fw.Inbound(at(3*time.Second), in(b, udp(53, 4, 0)), b), ReasonTracked, -1)
	want(t, "a1 kept", fw.Inbound(at(3*time.Second), in(a, udp(53, 1, 0)), a), ReasonTracked, -1)
	if s := fw.Stats(); s.EarlyDropped != 1 {
		t.Errorf("EarlyDropped = %d, want 1", s.EarlyDropped)
	}
}

func TestPeerLimit(t *testing.T) {
	fw := newFW(t, mustYAML(t, `
inbound: [{proto: udp, port: 9000, group: clients}]
outbound: [{proto: any, any: true}]
conntrack: {max_entries: 10, max_per_peer: 3}
`))
	greedy, other := peer("greedy", "clients"), peer("other", "clients")
	for p := uint16(1); p <= 3; p++ {
		want(t, "greedy flow", fw.Inbound(at(0), in(greedy, udp(p, 9000, 0)), greedy), ReasonRule, 0)
		want(t, "reply", fw.Outbound(at(0), out(greedy, udp(9000, p, 0)), greedy), ReasonTracked, -1)
	}
	want(t, "greedy over its limit", fw.Inbound(at(0), in(greedy, udp(4, 9000, 0)), greedy), ReasonPeerLimit, 0)
	want(t, "other peer unaffected", fw.Inbound(at(0), in(other, udp(4, 9000, 0)), other), ReasonRule, 0)
	want(t, "our own flows unaffected", fw.Outbound(at(0), out(other, udp(1, 53, 0)), other), ReasonRule, 0)
	if s := fw.Stats(); s.RefusedPeerLimit != 1 || s.Peers != 2 || s.Flows != 5 {
		t.Errorf("stats %+v", s)
	}
	if n := fw.Expire(at(time.Hour)); n != 5 {
		t.Errorf("Expire removed %d, want 5", n)
	}
	if s := fw.Stats(); s.Flows != 0 || s.Peers != 0 {
		t.Errorf("after Expire: %+v", s)
	}
	want(t, "greedy again after expiry", fw.Inbound(at(time.Hour), in(greedy, udp(4, 9000, 0)), greedy), ReasonRule, 0)
}

func TestReload(t *testing.T) {
	a, b := peer("a", "web"), peer("b", "db")
	fw := newFW(t, mustYAML(t, `
outbound: [{proto: tcp, port: 5432, group: db}, {proto: tcp, port: 443, any: true}]
inbound: [{proto: tcp, port: 80, group: web}]
`))
	want(t, "db flow", fw.Outbound(at(0), out(b, tcp(1000, 5432, TCPSyn)), b), ReasonRule, 0)
	want(t, "db reply", fw.Inbound(at(0), in(b, tcp(5432, 1000, TCPSyn|TCPAck)), b), ReasonTracked, -1)
	want(t, "https flow", fw.Outbound(at(0), out(b, tcp(1001, 443, TCPSyn)), b), ReasonRule, 1)
	want(t, "web in", fw.Inbound(at(0), in(a, tcp(2000, 80, TCPSyn)), a), ReasonRule, 0)

	// A bad config changes nothing.
	if err := fw.Reload(Config{Inbound: []Rule{{Proto: "tcp", Port: "99999", Any: true}}}); err == nil {
		t.Fatal("Reload accepted port 99999")
	}
	want(t, "old rules after failed reload", fw.Inbound(at(0), in(a, tcp(2001, 80, TCPSyn)), a), ReasonRule, 0)

	// New rules: 5432 stays allowed, 443 is no longer, web may use 8080 instead of 80.
	err := fw.Reload(mustYAML(t, `
outbound: [{proto: tcp, port: 5000-6000, group: db}]
inbound: [{proto: tcp, port: 8080, group: web}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if g := fw.Stats().Generation; g != 2 {
		t.Errorf("generation %d, want 2", g)
	}
	want(t, "db reply kept", fw.Inbound(at(time.Second), in(b, tcp(5432, 1000, TCPAck)), b), ReasonTracked, -1)
	want(t, "https reply cut", fw.Inbound(at(time.Second), in(b, tcp(443, 1001, TCPSyn|TCPAck)), b), ReasonNoRule, -1)
	want(t, "web 80 reply cut", fw.Outbound(at(time.Second), out(a, tcp(80, 2000, TCPSyn|TCPAck)), a), ReasonNoRule, -1)
	want(t, "new https refused", fw.Outbound(at(time.Second), out(b, tcp(1002, 443, TCPSyn)), b), ReasonNoRule, -1)
	want(t, "web 8080 allowed", fw.Inbound(at(time.Second), in(a, tcp(2002, 8080, TCPSyn)), a), ReasonRule, 0)
	want(t, "db new port in range", fw.Outbound(at(time.Second), out(b, tcp(1003, 5999, TCPSyn)), b), ReasonRule, 0)
	if s := fw.Stats(); s.Revoked != 2 {
		t.Errorf("Revoked = %d, want 2 (https, web 80)", s.Revoked)
	}

	// Reload can change the conntrack bounds too.
	if err := fw.Reload(mustYAML(t, "outbound: [{proto: any, any: true}]\nconntrack: {max_entries: 1}")); err != nil {
		t.Fatal(err)
	}
	c := peer("c")
	want(t, "table over its new bound", fw.Outbound(at(2*time.Second), out(c, udp(1, 2, 0)), c), ReasonConntrackFull, 0)
}

func TestRealCertificate(t *testing.T) {
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "mesh.example", Name: "root", Duration: 2 * time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	nk, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(meshca.IssueRequest{Name: "media-1", Groups: []string{"prod", "media"}, PublicKey: nk.Public(), Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := meshca.ParseCertificate(cert.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	fw, err := New(mustYAML(t, `
inbound:
  - {proto: udp, port: 9000, spiffe_id: "spiffe://mesh.example/node/media-1"}
  - {proto: udp, port: 9001, groups: [media, prod]}
  - {proto: udp, port: 9002, host: media-1}
`), now)
	if err != nil {
		t.Fatal(err)
	}
	for port, rule := range map[uint16]int{9000: 0, 9001: 1, 9002: 2} {
		want(t, "real certificate", fw.Inbound(now, build(parsed.Overlay, self, udp(1, port, 0)), parsed), ReasonRule, rule)
	}
	if parsed.SPIFFEID().String() != "spiffe://mesh.example/node/media-1" {
		t.Errorf("unexpected SPIFFE ID %s", parsed.SPIFFEID())
	}
}

// TestConcurrent runs the data plane from several goroutines while the rules are reloaded; run with
// -race to check the locking.
func TestConcurrent(t *testing.T) {
	cfgs := []Config{
		mustYAML(t, "outbound: [{proto: any, any: true}]\ninbound: [{proto: tcp, port: 22, any: true}]"),
		mustYAML(t, "outbound: [{proto: udp, port: any, any: true}]"),
	}
	fw := newFW(t, cfgs[0])
	peers := []*meshca.Certificate{peer("a"), peer("b"), peer("c"), peer("d")}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			p := peers[g]
			for i := range 2000 {
				now := at(time.Duration(i) * time.Millisecond)
				port := uint16(1000 + i%50)
				fw.Outbound(now, out(p, udp(port, 53, 0)), p)
				if v := fw.Inbound(now, in(p, udp(53, port, 0)), p); v.Reason != ReasonTracked && v.Reason != ReasonNoRule {
					t.Errorf("unexpected verdict %v", v)
					return
				}
				fw.Inbound(now, in(p, tcp(port, 22, TCPSyn)), p)
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			if err := fw.Reload(cfgs[i%2]); err != nil {
				t.Error(err)
			}
			fw.Expire(at(time.Duration(i) * 10 * time.Millisecond))
			_ = fw.Stats()
		}
	})
	wg.Wait()
	if s := fw.Stats(); s.Flows > DefaultMaxEntries || s.Flows < 0 {
		t.Errorf("flows %d", s.Flows)
	}
}

func TestVerdictString(t *testing.T) {
	for _, c := range []struct {
		v    Verdict
		want string
	}{
		{Verdict{Reason: ReasonRule, Rule: 3}, "allow (rule 3)"},
		{Verdict{Reason: ReasonTracked, Rule: -1}, "allow (tracked)"},
		{Verdict{Reason: ReasonNoRule, Rule: -1}, "deny (no-rule)"},
		{Verdict{Reason: ReasonMalformed, Rule: -1, Err: ErrVersion}, "deny (malformed: malformed IPv6 packet: IP version is not 6)"},
		{Verdict{Reason: 200, Rule: -1}, "deny (reason(200))"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("%#v: %q, want %q", c.v, got, c.want)
		}
	}
	if !errors.Is(ErrVersion, ErrMalformed) {
		t.Error("parse errors must wrap ErrMalformed")
	}
}
