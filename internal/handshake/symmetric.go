package handshake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// symmetricState is Noise's SymmetricState with HKDF-SHA256 and AES-256-GCM (docs/protocol.md §3).
// It is a value type: copying it forks the transcript, which the initiator uses to try a response
// without committing to it.
type symmetricState struct {
	ck     [32]byte
	h      [32]byte
	k      [32]byte
	n      uint64
	hasKey bool
}

// newSymmetric initialises the transcript with the protocol name, the prologue and the responder's
// static KEM public key (the pqIK pre-message).
func newSymmetric(prologue string, responderStatic []byte) symmetricState {
	var s symmetricState
	s.h = sha256.Sum256([]byte(ProtocolName))
	s.ck = s.h
	s.mixHash([]byte(prologue))
	s.mixHash(responderStatic)
	return s
}

func (s *symmetricState) mixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
}

// mixKey feeds a KEM shared secret into the chaining key and sets a fresh cipher key.
func (s *symmetricState) mixKey(ikm []byte) error {
	prk, err := hkdf.Extract(sha256.New, ikm, s.ck[:])
	if err != nil {
		return fmt.Errorf("mix key: %w", err)
	}
	defer clear(prk)
	ck, err := hkdf.Expand(sha256.New, prk, labelCK, 32)
	if err != nil {
		return fmt.Errorf("mix key: %w", err)
	}
	k, err := hkdf.Expand(sha256.New, prk, labelK, 32)
	if err != nil {
		return fmt.Errorf("mix key: %w", err)
	}
	copy(s.ck[:], ck)
	copy(s.k[:], k)
	clear(ck)
	clear(k)
	s.n = 0
	s.hasKey = true
	return nil
}

func (s *symmetricState) aead() (cipher.AEAD, []byte, error) {
	if !s.hasKey {
		return nil, nil, errors.New("handshake: cipher used before a key was mixed")
	}
	block, err := aes.NewCipher(s.k[:])
	if err != nil {
		return nil, nil, err
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint64(nonce[4:], s.n)
	return g, nonce, nil
}

// encryptAndHash seals p with the transcript hash as associated data and hashes the ciphertext.
func (s *symmetricState) encryptAndHash(p []byte) ([]byte, error) {
	g, nonce, err := s.aead()
	if err != nil {
		return nil, err
	}
	c := g.Seal(nil, nonce, p, s.h[:])
	s.n++
	s.mixHash(c)
	return c, nil
}

// decryptAndHash opens c with the transcript hash as associated data and hashes c.
func (s *symmetricState) decryptAndHash(c []byte) ([]byte, error) {
	g, nonce, err := s.aead()
	if err != nil {
		return nil, err
	}
	p, err := g.Open(nil, nonce, c, s.h[:])
	if err != nil {
		return nil, ErrDecrypt
	}
	s.n++
	s.mixHash(c)
	return p, nil
}

// split derives the two directional transport keys, bound to the final transcript hash.
func (s *symmetricState) split() (i2r, r2i [32]byte, err error) {
	a, err := hkdf.Expand(sha256.New, s.ck[:], labelI2R+string(s.h[:]), 32)
	if err != nil {
		return i2r, r2i, fmt.Errorf("split: %w", err)
	}
	b, err := hkdf.Expand(sha256.New, s.ck[:], labelR2I+string(s.h[:]), 32)
	if err != nil {
		return i2r, r2i, fmt.Errorf("split: %w", err)
	}
	copy(i2r[:], a)
	copy(r2i[:], b)
	clear(a)
	clear(b)
	return i2r, r2i, nil
}

// wipe clears the keys; the transcript hash is public and kept for HandshakeHash.
func (s *symmetricState) wipe() {
	clear(s.ck[:])
	clear(s.k[:])
	s.hasKey = false
}
