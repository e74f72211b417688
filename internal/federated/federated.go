// Package federated trains the detector without moving telemetry: each client (a node or a mesh
// segment) trains on its own data and sends an ML-DSA-65-signed model update (the parameter
// change); the aggregator checks every signature, clips each update's L2 norm, and combines them
// with FedAvg (McMahan et al. 2017) or a Byzantine-robust rule — coordinate-wise trimmed mean or
// median (Yin et al. 2018).
//
// It must never accept an unsigned update, an update signed by an unknown key, or one for another
// round or model size.
package federated

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"x0tta6bl4/internal/identity"
)

// SignatureContext separates update signatures from every other use of a node key.
const SignatureContext = "x0tta6bl4 model update v1"

const (
	updMagic   = "X6FU"
	updVersion = 1
	maxParams  = 1 << 22
)

// ErrBadUpdate is returned (wrapped) for any refused update.
var ErrBadUpdate = errors.New("federated: update refused")

// Update is a client's parameter change for one round.
type Update struct {
	Round   uint32
	Samples uint32 // training samples behind it (FedAvg weight)
	Delta   []float64
	Signer  identity.KeyID
}

// Encode signs and encodes an update:
// "X6FU", u8 version, u32 round, u32 samples, u32 n, n × f64, signer key ID (32), u16 signature
// length, ML-DSA-65 signature over everything before it.
func Encode(key *identity.SigningKey, u Update) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(updMagic)
	b.WriteByte(updVersion)
	binary.Write(&b, binary.BigEndian, [3]uint32{u.Round, u.Samples, uint32(len(u.Delta))})
	for _, v := range u.Delta {
		binary.Write(&b, binary.BigEndian, math.Float64bits(v))
	}
	id := key.PublicKey().ID()
	b.Write(id[:])
	sig, err := key.Sign(SignatureContext, b.Bytes())
	if err != nil {
		return nil, err
	}
	binary.Write(&b, binary.BigEndian, uint16(len(sig)))
	b.Write(sig)
	return b.Bytes(), nil
}

// Decode checks and decodes an update for round with dim parameters; keys are the clients allowed
// to contribute.
func Decode(b []byte, keys map[identity.KeyID]*identity.VerifyKey, round uint32, dim int) (*Update, error) {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrBadUpdate, fmt.Sprintf(f, a...)) }
	const head = 4 + 1 + 12
	if len(b) < head || string(b[:4]) != updMagic || b[4] != updVersion {
		return nil, bad("not a version-1 model update")
	}
	u := &Update{Round: binary.BigEndian.Uint32(b[5:]), Samples: binary.BigEndian.Uint32(b[9:])}
	n := int(binary.BigEndian.Uint32(b[13:]))
	if n != dim || n > maxParams {
		return nil, bad("%d parameters, want %d", n, dim)
	}
	if u.Round != round {
		return nil, bad("round %d, want %d", u.Round, round)
	}
	body := head + 8*n + 32
	if len(b) < body+2 {
		return nil, bad("truncated")
	}
	sl := int(binary.BigEndian.Uint16(b[body:]))
	if len(b) != body+2+sl {
		return nil, bad("length %d, want %d", len(b), body+2+sl)
	}
	copy(u.Signer[:], b[body-32:body])
	k := keys[u.Signer]
	if k == nil {
		return nil, bad("signer %s is not a known client", u.Signer)
	}
	if err := k.Verify(SignatureContext, b[:body], b[body+2:]); err != nil {
		return nil, bad("signature: %v", err)
	}
	u.Delta = make([]float64, n)
	for i := range u.Delta {
		v := math.Float64frombits(binary.BigEndian.Uint64(b[head+8*i:]))
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, bad("non-finite parameter")
		}
		u.Delta[i] = v
	}
	return u, nil
}

// Clip scales v to L2 norm at most c (c ≤ 0: no clipping) and returns the original norm.
func Clip(v []float64, c float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	norm := math.Sqrt(s)
	if c > 0 && norm > c {
		f := c / norm
		for i := range v {
			v[i] *= f
		}
	}
	return norm
}

// Rule is an aggregation rule.
type Rule string

// Rules.
const (
	FedAvg      Rule = "fedavg"  // mean weighted by sample counts, each capped at the upper median count
	TrimmedMean Rule = "trimmed" // per coordinate, drop the Trim fraction at each end, mean the rest
	Median      Rule = "median"  // per coordinate median
)

