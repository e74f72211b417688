package sim

import (
	"errors"
	"slices"
	"testing"
)

// meanOver is the mean of feature f of node v over intervals [from, to).
func meanOver(r *Result, v, f, from, to int) float64 {
	var s float64
	for t := from; t < to; t++ {
		s += float64(r.Intervals[t].X[v][f])
	}
	return s / float64(to-from)
}

// TestCascadeSymptomFromReroute: in a reroute cascade (a link on seed 2, a node on seed 3) and a
// flap cascade, the relay saturates after the root fails and relays more than before; the same run
// without the root failure — the same relay with the same small capacity — never saturates, so the
// symptom comes from the reroute, not from the capacity alone.
func TestCascadeSymptomFromReroute(t *testing.T) {
	for _, tc := range []struct {
		kind IncidentKind
		seed uint64
		root Kind
	}{{RerouteCascade, 2, LinkDegradation}, {RerouteCascade, 3, Crash}, {FlapCascade, 5, Flapping}} {
		inc, err := RunIncident(IncidentConfig{Kind: tc.kind, Seed: tc.seed})
		if err != nil {
			t.Fatalf("%s seed %d: %v", tc.kind, tc.seed, err)
		}
		r, sym := inc.Result, inc.Symptom
		if sym < 0 || slices.ContainsFunc(inc.Roots[0], func(v int) bool { return v == sym }) {
			t.Fatalf("%s: symptom %d, roots %v", tc.kind, sym, inc.Roots)
		}
		if inc.RootKinds[0] != tc.root || len(inc.Roots) != 1 {
			t.Fatalf("%s: roots %v kinds %v", tc.kind, inc.Roots, inc.RootKinds)
		}
		before, after := inc.SymptomUtil[:inc.Start], inc.SymptomUtil[inc.Start:]
		if slices.Max(before) >= 1 || slices.Max(after) <= 1 {
			t.Fatalf("%s: utilisation before %v, after %v", tc.kind, before, after)
		}
		if in0, in1 := meanOver(r, sym, FTransitIn, 0, inc.Start), meanOver(r, sym, FTransitIn, inc.Start, len(r.Intervals)); in1 <= in0 {
			t.Fatalf("%s: relayed traffic did not rise: %.2f → %.2f", tc.kind, in0, in1)
		}
		// The relay is labelled normal: nothing was injected there.
		for _, iv := range r.Intervals {
			if iv.Labels[sym] != Normal {
				t.Fatalf("%s: symptom labelled %s", tc.kind, iv.Labels[sym])
			}
		}
		ctl, err := RunIncident(IncidentConfig{Kind: tc.kind, Seed: tc.seed, withoutRoot: true})
		if !errors.Is(err, ErrNoCascade) || ctl.Symptom != sym {
			t.Fatalf("%s control: %v, symptom %d (want %d)", tc.kind, err, ctl.Symptom, sym)
		}
		if m := slices.Max(ctl.SymptomUtil); m >= 1 {
			t.Fatalf("%s control: utilisation %v without the root failure", tc.kind, ctl.SymptomUtil)
		}
	}
}

// TestTwoFaults: two roots of different kinds starting in the same interval.
func TestTwoFaults(t *testing.T) {
	inc, err := RunIncident(IncidentConfig{Kind: TwoFaults, Seed: 4, Nodes: 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(inc.Roots) != 2 || inc.RootKinds[0] == inc.RootKinds[1] || inc.Symptom != -1 {
		t.Fatalf("roots %v kinds %v symptom %d", inc.Roots, inc.RootKinds, inc.Symptom)
	}
	for _, f := range inc.Result.Faults {
		if int(f.Start/inc.Result.Config.Interval) != inc.Start {
			t.Fatalf("fault starts at %s, incident at interval %d", f.Start, inc.Start)
		}
	}
}
