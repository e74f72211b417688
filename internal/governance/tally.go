package governance

// Tally is the integer count of a proposal's ballots under its weighting.
type Tally struct {
	Yes, No, Abstain uint64
	Total            uint64 // the frozen total weight
}

// Count adds up the counted ballots (one per voter, already checked) of members of roster.
func Count(p *Proposal, roster *Roster, voters []Member, choices []Choice) Tally {
	t := Tally{Total: roster.Total(p.Weighting)}
	for i, m := range voters {
		w := p.Weighting.weight(m.Weight)
		switch choices[i] {
		case Yes:
			t.Yes += w
		case No:
			t.No += w
		case Abstain:
			t.Abstain += w
		}
	}
	return t
}

// Passes applies the proposal's quorum and threshold: turnout × 10000 ≥ quorum × total, and
// yes × 10000 ≥ threshold × (yes + no), with at least one yes. Weights are bounded so that no product
// overflows (MaxMembers × MaxWeight × 10000 < 2^64).
func (t Tally) Passes(p *Proposal) bool {
	turnout := t.Yes + t.No + t.Abstain
	return t.Yes > 0 &&
		turnout*10_000 >= uint64(p.QuorumBPS)*t.Total &&
		t.Yes*10_000 >= uint64(p.ThresholdBPS)*(t.Yes+t.No)
}
