package identity_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/secfile"
)

func newNodeKey(t testing.TB) *identity.NodeKey {
	t.Helper()
	k, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedNodeKey is built from the draft-ietf-hpke-pq MLKEM768-X25519 vector's skRm and the Wycheproof
// ML-DSA-65 baseline seed (0x2a repeated), so golden values can be computed outside Go.
func fixedNodeKey(t testing.TB) *identity.NodeKey {
	t.Helper()
	kemSeed := []byte{
		0xb3, 0xf9, 0x8b, 0x03, 0x12, 0x6a, 0x43, 0x1c, 0xce, 0xcc, 0x62, 0xae, 0x0f, 0x68, 0xe1, 0x02,
		0xc2, 0xd8, 0xe1, 0xcc, 0x7b, 0x21, 0xba, 0x85, 0xd8, 0x21, 0xd8, 0xe3, 0x17, 0x61, 0xe0, 0xf8,
	}
	k, err := identity.NewKEMPrivateKey(kemSeed)
	if err != nil {
		t.Fatal(err)
	}
	s, err := identity.NewSigningKey(bytes.Repeat([]byte{0x2a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &identity.NodeKey{KEM: k, Sign: s}
}

// Golden encodings (docs/identity.md formats), generated independently with Python's base64 module.
const (
	goldenNodeKeyPEM = `-----BEGIN X0TTA6BL4 NODE PRIVATE KEY-----
AbP5iwMSakMczsxirg9o4QLC2OHMeyG6hdgh2OMXYeD4KioqKioqKioqKioqKioq
KioqKioqKioqKioqKioqKio=
-----END X0TTA6BL4 NODE PRIVATE KEY-----
`
	goldenCAKeyPEM = `-----BEGIN X0TTA6BL4 CA PRIVATE KEY-----
ASoqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioq
-----END X0TTA6BL4 CA PRIVATE KEY-----
`
)

func sameNodeKey(t *testing.T, got, want *identity.NodeKey) {
	t.Helper()
	if !bytes.Equal(got.KEM.Seed(), want.KEM.Seed()) || !bytes.Equal(got.Sign.Seed(), want.Sign.Seed()) {
		t.Fatal("node key seeds differ")
	}
	if !bytes.Equal(got.KEM.PublicKey().Bytes(), want.KEM.PublicKey().Bytes()) ||
		!bytes.Equal(got.Sign.PublicKey().Bytes(), want.Sign.PublicKey().Bytes()) {
		t.Fatal("node public keys differ")
	}
}

func sameNodePublicKey(t *testing.T, got, want *identity.NodePublicKey) {
	t.Helper()
	if !bytes.Equal(got.KEM.Bytes(), want.KEM.Bytes()) || !bytes.Equal(got.Sign.Bytes(), want.Sign.Bytes()) {
		t.Fatal("node public keys differ")
	}
}

func TestKeyEncodingGolden(t *testing.T) {
	k := fixedNodeKey(t)
	if got := string(identity.MarshalNodeKey(k)); got != goldenNodeKeyPEM {
		t.Fatalf("MarshalNodeKey =\n%s\nwant\n%s", got, goldenNodeKeyPEM)
	}
	if got := string(identity.MarshalCAKey(k.Sign)); got != goldenCAKeyPEM {
		t.Fatalf("MarshalCAKey =\n%s\nwant\n%s", got, goldenCAKeyPEM)
	}
	parsed, err := identity.ParseNodeKey([]byte(goldenNodeKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	sameNodeKey(t, parsed, k)

	// Public key body: version 1 || KEM public key || ML-DSA public key.
	block, rest := pem.Decode(identity.MarshalNodePublicKey(k.Public()))
	if block == nil || len(rest) != 0 || block.Type != identity.PEMNodePublicKey || len(block.Headers) != 0 {
		t.Fatalf("public key PEM: %+v, rest %q", block, rest)
	}
	want := append(append([]byte{1}, k.KEM.PublicKey().Bytes()...), k.Sign.PublicKey().Bytes()...)
	if !bytes.Equal(block.Bytes, want) {
		t.Fatal("public key body is not 1 || KEM public || ML-DSA public")
	}
}

func TestKeyEncodingRoundTrip(t *testing.T) {
	k := newNodeKey(t)
	got, err := identity.ParseNodeKey(identity.MarshalNodeKey(k))
	if err != nil {
		t.Fatal(err)
	}
	sameNodeKey(t, got, k)

	pub, err := identity.ParseNodePublicKey(identity.MarshalNodePublicKey(k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	sameNodePublicKey(t, pub, k.Public())

	ca, err := identity.ParseCAKey(identity.MarshalCAKey(k.Sign))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Seed(), k.Sign.Seed()) {
		t.Fatal("CA key does not round-trip")
	}

	// Surrounding whitespace is tolerated (editors add newlines).
	if _, err := identity.ParseNodeKey(append(identity.MarshalNodeKey(k), "\n\r\n \t"...)); err != nil {
		t.Fatalf("trailing whitespace: %v", err)
	}
}

// rePEM re-encodes a PEM block after letting edit change it.
func rePEM(t *testing.T, data []byte, edit func(*pem.Block)) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	b.Bytes = bytes.Clone(b.Bytes)
	edit(b)
	return pem.EncodeToMemory(b)
}

func TestParseKeyErrors(t *testing.T) {
	k := newNodeKey(t)
	node := identity.MarshalNodeKey(k)
	pub := identity.MarshalNodePublicKey(k.Public())
	ca := identity.MarshalCAKey(k.Sign)

	parsers := map[string]func([]byte) error{
		"node": func(b []byte) error { _, err := identity.ParseNodeKey(b); return err },
		"pub":  func(b []byte) error { _, err := identity.ParseNodePublicKey(b); return err },
		"ca":   func(b []byte) error { _, err := identity.ParseCAKey(b); return err },
	}
	valid := map[string][]byte{"node": node, "pub": pub, "ca": ca}

	for name, parse := range parsers {
		good := valid[name]
		cases := []struct {
			name    string
			data    []byte
			errWant string
		}{
			{"empty", nil, "no PEM block"},
			{"not PEM", []byte("hello"), "no PEM block"},
			{"missing BEGIN line", bytes.Clone(good)[len("-----BEGIN"):], "no PEM block"},
			{"wrong type", rePEM(t, good, func(b *pem.Block) { b.Type = "PRIVATE KEY" }), "PEM block is"},
			{"trailing data", append(bytes.Clone(good), "junk\n"...), "trailing data"},
			{"second block", append(bytes.Clone(good), good...), "trailing data"},
			{"header", rePEM(t, good, func(b *pem.Block) { b.Headers = map[string]string{"Proc-Type": "4,ENCRYPTED"} }), "headers"},
			{"version 0", rePEM(t, good, func(b *pem.Block) { b.Bytes[0] = 0 }), "version"},
			{"version 2", rePEM(t, good, func(b *pem.Block) { b.Bytes[0] = 2 }), "version"},
			{"short body", rePEM(t, good, func(b *pem.Block) { b.Bytes = b.Bytes[:len(b.Bytes)-1] }), "bytes"},
			{"long body", rePEM(t, good, func(b *pem.Block) { b.Bytes = append(b.Bytes, 0) }), "bytes"},
			{"version only", rePEM(t, good, func(b *pem.Block) { b.Bytes = b.Bytes[:1] }), "bytes"},
		}
		// Each parser refuses the other formats.
		for other, data := range valid {
			if other != name {
				cases = append(cases, struct {
					name    string
					data    []byte
					errWant string
				}{"type " + other, data, "PEM block is"})
			}
		}
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				err := parse(tc.data)
				if err == nil {
					t.Fatal("accepted")
				}
				if !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("error %q does not mention %q", err, tc.errWant)
				}
			})
		}
		if err := parse(good); err != nil {
			t.Fatalf("%s: valid encoding rejected after the cases: %v", name, err)
		}
	}

	// A public key file of the right length holding an invalid ML-KEM key is refused.
	bad := rePEM(t, pub, func(b *pem.Block) { b.Bytes[1] = 0xff; b.Bytes[2] |= 0x0f })
	if _, err := identity.ParseNodePublicKey(bad); err == nil {
		t.Fatal("public key file with an invalid KEM key accepted")
	}
}

func TestNodeKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	k := newNodeKey(t)
	if err := identity.WriteNodeKeyFile(path, k, false); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
	got, err := identity.LoadNodeKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameNodeKey(t, got, k)

	// No overwrite without the flag; the first key stays.
	k2 := newNodeKey(t)
	err = identity.WriteNodeKeyFile(path, k2, false)
	if !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if got, err = identity.LoadNodeKeyFile(path); err != nil {
		t.Fatal(err)
	}
	sameNodeKey(t, got, k)

	// With it, the file is replaced and keeps mode 0600.
	if err := identity.WriteNodeKeyFile(path, k2, true); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
	if got, err = identity.LoadNodeKeyFile(path); err != nil {
		t.Fatal(err)
	}
	sameNodeKey(t, got, k2)
	checkOnlyFiles(t, dir, "node.key")
}

func TestNodePublicKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.pub")
	k := newNodeKey(t)
	if err := identity.WriteNodePublicKeyFile(path, k.Public(), false); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o644)
	got, err := identity.LoadNodePublicKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameNodePublicKey(t, got, k.Public())
	if err := identity.WriteNodePublicKeyFile(path, newNodeKey(t).Public(), false); !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	// Loading a private key file as a public key file fails with the path in the error.
	priv := filepath.Join(dir, "node.key")
	if err := identity.WriteNodeKeyFile(priv, k, false); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadNodePublicKeyFile(priv); err == nil || !strings.Contains(err.Error(), priv) {
		t.Fatalf("private key loaded as public key: %v", err)
	}
}

func TestCAKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	k := newSigningKey(t)
	if err := identity.WriteCAKeyFile(path, k, false); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
	got, err := identity.LoadCAKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Seed(), k.Seed()) {
		t.Fatal("CA key does not round-trip")
	}
	if err := identity.WriteCAKeyFile(path, newSigningKey(t), false); !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadCAKeyFile(path); err == nil || !strings.Contains(err.Error(), "chmod") {
		t.Fatalf("group-readable CA key: %v, want a chmod hint", err)
	}
	// A node key file is not a CA key file.
	node := filepath.Join(dir, "node.key")
	if err := identity.WriteNodeKeyFile(node, newNodeKey(t), false); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadCAKeyFile(node); err == nil || !strings.Contains(err.Error(), node) {
		t.Fatalf("node key loaded as CA key: %v", err)
	}
}

func TestLoadNodeKeyFileRefusesLooseModes(t *testing.T) {
	k := newNodeKey(t)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o620, 0o602, 0o666, 0o700, 0o400, 0o600} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "node.key")
			if err := identity.WriteNodeKeyFile(path, k, false); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := identity.LoadNodeKeyFile(path)
			if mode&0o077 == 0 {
				if err != nil {
					t.Fatalf("mode %04o refused: %v", mode, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("mode %04o accepted", mode)
			}
			if !strings.Contains(err.Error(), "chmod 600") || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q should name the file and suggest chmod 600", err)
			}
		})
	}
}

func TestLoadNodeKeyFileRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "keydir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := identity.LoadNodeKeyFile(sub)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v, want a not-a-regular-file error", err)
	}
	if _, err := identity.LoadNodeKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(os.DevNull); err == nil {
		if _, err := identity.LoadNodeKeyFile(os.DevNull); err == nil {
			t.Fatalf("%s accepted", os.DevNull)
		}
	}
}

func TestLoadNodeKeyFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	k := newNodeKey(t)
	// A valid key padded with trailing newlines up to exactly the limit still loads ...
	data := identity.MarshalNodeKey(k)
	data = append(data, bytes.Repeat([]byte{'\n'}, identity.MaxKeyFileSize-len(data))...)
	path := filepath.Join(dir, "node.key")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := identity.LoadNodeKeyFile(path)
	if err != nil {
		t.Fatalf("%d-byte file: %v", len(data), err)
	}
	sameNodeKey(t, got, k)

	// ... one byte more is refused before it is parsed.
	big := filepath.Join(dir, "big.key")
	if err := os.WriteFile(big, append(data, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.LoadNodeKeyFile(big); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := identity.LoadNodePublicKeyFile(big); err == nil {
		t.Fatal("oversized public key file accepted")
	}
}

func TestLoadNodeKeyFileBadContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := identity.LoadNodeKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("garbage key file: %v, want an error naming the file", err)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != want {
		t.Fatalf("%s has mode %v, want regular file %v", path, fi.Mode(), want)
	}
}

// checkOnlyFiles fails if dir holds anything but names (for instance a leftover temporary file).
func checkOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}
