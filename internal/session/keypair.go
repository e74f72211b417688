package session

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Keys is the transport's input from a completed handshake (the node fills it from
// handshake.Result). SendKey and RecvKey must be distinct, fresh, uniformly random 32-byte keys
// that are never installed twice.
type Keys struct {
	LocalIndex  uint32 // our index: the peer writes it as receiver index
	RemoteIndex uint32 // the peer's index: we write it as receiver index
	SendKey     [32]byte
	RecvKey     [32]byte
	Initiator   bool // we sent the first handshake message
}

// Wipe overwrites the key material in k.
func (k *Keys) Wipe() {
	clear(k.SendKey[:])
	clear(k.RecvKey[:])
}

// newAEAD is the single place the data-plane AEAD is chosen: AES-256-GCM, measured faster than
// ChaCha20-Poly1305 on the target machines (docs/transport.md, "AEAD choice").
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session: gcm: %w", err)
	}
	return aead, nil
}

// aeads are the keypair's ciphers; a keypair's pointer to them is cleared when it is wiped.
type aeads struct {
	send, recv cipher.AEAD
}

// keypair is one handshake's worth of transport state. Its immutable fields are set before it is
// published; mutable fields are atomics or guarded by replayMu.
type keypair struct {
	ciphers     atomic.Pointer[aeads]
	sendCounter atomic.Uint64

	replayMu sync.Mutex
	replay   replayFilter

	created     time.Time
	localIndex  uint32
	remoteIndex uint32
	initiator   bool
}

func newKeypair(k *Keys, now time.Time) (*keypair, error) {
	var c aeads
	var err error
	withSecret(func() {
		if c.send, err = newAEAD(k.SendKey[:]); err != nil {
			return
		}
		c.recv, err = newAEAD(k.RecvKey[:])
	})
	if err != nil {
		return nil, err
	}
	kp := &keypair{
		created:     now,
		localIndex:  k.LocalIndex,
		remoteIndex: k.RemoteIndex,
		initiator:   k.Initiator,
	}
	kp.ciphers.Store(&c)
	return kp, nil
}

// expired reports whether the keypair is past RejectAfterTime at now.
func (kp *keypair) expired(now time.Time) bool {
	return now.Sub(kp.created) >= RejectAfterTime
}

// wipe drops the keypair's ciphers so that it can neither seal nor open again. See
// docs/transport.md ("Wiping keys and Go's limits") for what this can and cannot erase.
func (kp *keypair) wipe() {
	// The aeads value itself is not modified: operations already holding it finish, then it is
	// unreachable.
	kp.ciphers.Store(nil)
}
