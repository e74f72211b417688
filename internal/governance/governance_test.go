package governance

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
)

func TestISqrt(t *testing.T) {
	check := func(v32 uint32) {
		v, r := uint64(v32), isqrt(v32)
		if r*r > v || (r+1)*(r+1) <= v {
			t.Fatalf("isqrt(%d) = %d", v, r)
		}
	}
	for v := range uint32(100_000) {
		check(v)
	}
	for _, v := range []uint32{MaxWeight, 1<<32 - 1, 1<<32 - 2, 65535 * 65535, 65535*65535 - 1} {
		check(v)
	}
}

func TestCertificatePassesAndRoundTrips(t *testing.T) {
	tm := newMembers(t, 1, 1, 1)
	p := tm.propose(t, PolicyAction{Policy: testPolicy(t, 7)}, nil)
	c, err := NewCertificate(p, []*Ballot{tm.vote(t, 0, p, Yes, 1), tm.vote(t, 2, p, Yes, 1)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseCertificate(c.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.Bytes(), c.Bytes()) || parsed.Proposal.ID() != p.ID() {
		t.Fatal("certificate changed in a round trip")
	}
	tally, err := parsed.Verify(tm.roster, p.ExecutableAt())
	if err != nil {
		t.Fatal(err)
	}
	if tally != (Tally{Yes: 2, Total: 3}) {
		t.Fatalf("tally %+v", tally)
	}
	if got := parsed.Proposal.Action.(PolicyAction).Policy.Version; got != 7 {
		t.Fatalf("policy version %d", got)
	}
	// The timelock holds it back until End + Timelock.
	if _, err := parsed.Verify(tm.roster, p.ExecutableAt().Add(-time.Second)); !errors.Is(err, ErrTimelock) {
		t.Fatalf("before the timelock: %v", err)
	}
	// A roster that is not the frozen one.
	other := newMembers(t, 1, 1, 1)
	if _, err := parsed.Verify(other.roster, p.ExecutableAt()); !errors.Is(err, ErrWrongRoster) {
		t.Fatalf("other roster: %v", err)
	}
}

func TestBadBallotsRefused(t *testing.T) {
	tm := newMembers(t, 1, 1, 1)
	p := tm.propose(t, RevokeNode{Name: "n1", Key: identity.KeyID{1}}, nil)
	q := tm.propose(t, RevokeNode{Name: "n2", Key: identity.KeyID{2}}, nil)
	outsider := newMembers(t, 1)

	good := tm.vote(t, 0, p, Yes, 1)
	if _, err := good.Check(p, tm.roster); err != nil {
		t.Fatal(err)
	}

	// A forged signature: one bit of the signature, or of the signed fields, changed.
	for _, at := range []int{ballotTBSSize + 10, ballotTBSSize - 9} {
		raw := bytes.Clone(good.Bytes())
		raw[at] ^= 1
		forged, err := ParseBallot(raw)
		if err != nil {
			continue // a changed choice byte may not parse; that is a refusal too
		}
		if _, err := forged.Check(p, tm.roster); !errors.Is(err, ErrBadSignature) {
			t.Errorf("forged ballot (byte %d): %v", at, err)
		}
	}
	// A non-member's ballot.
	stranger := outsider.vote(t, 0, p, Yes, 1)
	if _, err := stranger.Check(p, tm.roster); !errors.Is(err, ErrNotMember) {
		t.Errorf("non-member: %v", err)
	}
	// A ballot for p replayed onto q.
	if _, err := good.Check(q, tm.roster); !errors.Is(err, ErrWrongProposal) {
		t.Errorf("replay onto another proposal: %v", err)
	}
	// A ballot after close, and one before the start.
	for _, at := range []time.Time{p.End, p.Start.Add(-time.Second)} {
		late, err := SignBallot(tm.keys[1], p.ID(), Yes, 1, at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := late.Check(p, tm.roster); !errors.Is(err, ErrOutsideWindow) {
			t.Errorf("ballot at %s: %v", at, err)
		}
	}
	// The changed-vote rule: a higher sequence replaces; the same one again is a retry; an
	// equal sequence with another choice, or a lower one, is refused.
	second := tm.vote(t, 0, p, No, 2)
	if ok, err := Supersedes(good, second); !ok || err != nil {
		t.Errorf("sequence 2 over 1: %v %v", ok, err)
	}
	if ok, err := Supersedes(second, second); ok || err != nil {
		t.Errorf("retry: %v %v", ok, err)
	}
	if ok, err := Supersedes(second, good); ok || !errors.Is(err, ErrStaleBallot) {
		t.Errorf("sequence 1 over 2: %v %v", ok, err)
	}
	equivocation := tm.vote(t, 0, p, Abstain, 2)
	if ok, err := Supersedes(second, equivocation); ok || !errors.Is(err, ErrStaleBallot) {
		t.Errorf("other ballot with the same sequence: %v %v", ok, err)
	}

	// A certificate with a forged, non-member or duplicate ballot, or short of quorum, is refused.
	shortOfQuorum, _ := NewCertificate(p, []*Ballot{good})
	if _, err := shortOfQuorum.Verify(tm.roster, p.ExecutableAt()); !errors.Is(err, ErrNotPassed) {
		t.Errorf("one yes of three (quorum 50%%): %v", err)
	}
	withStranger, _ := NewCertificate(p, []*Ballot{good, stranger})
	if _, err := withStranger.Verify(tm.roster, p.ExecutableAt()); !errors.Is(err, ErrNotMember) {
		t.Errorf("certificate with a non-member ballot: %v", err)
	}
	if _, err := NewCertificate(p, []*Ballot{good, second}); err == nil {
		t.Error("certificate with two ballots of one voter")
	}
	raw := bytes.Clone(good.Bytes())
	raw[len(raw)-1] ^= 0x40
	forged, err := ParseBallot(raw)
	if err != nil {
		t.Fatal(err)
	}
	withForged, _ := NewCertificate(p, []*Ballot{forged, tm.vote(t, 1, p, Yes, 1)})
	if _, err := withForged.Verify(tm.roster, p.ExecutableAt()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("certificate with a forged ballot: %v", err)
	}
}

func TestTallyRules(t *testing.T) {
	tm := newMembers(t, 100, 1, 1, 1)
	// Linear: the weight-100 member alone is 100/103 turnout and yes.
	p := tm.propose(t, RetireMember{Key: tm.keys[1].PublicKey().ID()}, nil)
	c, _ := NewCertificate(p, []*Ballot{tm.vote(t, 0, p, Yes, 1)})
	if tl, err := c.Verify(tm.roster, p.ExecutableAt()); err != nil || tl.Yes != 100 || tl.Total != 103 {
		t.Fatalf("linear: %+v %v", tl, err)
	}
	// The same ballots under an 80% threshold: linear, 100 yes against 3 no passes; quadratic,
	// isqrt(100) = 10 yes against 3 no is 77% and fails.
	for _, w := range []Weighting{Linear, Quadratic} {
		q := tm.propose(t, RetireMember{Key: tm.keys[1].PublicKey().ID()}, func(p *Proposal) { p.Weighting, p.ThresholdBPS = w, 8000 })
		c, _ = NewCertificate(q, []*Ballot{tm.vote(t, 0, q, Yes, 1), tm.vote(t, 1, q, No, 1), tm.vote(t, 2, q, No, 1), tm.vote(t, 3, q, No, 1)})
		tl, err := c.Verify(tm.roster, q.ExecutableAt())
		switch {
		case w == Linear && (err != nil || tl != Tally{Yes: 100, No: 3, Total: 103}):
			t.Fatalf("linear: %+v %v", tl, err)
		case w == Quadratic && (!errors.Is(err, ErrNotPassed) || tl != Tally{Yes: 10, No: 3, Total: 13}):
			t.Fatalf("quadratic: %+v %v", tl, err)
		}
	}
	// Abstentions count toward quorum but not toward the threshold; all-abstain never passes.
	c, _ = NewCertificate(p, []*Ballot{tm.vote(t, 0, p, Abstain, 1), tm.vote(t, 1, p, Abstain, 1)})
	if _, err := c.Verify(tm.roster, p.ExecutableAt()); !errors.Is(err, ErrNotPassed) {
		t.Fatalf("only abstentions passed: %v", err)
	}
}

func TestInvalidProposalsRefused(t *testing.T) {
	tm := newMembers(t, 1)
	base := Proposal{TrustDomain: testDomain, Roster: tm.roster.Hash(), Title: "t", Start: t0, End: t0.Add(time.Hour),
		QuorumBPS: 5000, ThresholdBPS: 6000, Action: RevokeNode{Name: "n1", Key: identity.KeyID{1}}}
	manyPlans := PlanPrices{}
	for i := range 33 {
		manyPlans.Plans = append(manyPlans.Plans, PlanPrice{Plan: "p" + strings.Repeat("x", i), MicroUSDT: 1, PeriodDays: 30})
	}
	cases := map[string]func(*Proposal){
		"no action":         func(p *Proposal) { p.Action = nil },
		"bad node name":     func(p *Proposal) { p.Action = RevokeNode{Name: "Bad Name", Key: identity.KeyID{1}} },
		"zero key":          func(p *Proposal) { p.Action = RevokeNode{Name: "n1"} },
		"window too short":  func(p *Proposal) { p.End = p.Start.Add(time.Second) },
		"quorum zero":       func(p *Proposal) { p.QuorumBPS = 0 },
		"threshold 50%":     func(p *Proposal) { p.ThresholdBPS = 5000 },
		"timelock too long": func(p *Proposal) { p.Timelock = 31 * 24 * time.Hour },
		"heal out of range": func(p *Proposal) {
			p.Action = HealThresholds{ProbeInterval: time.Millisecond, ProbeTimeout: time.Second, Hold: time.Second, MaxHold: time.Minute, ConfidencePPM: 990_000, Consecutive: 2}
		},
		"too many plans":   func(p *Proposal) { p.Action = manyPlans },
		"oversized action": func(p *Proposal) { p.Title = strings.Repeat("x", 256) },
		"unsorted plans": func(p *Proposal) {
			p.Action = PlanPrices{Plans: []PlanPrice{{Plan: "b", PeriodDays: 1}, {Plan: "a", PeriodDays: 1}}}
		},
	}
	for name, mod := range cases {
		p := base
		mod(&p)
		if _, err := NewProposal(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// An oversized encoding is refused by the decoder before anything else.
	if _, err := ParseProposal(make([]byte, MaxProposalSize+1)); err == nil {
		t.Error("oversized proposal parsed")
	}
	// Every valid action round-trips.
	k, _ := identity.GenerateSigningKey()
	for _, a := range []Action{
		PolicyAction{Policy: testPolicy(t, 1)},
		RevokeNode{Name: "n1", Key: identity.KeyID{9}},
		AdmitMember{Name: "dora", Weight: 4, Key: k.PublicKey()},
		RetireMember{Key: identity.KeyID{3}},
		HealThresholds{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: time.Second, Hold: 10 * time.Second, MaxHold: 5 * time.Minute, Grace: 10 * time.Second, ConfidencePPM: 990_000, Consecutive: 2},
		DetectorModel{SHA256: [32]byte{1}, Name: "graphsage-v3"},
		PlanPrices{Plans: []PlanPrice{{Plan: "basic", MicroUSDT: 5_000_000, PeriodDays: 30}, {Plan: "pro", MicroUSDT: 20_000_000, PeriodDays: 30}}},
	} {
		p := base
		p.Action = a
		np, err := NewProposal(p)
		if err != nil {
			t.Fatalf("%s: %v", a.Type(), err)
		}
		back, err := ParseProposal(np.Bytes())
		if err != nil || back.ID() != np.ID() || back.Action.Type() != a.Type() {
			t.Fatalf("%s: round trip: %v", a.Type(), err)
		}
	}
}

// buildLog makes a log: genesis, a proposal, three ballots (one changed), the enactment.
func buildLog(t *testing.T, tm *testMembers) ([]*Entry, *Proposal) {
	t.Helper()
	p := tm.propose(t, RevokeNode{Name: "n1", Key: identity.KeyID{1}}, nil)
	var log []*Entry
	add := func(at time.Time, k EntryKind, payload []byte) {
		var prev *Entry
		if len(log) > 0 {
			prev = log[len(log)-1]
		}
		e, err := NewEntry(prev, at, k, payload)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, e)
	}
	add(t0.Add(-time.Hour), EntryGenesis, tm.roster.Bytes())
	add(t0, EntryProposal, p.Bytes())
	b0, b1 := tm.vote(t, 0, p, No, 1), tm.vote(t, 1, p, Yes, 1)
	b0b := tm.vote(t, 0, p, Yes, 2)
	add(t0.Add(time.Minute), EntryBallot, b0.Bytes())
	add(t0.Add(2*time.Minute), EntryBallot, b1.Bytes())
	add(t0.Add(3*time.Minute), EntryBallot, b0b.Bytes())
	c, err := NewCertificate(p, []*Ballot{b0b, b1})
	if err != nil {
		t.Fatal(err)
	}
	add(p.ExecutableAt(), EntryEnactment, c.Bytes())
	return log, p
}

func TestVerifyLog(t *testing.T) {
	tm := newMembers(t, 1, 1, 1)
	log, p := buildLog(t, tm)
	sum, err := VerifyLog(log)
	if err != nil {
		t.Fatal(err)
	}
	lp := sum.Proposals[p.ID()]
	if !lp.Enacted || lp.Tally != (Tally{Yes: 2, Total: 3}) || !sum.State.Applied(p.ID()) {
		t.Fatalf("summary %+v", lp)
	}

	reparse := func(entries []*Entry) []*Entry {
		out := make([]*Entry, len(entries))
		for i, e := range entries {
			var err error
			if out[i], err = ParseEntry(e.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	// A tampered payload byte in the changed ballot: entry 5 is named (its hash no longer matches
	// what entry 6 names, and its ballot no longer verifies).
	tampered := reparse(log)
	raw := bytes.Clone(tampered[4].Bytes())
	raw[len(raw)-5] ^= 1
	if tampered[4], err = ParseEntry(raw); err != nil {
		t.Fatal(err)
	}
	var le *LogError
	if _, err := VerifyLog(tampered); !errors.As(err, &le) || le.Seq != 5 {
		t.Fatalf("tampered entry 5: %v", err)
	}
	// A removed entry (the changed vote) breaks the chain at the next one.
	cut := append(reparse(log[:4]), reparse(log[5:])...)
	if _, err := VerifyLog(cut); !errors.As(err, &le) || le.Seq != 6 {
		t.Fatalf("removed entry 5: %v", err)
	}
	// A re-chained log that drops the changed vote: the enactment carries a ballot the log did not
	// count.
	var rechained []*Entry
	for i, e := range log {
		if i == 4 {
			continue
		}
		var prev *Entry
		if len(rechained) > 0 {
			prev = rechained[len(rechained)-1]
		}
		ne, err := NewEntry(prev, e.Time, e.Kind, e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		rechained = append(rechained, ne)
	}
	if _, err := VerifyLog(rechained); !errors.As(err, &le) || le.Seq != 5 || !strings.Contains(err.Error(), "not the one the log counted") {
		t.Fatalf("re-chained without the changed vote: %v", err)
	}
}

func TestStateFollowsRoster(t *testing.T) {
	tm := newMembers(t, 1, 1)
	s, err := NewState(tm.roster)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := identity.GenerateSigningKey()
	p := tm.propose(t, AdmitMember{Name: "carol", Weight: 1, Key: k.PublicKey()}, func(p *Proposal) { p.QuorumBPS = 10000 })
	c, _ := NewCertificate(p, []*Ballot{tm.vote(t, 0, p, Yes, 1), tm.vote(t, 1, p, Yes, 1)})
	if _, err := s.Check(c, p.ExecutableAt()); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(c); err != nil {
		t.Fatal(err)
	}
	if r := s.Roster(); r.Epoch != 1 || r.Parent != tm.roster.Hash() || len(r.Members) != 3 {
		t.Fatalf("roster after admit: epoch %d, %d members", r.Epoch, len(r.Members))
	}
	// The same decision again, and any decision frozen on the old roster, are refused.
	if _, err := s.Check(c, p.ExecutableAt()); err == nil {
		t.Fatal("applied twice")
	}
	p2 := tm.propose(t, DetectorModel{SHA256: [32]byte{1}, Name: "m"}, nil)
	c2, _ := NewCertificate(p2, []*Ballot{tm.vote(t, 0, p2, Yes, 1), tm.vote(t, 1, p2, Yes, 1)})
	if _, err := s.Check(c2, p2.ExecutableAt()); !errors.Is(err, ErrWrongRoster) {
		t.Fatalf("decision on the old roster: %v", err)
	}
	back, err := ParseRoster(s.Roster().Bytes())
	if err != nil || back.Hash() != s.Roster().Hash() {
		t.Fatalf("roster round trip: %v", err)
	}
}
