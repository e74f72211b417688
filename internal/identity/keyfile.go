package identity

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"

	"x0tta6bl4/internal/secfile"
)

// PEM block types of the key files; the formats are described in docs/identity.md.
const (
	PEMNodePrivateKey = "X0TTA6BL4 NODE PRIVATE KEY"
	PEMNodePublicKey  = "X0TTA6BL4 NODE PUBLIC KEY"
	PEMCAPrivateKey   = "X0TTA6BL4 CA PRIVATE KEY"
)

const (
	keyFormatVersion = 1
	maxKeyFileSize   = 16 << 10
)

// MarshalNodeKey encodes node private keys as PEM: version(1) || KEM seed(32) || ML-DSA seed(32).
func MarshalNodeKey(k *NodeKey) []byte {
	body := make([]byte, 0, 1+KEMSeedSize+SigningSeedSize)
	body = append(body, keyFormatVersion)
	body = append(body, k.KEM.Seed()...)
	body = append(body, k.Sign.Seed()...)
	return pem.EncodeToMemory(&pem.Block{Type: PEMNodePrivateKey, Bytes: body})
}

// ParseNodeKey decodes MarshalNodeKey's output.
func ParseNodeKey(data []byte) (*NodeKey, error) {
	body, err := decodePEM(data, PEMNodePrivateKey, 1+KEMSeedSize+SigningSeedSize)
	if err != nil {
		return nil, err
	}
	k, err := NewKEMPrivateKey(body[1 : 1+KEMSeedSize])
	if err != nil {
		return nil, err
	}
	s, err := NewSigningKey(body[1+KEMSeedSize:])
	if err != nil {
		return nil, err
	}
	return &NodeKey{KEM: k, Sign: s}, nil
}

// MarshalNodePublicKey encodes public keys as PEM: version(1) || KEM public(1216) || ML-DSA public(1952).
func MarshalNodePublicKey(p *NodePublicKey) []byte {
	body := make([]byte, 0, 1+KEMPublicKeySize+SigningPublicKeySize)
	body = append(body, keyFormatVersion)
	body = append(body, p.KEM.Bytes()...)
	body = append(body, p.Sign.Bytes()...)
	return pem.EncodeToMemory(&pem.Block{Type: PEMNodePublicKey, Bytes: body})
}

// ParseNodePublicKey decodes MarshalNodePublicKey's output.
func ParseNodePublicKey(data []byte) (*NodePublicKey, error) {
	body, err := decodePEM(data, PEMNodePublicKey, 1+KEMPublicKeySize+SigningPublicKeySize)
	if err != nil {
		return nil, err
	}
	k, err := ParseKEMPublicKey(body[1 : 1+KEMPublicKeySize])
	if err != nil {
		return nil, err
	}
	s, err := ParseVerifyKey(body[1+KEMPublicKeySize:])
	if err != nil {
		return nil, err
	}
	return &NodePublicKey{KEM: k, Sign: s}, nil
}

// MarshalCAKey encodes a CA signing key as PEM: version(1) || ML-DSA seed(32).
func MarshalCAKey(k *SigningKey) []byte {
	body := append([]byte{keyFormatVersion}, k.Seed()...)
	return pem.EncodeToMemory(&pem.Block{Type: PEMCAPrivateKey, Bytes: body})
}

// ParseCAKey decodes MarshalCAKey's output.
func ParseCAKey(data []byte) (*SigningKey, error) {
	body, err := decodePEM(data, PEMCAPrivateKey, 1+SigningSeedSize)
	if err != nil {
		return nil, err
	}
	return NewSigningKey(body[1:])
}

// DecodePEM returns the body of the single PEM block of type wantType in data: no other block, no
// headers, nothing but white space after it. Every x0tta6bl4 file format is wrapped this way.
func DecodePEM(data []byte, wantType string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found (want %q)", wantType)
	}
	if block.Type != wantType {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, wantType)
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("PEM headers are not allowed")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the PEM block")
	}
	return block.Bytes, nil
}

// decodePEM decodes a key file body of exactly wantLen bytes that starts with the format version.
func decodePEM(data []byte, wantType string, wantLen int) ([]byte, error) {
	body, err := DecodePEM(data, wantType)
	if err != nil {
		return nil, err
	}
	if len(body) != wantLen {
		return nil, fmt.Errorf("%s is %d bytes, want %d", wantType, len(body), wantLen)
	}
	if body[0] != keyFormatVersion {
		return nil, fmt.Errorf("%s has format version %d, this build reads version %d", wantType, body[0], keyFormatVersion)
	}
	return body, nil
}

// WriteNodeKeyFile writes node private keys to path with mode 0600; it never replaces an existing file
// unless overwrite is set.
func WriteNodeKeyFile(path string, k *NodeKey, overwrite bool) error {
	return secfile.Write(path, MarshalNodeKey(k), 0o600, overwrite)
}

// LoadNodeKeyFile reads node private keys, refusing files other users can access.
func LoadNodeKeyFile(path string) (*NodeKey, error) {
	data, err := secfile.ReadSecret(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	k, err := ParseNodeKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteNodePublicKeyFile writes public keys with mode 0644.
func WriteNodePublicKeyFile(path string, p *NodePublicKey, overwrite bool) error {
	return secfile.Write(path, MarshalNodePublicKey(p), 0o644, overwrite)
}

// LoadNodePublicKeyFile reads public keys.
func LoadNodePublicKeyFile(path string) (*NodePublicKey, error) {
	data, err := secfile.Read(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	p, err := ParseNodePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// WriteCAKeyFile writes a CA key with mode 0600, never replacing an existing file unless overwrite is set.
func WriteCAKeyFile(path string, k *SigningKey, overwrite bool) error {
	return secfile.Write(path, MarshalCAKey(k), 0o600, overwrite)
}

// LoadCAKeyFile reads a CA key, refusing files other users can access.
func LoadCAKeyFile(path string) (*SigningKey, error) {
	data, err := secfile.ReadSecret(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	k, err := ParseCAKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
