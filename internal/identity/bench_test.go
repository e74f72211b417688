package identity_test

import (
	"testing"

	"x0tta6bl4/internal/identity"
)

var benchInfo = make([]byte, 32) // the protocol binds a 32-byte transcript hash

func BenchmarkKEMKeygen(b *testing.B) {
	for b.Loop() {
		if _, err := identity.GenerateKEMKey(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncapsulate(b *testing.B) {
	pub := newKEMKey(b).PublicKey()
	for b.Loop() {
		if _, _, err := pub.Encapsulate(benchInfo); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecapsulate(b *testing.B) {
	k := newKEMKey(b)
	ct, _, err := k.PublicKey().Encapsulate(benchInfo)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := k.Decapsulate(ct, benchInfo); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSigningKeygen(b *testing.B) {
	for b.Loop() {
		if _, err := identity.GenerateSigningKey(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	k := newSigningKey(b)
	msg := make([]byte, 256)
	for b.Loop() {
		if _, err := k.Sign("x0tta6bl4 bench v1", msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := newSigningKey(b)
	msg := make([]byte, 256)
	sig, err := k.Sign("x0tta6bl4 bench v1", msg)
	if err != nil {
		b.Fatal(err)
	}
	vk := k.PublicKey()
	for b.Loop() {
		if err := vk.Verify("x0tta6bl4 bench v1", msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOverlayAddress(b *testing.B) {
	p := newNodeKey(b).Public()
	for b.Loop() {
		_ = p.OverlayAddress()
	}
}
