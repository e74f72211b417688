package federated

import (
	"errors"
	"math"
	"slices"
	"testing"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/identity"
)

func key(t *testing.T, b byte) *identity.SigningKey {
	seed := make([]byte, 32)
	seed[0] = b
	k, err := identity.NewSigningKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignedUpdates(t *testing.T) {
	a, b := key(t, 1), key(t, 2)
	known := map[identity.KeyID]*identity.VerifyKey{a.PublicKey().ID(): a.PublicKey()}
	u := Update{Round: 3, Samples: 10, Delta: []float64{1, -2, 0.5}}
	msg, err := Encode(a, u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(msg, known, 3, 3)
	if err != nil || got.Delta[1] != -2 || got.Samples != 10 {
		t.Fatalf("%v %v", got, err)
	}
	tampered := append([]byte(nil), msg...)
	tampered[20] ^= 1
	stranger, _ := Encode(b, u)
	for name, c := range map[string]struct {
		m     []byte
		round uint32
		dim   int
	}{
		"tampered": {tampered, 3, 3}, "unknown signer": {stranger, 3, 3}, "old round": {msg, 4, 3},
		"other model": {msg, 3, 4}, "truncated": {msg[:len(msg)-1], 3, 3}, "unsigned": {msg[:17+24+32], 3, 3},
	} {
		if _, err := Decode(c.m, known, c.round, c.dim); !errors.Is(err, ErrBadUpdate) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestAggregate(t *testing.T) {
	us := []*Update{{Samples: 1, Delta: []float64{1, 10}}, {Samples: 1, Delta: []float64{2, 20}},
		{Samples: 1, Delta: []float64{3, 30}}, {Samples: 1, Delta: []float64{4, 40}}, {Samples: 1, Delta: []float64{-1000, 1e6}}}
	avg, _ := Aggregate(us, FedAvg, 0)
	tm, _ := Aggregate(us, TrimmedMean, 0.2)
	md, _ := Aggregate(us, Median, 0)
	if math.Abs(avg[0]-(-990.0/5)) > 1e-9 || tm[0] != 2 || tm[1] != 30 || md[0] != 2 || md[1] != 30 {
		t.Fatalf("avg %v trimmed %v median %v", avg, tm, md)
	}
	v := []float64{3, 4}
	if n := Clip(v, 1); n != 5 || math.Abs(v[0]-0.6) > 1e-12 {
		t.Fatalf("clip %v %v", n, v)
	}
	if _, err := Aggregate(us, TrimmedMean, 0.6); err == nil {
		t.Fatal("trimmed everything")
	}
}

// TestSampleCountCapped: a client claiming far more samples than the others weighs no more than
// the median client in FedAvg; honest counts below the median keep their proportions.
func TestSampleCountCapped(t *testing.T) {
	us := []*Update{{Samples: 100, Delta: []float64{1}}, {Samples: 100, Delta: []float64{1}},
		{Samples: 50, Delta: []float64{1}}, {Samples: math.MaxUint32, Delta: []float64{-1000}}}
	avg, err := Aggregate(us, FedAvg, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Weights 100, 100, 50, 100 (capped at the median, 100).
	if want := (100 + 100 + 50 - 100*1000.0) / 350; math.Abs(avg[0]-want) > 1e-9 {
		t.Fatalf("avg %v, want %v", avg[0], want)
	}
}

// TestPoisoning: a task only the neighbourhood reveals, 10 clients, 2 of them poisoned (−10 × their
// update, or Gaussian noise of 10 × its norm). Trimmed mean (with or without Multi-Krum) and clipped
// FedAvg stay close to clean training; FedAvg without clipping is broken by the −10× attack.
func TestPoisoning(t *testing.T) {
	var clients [][]detector.Graph
	var test []detector.Graph
	for c := range 12 {
		var gs []detector.Graph
		for s := range 3 {
			gs = append(gs, RingTask(uint64(c*10+s)))
		}
		if c < 10 {
			clients = append(clients, gs)
		} else {
			test = append(test, gs...)
		}
	}
	f1 := func(rule Rule, poisoned int, noClip bool, krum int, attack Attack) float64 {
		m, rep, err := Train(clients, 3, TrainConfig{Hidden: 8, Classes: 2, Rounds: 8, LocalEpochs: 3, LR: 0.01, Rule: rule,
			Poisoned: poisoned, NoClip: noClip, Krum: krum, Attack: attack, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Verified != 80 {
			t.Fatalf("verified %d", rep.Verified)
		}
		return HeldOutF1(m, test)
	}
	clean, robust, clipped, naive := f1(TrimmedMean, 0, false, 0, ""), f1(TrimmedMean, 2, false, 0, ""), f1(FedAvg, 2, false, 0, ""), f1(FedAvg, 2, true, 0, "")
	krum, noise, noiseNaive := f1(TrimmedMean, 2, false, 2, ""), f1(TrimmedMean, 2, false, 0, AttackNoise), f1(FedAvg, 2, true, 0, AttackNoise)
	t.Logf("F1 clean %.3f; 20%% poisoned (−10×): trimmed mean %.3f, Multi-Krum + trimmed mean %.3f, clipped FedAvg %.3f, unclipped FedAvg %.3f; "+
		"noise: trimmed mean %.3f, unclipped FedAvg %.3f", clean, robust, krum, clipped, naive, noise, noiseNaive)
	// Adaptive, omniscient attacks crafted from the round's honest updates.
	alie, alieKrum, ipm, ipmKrum := f1(TrimmedMean, 2, false, 0, AttackALIE), f1(TrimmedMean, 2, false, 2, AttackALIE),
		f1(TrimmedMean, 2, false, 0, AttackIPM), f1(TrimmedMean, 2, false, 2, AttackIPM)
	t.Logf("ALIE: trimmed mean %.3f, Multi-Krum + trimmed mean %.3f; IPM: trimmed mean %.3f, Multi-Krum + trimmed mean %.3f", alie, alieKrum, ipm, ipmKrum)
	if alie < clean-0.05 || alieKrum < clean-0.05 || ipm < clean-0.05 || ipmKrum < clean-0.05 {
		t.Fatalf("adaptive attacks: clean %.3f ALIE %.3f / %.3f IPM %.3f / %.3f", clean, alie, alieKrum, ipm, ipmKrum)
	}
	// (Noise is not asserted to break unclipped FedAvg: on this task random directions mostly average out.)
	if clean < 0.75 || robust < clean-0.05 || krum < clean-0.05 || clipped < clean-0.05 || naive > robust-0.1 || noise < clean-0.05 {
		t.Fatalf("clean %.3f robust %.3f krum %.3f clipped %.3f naive %.3f noise %.3f / %.3f", clean, robust, krum, clipped, naive, noise, noiseNaive)
	}
}

func TestMultiKrum(t *testing.T) {
	x := uint64(7)
	rnd := func() float64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return float64(x%10000)/5000 - 1 }
	var us []*Update
	for i := range 10 {
		d := make([]float64, 50)
		for j := range d {
			d[j] = 0.5 + rnd() // honest: mean 0.5, spread ±1 per coordinate
		}
		if i < 2 {
			for j := range d {
				d[j] *= -10
			}
		}
		us = append(us, &Update{Samples: uint32(i + 1), Delta: d})
	}
	var norms []float64
	for _, u := range us {
		norms = append(norms, Clip(u.Delta, 0))
	}
	slices.Sort(norms)
	for _, u := range us {
		Clip(u.Delta, norms[len(norms)/2])
	}
	kept := MultiKrum(us, 2)
	if len(kept) != 8 {
		t.Fatalf("kept %d updates", len(kept))
	}
	for _, u := range kept {
		if u.Samples <= 2 {
			t.Fatalf("kept poisoned update %d", u.Samples)
		}
	}
	if got := MultiKrum(us[:4], 2); len(got) != 4 {
		t.Fatalf("too few updates for f = 2: kept %d of 4", len(got))
	}
}

// TestRobustStats: two of ten clients report statistics 100 × too large. Pooled sums take the
// normalisation with them; the trimmed mean of the clients' own means does not.
func TestRobustStats(t *testing.T) {
	var clients [][]detector.Graph
	for c := range 10 {
		clients = append(clients, []detector.Graph{RingTask(uint64(c * 10)), RingTask(uint64(c*10 + 1))})
	}
	mean := func(robust, poisoned bool) []float64 {
		cfg := TrainConfig{Hidden: 4, Classes: 2, Rounds: 1, LocalEpochs: 1, RobustStats: robust, Seed: 1}
		if poisoned {
			cfg.Poisoned, cfg.PoisonStats = 2, true
		}
		m, _, err := Train(clients, 3, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return append(slices.Clone(m.Mean), m.Std...)
	}
	clean, pooled, robust := mean(false, false), mean(false, true), mean(true, true)
	var dPooled, dRobust float64
	for i := range clean {
		dPooled = max(dPooled, math.Abs(pooled[i]-clean[i]))
		dRobust = max(dRobust, math.Abs(robust[i]-clean[i]))
	}
	t.Logf("largest change of a mean or standard deviation: pooled %.3f, robust %.3f", dPooled, dRobust)
	if dRobust > 0.1 || dPooled < 1 {
		t.Fatalf("pooled %.3f robust %.3f", dPooled, dRobust)
	}
}

// The statistics round's vector carries a model's moments exactly, edge moments included.
func TestStatsVectorRoundTrip(t *testing.T) {
	m := detector.NewModel(3, 2, 4, 4, 3, 1)
	mo := train.NewMoments(m.F, m.E)
	mo.N, mo.EN = 10, 7
	for i := range mo.Sum {
		mo.Sum[i], mo.Sq[i] = float64(i+1), float64(i*i+1)
	}
	for i := range mo.ESum {
		mo.ESum[i], mo.ESq[i] = float64(-i), float64(i+2)
	}
	v := statsVector(mo, []float64{5, 3, 2})
	if len(v) != StatsDim(m) {
		t.Fatalf("vector of %d values, StatsDim says %d", len(v), StatsDim(m))
	}
	got, counts, ok := statsFromVector(m, v)
	if !ok || !slices.Equal(got.ESum, mo.ESum) || !slices.Equal(got.ESq, mo.ESq) || !slices.Equal(got.Sq, mo.Sq) ||
		!slices.Equal(counts, []float64{5, 3, 2}) || got.N != 10 || got.EN != 7 {
		t.Fatalf("round trip: %+v %v %v", got, counts, ok)
	}
}
