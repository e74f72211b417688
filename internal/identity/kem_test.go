package identity_test

import (
	"bytes"
	"testing"

	"x0tta6bl4/internal/identity"
)

func newKEMKey(t testing.TB) *identity.KEMPrivateKey {
	t.Helper()
	k, err := identity.GenerateKEMKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKEMRoundTrip(t *testing.T) {
	k := newKEMKey(t)
	info := []byte("transcript hash")
	ct, ss, err := k.PublicKey().Encapsulate(info)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != identity.KEMCiphertextSize || len(ss) != identity.KEMSecretSize {
		t.Fatalf("ciphertext %d bytes, secret %d bytes; want %d and %d", len(ct), len(ss), identity.KEMCiphertextSize, identity.KEMSecretSize)
	}
	got, err := k.Decapsulate(ct, info)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ss) {
		t.Fatalf("Decapsulate = %x, Encapsulate = %x", got, ss)
	}
	if bytes.Equal(ss, make([]byte, len(ss))) {
		t.Fatal("all-zero shared secret")
	}

	// Every encapsulation is fresh.
	ct2, ss2, err := k.PublicKey().Encapsulate(info)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ct, ct2) || bytes.Equal(ss, ss2) {
		t.Fatal("two encapsulations produced the same ciphertext or secret")
	}

	// A public key parsed from its encoding works the same.
	pub, err := identity.ParseKEMPublicKey(k.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	ct3, ss3, err := pub.Encapsulate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Decapsulate(ct3, nil); err != nil || !bytes.Equal(got, ss3) {
		t.Fatalf("round trip through ParseKEMPublicKey: %x, %v; want %x", got, err, ss3)
	}
}

func TestKEMInfoBinding(t *testing.T) {
	k := newKEMKey(t)
	ct, ss, err := k.PublicKey().Encapsulate([]byte("info A"))
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range [][]byte{[]byte("info B"), []byte("info A "), nil} {
		got, err := k.Decapsulate(ct, info)
		if err != nil {
			t.Fatalf("info %q: %v", info, err)
		}
		if bytes.Equal(got, ss) {
			t.Fatalf("info %q: same secret as under %q", info, "info A")
		}
	}
}

func TestKEMImplicitRejection(t *testing.T) {
	k := newKEMKey(t)
	info := []byte("info")
	ct, ss, err := k.PublicKey().Encapsulate(info)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		i    int
		mask byte
	}{
		{"ML-KEM first byte", 0, 0x01},
		{"ML-KEM last byte", 1087, 0x80},
		{"X25519 share first byte", 1088, 0x02},
		{"X25519 share ignored top bit", identity.KEMCiphertextSize - 1, 0x80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := bytes.Clone(ct)
			bad[tc.i] ^= tc.mask
			got, err := k.Decapsulate(bad, info)
			if err != nil {
				t.Fatalf("tampered ciphertext must give a wrong secret, not an error: %v", err)
			}
			if len(got) != identity.KEMSecretSize || bytes.Equal(got, ss) {
				t.Fatalf("tampered ciphertext gave secret %x (original %x)", got, ss)
			}
			again, err := k.Decapsulate(bad, info)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatal("implicit rejection is not deterministic")
			}
		})
	}

	// Another key cannot recover the secret either, and does not fail.
	other := newKEMKey(t)
	got, err := other.Decapsulate(ct, info)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, ss) {
		t.Fatal("a different key decapsulated the same secret")
	}
}

func TestKEMMalformedCiphertext(t *testing.T) {
	k := newKEMKey(t)
	ct, _, err := k.PublicKey().Encapsulate(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 1088, identity.KEMCiphertextSize - 1} {
		if got, err := k.Decapsulate(ct[:n], nil); err == nil || got != nil {
			t.Errorf("%d-byte ciphertext: got %x, %v; want an error", n, got, err)
		}
	}
	if got, err := k.Decapsulate(append(bytes.Clone(ct), 0), nil); err == nil || got != nil {
		t.Errorf("%d-byte ciphertext: got %x, %v; want an error", len(ct)+1, got, err)
	}
	if _, err := k.Decapsulate(nil, nil); err == nil {
		t.Error("nil ciphertext accepted")
	}
}

func TestKEMSeed(t *testing.T) {
	k := newKEMKey(t)
	seed := k.Seed()
	if len(seed) != identity.KEMSeedSize {
		t.Fatalf("seed is %d bytes", len(seed))
	}
	k2, err := identity.NewKEMPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k2.PublicKey().Bytes(), k.PublicKey().Bytes()) {
		t.Fatal("key rebuilt from its seed has another public key")
	}
	ct, ss, err := k.PublicKey().Encapsulate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Decapsulate(ct, nil); err != nil || !bytes.Equal(got, ss) {
		t.Fatal("key rebuilt from its seed decapsulates differently")
	}

	// Seed returns a copy, and NewKEMPrivateKey keeps its own copy of the input.
	seed[0] ^= 0xff
	if bytes.Equal(k.Seed(), seed) {
		t.Fatal("Seed returned the internal buffer")
	}
	in := k.Seed()
	k3, err := identity.NewKEMPrivateKey(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] ^= 0xff
	if !bytes.Equal(k3.Seed(), k.Seed()) {
		t.Fatal("NewKEMPrivateKey aliases the caller's seed")
	}

	for _, n := range []int{0, identity.KEMSeedSize - 1, identity.KEMSeedSize + 1, 64} {
		if _, err := identity.NewKEMPrivateKey(make([]byte, n)); err == nil {
			t.Errorf("%d-byte seed accepted", n)
		}
	}
}

func TestParseKEMPublicKey(t *testing.T) {
	k := newKEMKey(t)
	b := k.PublicKey().Bytes()
	if len(b) != identity.KEMPublicKeySize {
		t.Fatalf("public key is %d bytes, want %d", len(b), identity.KEMPublicKeySize)
	}
	p, err := identity.ParseKEMPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Bytes(), b) {
		t.Fatal("public key does not round-trip")
	}
	for _, n := range []int{0, 32, 1184, identity.KEMPublicKeySize - 1} {
		if _, err := identity.ParseKEMPublicKey(b[:n]); err == nil {
			t.Errorf("%d-byte public key accepted", n)
		}
	}
	if _, err := identity.ParseKEMPublicKey(append(bytes.Clone(b), 0)); err == nil {
		t.Error("over-long public key accepted")
	}

	// Right length, but the first ML-KEM coefficient is 4095 >= q: not a valid encapsulation key.
	bad := bytes.Clone(b)
	bad[0] = 0xff
	bad[1] |= 0x0f
	if _, err := identity.ParseKEMPublicKey(bad); err == nil {
		t.Error("ML-KEM encapsulation key with an unreduced coefficient accepted")
	}
}
