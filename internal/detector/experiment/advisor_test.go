package experiment

import (
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
)

// TestDefaultDeficitThreshold: the shipped flow-conservation threshold is the one chosen on the
// validation runs (seeds 51–56 from the training distribution, the defaults of `ai advisor`) under
// the advisor's persistence for it. It fails when the simulator, the judgement or the constant change
// without the others.
func TestDefaultDeficitThreshold(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates the six validation runs")
	}
	val, err := Generate(DataConfig{Seeds: []uint64{51, 52, 53, 54, 55, 56}, Nodes: 100, Duration: time.Minute, Faults: DefaultFaults, Randomise: true})
	if err != nil {
		t.Fatal(err)
	}
	th, cands := ChooseDeficitThreshold(val, 60, detector.DeficitConsecutive)
	if th != detector.DefaultDeficitThreshold {
		t.Fatalf("validation chooses %.2f, detector.DefaultDeficitThreshold is %.2f: re-run `x0tta6bl4 ai advisor` and update the constant and docs/intelligence.md", th, detector.DefaultDeficitThreshold)
	}
	for _, c := range cands {
		if c.Threshold == th && (c.RelayFaults == 0 || c.F1 <= 0) {
			t.Fatalf("the chosen threshold detects nothing: %+v", c)
		}
	}
}
