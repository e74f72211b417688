package identity

import (
	"bytes"
	"testing"
)

// TestParsedKeysOwnTheirMemory: certificates keep the public keys parsed from their encoding, which
// may sit in a receive buffer the next datagram overwrites; a parsed key must not change with it.
func TestParsedKeysOwnTheirMemory(t *testing.T) {
	nk, err := GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := nk.Public()
	signBuf, kemBuf := bytes.Clone(pub.Sign.Bytes()), bytes.Clone(pub.KEM.Bytes())
	sk, err := ParseVerifyKey(signBuf)
	if err != nil {
		t.Fatal(err)
	}
	kk, err := ParseKEMPublicKey(kemBuf)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{signBuf, kemBuf} {
		for i := range b {
			b[i] = 0xa5
		}
	}
	if !bytes.Equal(sk.Bytes(), pub.Sign.Bytes()) || !bytes.Equal(kk.Bytes(), pub.KEM.Bytes()) {
		t.Fatal("a parsed public key changed with its input buffer")
	}
	sig, err := nk.Sign.Sign("retain test", []byte("message"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sk.Verify("retain test", []byte("message"), sig); err != nil {
		t.Fatalf("verify with a key whose input was overwritten: %v", err)
	}
}
