package federated_test

import (
	"bytes"
	"slices"
	"testing"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/identity"
)

// The federated messages that arrive from the network — an update, its envelope (certificate and
// update, POSTed to the coordinator) and the coordinator's announcement — never crash their
// decoders, and nothing but a genuine message is ever accepted. ML-DSA signatures are randomised
// (and every fuzz worker builds its own fixture), so "genuine" means: the content signed by the
// fixture's key, whatever the signature bytes.

type fuzzFixture struct {
	p        *pki
	co       *federated.Coordinator
	ann      []byte
	envelope []byte
	update   []byte
	round    uint32
	dim      int
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	p := newPKI(f, "fuzz.test", map[string][]string{"coord": {"fl"}, "a": {"fl"}})
	co, err := federated.NewCoordinator(federated.CoordinatorConfig{Key: p.keys["coord"].Sign, Verifier: p.ver, Group: "fl",
		Model: detector.NewModel(3, 0, 4, 4, 2, 1), FirstRound: 3})
	if err != nil {
		f.Fatal(err)
	}
	round, err := co.Open(federated.KindStats)
	if err != nil {
		f.Fatal(err)
	}
	ann := co.Announcement()
	a, err := federated.DecodeAnnouncement(ann, p.certs["coord"].SignPublicKey)
	if err != nil {
		f.Fatal(err)
	}
	u, err := federated.LocalUpdate(a, []detector.Graph{federated.RingTask(1)}, 1)
	if err != nil {
		f.Fatal(err)
	}
	ub, err := federated.Encode(p.keys["a"].Sign, *u)
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzFixture{p: p, co: co, ann: ann, update: ub, envelope: federated.EncodeEnvelope(p.certs["a"], ub),
		round: round, dim: len(u.Delta)}
}

func addMutants(f *testing.F, b []byte) {
	f.Add(b)
	for _, at := range []int{0, 5, len(b) / 2, len(b) - 1} {
		m := bytes.Clone(b)
		m[at] ^= 1
		f.Add(m)
	}
	f.Add(b[:len(b)/2])
	f.Add(append(bytes.Clone(b), 0))
}

func FuzzDecodeUpdate(f *testing.F) {
	fx := newFuzzFixture(f)
	addMutants(f, fx.update)
	vk := fx.p.certs["a"].SignPublicKey
	keys := map[identity.KeyID]*identity.VerifyKey{vk.ID(): vk}
	want, err := federated.Decode(fx.update, keys, fx.round, fx.dim)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := federated.Decode(b, keys, fx.round, fx.dim); err == nil && !sameUpdate(u, want) {
			t.Fatalf("accepted an update that was never signed: % x", b[:min(len(b), 64)])
		}
	})
}

func FuzzDecodeAnnouncement(f *testing.F) {
	fx := newFuzzFixture(f)
	addMutants(f, fx.ann)
	key := fx.p.certs["coord"].SignPublicKey
	want, err := federated.DecodeAnnouncement(fx.ann, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, err := federated.DecodeAnnouncement(b, key); err == nil && !sameAnnouncement(a, want) {
			t.Fatalf("accepted an announcement that was never signed: % x", b[:min(len(b), 64)])
		}
	})
}

func FuzzSubmit(f *testing.F) {
	fx := newFuzzFixture(f)
	addMutants(f, fx.envelope)
	src := fx.p.certs["a"].Overlay
	vk := fx.p.certs["a"].SignPublicKey
	want, err := federated.Decode(fx.update, map[identity.KeyID]*identity.VerifyKey{vk.ID(): vk}, fx.round, fx.dim)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := fx.co.Submit(src, b); err == nil && !sameUpdate(u, want) {
			t.Fatalf("coordinator accepted an envelope that was never signed: % x", b[:min(len(b), 64)])
		}
	})
}

func sameUpdate(a, b *federated.Update) bool {
	return a.Round == b.Round && a.Samples == b.Samples && a.Signer == b.Signer && slices.Equal(a.Delta, b.Delta)
}

func sameAnnouncement(a, b *federated.Announcement) bool {
	return a.Kind == b.Kind && a.Round == b.Round && a.LocalEpochs == b.LocalEpochs && a.LR == b.LR && a.Seed == b.Seed &&
		a.Signer == b.Signer && slices.Equal(a.Weights, b.Weights) && slices.Equal(a.Model.Params(), b.Model.Params()) &&
		a.Model.Threshold == b.Model.Threshold && slices.Equal(a.Model.Mean, b.Model.Mean) && slices.Equal(a.Model.Std, b.Model.Std)
}
