package firewall

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/meshca"
)

// benchConfig has a realistic rule list: the matching rule is not the first one.
func benchConfig() Config {
	cfg := Config{Outbound: []Rule{{Proto: "any", Any: true}}}
	for i := range 20 {
		cfg.Inbound = append(cfg.Inbound, Rule{Proto: "tcp", Port: fmt.Sprint(9000 + i), Groups: []string{"team", fmt.Sprintf("svc-%d", i)}})
	}
	cfg.Inbound = append(cfg.Inbound,
		Rule{Proto: "tcp", Port: "443", Groups: []string{"prod", "web"}},
		Rule{Proto: "icmp", Group: "monitoring"})
	return cfg
}

func benchPeer() *meshca.Certificate {
	return peer("bench", "a1", "b2", "c3", "monitoring", "prod", "team", "web", "zz")
}

// BenchmarkInboundAllowed: packets of an established inbound HTTPS flow, allowed by rule 20.
func BenchmarkInboundAllowed(b *testing.B) {
	fw := newFW(b, benchConfig())
	p := benchPeer()
	pkt := in(p, tcp(50000, 443, TCPAck))
	if v := fw.Inbound(t0, in(p, tcp(50000, 443, TCPSyn)), p); v.Reason != ReasonRule {
		b.Fatal(v)
	}
	now := t0.Add(time.Second)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if v := fw.Inbound(now, pkt, p); v.Reason != ReasonTracked {
			b.Fatal(v)
		}
	}
}

// BenchmarkConntrackHit: replies of an outbound flow, with no inbound rule for them.
func BenchmarkConntrackHit(b *testing.B) {
	fw := newFW(b, benchConfig())
	p := benchPeer()
	fw.Outbound(t0, out(p, udp(5000, 53, 32)), p)
	pkt := in(p, udp(53, 5000, 100))
	now := t0.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if v := fw.Inbound(now, pkt, p); v.Reason != ReasonTracked {
			b.Fatal(v)
		}
	}
}

// BenchmarkRuleMatch: a stateless decision (ICMPv6 non-echo, never tracked) through 21 rules.
func BenchmarkRuleMatch(b *testing.B) {
	fw := newFW(b, benchConfig())
	p := benchPeer()
	pkt := in(p, icmp(ICMPPacketTooBig, 0, 0, nil))
	b.ReportAllocs()
	for b.Loop() {
		if v := fw.Inbound(t0, pkt, p); v.Reason != ReasonRule {
			b.Fatal(v)
		}
	}
}

// BenchmarkDenied: a packet no rule allows (the path a scan takes).
func BenchmarkDenied(b *testing.B) {
	fw := newFW(b, benchConfig())
	p := benchPeer()
	pkt := in(p, tcp(1, 8080, TCPSyn))
	b.ReportAllocs()
	for b.Loop() {
		if v := fw.Inbound(t0, pkt, p); v.Reason != ReasonNoRule {
			b.Fatal(v)
		}
	}
}

// BenchmarkNewFlow: every packet opens a new outbound flow (to one of 8 peers) in a full table of
// unreplied flows, so each one also evicts one: the table's worst steady state.
func BenchmarkNewFlow(b *testing.B) {
	fw := newFW(b, benchConfig()) // default size: 65536 flows, 16384 per peer
	var peers [8]*meshca.Certificate
	for i := range peers {
		peers[i] = peer(fmt.Sprint("bench-", i))
	}
	pkts := make([][]byte, 1<<17)
	for i := range pkts {
		pkts[i] = out(peers[i%8], udp(uint16(i), uint16(53+i>>16), 0))
	}
	for i := range pkts { // fill the table
		fw.Outbound(t0, pkts[i], peers[i%8])
	}
	if s := fw.Stats(); s.Flows != DefaultMaxEntries {
		b.Fatalf("table not full: %+v", s)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if v := fw.Outbound(t0, pkts[i&(len(pkts)-1)], peers[i%8]); v.Reason != ReasonRule {
			b.Fatal(v)
		}
		i++
	}
}

// BenchmarkInboundParallel: several goroutines on separate flows, to see the cost of the shared lock.
func BenchmarkInboundParallel(b *testing.B) {
	fw := newFW(b, benchConfig())
	p := benchPeer()
	b.ReportAllocs()
	var next atomic.Uint32
	b.RunParallel(func(pb *testing.PB) {
		port := uint16(50000 + next.Add(1))
		pkt := in(p, tcp(port, 443, TCPAck))
		fw.Inbound(t0, in(p, tcp(port, 443, TCPSyn)), p)
		for pb.Next() {
			fw.Inbound(t0, pkt, p)
		}
	})
}

func BenchmarkParsePacket(b *testing.B) {
	p := benchPeer()
	pkt := in(p, ext(ProtoHopByHop, 1), ext(ProtoDestOpts, 1), tcp(50000, 443, TCPAck))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePacket(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
