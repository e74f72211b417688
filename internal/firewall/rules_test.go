package firewall

import (
	"testing"

	"x0tta6bl4/internal/meshca"
)

func TestRuleMatching(t *testing.T) {
	cfg := mustYAML(t, `
inbound:
  - {proto: tcp, port: 22, group: ops}                      # 0
  - {proto: tcp, port: 443, groups: [web, prod]}             # 1
  - {proto: udp, port: 8000-8100, spiffe_id: "spiffe://mesh.test/node/media-1"}  # 2
  - {proto: tcp, port: 5432, host: app-7}                   # 3
  - {proto: icmp, group: monitoring}                         # 4
  - {proto: any, port: any, host: admin}                     # 5
  - {proto: udp, port: any, spiffe_id: "spiffe://other.test/node/media-1"}  # 6
`)
	ops := peer("ops-1", "ops")
	web := peer("web-1", "web")
	webProd := peer("web-2", "prod", "web", "zzz")
	media := peer("media-1")
	app := peer("app-7")
	mon := peer("mon-1", "monitoring")
	admin := peer("admin")
	stranger := peer("stranger", "Ops", "op", "opsx") // near-misses of "ops"

	cases := []struct {
		name   string
		peer   *meshca.Certificate
		pkt    []byte
		reason Reason
		rule   int
	}{
		{"group ops ssh", ops, in(ops, tcp(40000, 22, TCPSyn)), ReasonRule, 0},
		{"group ops wrong port", ops, in(ops, tcp(40000, 23, TCPSyn)), ReasonNoRule, -1},
		{"group ops udp 22", ops, in(ops, udp(40000, 22, 4)), ReasonNoRule, -1},
		{"groups needs all: web only", web, in(web, tcp(40000, 443, TCPSyn)), ReasonNoRule, -1},
		{"groups needs all: web+prod", webProd, in(webProd, tcp(40000, 443, TCPSyn)), ReasonRule, 1},
		{"spiffe range low", media, in(media, udp(5000, 8000, 10)), ReasonRule, 2},
		{"spiffe range high", media, in(media, udp(5000, 8100, 10)), ReasonRule, 2},
		{"spiffe range above", media, in(media, udp(5000, 8101, 10)), ReasonNoRule, -1},
		{"spiffe range below", media, in(media, udp(5000, 7999, 10)), ReasonNoRule, -1},
		{"spiffe wrong proto", media, in(media, tcp(5000, 8050, TCPSyn)), ReasonNoRule, -1},
		{"source port does not count", media, in(media, udp(8050, 9999, 1)), ReasonNoRule, -1},
		{"host", app, in(app, tcp(1, 5432, TCPSyn)), ReasonRule, 3},
		{"host other port", app, in(app, tcp(1, 5433, TCPSyn)), ReasonNoRule, -1},
		{"icmp group", mon, in(mon, icmp(ICMPEchoRequest, 0, 7, nil)), ReasonRule, 4},
		{"icmp group other type", mon, in(mon, icmp(135, 0, 0, nil)), ReasonRule, 4},
		{"icmp not in group", ops, in(ops, icmp(ICMPEchoRequest, 0, 7, nil)), ReasonNoRule, -1},
		{"any proto tcp", admin, in(admin, tcp(1, 9, TCPSyn)), ReasonRule, 5},
		{"any proto icmp", admin, in(admin, icmp(ICMPEchoRequest, 0, 1, nil)), ReasonRule, 5},
		{"any proto other (GRE)", admin, in(admin, layer{47, make([]byte, 8)}), ReasonRule, 5},
		{"any proto no next header", admin, in(admin), ReasonRule, 5},
		{"other proto, no any rule", ops, in(ops, layer{47, make([]byte, 8)}), ReasonNoRule, -1},
		{"near-miss groups", stranger, in(stranger, tcp(1, 22, TCPSyn)), ReasonNoRule, -1},
		{"spiffe of other trust domain never matches", media, in(media, udp(1, 1, 0)), ReasonNoRule, -1},
	}
	for _, c := range cases {
		fw := newFW(t, cfg) // fresh, so no flow from an earlier case decides
		want(t, c.name, fw.Inbound(at(0), c.pkt, c.peer), c.reason, c.rule)
	}
}
