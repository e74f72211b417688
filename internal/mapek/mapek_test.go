package mapek

import (
	"bytes"
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

type recorder struct{ log []string }

func (r *recorder) Penalise(n int) { r.log = append(r.log, "P") }
func (r *recorder) Restore(n int)  { r.log = append(r.log, "R") }

func TestRules(t *testing.T) {
	l := New(Rules{Hold: 5 * time.Second})
	act := &recorder{}
	bad := []Judgement{{Node: 1, Class: "blackhole", Confidence: 0.9}}
	weak := []Judgement{{Node: 1, Class: "blackhole", Confidence: 0.5}}
	if d := l.Step(time.Second, bad, act); len(d) != 0 {
		t.Fatal("acted on one interval")
	}
	if d := l.Step(2*time.Second, weak, act); len(d) != 0 || l.Penalised(1) {
		t.Fatal("acted below the confidence")
	}
	l.Step(3*time.Second, bad, act)
	d := l.Step(4*time.Second, bad, act)
	if len(d) != 1 || d[0].Action != Penalise || !l.Penalised(1) || d[0].Evidence.Confidence != 0.9 {
		t.Fatalf("%v", d)
	}
	// Held for 5 s, then re-probed (restored); penalised again after two bad intervals, held 10 s.
	l.Step(8*time.Second, bad, act)
	if !l.Penalised(1) {
		t.Fatal("restored early")
	}
	d = l.Step(9*time.Second, bad, act)
	if len(d) != 1 || d[0].Action != Restore {
		t.Fatalf("%v", d)
	}
	l.Step(10*time.Second, bad, act)
	if !l.Penalised(1) {
		t.Fatal("not penalised again")
	}
	l.Step(19*time.Second, bad, act)
	if !l.Penalised(1) {
		t.Fatal("hold did not double")
	}
	if got := string(bytes.Join([][]byte{[]byte(act.log[0]), []byte(act.log[1]), []byte(act.log[2])}, nil)); got != "PRP" {
		t.Fatalf("actions %v", act.log)
	}
	if len(l.Log) != 3 {
		t.Fatalf("log %v", l.Log)
	}
}

// TestSimRecovery routes around a blackhole relay in the simulator with a stand-in detector (a node
// whose neighbours see it relay less than half of what they hand it is a blackhole with p = 0.95)
// and checks the affected traffic recovers within 5 s.
func TestSimRecovery(t *testing.T) {
	// A flow-conservation rule on the derived features stands in for a trained model.
	detect := func(g *detector.Graph) [][]float64 {
		out := make([][]float64, len(g.X))
		for v, x := range g.X {
			p := make([]float64, sim.NumKinds)
			if x[detector.RDeficit] > 0.5 && x[detector.RReported] == 1 {
				p[sim.Blackhole] = 0.95
				p[0] = 0.05
			} else {
				p[0] = 1
			}
			out[v] = p
		}
		return out
	}
	r, err := RunSim(SimConfig{
		Sim: sim.Config{Nodes: 50, Seed: 5, Duration: 12 * time.Second, FaultFrom: 0.3, FaultTo: 0.31,
			NoBackgroundLoss: true, Faults: []sim.FaultSpec{{Kind: sim.Blackhole, Count: 1}}},
		Detect: detect,
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	t.Log(buf.String())
	if r.Affected == 0 || r.MTTD < 0 || r.MTTR < 0 || r.MTTR > 5*time.Second || r.After < 0.99 || r.FalseActions != 0 {
		t.Fatalf("no recovery: %+v", r)
	}
}

// TestSetRules: rules changed on a running loop apply from the next step (a stricter confidence,
// more intervals), and the hold a node already had is clamped into the new range.
func TestSetRules(t *testing.T) {
	l := New(Rules{Consecutive: 2, Hold: 5 * time.Second})
	act := &recorder{}
	bad := []Judgement{{Node: 1, Class: "blackhole", Confidence: 0.9}}
	l.Step(time.Second, bad, act)
	l.SetRules(Rules{Consecutive: 3, Confidence: 0.95, Hold: 20 * time.Second, MaxHold: time.Minute})
	if d := l.Step(2*time.Second, bad, act); len(d) != 0 {
		t.Fatalf("acted under the old rules: %v", d)
	}
	strong := []Judgement{{Node: 1, Class: "blackhole", Confidence: 0.99}}
	for i, now := range []time.Duration{3 * time.Second, 4 * time.Second} {
		if d := l.Step(now, strong, act); len(d) != 0 {
			t.Fatalf("step %d: acted before 3 strong intervals: %v", i, d)
		}
	}
	d := l.Step(5*time.Second, strong, act)
	if len(d) != 1 || d[0].Action != Penalise {
		t.Fatalf("%v", d)
	}
	// Held 20 s (the new Hold), not the old 5 s.
	if l.Step(24*time.Second, strong, act); !l.Penalised(1) {
		t.Fatal("released after the old hold")
	}
	if d := l.Step(25*time.Second, strong, act); len(d) != 1 || d[0].Action != Restore {
		t.Fatalf("%v", d)
	}
}
