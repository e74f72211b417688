package identity

import (
	"crypto/hpke"
	"errors"
	"fmt"
)

// Sizes of the hybrid KEM (ML-KEM-768 + X25519, X-Wing) encodings.
const (
	KEMSeedSize       = 32   // private key: one seed expanded into both ML-KEM and X25519 keys
	KEMPublicKeySize  = 1216 // ML-KEM-768 encapsulation key (1184) + X25519 public key (32)
	KEMCiphertextSize = 1120 // ML-KEM-768 ciphertext (1088) + X25519 ephemeral share (32)
	KEMSecretSize     = 32
)

// kemExportLabel is the HPKE exporter context under which the KEM shared secret is taken.
const kemExportLabel = "x0tta6bl4 kem shared secret v1"

// The KEM is used through HPKE (RFC 9180) in base mode with the export-only AEAD: encapsulation runs
// the X-Wing KEM and HPKE's key schedule binds the caller's info string into the exported secret.
// This keeps every primitive, including the hybrid combiner, inside the standard library.
func kem() hpke.KEM { return hpke.MLKEM768X25519() }

// KEMPublicKey is a hybrid ML-KEM-768 + X25519 encapsulation key.
type KEMPublicKey struct {
	pk hpke.PublicKey
}

// ParseKEMPublicKey decodes a KEM public key of exactly KEMPublicKeySize bytes.
func ParseKEMPublicKey(b []byte) (*KEMPublicKey, error) {
	if len(b) != KEMPublicKeySize {
		return nil, fmt.Errorf("KEM public key is %d bytes, want %d", len(b), KEMPublicKeySize)
	}
	pk, err := kem().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("invalid KEM public key: %w", err)
	}
	return &KEMPublicKey{pk: pk}, nil
}

// Bytes returns the public key encoding.
func (k *KEMPublicKey) Bytes() []byte { return k.pk.Bytes() }

// Encapsulate creates a fresh shared secret for the holder of the private key. info is bound into the
// secret (both sides must pass the same bytes); the protocol passes its transcript hash there.
func (k *KEMPublicKey) Encapsulate(info []byte) (ciphertext, secret []byte, err error) {
	enc, sender, err := hpke.NewSender(k.pk, hpke.HKDFSHA256(), hpke.ExportOnly(), info)
	if err != nil {
		return nil, nil, fmt.Errorf("KEM encapsulate: %w", err)
	}
	secret, err = sender.Export(kemExportLabel, KEMSecretSize)
	if err != nil {
		return nil, nil, fmt.Errorf("KEM encapsulate: %w", err)
	}
	return enc, secret, nil
}

// KEMPrivateKey is a hybrid ML-KEM-768 + X25519 decapsulation key.
type KEMPrivateKey struct {
	sk   hpke.PrivateKey
	seed []byte
	pub  *KEMPublicKey
}

// GenerateKEMKey returns a new random KEM key pair.
func GenerateKEMKey() (*KEMPrivateKey, error) {
	sk, err := kem().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate KEM key: %w", err)
	}
	seed, err := sk.Bytes()
	if err != nil {
		return nil, fmt.Errorf("generate KEM key: %w", err)
	}
	return &KEMPrivateKey{sk: sk, seed: seed, pub: &KEMPublicKey{pk: sk.PublicKey()}}, nil
}

// NewKEMPrivateKey expands a KEMSeedSize-byte seed into a key pair.
func NewKEMPrivateKey(seed []byte) (*KEMPrivateKey, error) {
	if len(seed) != KEMSeedSize {
		return nil, fmt.Errorf("KEM seed is %d bytes, want %d", len(seed), KEMSeedSize)
	}
	sk, err := kem().NewPrivateKey(seed)
	if err != nil {
		return nil, fmt.Errorf("invalid KEM seed: %w", err)
	}
	return &KEMPrivateKey{sk: sk, seed: append([]byte(nil), seed...), pub: &KEMPublicKey{pk: sk.PublicKey()}}, nil
}

// PublicKey returns the matching encapsulation key.
func (k *KEMPrivateKey) PublicKey() *KEMPublicKey { return k.pub }

// Seed returns a copy of the private seed.
func (k *KEMPrivateKey) Seed() []byte { return append([]byte(nil), k.seed...) }

// errDecapsulate is deliberately uninformative: ML-KEM rejects implicitly, so a wrong ciphertext
// yields a wrong secret rather than an error; only malformed lengths fail here.
var errDecapsulate = errors.New("KEM decapsulate: malformed ciphertext")

// Decapsulate recovers the shared secret from a ciphertext produced by Encapsulate with the same info.
// A tampered ciphertext yields an unrelated secret (implicit rejection), which the caller's AEAD then
// refuses.
func (k *KEMPrivateKey) Decapsulate(ciphertext, info []byte) ([]byte, error) {
	if len(ciphertext) != KEMCiphertextSize {
		return nil, errDecapsulate
	}
	r, err := hpke.NewRecipient(ciphertext, k.sk, hpke.HKDFSHA256(), hpke.ExportOnly(), info)
	if err != nil {
		return nil, errDecapsulate
	}
	secret, err := r.Export(kemExportLabel, KEMSecretSize)
	if err != nil {
		return nil, fmt.Errorf("KEM decapsulate: %w", err)
	}
	return secret, nil
}
