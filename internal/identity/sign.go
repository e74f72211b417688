package identity

import (
	"crypto/mldsa"
	"crypto/sha256"
	"fmt"
)

// Sizes of ML-DSA-65 encodings.
const (
	SigningSeedSize      = mldsa.PrivateKeySize
	SigningPublicKeySize = mldsa.MLDSA65PublicKeySize
	SignatureSize        = mldsa.MLDSA65SignatureSize
)

// SigningKey is an ML-DSA-65 private key.
type SigningKey struct {
	sk *mldsa.PrivateKey
}

// GenerateSigningKey returns a new random ML-DSA-65 key.
func GenerateSigningKey() (*SigningKey, error) {
	sk, err := mldsa.GenerateKey(mldsa.MLDSA65())
	if err != nil {
		return nil, fmt.Errorf("generate ML-DSA-65 key: %w", err)
	}
	return &SigningKey{sk: sk}, nil
}

// NewSigningKey expands a SigningSeedSize-byte seed into an ML-DSA-65 key.
func NewSigningKey(seed []byte) (*SigningKey, error) {
	if len(seed) != SigningSeedSize {
		return nil, fmt.Errorf("ML-DSA seed is %d bytes, want %d", len(seed), SigningSeedSize)
	}
	sk, err := mldsa.NewPrivateKey(mldsa.MLDSA65(), seed)
	if err != nil {
		return nil, fmt.Errorf("invalid ML-DSA seed: %w", err)
	}
	return &SigningKey{sk: sk}, nil
}

// Sign signs msg under a context string that names what is being signed ("x0tta6bl4 certificate v1",
// ...). Distinct contexts keep a signature made for one purpose from being valid for another.
func (k *SigningKey) Sign(context string, msg []byte) ([]byte, error) {
	sig, err := k.sk.Sign(nil, msg, &mldsa.Options{Context: context})
	if err != nil {
		return nil, fmt.Errorf("ML-DSA sign: %w", err)
	}
	return sig, nil
}

// Seed returns the private seed.
func (k *SigningKey) Seed() []byte { return k.sk.Bytes() }

// MLDSA returns the underlying key, for crypto/x509 and crypto/tls, which take it as a crypto.Signer.
func (k *SigningKey) MLDSA() *mldsa.PrivateKey { return k.sk }

// PublicKey returns the verification key.
func (k *SigningKey) PublicKey() *VerifyKey { return newVerifyKey(k.sk.PublicKey()) }

// VerifyKey is an ML-DSA-65 public key.
type VerifyKey struct {
	pk *mldsa.PublicKey
	// id is the key's fingerprint, computed once: nodes look peers up by it on every timer tick, and
	// computing it copies and hashes the 1952-byte key.
	id KeyID
}

func newVerifyKey(pk *mldsa.PublicKey) *VerifyKey {
	h := sha256.New()
	h.Write([]byte("x0tta6bl4 key id v1\x00"))
	h.Write(pk.Bytes())
	k := &VerifyKey{pk: pk}
	h.Sum(k.id[:0])
	return k
}

// ParseVerifyKey decodes an ML-DSA-65 public key of exactly SigningPublicKeySize bytes.
func ParseVerifyKey(b []byte) (*VerifyKey, error) {
	if len(b) != SigningPublicKeySize {
		return nil, fmt.Errorf("ML-DSA-65 public key is %d bytes, want %d", len(b), SigningPublicKeySize)
	}
	pk, err := mldsa.NewPublicKey(mldsa.MLDSA65(), b)
	if err != nil {
		return nil, fmt.Errorf("invalid ML-DSA-65 public key: %w", err)
	}
	return newVerifyKey(pk), nil
}

// Bytes returns the public key encoding.
func (k *VerifyKey) Bytes() []byte { return k.pk.Bytes() }

// MLDSA returns the underlying key.
func (k *VerifyKey) MLDSA() *mldsa.PublicKey { return k.pk }

// Verify checks sig over msg under the given context.
func (k *VerifyKey) Verify(context string, msg, sig []byte) error {
	if len(sig) != SignatureSize {
		return fmt.Errorf("ML-DSA-65 signature is %d bytes, want %d", len(sig), SignatureSize)
	}
	if err := mldsa.Verify(k.pk, msg, sig, &mldsa.Options{Context: context}); err != nil {
		return fmt.Errorf("ML-DSA-65 signature does not verify: %w", err)
	}
	return nil
}

// KeyID is the SHA-256 fingerprint of a signing public key, domain-separated.
type KeyID [32]byte

// ID returns the key's fingerprint: SHA-256 over a domain separator and the key's encoding.
func (k *VerifyKey) ID() KeyID { return k.id }

// String returns the fingerprint in hex.
func (id KeyID) String() string { return fmt.Sprintf("%x", id[:]) }
