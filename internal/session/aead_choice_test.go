package session

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// The benchmarks in this file are the measurement behind newAEAD's choice
// (see docs/transport.md, "AEAD choice"). They use the same nonce layout and
// a 16-byte AAD as the real data path.

func newChaCha(b *testing.B, key []byte) cipher.AEAD {
	a, err := chacha20poly1305.New(key)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func newAESGCM(b *testing.B, key []byte) cipher.AEAD {
	blk, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	a, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

func benchCandidateSeal(b *testing.B, a cipher.AEAD, size int) {
	pt := make([]byte, size)
	aad := make([]byte, 16)
	dst := make([]byte, 0, size+a.Overhead())
	var nonce [12]byte
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		nonce[4] = byte(i)
		nonce[5] = byte(i >> 8)
		dst = a.Seal(dst[:0], nonce[:], pt, aad)
	}
}

func benchCandidateOpen(b *testing.B, a cipher.AEAD, size int) {
	pt := make([]byte, size)
	aad := make([]byte, 16)
	var nonce [12]byte
	ct := a.Seal(nil, nonce[:], pt, aad)
	buf := make([]byte, len(ct))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, ct)
		if _, err := a.Open(buf[:0], nonce[:], buf, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCandidateChaCha20Poly1305Seal1420(b *testing.B) {
	benchCandidateSeal(b, newChaCha(b, make([]byte, 32)), 1420)
}

func BenchmarkCandidateChaCha20Poly1305Open1420(b *testing.B) {
	benchCandidateOpen(b, newChaCha(b, make([]byte, 32)), 1420)
}

func BenchmarkCandidateAES256GCMSeal1420(b *testing.B) {
	benchCandidateSeal(b, newAESGCM(b, make([]byte, 32)), 1420)
}

func BenchmarkCandidateAES256GCMOpen1420(b *testing.B) {
	benchCandidateOpen(b, newAESGCM(b, make([]byte, 32)), 1420)
}
