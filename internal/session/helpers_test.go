package session

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"
)

// t0 is the virtual clock's origin (no monotonic reading, like a simulated clock).
var t0 = time.Unix(1_700_000_000, 0)

// mirrorKeys returns the two sides' Keys for handshake generation gen, as a handshake would:
// a is the initiator, each side's SendKey is the other's RecvKey.
func mirrorKeys(gen int, ia, ib uint32) (ka, kb Keys) {
	var in [9]byte
	binary.LittleEndian.PutUint64(in[1:], uint64(gen))
	in[0] = 'a'
	ab := sha256.Sum256(in[:])
	in[0] = 'b'
	ba := sha256.Sum256(in[:])
	ka = Keys{LocalIndex: ia, RemoteIndex: ib, SendKey: ab, RecvKey: ba, Initiator: true}
	kb = Keys{LocalIndex: ib, RemoteIndex: ia, SendKey: ba, RecvKey: ab}
	return ka, kb
}

// installDirect installs generation gen's keys on both sides without a handshake: b as
// responder first (as in a real handshake), then a as initiator.
func installDirect(tb testing.TB, a, b *Session, gen int, ia, ib uint32, now time.Time) {
	tb.Helper()
	ka, kb := mirrorKeys(gen, ia, ib)
	if err := b.Install(&kb, now); err != nil {
		tb.Fatalf("install responder: %v", err)
	}
	if err := a.Install(&ka, now); err != nil {
		tb.Fatalf("install initiator: %v", err)
	}
}

// newPair returns two sessions with generation-0 keys installed and confirmed (b promoted).
func newPair(tb testing.TB, now time.Time) (a, b *Session) {
	tb.Helper()
	a, b = New(Config{}, now), New(Config{}, now)
	installDirect(tb, a, b, 0, 0x0a0a0a0a, 0x0b0b0b0b, now)
	confirm(tb, a, b, now)
	return a, b
}

// confirm sends a keepalive a→b so that b promotes its next keypair.
func confirm(tb testing.TB, a, b *Session, now time.Time) {
	tb.Helper()
	pkt, err := a.Seal(nil, nil, now)
	if err != nil {
		tb.Fatalf("seal keepalive: %v", err)
	}
	if _, err := b.Open(pkt, now); err != nil {
		tb.Fatalf("open keepalive: %v", err)
	}
	if b.next.Load() != nil {
		tb.Fatal("responder did not promote next")
	}
}

// payload returns a deterministic payload for seq: seq (8 bytes LE) followed by pseudo-random
// bytes derived from seq, of total length size (size >= 8).
func payload(dst []byte, seq uint64, size int) []byte {
	dst = binary.LittleEndian.AppendUint64(dst[:0], seq)
	x := seq*0x9e3779b97f4a7c15 + 1
	for len(dst) < size {
		// splitmix64
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], z)
		dst = append(dst, w[:min(8, size-len(dst))]...)
	}
	return dst
}
