package identity_test

import (
	"bytes"
	"crypto/mldsa"
	"strings"
	"testing"

	"x0tta6bl4/internal/identity"
)

func newSigningKey(t testing.TB) *identity.SigningKey {
	t.Helper()
	k, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	k := newSigningKey(t)
	vk := k.PublicKey()
	const ctx = "x0tta6bl4 test v1"
	msg := []byte("link-state record")
	sig, err := k.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != identity.SignatureSize {
		t.Fatalf("signature is %d bytes, want %d", len(sig), identity.SignatureSize)
	}
	if err := vk.Verify(ctx, msg, sig); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// The signature is a standard ML-DSA-65 signature with the context as FIPS 204 context string.
	if err := mldsa.Verify(vk.MLDSA(), msg, sig, &mldsa.Options{Context: ctx}); err != nil {
		t.Fatalf("crypto/mldsa.Verify: %v", err)
	}
	if !k.MLDSA().PublicKey().Equal(vk.MLDSA()) {
		t.Fatal("MLDSA accessors disagree")
	}

	// Empty context and empty message are fine too.
	sig0, err := k.Sign("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := vk.Verify("", []byte{}, sig0); err != nil {
		t.Fatalf("empty context and message: %v", err)
	}
	if err := vk.Verify("x", nil, sig0); err == nil {
		t.Fatal("signature with empty context verified under a non-empty one")
	}
}

func TestVerifyRejects(t *testing.T) {
	k := newSigningKey(t)
	vk := k.PublicKey()
	const ctx = "x0tta6bl4 certificate v1"
	msg := []byte("message")
	sig, err := k.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		s := bytes.Clone(sig)
		s[i] ^= 0x01
		return s
	}
	other := newSigningKey(t).PublicKey()

	for _, tc := range []struct {
		name string
		vk   *identity.VerifyKey
		ctx  string
		msg  []byte
		sig  []byte
	}{
		{"wrong context", vk, "x0tta6bl4 vote v1", msg, sig},
		{"context prefix", vk, "x0tta6bl4 certificate", msg, sig},
		{"empty context", vk, "", msg, sig},
		{"wrong message", vk, ctx, []byte("messagE"), sig},
		{"nil message", vk, ctx, nil, sig},
		{"other key", other, ctx, msg, sig},
		{"flipped first byte", vk, ctx, msg, flip(0)},
		{"flipped middle byte", vk, ctx, msg, flip(len(sig) / 2)},
		{"flipped last byte", vk, ctx, msg, flip(len(sig) - 1)},
		{"truncated", vk, ctx, msg, sig[:len(sig)-1]},
		{"extended", vk, ctx, msg, append(bytes.Clone(sig), 0)},
		{"empty signature", vk, ctx, msg, nil},
		{"zero signature", vk, ctx, msg, make([]byte, identity.SignatureSize)},
		{"context too long", vk, strings.Repeat("c", 256), msg, sig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.vk.Verify(tc.ctx, tc.msg, tc.sig); err == nil {
				t.Fatal("Verify accepted")
			}
		})
	}
	// The untouched signature still verifies (the cases above did not alias it).
	if err := vk.Verify(ctx, msg, sig); err != nil {
		t.Fatal(err)
	}
}

func TestSignContextLength(t *testing.T) {
	k := newSigningKey(t)
	ctx := strings.Repeat("c", 255)
	sig, err := k.Sign(ctx, []byte("m"))
	if err != nil {
		t.Fatalf("255-byte context: %v", err)
	}
	if err := k.PublicKey().Verify(ctx, []byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign(ctx+"c", []byte("m")); err == nil {
		t.Fatal("256-byte context accepted")
	}
}

func TestSigningKeySeed(t *testing.T) {
	k := newSigningKey(t)
	seed := k.Seed()
	if len(seed) != identity.SigningSeedSize {
		t.Fatalf("seed is %d bytes", len(seed))
	}
	k2, err := identity.NewSigningKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k2.PublicKey().Bytes(), k.PublicKey().Bytes()) {
		t.Fatal("key rebuilt from its seed has another public key")
	}
	sig, err := k2.Sign("c", []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.PublicKey().Verify("c", []byte("m"), sig); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, identity.SigningSeedSize - 1, identity.SigningSeedSize + 1, 4032} {
		if _, err := identity.NewSigningKey(make([]byte, n)); err == nil {
			t.Errorf("%d-byte seed accepted", n)
		}
	}
}

func TestParseVerifyKey(t *testing.T) {
	vk := newSigningKey(t).PublicKey()
	b := vk.Bytes()
	if len(b) != identity.SigningPublicKeySize {
		t.Fatalf("public key is %d bytes, want %d", len(b), identity.SigningPublicKeySize)
	}
	p, err := identity.ParseVerifyKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Bytes(), b) || p.ID() != vk.ID() {
		t.Fatal("public key does not round-trip")
	}
	for _, n := range []int{0, 32, identity.SigningPublicKeySize - 1} {
		if _, err := identity.ParseVerifyKey(b[:n]); err == nil {
			t.Errorf("%d-byte public key accepted", n)
		}
	}
	if _, err := identity.ParseVerifyKey(append(bytes.Clone(b), 0)); err == nil {
		t.Error("over-long public key accepted")
	}
	// ML-DSA-44 and -87 keys are not ML-DSA-65 keys.
	for _, params := range []mldsa.Parameters{mldsa.MLDSA44(), mldsa.MLDSA87()} {
		sk, err := mldsa.GenerateKey(params)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := identity.ParseVerifyKey(sk.PublicKey().Bytes()); err == nil {
			t.Errorf("%s public key accepted", params)
		}
	}
}

func TestKeyID(t *testing.T) {
	// Pinned: SHA-256("x0tta6bl4 key id v1\x00" || pk) for the ML-DSA-65 key with seed 0x2a repeated
	// (the Wycheproof mldsa_65_sign_seed_test.json baseline key), computed independently.
	k, err := identity.NewSigningKey(bytes.Repeat([]byte{0x2a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	const want = "068513ddff00cda30f970ee1cfc0289e1a24eb9474c840ece61f16f10f56a0f0"
	if got := k.PublicKey().ID().String(); got != want {
		t.Fatalf("ID = %s, want %s", got, want)
	}
	if newSigningKey(t).PublicKey().ID() == k.PublicKey().ID() {
		t.Fatal("two keys share an ID")
	}
	p, err := identity.ParseVerifyKey(k.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ID().String(); got != want {
		t.Fatalf("parsed key: ID = %s, want %s", got, want)
	}
	// Nodes look peers up by ID on every timer tick: it must not copy the key each time.
	if allocs := testing.AllocsPerRun(100, func() { _ = p.ID() }); allocs != 0 {
		t.Errorf("ID allocates %.0f times", allocs)
	}
}
