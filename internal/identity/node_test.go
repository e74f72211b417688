package identity_test

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"testing"

	"x0tta6bl4/internal/identity"
)

func TestOverlayPrefix(t *testing.T) {
	if identity.OverlayPrefix != netip.MustParsePrefix("fd74::/16") {
		t.Fatalf("OverlayPrefix = %v", identity.OverlayPrefix)
	}
	if !netip.MustParsePrefix("fd00::/8").Contains(identity.OverlayPrefix.Addr()) {
		t.Fatal("overlay prefix is not in the ULA range fd00::/8")
	}
}

func TestOverlayAddressGolden(t *testing.T) {
	// fd74 || SHA-256("x0tta6bl4 overlay address v1\x00" || kemPub || signPub)[:14], computed
	// independently (Python hashlib) for fixedNodeKey.
	want := netip.MustParseAddr("fd74:f875:17e7:89cd:88e0:3a6f:a56:a181")
	p := fixedNodeKey(t).Public()
	if got := p.OverlayAddress(); got != want {
		t.Fatalf("OverlayAddress = %v, want %v", got, want)
	}
	if got := p.String(); got != "fd74:f875:17e7:89cd:88e0:3a6f:a56:a181 (key 068513ddff00cda3)" {
		t.Fatalf("String = %q", got)
	}
}

func TestOverlayAddress(t *testing.T) {
	a, b := newNodeKey(t), newNodeKey(t)
	pa := a.Public()
	addr := pa.OverlayAddress()
	if !addr.Is6() || addr.Is4In6() || !identity.OverlayPrefix.Contains(addr) {
		t.Fatalf("%v is not an IPv6 address in %v", addr, identity.OverlayPrefix)
	}

	// Deterministic: same keys, same address, however the public key was obtained.
	if again := a.Public().OverlayAddress(); again != addr {
		t.Fatalf("address changed: %v then %v", addr, again)
	}
	if raw := identity.OverlayAddressFor(pa.KEM.Bytes(), pa.Sign.Bytes()); raw != addr {
		t.Fatalf("OverlayAddressFor = %v, OverlayAddress = %v", raw, addr)
	}
	reparsed, err := identity.ParseNodePublicKey(identity.MarshalNodePublicKey(pa))
	if err != nil {
		t.Fatal(err)
	}
	if reparsed.OverlayAddress() != addr {
		t.Fatal("address differs after a public key file round trip")
	}

	// The 112 host bits are the hash prefix.
	h := sha256.New()
	h.Write([]byte("x0tta6bl4 overlay address v1\x00"))
	h.Write(pa.KEM.Bytes())
	h.Write(pa.Sign.Bytes())
	a16 := addr.As16()
	if !bytes.Equal(a16[2:], h.Sum(nil)[:14]) {
		t.Fatal("host bits are not SHA-256(label || kemPub || signPub)[:14]")
	}

	// Either key changes the address.
	pb := b.Public()
	for name, other := range map[string]*identity.NodePublicKey{
		"both keys":     pb,
		"KEM key only":  {KEM: pb.KEM, Sign: pa.Sign},
		"sign key only": {KEM: pa.KEM, Sign: pb.Sign},
	} {
		if got := other.OverlayAddress(); got == addr || !identity.OverlayPrefix.Contains(got) {
			t.Errorf("%s: address %v (first key's %v)", name, got, addr)
		}
	}
}

func TestOverlayAddressDistinct(t *testing.T) {
	seen := make(map[netip.Addr]bool)
	kemPub := newKEMKey(t).PublicKey().Bytes()
	signPub := newSigningKey(t).PublicKey().Bytes()
	for i := range 256 {
		k := bytes.Clone(kemPub)
		k[i%len(k)] ^= byte(i) | 1
		addr := identity.OverlayAddressFor(k, signPub)
		if !identity.OverlayPrefix.Contains(addr) {
			t.Fatalf("%v outside the overlay prefix", addr)
		}
		if seen[addr] {
			t.Fatalf("collision at %v", addr)
		}
		seen[addr] = true
	}
}

func TestGenerateNodeKey(t *testing.T) {
	a, b := newNodeKey(t), newNodeKey(t)
	if bytes.Equal(a.KEM.Seed(), b.KEM.Seed()) || bytes.Equal(a.Sign.Seed(), b.Sign.Seed()) {
		t.Fatal("two generated node keys share a seed")
	}
	if bytes.Equal(a.KEM.Seed(), a.Sign.Seed()) {
		t.Fatal("KEM and signing seeds are equal")
	}
	p := a.Public()
	if !bytes.Equal(p.KEM.Bytes(), a.KEM.PublicKey().Bytes()) || !bytes.Equal(p.Sign.Bytes(), a.Sign.PublicKey().Bytes()) {
		t.Fatal("Public does not return the keys' public halves")
	}
}
