package firewall

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDocExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../../docs/firewall.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no yaml example in docs/firewall.md")
	}
	// The example is a node.yaml fragment: decode it as the node will, into a struct embedding Config.
	var node struct {
		Firewall Config `yaml:"firewall"`
	}
	if err := yaml.Unmarshal(m[1], &node); err != nil {
		t.Fatal(err)
	}
	cfg := node.Firewall
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Inbound) != 5 || len(cfg.Outbound) != 1 || cfg.Conntrack.TCPTimeout != 12*time.Minute || cfg.Conntrack.MaxEntries != 65536 {
		t.Errorf("decoded %+v", cfg)
	}
	fw := newFW(t, cfg)
	ops, web := peer("o", "ops"), peer("w", "web", "prod")
	want(t, "ssh from ops", fw.Inbound(at(0), in(ops, tcp(1, 22, TCPSyn)), ops), ReasonRule, 1)
	want(t, "https from web+prod", fw.Inbound(at(0), in(web, tcp(1, 443, TCPSyn)), web), ReasonRule, 2)
	want(t, "ssh from web", fw.Inbound(at(0), in(web, tcp(1, 22, TCPSyn)), web), ReasonNoRule, -1)
}

func TestConfigGo(t *testing.T) {
	// The same structure works without YAML; errors then name the rule without a line.
	_, err := New(Config{Outbound: []Rule{{Proto: "tcp", Port: "80", Any: true}, {Proto: "udp", Port: "1-2-3", Any: true}}}, t0)
	if err == nil || err.Error() != `firewall: outbound rule 1: port "1-2-3": "2-3" is not a port (use 1-65535)` {
		t.Errorf("error %v", err)
	}
	fw := newFW(t, Config{Inbound: []Rule{{Proto: "TCP", Port: " 22 ", Groups: []string{"b", "a", "a"}}}})
	p := peer("p", "a", "b")
	want(t, "normalised rule", fw.Inbound(at(0), in(p, tcp(1, 22, TCPSyn)), p), ReasonRule, 0)
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown proto", "inbound:\n  - {proto: sctp, port: 1, any: true}", `line 2: inbound rule 0: proto "sctp": use any, tcp, udp or icmp`},
		{"missing proto", "inbound:\n  - {port: 1, any: true}", "line 2: inbound rule 0: proto is required"},
		{"port 0", "inbound:\n  - {proto: tcp, port: 0, any: true}", `line 2: inbound rule 0: port "0": "0" is not a port (use 1-65535)`},
		{"port too big", "outbound:\n  - {proto: tcp, port: 1, any: true}\n  - {proto: udp, port: 65536, any: true}", `line 3: outbound rule 1: port "65536"`},
		{"backwards range", "inbound:\n  - {proto: tcp, port: 9000-8000, any: true}", "range 9000-8000 is backwards"},
		{"open range", "inbound:\n  - {proto: tcp, port: 8000-, any: true}", `"" is not a port`},
		{"word port", "inbound:\n  - {proto: tcp, port: http, any: true}", `"http" is not a port`},
		{"signed port", "inbound:\n  - {proto: tcp, port: +80, any: true}", `"+80" is not a port`},
		{"tcp without port", "inbound:\n  - {proto: tcp, any: true}", "port is required for tcp and udp"},
		{"icmp with port", "inbound:\n  - {proto: icmp, port: 8, any: true}", "only tcp and udp have ports"},
		{"any with port", "inbound:\n  - {proto: any, port: 80, any: true}", "only tcp and udp have ports"},
		{"no selector", "inbound:\n  - {proto: tcp, port: 80}", "no peer selector"},
		{"any false is no selector", "inbound:\n  - {proto: tcp, port: 80, any: false}", "no peer selector"},
		{"two selectors", "inbound:\n  - {proto: tcp, port: 80, host: a, group: b}", "more than one peer selector"},
		{"group and groups", "inbound:\n  - {proto: tcp, port: 80, group: a, groups: [b]}", "both group and groups set"},
		{"empty groups", "inbound:\n  - {proto: tcp, port: 80, groups: []}", "groups is empty"},
		{"bad group", "inbound:\n  - {proto: tcp, port: 80, group: \"a/b\"}", `group: path segment "a/b"`},
		{"too many groups", "inbound:\n  - {proto: tcp, port: 80, groups: [" + manyGroups(33) + "]}", "33 groups"},
		{"bad host", "inbound:\n  - {proto: tcp, port: 80, host: Web_1}", `host: node name "Web_1"`},
		{"spiffe scheme", "inbound:\n  - {proto: tcp, port: 80, spiffe_id: \"SPIFFE://mesh/node/a\"}", "must start with spiffe://"},
		{"spiffe dot segment", "inbound:\n  - {proto: tcp, port: 80, spiffe_id: \"spiffe://mesh/node/..\"}", `path segment ".." not allowed`},
		{"spiffe trust domain only", "inbound:\n  - {proto: tcp, port: 80, spiffe_id: \"spiffe://mesh\"}", "can never match a node"},
		{"spiffe not a node", "inbound:\n  - {proto: tcp, port: 80, spiffe_id: \"spiffe://mesh/workload/a\"}", "can never match a node"},
		{"spiffe node subpath", "inbound:\n  - {proto: tcp, port: 80, spiffe_id: \"spiffe://mesh/node/a/b\"}", "can never match a node"},
		{"unknown rule key", "inbound:\n  - {proto: tcp, port: 80, any: true}\n  - proto: tcp\n    port: 80\n    grups: [a]", `line 5: firewall rule: unknown key "grups"`},
		{"unknown section key", "inbound: []\nforward: []", `line 2: firewall: unknown key "forward"`},
		{"unknown conntrack key", "conntrack:\n  max: 5", `line 2: firewall conntrack: unknown key "max"`},
		{"wrong type", "inbound:\n  - {proto: tcp, port: [80], any: true}", "line 2: cannot unmarshal !!seq into string"},
		{"inbound not a list", "inbound: tcp", "line 1: cannot unmarshal"},
		{"bad duration", "conntrack: {tcp_timeout: forever}", "line 1"},
		{"tiny timeout", "conntrack: {udp_timeout: 1ms}", "conntrack: udp_timeout 1ms: use 1s-24h"},
		{"negative size", "conntrack: {max_entries: -1}", "conntrack: max_entries -1"},
		{"huge size", "conntrack: {max_entries: 100000000}", "conntrack: max_entries 100000000"},
		{"per peer above max", "conntrack: {max_entries: 10, max_per_peer: 11}", "max_per_peer 11: use 1-10"},
		{"not yaml", "inbound: [", "firewall config: yaml:"},
	}
	for _, c := range cases {
		_, err := ParseYAML([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}

	big := make([]byte, MaxConfigSize+1)
	if _, err := ParseYAML(big); err == nil {
		t.Error("ParseYAML accepted more than MaxConfigSize")
	}
	var many strings.Builder
	many.WriteString("inbound:\n")
	for range MaxRules + 1 {
		many.WriteString("- {proto: icmp, any: true}\n")
	}
	if _, err := ParseYAML([]byte(many.String())); err == nil || !strings.Contains(err.Error(), "4097 rules, at most 4096") {
		t.Errorf("too many rules: %v", err)
	}
	if cfg, err := ParseYAML(nil); err != nil || len(cfg.Inbound)+len(cfg.Outbound) != 0 {
		t.Errorf("empty config: %+v, %v", cfg, err)
	}
}

func manyGroups(n int) string {
	g := make([]string, n)
	for i := range g {
		g[i] = "g" + string(rune('a'+i/26)) + string(rune('a'+i%26))
	}
	return strings.Join(g, ", ")
}
