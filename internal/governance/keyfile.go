package governance

import (
	"encoding/pem"
	"fmt"

	"x0tta6bl4/internal/identity"
)

// PEM types of a member's key files. The private key never leaves the member's machine: the CLI
// makes it and signs ballots with it locally.
const (
	PEMMemberPrivateKey = "X0TTA6BL4 MEMBER PRIVATE KEY"
	PEMMemberPublicKey  = "X0TTA6BL4 MEMBER PUBLIC KEY"
	memberKeyFormat     = 1
)

// MarshalMemberKey encodes a member's private key: format 1 and the ML-DSA-65 seed.
func MarshalMemberKey(k *identity.SigningKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMMemberPrivateKey, Bytes: append([]byte{memberKeyFormat}, k.Seed()...)})
}

// ParseMemberKey decodes MarshalMemberKey's output.
func ParseMemberKey(data []byte) (*identity.SigningKey, error) {
	body, err := identity.DecodePEM(data, PEMMemberPrivateKey)
	if err != nil {
		return nil, err
	}
	if len(body) != 1+identity.SigningSeedSize || body[0] != memberKeyFormat {
		return nil, fmt.Errorf("member key: %d bytes of format %d, want format %d", len(body), body[0], memberKeyFormat)
	}
	return identity.NewSigningKey(body[1:])
}

// MarshalMemberPublicKey encodes a member's ML-DSA-65 public key.
func MarshalMemberPublicKey(k *identity.VerifyKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMMemberPublicKey, Bytes: k.Bytes()})
}

// ParseMemberPublicKey decodes MarshalMemberPublicKey's output.
func ParseMemberPublicKey(data []byte) (*identity.VerifyKey, error) {
	body, err := identity.DecodePEM(data, PEMMemberPublicKey)
	if err != nil {
		return nil, err
	}
	return identity.ParseVerifyKey(body)
}
