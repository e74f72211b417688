package meshtest

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// govMesh is a governed mesh: a1 (group A) – r (relay) – b1 (group B), c1 (group C) and x hang off
// r. Every node but x follows a three-member genesis roster and governs the policy and revocation;
// x has no governance and takes whatever its admin gives it, standing for a node (or a control
// plane) that passes on changes without a quorum certificate.
type govMesh struct {
	*Mesh
	members []*identity.SigningKey
	genesis *governance.Roster
	dir     string
}

func newGovMesh(t *testing.T) *govMesh {
	t.Helper()
	return newGovMeshHealing(t, node.HealConfig{Disabled: true})
}

// newGovMeshHealing is newGovMesh with every node's self-healing configured as heal.
func newGovMeshHealing(t *testing.T, heal node.HealConfig) *govMesh {
	t.Helper()
	g := &govMesh{dir: t.TempDir()}
	var ms []governance.Member
	for i, name := range []string{"alice", "bob", "carol"} {
		k, err := identity.NewSigningKey(bytes.Repeat([]byte{byte(0xa0 + i)}, identity.SigningSeedSize))
		if err != nil {
			t.Fatal(err)
		}
		g.members = append(g.members, k)
		ms = append(ms, governance.Member{Name: name, Weight: 1, Key: k.PublicKey()})
	}
	var err error
	if g.genesis, err = governance.Genesis("meshtest.mesh", ms); err != nil {
		t.Fatal(err)
	}
	governed := []governance.ActionType{governance.ActionPolicy, governance.ActionRevoke}
	m, err := New(Config{Seed: 16, Heal: heal, Options: func(name string, o *node.Options) {
		o.PolicyFile = filepath.Join(g.dir, name+"-policy.pem")
		if name != "x" {
			o.Governance = &node.GovernanceOptions{Genesis: g.genesis, Governed: governed, File: filepath.Join(g.dir, name+"-decisions.pem")}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	g.Mesh = m
	for _, n := range [][2]string{{"a1", "A"}, {"b1", "B"}, {"r", "relay"}, {"c1", "C"}, {"x", "relay"}} {
		if _, err := m.AddNode(n[0], n[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"a1", "r"}, {"r", "b1"}, {"r", "c1"}, {"r", "x"}} {
		if err := m.Link(l[0], l[1], LinkParams{Delay: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"b1", "c1"} {
		if _, ok := m.RunUntil(hasRoute(m.Node("a1"), to, 2, "r"), 5*time.Second); !ok {
			t.Fatalf("no route a1 -> %s\n%s", to, dump(m))
		}
	}
	return g
}

// propose makes a proposal frozen on the genesis roster whose voting starts now and lasts a minute,
// with a minute's timelock, quorum one half and threshold 60 %.
func (g *govMesh) propose(t *testing.T, title string, a governance.Action) *governance.Proposal {
	t.Helper()
	return g.proposeOn(t, g.genesis, title, a)
}

// proposeOn is propose frozen on roster r.
func (g *govMesh) proposeOn(t *testing.T, r *governance.Roster, title string, a governance.Action) *governance.Proposal {
	t.Helper()
	start := g.Now().Truncate(time.Second)
	p, err := governance.NewProposal(governance.Proposal{TrustDomain: "meshtest.mesh", Roster: r.Hash(), Title: title,
		Start: start, End: start.Add(time.Minute), Timelock: time.Minute, QuorumBPS: 5000, ThresholdBPS: 6000, Action: a})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (g *govMesh) vote(t *testing.T, member int, p *governance.Proposal, c governance.Choice) *governance.Ballot {
	t.Helper()
	b, err := governance.SignBallot(g.members[member], p.ID(), c, 1, g.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func certificate(t *testing.T, p *governance.Proposal, ballots ...*governance.Ballot) []byte {
	t.Helper()
	c, err := governance.NewCertificate(p, ballots)
	if err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}

func (g *govMesh) governed() []*Node {
	return []*Node{g.Node("a1"), g.Node("r"), g.Node("b1"), g.Node("c1")}
}

func decisions(n *Node) int {
	s, _ := n.Governance()
	return s.Decisions
}

// refusedEverywhere checks that no governed node took what x was given: each still applies policy
// version v.
func (g *govMesh) policyEverywhere(t *testing.T, v uint64) {
	t.Helper()
	for _, n := range g.governed() {
		if got := policyVersion(n); got != v {
			t.Fatalf("%s applies policy version %d, want %d", n.Name, got, v)
		}
	}
}

// TestGovernedPolicy is the acceptance run for a policy decision: three members, a proposal to
// forbid group A from reaching group B, two yes votes, the timelock, and every governed node applies
// it; a1 pinged b1 before and cannot after. The same policy pushed by an admin alone (to a governed
// node's API, or through x over the mesh) is refused by every governed node, and so are
// certificates short of quorum, with a forged ballot, from a non-member or before the timelock.
func TestGovernedPolicy(t *testing.T) {
	g := newGovMesh(t)
	a1, b1, x := g.Node("a1"), g.Node("b1"), g.Node("x")
	if !ping(g.Mesh, a1, b1, 1, 2*time.Second) {
		t.Fatalf("a1 cannot ping b1 before any policy\n%s", dump(g.Mesh))
	}

	sel := func(group string) meshca.Selector { return meshca.Selector{Kind: meshca.SelectGroup, Group: group} }
	all := []meshca.PortRange{{Proto: meshca.ProtoAny}}
	anyNode := []meshca.Selector{{Kind: meshca.SelectAny}}
	// A may reach the relays and C; B, C and the relays may reach anyone. Nothing lets A reach B.
	forbidAB, err := g.CA().SignPolicy(1, []meshca.Grant{
		{Src: []meshca.Selector{sel("A")}, Dst: []meshca.Selector{sel("relay"), sel("C")}, Ports: all},
		{Src: []meshca.Selector{sel("B"), sel("C"), sel("relay")}, Dst: anyNode, Ports: all},
	}, g.Now())
	if err != nil {
		t.Fatal(err)
	}

	// The admin alone: a governed node's API refuses it; x takes it and floods it, and no governed
	// node applies it.
	if ok, err := a1.UpdatePolicy(forbidAB); ok || !errors.Is(err, governance.ErrGoverned) {
		t.Fatalf("a1 took the admin's policy: %v %v", ok, err)
	}
	if ok, err := x.UpdatePolicy(forbidAB); !ok || err != nil {
		t.Fatalf("ungoverned x: %v %v", ok, err)
	}
	g.Run(3 * time.Second)
	g.policyEverywhere(t, 0)
	if !ping(g.Mesh, a1, b1, 2, 2*time.Second) {
		t.Fatal("a1 cannot ping b1 after the refused admin push")
	}

	// The members decide.
	p := g.propose(t, "forbid A to B", governance.PolicyAction{Policy: forbidAB})
	g.Run(5 * time.Second)
	yes0, yes1 := g.vote(t, 0, p, governance.Yes), g.vote(t, 1, p, governance.Yes)
	g.Run(p.ExecutableAt().Sub(g.Now()) - 10*time.Second)

	// Before the timelock ends, even the full certificate is refused.
	full := certificate(t, p, yes0, yes1)
	if ok, err := a1.ApplyDecision(full); ok || !errors.Is(err, governance.ErrTimelock) {
		t.Fatalf("before the timelock: %v %v", ok, err)
	}
	g.Run(11 * time.Second)

	// Short of quorum, a forged ballot, a non-member's ballot: refused, whoever hands them over.
	if ok, err := a1.ApplyDecision(certificate(t, p, yes0)); ok || !errors.Is(err, governance.ErrNotPassed) {
		t.Fatalf("one yes of three: %v %v", ok, err)
	}
	forgedRaw := bytes.Clone(yes1.Bytes())
	forgedRaw[len(forgedRaw)-7] ^= 1
	forged, err := governance.ParseBallot(forgedRaw)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a1.ApplyDecision(certificate(t, p, yes0, forged)); ok || !errors.Is(err, governance.ErrBadSignature) {
		t.Fatalf("forged ballot: %v %v", ok, err)
	}
	outsider, err := identity.NewSigningKey(bytes.Repeat([]byte{0xee}, identity.SigningSeedSize))
	if err != nil {
		t.Fatal(err)
	}
	strangerBallot, err := governance.SignBallot(outsider, p.ID(), governance.Yes, 1, p.Start)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a1.ApplyDecision(certificate(t, p, yes0, strangerBallot)); ok || !errors.Is(err, governance.ErrNotMember) {
		t.Fatalf("non-member ballot: %v %v", ok, err)
	}
	g.policyEverywhere(t, 0)

	// The valid certificate, given to a1 alone, reaches every governed node over the mesh.
	if ok, err := a1.ApplyDecision(full); !ok || err != nil {
		t.Fatalf("valid certificate: %v %v", ok, err)
	}
	took, ok := g.RunUntil(hasPolicy(1, g.governed()...), 2*time.Second)
	if !ok {
		for _, n := range g.governed() {
			t.Logf("%s: policy %d, %d decisions", n.Name, policyVersion(n), decisions(n))
		}
		t.Fatal("the decision did not reach every governed node")
	}
	t.Logf("the decision reached every governed node %s after a1 applied it", took)
	dropped := a1.Status().Stats.DropFirewall
	if ping(g.Mesh, a1, b1, 3, 2*time.Second) {
		t.Fatal("a1 still pings b1 after the members forbade it")
	}
	if a1.Status().Stats.DropFirewall == dropped {
		t.Fatal("a1's firewall dropped nothing: the ping failed for another reason")
	}
	if !ping(g.Mesh, a1, g.Node("c1"), 4, 2*time.Second) {
		t.Fatal("a1 cannot ping c1, which the policy allows")
	}

	// A restart re-verifies and re-applies the kept decision before the node hears from anyone.
	if err := g.Restart("b1"); err != nil {
		t.Fatal(err)
	}
	if policyVersion(g.Node("b1")) != 1 || decisions(g.Node("b1")) != 1 {
		t.Fatalf("restarted b1: policy %d, %d decisions", policyVersion(g.Node("b1")), decisions(g.Node("b1")))
	}
}

// TestGovernedRevocation is the acceptance run for a revocation decision: an admin's revocation
// list (to a governed node's API, or through x over the mesh) revokes nobody on a governed node;
// the members' decision, given to one node, revokes c1 everywhere, and a1 no longer reaches it.
func TestGovernedRevocation(t *testing.T) {
	g := newGovMesh(t)
	a1, r, c1, x := g.Node("a1"), g.Node("r"), g.Node("c1"), g.Node("x")
	if !ping(g.Mesh, a1, c1, 1, 2*time.Second) {
		t.Fatalf("a1 cannot ping c1 before any revocation\n%s", dump(g.Mesh))
	}
	crl, err := g.CA().SignRevocationList(nil, []meshca.Serial{c1.Cert.Serial}, []identity.KeyID{c1.Cert.SignPublicKey.ID()}, g.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a1.UpdateCRL(crl); ok || !errors.Is(err, governance.ErrGoverned) {
		t.Fatalf("a1 took the admin's revocation list: %v %v", ok, err)
	}
	if ok, err := x.UpdateCRL(crl); !ok || err != nil {
		t.Fatalf("ungoverned x: %v %v", ok, err)
	}
	g.Run(3 * time.Second)
	hasPeer := func(n *Node, name string) bool {
		return slices.ContainsFunc(n.Peers(), func(p node.PeerStatus) bool { return p.Name == name })
	}
	if !hasPeer(r, "c1") {
		t.Fatal("r dropped c1 on an admin's revocation list")
	}
	if !ping(g.Mesh, a1, c1, 2, 2*time.Second) {
		t.Fatal("a1 cannot ping c1 after the refused admin revocation")
	}

	p := g.propose(t, "revoke c1", governance.RevokeNode{Name: "c1", Key: c1.Cert.SignPublicKey.ID()})
	g.Run(time.Second)
	qc := certificate(t, p, g.vote(t, 1, p, governance.Yes), g.vote(t, 2, p, governance.Yes))
	g.Run(p.ExecutableAt().Sub(g.Now()))
	if ok, err := g.Node("b1").ApplyDecision(qc); !ok || err != nil {
		t.Fatalf("valid certificate: %v %v", ok, err)
	}
	applied := func() bool {
		for _, n := range []*Node{a1, r, g.Node("b1")} {
			if decisions(n) != 1 {
				return false
			}
		}
		return !hasPeer(r, "c1")
	}
	if took, ok := g.RunUntil(applied, 2*time.Second); !ok {
		t.Fatalf("the revocation did not spread, or r kept c1: a1 %d, r %d decisions", decisions(a1), decisions(r))
	} else {
		t.Logf("every governed node applied the revocation, and r dropped c1, %s after b1 did", took)
	}
	if ping(g.Mesh, a1, c1, 3, 2*time.Second) {
		t.Fatal("a1 still reaches c1 after the members revoked it")
	}
	// A restart of r keeps c1 revoked.
	if err := g.Restart("r"); err != nil {
		t.Fatal(err)
	}
	g.Run(3 * time.Second)
	if hasPeer(g.Node("r"), "c1") {
		t.Fatal("restarted r took c1 back")
	}
}

// TestGovernedHealThresholds: an enacted heal-thresholds decision, given to one node, changes the
// running healer of every governed node (not x's) without a restart, and the loop follows it: a1
// probes once per voted interval instead of once per configured one. A restart re-applies it from
// the kept file, and a decision outside the node's own ranges is refused.
func TestGovernedHealThresholds(t *testing.T) {
	g := newGovMeshHealing(t, node.HealConfig{ProbeInterval: 200 * time.Millisecond})
	a1, x := g.Node("a1"), g.Node("x")
	probesIn := func(d time.Duration) uint64 {
		before := a1.Heal().ProbesSent
		g.Run(d)
		return a1.Heal().ProbesSent - before
	}
	g.Run(2 * time.Second)
	if n := probesIn(10 * time.Second); n < 40 || n > 60 {
		t.Fatalf("a1 sent %d probes in 10 s at a 200 ms interval, want about 50", n)
	}

	voted := governance.HealThresholds{ProbeInterval: time.Second, ProbeTimeout: 700 * time.Millisecond, Hold: 20 * time.Second,
		MaxHold: 10 * time.Minute, Grace: 5 * time.Second, ConfidencePPM: 950_000, Consecutive: 3}
	want := node.HealStatus{Enabled: true, ProbeInterval: time.Second, ProbeTimeout: 700 * time.Millisecond, Confidence: 0.95,
		Consecutive: 3, Hold: 20 * time.Second, MaxHold: 10 * time.Minute, Grace: 5 * time.Second}
	settings := func(s node.HealStatus) node.HealStatus {
		return node.HealStatus{Enabled: s.Enabled, ProbeInterval: s.ProbeInterval, ProbeTimeout: s.ProbeTimeout, Confidence: s.Confidence,
			Consecutive: s.Consecutive, Hold: s.Hold, MaxHold: s.MaxHold, Grace: s.Grace}
	}

	// Outside the node's own range (a probe timeout under 100 ms): governance refuses the
	// proposal itself, so members cannot vote for what nodes would refuse.
	tooShort := voted
	tooShort.ProbeTimeout = 50 * time.Millisecond
	start := g.Now().Truncate(time.Second)
	if _, err := governance.NewProposal(governance.Proposal{TrustDomain: "meshtest.mesh", Roster: g.genesis.Hash(), Title: "heal: too short a timeout",
		Start: start, End: start.Add(time.Minute), Timelock: time.Minute, QuorumBPS: 5000, ThresholdBPS: 6000, Action: tooShort}); err == nil {
		t.Fatal("a heal proposal with a 50ms probe timeout was accepted")
	}
	p := g.propose(t, "heal: calmer probing", voted)
	g.Run(time.Second)
	qc := certificate(t, p, g.vote(t, 0, p, governance.Yes), g.vote(t, 2, p, governance.Yes))
	g.Run(p.ExecutableAt().Sub(g.Now()))

	if ok, err := g.Node("b1").ApplyDecision(qc); !ok || err != nil {
		t.Fatalf("valid certificate: %v %v", ok, err)
	}
	allHeal := func() bool {
		for _, n := range g.governed() {
			if !reflect.DeepEqual(settings(n.Heal()), want) {
				return false
			}
		}
		return true
	}
	if _, ok := g.RunUntil(allHeal, 2*time.Second); !ok {
		for _, n := range g.governed() {
			t.Logf("%s: %+v", n.Name, settings(n.Heal()))
		}
		t.Fatal("the heal decision did not reach every governed node")
	}
	if s, _ := a1.Governance(); s.Heal == nil || *s.Heal != voted {
		t.Fatalf("a1's governance state records heal %+v, want %+v", s.Heal, voted)
	}
	if got := x.Heal().ProbeInterval; got != 200*time.Millisecond {
		t.Fatalf("ungoverned x probes every %s, want its own 200ms", got)
	}
	g.Run(2 * time.Second)
	if n := probesIn(10 * time.Second); n < 8 || n > 12 {
		t.Fatalf("a1 sent %d probes in 10 s at the voted 1 s interval, want about 10", n)
	}

	if err := g.Restart("a1"); err != nil {
		t.Fatal(err)
	}
	if got := settings(g.Node("a1").Heal()); !reflect.DeepEqual(got, want) {
		t.Fatalf("restarted a1 heals with %+v, want the voted %+v", got, want)
	}
}

// TestGovernedAdmitMember: a member admitted by vote, on a live mesh, then votes on a later
// proposal, and every governed node accepts that decision; before the admission the same ballot
// was a non-member's and refused.
func TestGovernedAdmitMember(t *testing.T) {
	g := newGovMesh(t)
	a1, r, c1 := g.Node("a1"), g.Node("r"), g.Node("c1")
	dave, err := identity.NewSigningKey(bytes.Repeat([]byte{0xd0}, identity.SigningSeedSize))
	if err != nil {
		t.Fatal(err)
	}
	admit := governance.AdmitMember{Name: "dave", Weight: 1, Key: dave.PublicKey()}
	next, err := g.genesis.Next(admit)
	if err != nil {
		t.Fatal(err)
	}
	pa := g.propose(t, "admit dave", admit)
	g.Run(time.Second)
	admitQC := certificate(t, pa, g.vote(t, 0, pa, governance.Yes), g.vote(t, 1, pa, governance.Yes))
	g.Run(pa.ExecutableAt().Sub(g.Now()))

	// Frozen on the roster that admits dave: dave and carol vote to revoke c1. Until the nodes follow
	// that roster, the certificate is refused.
	pr := g.proposeOn(t, next, "revoke c1", governance.RevokeNode{Name: "c1", Key: c1.Cert.SignPublicKey.ID()})
	g.Run(time.Second)
	daveYes, err := governance.SignBallot(dave, pr.ID(), governance.Yes, 1, g.Now())
	if err != nil {
		t.Fatal(err)
	}
	revokeQC := certificate(t, pr, daveYes, g.vote(t, 2, pr, governance.Yes))
	g.Run(pr.ExecutableAt().Sub(g.Now()))
	if ok, err := a1.ApplyDecision(revokeQC); ok || err == nil {
		t.Fatalf("a decision on a roster the node does not follow yet: %v %v", ok, err)
	}

	if ok, err := a1.ApplyDecision(admitQC); !ok || err != nil {
		t.Fatalf("admission: %v %v", ok, err)
	}
	following := func() bool {
		for _, n := range g.governed() {
			if s, _ := n.Governance(); s.RosterHash != next.Hash() || s.Members != 4 {
				return false
			}
		}
		return true
	}
	if _, ok := g.RunUntil(following, 2*time.Second); !ok {
		t.Fatal("the admission did not reach every governed node")
	}

	if ok, err := g.Node("b1").ApplyDecision(revokeQC); !ok || err != nil {
		t.Fatalf("the decision dave voted for: %v %v", ok, err)
	}
	hasC1 := func() bool {
		return slices.ContainsFunc(r.Peers(), func(p node.PeerStatus) bool { return p.Name == "c1" })
	}
	revoked := func() bool {
		for _, n := range g.governed()[:3] {
			if decisions(n) != 2 {
				return false
			}
		}
		return !hasC1()
	}
	if _, ok := g.RunUntil(revoked, 2*time.Second); !ok {
		t.Fatalf("the revocation dave voted for did not apply everywhere: a1 %d, r %d decisions, r has c1: %v", decisions(a1), decisions(r), hasC1())
	}
	// A restart re-applies both, in order: the roster first, then the decision resting on it.
	if err := g.Restart("a1"); err != nil {
		t.Fatal(err)
	}
	if s, _ := g.Node("a1").Governance(); s.RosterHash != next.Hash() || s.Decisions != 2 {
		t.Fatalf("restarted a1: roster epoch %d, %d decisions", s.RosterEpoch, s.Decisions)
	}
}
