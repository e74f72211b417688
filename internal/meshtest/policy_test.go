package meshtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

func policyVersion(n *Node) uint64 {
	if p := n.Policy(); p != nil {
		return p.Version
	}
	return 0
}

// hasPolicy is a condition: every node applies policy version v.
func hasPolicy(v uint64, nodes ...*Node) func() bool {
	return func() bool {
		for _, n := range nodes {
			if policyVersion(n) != v {
				return false
			}
		}
		return true
	}
}

// TestPolicyOverTheMesh: a line a(ops) – b – c(web) with local rules that allow everything. A policy
// given to one end reaches the other through b (frame type 10) and applies at once, without a
// restart; a newer one given to the other end takes ping away; an older one, replayed through the
// node's API, from a node's rolled-back disk over the mesh, or after a restart, changes nothing.
func TestPolicyOverTheMesh(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name+".pem") }
	m, err := New(Config{Seed: 3, Heal: node.HealConfig{Disabled: true},
		Options: func(name string, o *node.Options) { o.PolicyFile = file(name) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range [][2]string{{"a", "ops"}, {"b", "relay"}, {"c", "web"}} {
		if _, err := m.AddNode(n[0], n[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if err := m.Link(l[0], l[1], LinkParams{Delay: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, b, c := m.Node("a"), m.Node("b"), m.Node("c")
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c\n%s", dump(m))
	}
	if !ping(m, a, c, 1, 2*time.Second) || !ping(m, c, a, 2, 2*time.Second) {
		t.Fatalf("no ping without a policy (the local rules allow everything)\n%s", dump(m))
	}

	ops, web := meshca.Selector{Kind: meshca.SelectGroup, Group: "ops"}, meshca.Selector{Kind: meshca.SelectGroup, Group: "web"}
	icmp, ssh := meshca.PortRange{Proto: meshca.ProtoICMPv6}, meshca.PortRange{Proto: meshca.ProtoTCP, Lo: 22, Hi: 22}
	v1, err := m.CA().SignPolicy(1, []meshca.Grant{{Src: []meshca.Selector{ops}, Dst: []meshca.Selector{web}, Ports: []meshca.PortRange{icmp, ssh}}}, m.Now())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := m.CA().SignPolicy(2, []meshca.Grant{{Src: []meshca.Selector{ops}, Dst: []meshca.Selector{web}, Ports: []meshca.PortRange{ssh}}}, m.Now())
	if err != nil {
		t.Fatal(err)
	}

	// Version 1 given to a reaches b and c over the mesh.
	if ok, err := a.UpdatePolicy(v1); !ok || err != nil {
		t.Fatalf("a: version 1: %v %v", ok, err)
	}
	if took, ok := m.RunUntil(hasPolicy(1, a, b, c), time.Second); !ok {
		t.Fatalf("version 1 did not spread: a %d, b %d, c %d", policyVersion(a), policyVersion(b), policyVersion(c))
	} else {
		t.Logf("version 1 reached every node %s after it was given to a", took)
	}
	if !ping(m, a, c, 3, 2*time.Second) {
		t.Fatalf("version 1 lets ops ping web, but a could not ping c\n%s", dump(m))
	}
	dropped := c.Status().Stats.DropFirewall
	if ping(m, c, a, 4, 2*time.Second) {
		t.Fatal("version 1 grants web nothing towards ops, but c pinged a")
	}
	if c.Status().Stats.DropFirewall == dropped {
		t.Fatal("c's firewall dropped nothing: the ping failed for another reason")
	}

	// The local rules still apply on top of the policy: c's node.yaml taking ICMPv6 away denies the
	// ping the policy allows; reloading them keeps the policy layer, and restoring them the ping.
	noICMP := firewall.Config{Inbound: []firewall.Rule{{Proto: "tcp", Port: "any", Any: true}}, Outbound: allowAll.Outbound}
	if err := c.ReloadFirewall(noICMP); err != nil {
		t.Fatal(err)
	}
	if ping(m, a, c, 30, 2*time.Second) {
		t.Fatal("c's local rules refuse ICMPv6, but a pinged c")
	}
	if err := c.ReloadFirewall(allowAll); err != nil {
		t.Fatal(err)
	}
	if !ping(m, a, c, 31, 2*time.Second) || ping(m, c, a, 32, 2*time.Second) {
		t.Fatal("after reloading c's local rules, the policy no longer decides")
	}

	// Version 2, given to c, takes ping away everywhere.
	if ok, err := c.UpdatePolicy(v2); !ok || err != nil {
		t.Fatalf("c: version 2: %v %v", ok, err)
	}
	if _, ok := m.RunUntil(hasPolicy(2, a, b, c), time.Second); !ok {
		t.Fatalf("version 2 did not spread: a %d, b %d, c %d", policyVersion(a), policyVersion(b), policyVersion(c))
	}
	dropped = a.Status().Stats.DropFirewall
	if ping(m, a, c, 5, 2*time.Second) {
		t.Fatal("version 2 took ping away, but a still pinged c")
	}
	if a.Status().Stats.DropFirewall == dropped {
		t.Fatal("a's firewall dropped nothing: the ping failed for another reason")
	}

	if st := a.Status(); st.Policy != 2 {
		t.Fatalf("a's status shows policy version %d", st.Policy)
	}

	// Replaying version 1 through the API changes nothing.
	if ok, err := a.UpdatePolicy(v1); ok || !errors.Is(err, meshca.ErrPolicyRollback) {
		t.Fatalf("a took version 1 again: %v %v", ok, err)
	}
	if ping(m, a, c, 6, 2*time.Second) || policyVersion(a) != 2 {
		t.Fatalf("after a replay of version 1: ping allowed, or a at version %d", policyVersion(a))
	}

	// Each node kept the version it applies.
	for _, n := range []*Node{a, b, c} {
		kept, err := meshca.LoadPolicyFile(file(n.Name))
		if err != nil || kept.Version != 2 {
			t.Fatalf("%s kept %v, %v; want version 2", n.Name, kept, err)
		}
	}

	// A restart of c starts with version 2 before it hears from anyone.
	if err := m.Restart("c"); err != nil {
		t.Fatal(err)
	}
	if policyVersion(c) != 2 {
		t.Fatalf("c restarted with policy version %d, want 2", policyVersion(c))
	}

	// a's disk is rolled back to version 1 and a restarts: it starts with version 1 and offers it
	// to b, which refuses it; b's own offer when their link comes up brings a back to version 2.
	if err := os.WriteFile(file("a"), meshca.EncodePolicyPEM(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart("a"); err != nil {
		t.Fatal(err)
	}
	if policyVersion(a) != 1 {
		t.Fatalf("a restarted from a version 1 file with version %d", policyVersion(a))
	}
	if took, ok := m.RunUntil(hasPolicy(2, a), time.Second); !ok {
		t.Fatalf("a did not get version 2 back from b (at %d)", policyVersion(a))
	} else {
		t.Logf("restarted a was back at version 2 after %s", took)
	}
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c after the restarts\n%s", dump(m))
	}
	m.Run(time.Second)
	if policyVersion(b) != 2 || policyVersion(c) != 2 {
		t.Fatalf("a's offer of version 1 rolled a neighbour back: b %d, c %d", policyVersion(b), policyVersion(c))
	}
	if ping(m, a, c, 7, 2*time.Second) {
		t.Fatal("ping allowed after the rolled-back restart")
	}
	if kept, err := meshca.LoadPolicyFile(file("a")); err != nil || kept.Version != 2 {
		t.Fatalf("a kept %v, %v after catching up; want version 2", kept, err)
	}
}

// TestPolicyReachesLateNode: a node that misses the frame gets the policy from its neighbour's
// periodic announcement, and one that starts while the policy is in force gets it from its neighbour
// when their link comes up; there is no control plane in this harness at all.
func TestPolicyReachesLateNode(t *testing.T) {
	// Drop loses the first datagram from b to c of the size of the sealed policy frame, or of its
	// last piece.
	frameSize, lost := 0, 0
	m, err := New(Config{Seed: 5, Heal: node.HealConfig{Disabled: true},
		Drop: func(from, to *Node, d []byte) bool {
			if lost == 0 && from.Name == "b" && to.Name == "c" && len(d) == frameSize {
				lost++
				return true
			}
			return false
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}} {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, b, c := m.Node("a"), m.Node("b"), m.Node("c")
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c\n%s", dump(m))
	}
	any1 := []meshca.Selector{{Kind: meshca.SelectAny}}
	v1, err := m.CA().SignPolicy(1, []meshca.Grant{{Src: any1, Dst: any1, Ports: []meshca.PortRange{{Proto: meshca.ProtoAny}}}}, m.Now())
	if err != nil {
		t.Fatal(err)
	}
	frameSize = sealedLastPiece(1+len(v1.Bytes()), b.LinkDatagram()) // frame type, policy
	if _, err := a.UpdatePolicy(v1); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.RunUntil(hasPolicy(1, b), time.Second); !ok {
		t.Fatal("b did not get version 1")
	}
	// b's copy to c was lost; c waits for b's next announcement.
	m.Run(10 * time.Second)
	if lost != 1 || policyVersion(c) != 0 {
		t.Fatalf("%d frames to c lost, c at version %d: the test tests nothing", lost, policyVersion(c))
	}
	took, ok := m.RunUntil(hasPolicy(1, c), policyAnnounce)
	if !ok {
		t.Fatalf("c never got version 1 after losing b's first copy")
	}
	t.Logf("c caught up %s after the first 10 s", took)

	// A node restarted without a policy file gets the policy when its first link comes up.
	if err := m.Restart("c"); err != nil {
		t.Fatal(err)
	}
	if policyVersion(c) != 0 {
		t.Fatal("c kept a policy without a policy file")
	}
	if took, ok := m.RunUntil(hasPolicy(1, c), 2*time.Second); !ok {
		t.Fatal("restarted c did not get the policy from b")
	} else if took > time.Second {
		t.Errorf("restarted c took %s to get the policy: that was not the link-up offer", took)
	}
}

// policyAnnounce is node's policyAnnounceInterval.
const policyAnnounce = time.Minute

// TestPolicyWithoutICMPHealsNothing: self-healing probes are ICMPv6 echo and obey the firewall. A
// policy that grants TCP only stops them at the prober, so a healthy mesh gets no verdict against a
// neighbour whose destinations fell silent because of the policy.
func TestPolicyWithoutICMPHealsNothing(t *testing.T) {
	m, err := New(Config{Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "c", "d"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}, {"d", "a"}} {
		if err := m.Link(l[0], l[1], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	m.Run(20 * time.Second)
	sent := map[string]uint64{}
	for _, n := range m.Nodes() {
		h := n.Heal()
		if h.ProbesOK == 0 {
			t.Fatalf("%s: no probe answered before the policy: the test tests nothing", n.Name)
		}
		sent[n.Name] = h.ProbesSent
	}
	any1 := []meshca.Selector{{Kind: meshca.SelectAny}}
	p, err := m.CA().SignPolicy(1, []meshca.Grant{{Src: any1, Dst: any1, Ports: []meshca.PortRange{{Proto: meshca.ProtoTCP}}}}, m.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Node("a").UpdatePolicy(p); err != nil {
		t.Fatal(err)
	}
	m.Run(time.Minute)
	for _, n := range m.Nodes() {
		h := n.Heal()
		if policyVersion(n) != 1 || h.Penalties != 0 || h.ProbesSent > sent[n.Name]+1 {
			t.Errorf("%s: policy %d, %d penalties, %d probes sent after the policy", n.Name, policyVersion(n), h.Penalties, h.ProbesSent-sent[n.Name])
		}
	}
}
