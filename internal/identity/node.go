package identity

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
)

// NodeKey is a node's private key material: a KEM key for sessions and a signing key for signed state.
type NodeKey struct {
	KEM  *KEMPrivateKey
	Sign *SigningKey
}

// GenerateNodeKey returns fresh random node keys.
func GenerateNodeKey() (*NodeKey, error) {
	k, err := GenerateKEMKey()
	if err != nil {
		return nil, err
	}
	s, err := GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	return &NodeKey{KEM: k, Sign: s}, nil
}

// Public returns the node's public keys.
func (k *NodeKey) Public() *NodePublicKey {
	return &NodePublicKey{KEM: k.KEM.PublicKey(), Sign: k.Sign.PublicKey()}
}

// NodePublicKey is what a certificate vouches for.
type NodePublicKey struct {
	KEM  *KEMPublicKey
	Sign *VerifyKey
}

// OverlayPrefix is the ULA prefix of every overlay address: fd74::/16 (RFC 4193 range fd00::/8).
// The remaining 112 bits are a hash of the node's public keys, so an address cannot be claimed without
// the keys (a collision needs about 2^56 work by the birthday bound, a second preimage 2^112).
var OverlayPrefix = netip.MustParsePrefix("fd74::/16")

// OverlayAddress derives the node's overlay IPv6 address from its public keys:
// fd74 || SHA-256("x0tta6bl4 overlay address v1\0" || kemPub || signPub)[0:14].
func (p *NodePublicKey) OverlayAddress() netip.Addr {
	return OverlayAddressFor(p.KEM.Bytes(), p.Sign.Bytes())
}

// OverlayAddressFor is OverlayAddress over raw key encodings.
func OverlayAddressFor(kemPub, signPub []byte) netip.Addr {
	h := sha256.New()
	h.Write([]byte("x0tta6bl4 overlay address v1\x00"))
	h.Write(kemPub)
	h.Write(signPub)
	var sum [32]byte
	h.Sum(sum[:0])
	var a [16]byte
	a[0], a[1] = 0xfd, 0x74
	copy(a[2:], sum[:14])
	return netip.AddrFrom16(a)
}

// String describes the keys by their overlay address and signing key fingerprint.
func (p *NodePublicKey) String() string {
	return fmt.Sprintf("%s (key %s)", p.OverlayAddress(), p.Sign.ID().String()[:16])
}