// roundDefaults fills the settings in-process training (TrainConfig) and mesh rounds
// (CoordinatorConfig) share: 2 local epochs, learning rate 0.005, trimmed mean cutting 20 % at
// each end.
func roundDefaults(localEpochs *int, lr *float64, rule *Rule, trim *float64) {
	if *localEpochs <= 0 {
		*localEpochs = 2
	}
	if *lr <= 0 {
		*lr = 0.005
	}
	if *rule == "" {
		*rule = TrimmedMean
	}
	if *trim == 0 {
		*trim = 0.2
	}
}

// Combine is one round's aggregation, the same in-process (Train) and over the mesh
// (Coordinator): every update is clipped to the round's median update norm (unless noClip), the
// Multi-Krum selection keeps the len(us) − krum most central ones (krum > 0), and rule combines
// them. It returns the aggregate change and the clip norm; it may shorten and clip us in place.
func Combine(us []*Update, rule Rule, trim float64, noClip bool, krum int) ([]float64, float64, error) {
	if len(us) == 0 {
		return nil, 0, errors.New("federated: no updates")
	}
	norms := make([]float64, len(us))
	for i, u := range us {
		norms[i] = Clip(u.Delta, 0)
	}
	slices.Sort(norms)
	clip := norms[len(norms)/2]
	if !noClip {
		for _, u := range us {
			Clip(u.Delta, clip)
		}
	}
	if krum > 0 {
		us = MultiKrum(us, krum)
	}
	agg, err := Aggregate(us, rule, trim)
	return agg, clip, err
}

// sampleWeights are FedAvg's weights: each update's sample count (at least 1), capped at the upper median
// count of the round. A sample count is what a client says about itself; capped, a client claiming
// a billion samples weighs no more than a typical one, and moving the cap needs half the clients.
func sampleWeights(us []*Update) []float64 {
	counts := make([]float64, len(us))
	for i, u := range us {
		counts[i] = float64(max(u.Samples, 1))
	}
	// The upper median: with an even count, the larger of the middle two.
	capAt := slices.Sorted(slices.Values(counts))[len(counts)/2]
	for i := range counts {
		counts[i] = min(counts[i], capAt)
	}
	return counts
}

// Aggregate combines updates (already clipped) with rule; trim is the fraction dropped at each end
// by TrimmedMean.
func Aggregate(us []*Update, rule Rule, trim float64) ([]float64, error) {
	if len(us) == 0 {
		return nil, errors.New("federated: no updates")
	}
	dim := len(us[0].Delta)
	out := make([]float64, dim)
	switch rule {
	case FedAvg:
		weight := sampleWeights(us)
		var w float64
		for _, x := range weight {
			w += x
		}
		for j, u := range us {
			f := weight[j] / w
			for i, v := range u.Delta {
				out[i] += f * v
			}
		}
	case TrimmedMean, Median:
		col := make([]float64, len(us))
		k := int(trim * float64(len(us)))
		if rule == TrimmedMean && 2*k >= len(us) {
			return nil, fmt.Errorf("federated: trimming %d of %d updates at each end leaves none", k, len(us))
		}
		for i := range dim {
			for j, u := range us {
				col[j] = u.Delta[i]
			}
			slices.Sort(col)
			if rule == Median {
				n := len(col)
				out[i] = col[n/2]
				if n%2 == 0 {
					out[i] = (col[n/2-1] + col[n/2]) / 2
				}
				continue
			}
			var s float64
			for _, v := range col[k : len(col)-k] {
				s += v
			}
			out[i] = s / float64(len(col)-2*k)
		}
	default:
		return nil, fmt.Errorf("federated: unknown rule %q", rule)
	}
	return out, nil
}

// MultiKrum returns the len(us) − f updates with the lowest Krum scores: each update's sum of
// squared distances to its len(us) − f − 2 nearest others (Blanchard et al. 2017). An update that
// points away from the honest majority is far from most others and scores high. With too few
// updates (len(us) ≤ f + 2) it returns us unchanged.
func MultiKrum(us []*Update, f int) []*Update {
	n := len(us)
	if f <= 0 || n <= f+2 {
		return us
	}
	d := make([][]float64, n)
	for i := range d {
		d[i] = make([]float64, n)
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			var s float64
			for k, x := range us[i].Delta {
				y := x - us[j].Delta[k]
				s += y * y
			}
			d[i][j], d[j][i] = s, s
		}
	}
	score := make([]float64, n)
	for i := range n {
		row := slices.Clone(d[i])
		row = append(row[:i], row[i+1:]...)
		slices.Sort(row)
		for _, x := range row[:n-f-2] {
			score[i] += x
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(score[a], score[b]) })
	idx = idx[:n-f]
	slices.Sort(idx) // keep the clients' order
	out := make([]*Update, len(idx))
	for i, j := range idx {
		out[i] = us[j]
	}
	return out
}
