package firewall

import (
	"strings"
	"testing"
	"time"
)

// TestPolicyLayer: with a policy layer, a packet that opens a flow needs a local rule and a policy
// rule of its direction; either alone is not enough.
func TestPolicyLayer(t *testing.T) {
	cfg := mustYAML(t, `
inbound:
  - {proto: any, port: any, any: true}
outbound:
  - {proto: tcp, port: 443, any: true}
  - {proto: icmp, any: true}
`)
	cfg.Policy = &PolicyRules{
		Inbound:  []Rule{{Proto: "tcp", Port: "22", Group: "ops"}, {Proto: "icmp", Any: true}},
		Outbound: []Rule{{Proto: "tcp", Port: "1-1000", Any: true}},
	}
	fw := newFW(t, cfg)
	ops, web := peer("o", "ops"), peer("w", "web")

	want(t, "ssh from ops", fw.Inbound(at(0), in(ops, tcp(1000, 22, TCPSyn)), ops), ReasonRule, 0)
	want(t, "ssh from web", fw.Inbound(at(0), in(web, tcp(1000, 22, TCPSyn)), web), ReasonPolicy, -1)
	want(t, "http from ops", fw.Inbound(at(0), in(ops, tcp(1000, 80, TCPSyn)), ops), ReasonPolicy, -1)
	want(t, "echo from web", fw.Inbound(at(0), in(web, icmp(ICMPEchoRequest, 0, 7, nil)), web), ReasonRule, 0)
	want(t, "https out", fw.Outbound(at(0), out(web, tcp(5000, 443, TCPSyn)), web), ReasonRule, 0)
	// The policy allows tcp 1-1000 out, but no local rule allows port 22: local rules still decide.
	want(t, "ssh out", fw.Outbound(at(0), out(web, tcp(5000, 22, TCPSyn)), web), ReasonNoRule, -1)
	// A local rule allows echo out, the policy does not.
	want(t, "echo out", fw.Outbound(at(0), out(web, icmp(ICMPEchoRequest, 0, 8, nil)), web), ReasonPolicy, -1)

	// Replies ride on the flow the first packet opened; no policy rule of their direction is needed.
	want(t, "ssh reply", fw.Outbound(at(time.Second), out(ops, tcp(22, 1000, TCPSyn|TCPAck)), ops), ReasonTracked, -1)
	want(t, "echo reply", fw.Outbound(at(time.Second), out(web, icmp(ICMPEchoReply, 0, 7, nil)), web), ReasonTracked, -1)
	if s := fw.Stats(); s.Flows != 3 {
		t.Errorf("%d flows, want 3 (ssh, echo, https): a denied packet must open none", s.Flows)
	}
}

// TestPolicyReload: a new policy takes effect for live flows at their next packet, as a new local
// rule set does; dropping the policy layer leaves the local rules alone in charge.
func TestPolicyReload(t *testing.T) {
	local := mustYAML(t, "inbound: [{proto: any, any: true}]\noutbound: [{proto: any, any: true}]")
	allow := local
	allow.Policy = &PolicyRules{Inbound: []Rule{{Proto: "any", Any: true}}, Outbound: []Rule{{Proto: "any", Any: true}}}
	fw := newFW(t, allow)
	a := peer("a", "web")
	want(t, "ssh in", fw.Inbound(at(0), in(a, tcp(1000, 22, TCPSyn)), a), ReasonRule, 0)
	want(t, "dns out", fw.Outbound(at(0), out(a, udp(5353, 53, 0)), a), ReasonRule, 0)

	// The new policy allows only udp 53 out: the ssh flow dies at its next packet, the dns one lives.
	deny := local
	deny.Policy = &PolicyRules{Outbound: []Rule{{Proto: "udp", Port: "53", Group: "web"}}}
	if err := fw.Reload(deny); err != nil {
		t.Fatal(err)
	}
	want(t, "ssh after", fw.Inbound(at(time.Second), in(a, tcp(1000, 22, TCPAck)), a), ReasonPolicy, -1)
	want(t, "dns reply after", fw.Inbound(at(time.Second), in(a, udp(53, 5353, 0)), a), ReasonTracked, -1)
	if s := fw.Stats(); s.Revoked != 1 {
		t.Errorf("revoked %d flows, want 1", s.Revoked)
	}

	// An empty policy denies everything, even what the local rules allow.
	empty := local
	empty.Policy = &PolicyRules{}
	if err := fw.Reload(empty); err != nil {
		t.Fatal(err)
	}
	want(t, "dns reply, empty policy", fw.Inbound(at(2*time.Second), in(a, udp(53, 5353, 0)), a), ReasonPolicy, -1)
	want(t, "echo, empty policy", fw.Inbound(at(2*time.Second), in(a, icmp(ICMPEchoRequest, 0, 1, nil)), a), ReasonPolicy, -1)

	// No policy layer: the local rules alone.
	if err := fw.Reload(local); err != nil {
		t.Fatal(err)
	}
	want(t, "echo, no policy", fw.Inbound(at(3*time.Second), in(a, icmp(ICMPEchoRequest, 0, 1, nil)), a), ReasonRule, 0)

	// A bad policy rule is refused, naming the layer, and the running rules stay.
	bad := local
	bad.Policy = &PolicyRules{Inbound: []Rule{{Proto: "tcp", Any: true}}}
	if err := fw.Reload(bad); err == nil || !strings.Contains(err.Error(), "policy inbound rule 0") {
		t.Fatalf("bad policy rule: %v", err)
	}
	want(t, "echo after refused reload", fw.Inbound(at(3*time.Second), in(a, icmp(ICMPEchoRequest, 0, 2, nil)), a), ReasonRule, 0)
}

// BenchmarkRuleMatchPolicyLayer is BenchmarkRuleMatch with a policy layer as long as the local
// rules: a packet that no flow covers is matched against both.
func BenchmarkRuleMatchPolicyLayer(b *testing.B) {
	cfg := benchConfig()
	cfg.Policy = &PolicyRules{Inbound: benchConfig().Inbound, Outbound: benchConfig().Outbound}
	fw := newFW(b, cfg)
	p := benchPeer()
	pkt := in(p, icmp(ICMPPacketTooBig, 0, 0, nil))
	b.ReportAllocs()
	for b.Loop() {
		if v := fw.Inbound(t0, pkt, p); v.Reason != ReasonRule {
			b.Fatal(v)
		}
	}
}
