package governance

import (
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

const testDomain = "mesh.test"

var t0 = time.Unix(1_800_000_000, 0)

type testMembers struct {
	keys   []*identity.SigningKey
	roster *Roster
}

func newMembers(t testing.TB, weights ...uint32) *testMembers {
	t.Helper()
	tm := &testMembers{}
	var ms []Member
	for i, w := range weights {
		k, err := identity.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		tm.keys = append(tm.keys, k)
		ms = append(ms, Member{Name: string(rune('a'+i)) + "-member", Weight: w, Key: k.PublicKey()})
	}
	r, err := Genesis(testDomain, ms)
	if err != nil {
		t.Fatal(err)
	}
	tm.roster = r
	return tm
}

func testPolicy(t testing.TB, version uint64) *meshca.Policy {
	t.Helper()
	key, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(key, meshca.CAOptions{TrustDomain: testDomain, Name: "ca", Duration: 24 * time.Hour}, t0)
	if err != nil {
		t.Fatal(err)
	}
	any1 := []meshca.Selector{{Kind: meshca.SelectAny}}
	p, err := ca.SignPolicy(version, []meshca.Grant{{Src: any1, Dst: any1, Ports: []meshca.PortRange{{Proto: meshca.ProtoICMPv6}}}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (tm *testMembers) propose(t testing.TB, a Action, mod func(*Proposal)) *Proposal {
	t.Helper()
	p := Proposal{TrustDomain: testDomain, Roster: tm.roster.Hash(), Title: "test", Start: t0, End: t0.Add(time.Hour),
		Timelock: time.Minute, QuorumBPS: 5000, ThresholdBPS: 6000, Action: a}
	if mod != nil {
		mod(&p)
	}
	out, err := NewProposal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (tm *testMembers) vote(t testing.TB, i int, p *Proposal, c Choice, seq uint32) *Ballot {
	t.Helper()
	b, err := SignBallot(tm.keys[i], p.ID(), c, seq, p.Start.Add(time.Duration(seq)*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
