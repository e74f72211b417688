package identity_test

// Known-answer tests: they prove that this package calls crypto/mlkem, crypto/mldsa and crypto/hpke the
// way the standards say, using a small subset of public test vectors kept in testdata/ (see
// testdata/README.md for where each file comes from).

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/mldsa"
	"crypto/mlkem"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"x0tta6bl4/internal/identity"
)

// hexBytes decodes a JSON hex string; JSON null (or an absent field) stays nil.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*h = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("bad hex %q: %w", s, err)
	}
	*h = b
	return nil
}

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// wantValid maps a Wycheproof result to whether the operation must succeed.
func wantValid(t *testing.T, result string) bool {
	t.Helper()
	switch result {
	case "valid":
		return true
	case "invalid":
		return false
	}
	t.Fatalf("unexpected result %q (only valid/invalid vectors are kept)", result)
	return false
}

// coverage makes sure a vector file exercised both outcomes, so a test cannot pass vacuously.
type coverage struct{ valid, invalid int }

func (c *coverage) add(valid bool) {
	if valid {
		c.valid++
	} else {
		c.invalid++
	}
}

func (c coverage) check(t *testing.T, wantTotal int) {
	t.Helper()
	if c.valid == 0 || c.invalid == 0 || c.valid+c.invalid != wantTotal {
		t.Fatalf("ran %d valid and %d invalid vectors, want %d in total with both kinds", c.valid, c.invalid, wantTotal)
	}
}

type mlkemTestFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		ParameterSet string `json:"parameterSet"`
		Tests        []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Seed    hexBytes `json:"seed"`
			Ek      hexBytes `json:"ek"`
			Dk      hexBytes `json:"dk"`
			C       hexBytes `json:"c"`
			K       hexBytes `json:"K"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestMLKEM768Wycheproof checks ML-KEM-768 seed → encapsulation key and decapsulation, including the
// implicit-rejection vectors (random and bit-flipped ciphertexts, the strcmp case) whose expected K is
// the rejection secret, and wrong-length seeds and ciphertexts that must fail.
func TestMLKEM768Wycheproof(t *testing.T) {
	var f mlkemTestFile
	loadVectors(t, "mlkem_768_test.json", &f)
	var cov coverage
	for _, g := range f.TestGroups {
		if g.ParameterSet != "ML-KEM-768" {
			t.Fatalf("unexpected parameter set %q", g.ParameterSet)
		}
		for _, tc := range g.Tests {
			valid := wantValid(t, tc.Result)
			cov.add(valid)
			t.Run(fmt.Sprintf("tcId%d", tc.TcID), func(t *testing.T) {
				dk, err := mlkem.NewDecapsulationKey768(tc.Seed)
				if err != nil {
					if valid {
						t.Fatalf("NewDecapsulationKey768: %v", err)
					}
					return
				}
				if tc.Ek != nil && !bytes.Equal(dk.EncapsulationKey().Bytes(), tc.Ek) {
					t.Fatalf("encapsulation key mismatch (%s)", tc.Comment)
				}
				k, err := dk.Decapsulate(tc.C)
				if !valid {
					if err == nil {
						t.Fatalf("Decapsulate of %d-byte ciphertext succeeded, want error (%s)", len(tc.C), tc.Comment)
					}
					return
				}
				if err != nil {
					t.Fatalf("Decapsulate: %v", err)
				}
				if !bytes.Equal(k, tc.K) {
					t.Fatalf("shared secret %x, want %x (%s)", k, tc.K, tc.Comment)
				}
			})
		}
	}
	cov.check(t, f.NumberOfTests)
}

// TestMLKEM768KeyGenWycheproof checks ML-KEM-768 key generation from the 64-byte d || z seed.
func TestMLKEM768KeyGenWycheproof(t *testing.T) {
	var f mlkemTestFile
	loadVectors(t, "mlkem_768_keygen_seed_test.json", &f)
	n := 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			n++
			if !wantValid(t, tc.Result) {
				t.Fatalf("tcId %d: unexpected invalid keygen vector", tc.TcID)
			}
			t.Run(fmt.Sprintf("tcId%d", tc.TcID), func(t *testing.T) {
				dk, err := mlkem.NewDecapsulationKey768(tc.Seed)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(dk.EncapsulationKey().Bytes(), tc.Ek) {
					t.Fatal("encapsulation key mismatch")
				}
				if !bytes.Equal(dk.Bytes(), tc.Seed) {
					t.Fatal("decapsulation key does not round-trip to its seed")
				}
				// The expanded dk is dk_PKE || ek || H(ek) || z (FIPS 203, Algorithm 16): check that the
				// seed really is d || z and that the vector's ek and dk belong together.
				const dkPKESize = 1152
				ekInDK := tc.Dk[dkPKESize : dkPKESize+mlkem.EncapsulationKeySize768]
				h := tc.Dk[dkPKESize+mlkem.EncapsulationKeySize768 : len(tc.Dk)-32]
				z := tc.Dk[len(tc.Dk)-32:]
				if want := sha3.Sum256(tc.Ek); !bytes.Equal(ekInDK, tc.Ek) || !bytes.Equal(h, want[:]) || !bytes.Equal(z, tc.Seed[32:]) {
					t.Fatal("vector dk is not dk_PKE || ek || H(ek) || z")
				}
			})
		}
	}
	if n == 0 || n != f.NumberOfTests {
		t.Fatalf("ran %d vectors, file says %d", n, f.NumberOfTests)
	}
}

type mldsaVerifyFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKey hexBytes `json:"publicKey"`
		Tests     []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     hexBytes `json:"msg"`
			Ctx     hexBytes `json:"ctx"` // absent means the empty context
			Sig     hexBytes `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestMLDSA65VerifyWycheproof runs ML-DSA-65 verification vectors (valid signatures with empty, absent,
// non-empty and 255-byte contexts; a too-long context; wrong signature and public key lengths; modified
// signatures) through both crypto/mldsa and this package's ParseVerifyKey/Verify.
func TestMLDSA65VerifyWycheproof(t *testing.T) {
	var f mldsaVerifyFile
	loadVectors(t, "mldsa_65_verify_test.json", &f)
	if f.Algorithm != "ML-DSA-65" {
		t.Fatalf("algorithm %q", f.Algorithm)
	}
	var cov coverage
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			valid := wantValid(t, tc.Result)
			cov.add(valid)
			t.Run(fmt.Sprintf("tcId%d", tc.TcID), func(t *testing.T) {
				ctx := string(tc.Ctx)

				pk, libErr := mldsa.NewPublicKey(mldsa.MLDSA65(), g.PublicKey)
				vk, ourErr := identity.ParseVerifyKey(g.PublicKey)
				if (libErr == nil) != (ourErr == nil) {
					t.Fatalf("crypto/mldsa and ParseVerifyKey disagree: %v vs %v", libErr, ourErr)
				}
				if ourErr != nil {
					if valid {
						t.Fatalf("ParseVerifyKey: %v", ourErr)
					}
					return
				}
				if !bytes.Equal(vk.Bytes(), g.PublicKey) || !vk.MLDSA().Equal(pk) {
					t.Fatal("public key does not round-trip")
				}

				libErr = mldsa.Verify(pk, tc.Msg, tc.Sig, &mldsa.Options{Context: ctx})
				ourErr = vk.Verify(ctx, tc.Msg, tc.Sig)
				if valid && (libErr != nil || ourErr != nil) {
					t.Fatalf("valid signature rejected (%s): crypto/mldsa: %v; Verify: %v", tc.Comment, libErr, ourErr)
				}
				if !valid && (libErr == nil || ourErr == nil) {
					t.Fatalf("invalid signature accepted (%s): crypto/mldsa: %v; Verify: %v", tc.Comment, libErr, ourErr)
				}
			})
		}
	}
	cov.check(t, f.NumberOfTests)
}

type mldsaSignSeedFile struct {
	Algorithm     string `json:"algorithm"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []struct {
		PrivateSeed hexBytes `json:"privateSeed"`
		PublicKey   hexBytes `json:"publicKey"` // null for malformed seeds
		Tests       []struct {
			TcID    int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     hexBytes `json:"msg"`
			Ctx     hexBytes `json:"ctx"`
			Sig     hexBytes `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestMLDSA65SignSeedWycheproof checks seed → public key, deterministic signing (exact signature bytes,
// with and without a context), that our hedged Sign produces signatures that verify, and that a too-long
// context and a wrong-length seed are refused.
func TestMLDSA65SignSeedWycheproof(t *testing.T) {
	var f mldsaSignSeedFile
	loadVectors(t, "mldsa_65_sign_seed_test.json", &f)
	if f.Algorithm != "ML-DSA-65" {
		t.Fatalf("algorithm %q", f.Algorithm)
	}
	var cov coverage
	deterministic := 0
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			valid := wantValid(t, tc.Result)
			cov.add(valid)
			randomized := slices.Contains(tc.Flags, "Randomized")
			if valid && !randomized {
				deterministic++
			}
			t.Run(fmt.Sprintf("tcId%d", tc.TcID), func(t *testing.T) {
				ctx := string(tc.Ctx)
				opts := &mldsa.Options{Context: ctx}

				sk, libErr := mldsa.NewPrivateKey(mldsa.MLDSA65(), g.PrivateSeed)
				k, ourErr := identity.NewSigningKey(g.PrivateSeed)
				if (libErr == nil) != (ourErr == nil) {
					t.Fatalf("crypto/mldsa and NewSigningKey disagree: %v vs %v", libErr, ourErr)
				}
				if ourErr != nil {
					if valid {
						t.Fatalf("NewSigningKey: %v", ourErr)
					}
					return
				}
				if !bytes.Equal(sk.PublicKey().Bytes(), g.PublicKey) || !bytes.Equal(k.PublicKey().Bytes(), g.PublicKey) {
					t.Fatal("public key derived from seed does not match the vector")
				}
				if !bytes.Equal(k.Seed(), g.PrivateSeed) {
					t.Fatal("Seed does not return the seed")
				}

				ours, ourErr := k.Sign(ctx, tc.Msg)
				if !valid {
					if ourErr == nil {
						t.Fatalf("Sign succeeded, want error (%s)", tc.Comment)
					}
					if _, err := sk.SignDeterministic(tc.Msg, opts); err == nil {
						t.Fatalf("SignDeterministic succeeded, want error (%s)", tc.Comment)
					}
					return
				}
				if ourErr != nil {
					t.Fatalf("Sign: %v", ourErr)
				}
				if err := mldsa.Verify(sk.PublicKey(), tc.Msg, ours, opts); err != nil {
					t.Fatalf("our signature does not verify with crypto/mldsa: %v", err)
				}
				if err := k.PublicKey().Verify(ctx, tc.Msg, tc.Sig); err != nil {
					t.Fatalf("vector signature does not verify with Verify: %v", err)
				}

				if randomized {
					return // the hedged signature cannot be reproduced through the public API
				}
				det, err := k.MLDSA().SignDeterministic(tc.Msg, opts)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(det, tc.Sig) {
					t.Fatalf("deterministic signature differs from the vector (%s)", tc.Comment)
				}
			})
		}
	}
	cov.check(t, f.NumberOfTests)
	if deterministic < 2 {
		t.Fatalf("only %d deterministic vectors", deterministic)
	}
}

type hpkeVector struct {
	Mode           uint16   `json:"mode"`
	KEM            uint16   `json:"kem_id"`
	KDF            uint16   `json:"kdf_id"`
	AEAD           uint16   `json:"aead_id"`
	Info           hexBytes `json:"info"`
	IkmR           hexBytes `json:"ikmR"`
	SkRm           hexBytes `json:"skRm"`
	PkRm           hexBytes `json:"pkRm"`
	Enc            hexBytes `json:"enc"`
	SharedSecret   hexBytes `json:"shared_secret"`
	SuiteID        hexBytes `json:"suite_id"`
	Key            hexBytes `json:"key"`
	BaseNonce      hexBytes `json:"base_nonce"`
	ExporterSecret hexBytes `json:"exporter_secret"`
	Encryptions    []struct {
		Aad hexBytes `json:"aad"`
		Ct  hexBytes `json:"ct"`
		Pt  hexBytes `json:"pt"`
	} `json:"encryptions"`
	Exports []struct {
		Context hexBytes `json:"exporter_context"`
		L       int      `json:"L"`
		Value   hexBytes `json:"exported_value"`
	} `json:"exports"`
}

// The HPKE identifiers our wrapper uses: KEM MLKEM768-X25519, KDF HKDF-SHA256, the export-only AEAD.
const (
	kemIDMLKEM768X25519 = 0x647a
	kdfIDHKDFSHA256     = 0x0001
	aeadIDExportOnly    = 0xffff
)

// kemSharedSecretLabel pins the exporter context of identity's KEM secret: changing it changes the wire
// protocol, so it is spelled out here rather than taken from the package.
const kemSharedSecretLabel = "x0tta6bl4 kem shared secret v1"

// rfc9180 is an independent implementation of the RFC 9180 base-mode key schedule for HKDF-SHA256,
// used to check both the vectors' intermediate values and what identity's Decapsulate derives.
type rfc9180 struct{ suiteID []byte }

func newRFC9180(kem, kdf, aead uint16) rfc9180 {
	s := []byte("HPKE")
	s = binary.BigEndian.AppendUint16(s, kem)
	s = binary.BigEndian.AppendUint16(s, kdf)
	s = binary.BigEndian.AppendUint16(s, aead)
	return rfc9180{suiteID: s}
}

func (h rfc9180) labeledExtract(t *testing.T, salt []byte, label string, ikm []byte) []byte {
	t.Helper()
	in := append(append(append([]byte("HPKE-v1"), h.suiteID...), label...), ikm...)
	prk, err := hkdf.Extract(sha256.New, in, salt)
	if err != nil {
		t.Fatal(err)
	}
	return prk
}

func (h rfc9180) labeledExpand(t *testing.T, prk []byte, label string, info []byte, l int) []byte {
	t.Helper()
	in := binary.BigEndian.AppendUint16(nil, uint16(l))
	in = append(append(append(append(in, "HPKE-v1"...), h.suiteID...), label...), info...)
	out, err := hkdf.Expand(sha256.New, prk, string(in), l)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// keySchedule returns the base-mode (no PSK) secret and key_schedule_context (RFC 9180, section 5.1).
func (h rfc9180) keySchedule(t *testing.T, sharedSecret, info []byte) (secret, context []byte) {
	t.Helper()
	pskIDHash := h.labeledExtract(t, nil, "psk_id_hash", nil)
	infoHash := h.labeledExtract(t, nil, "info_hash", info)
	context = append(append([]byte{0x00}, pskIDHash...), infoHash...)
	secret = h.labeledExtract(t, sharedSecret, "secret", nil)
	return secret, context
}

func (h rfc9180) export(t *testing.T, sharedSecret, info, exporterContext []byte, l int) []byte {
	t.Helper()
	secret, ctx := h.keySchedule(t, sharedSecret, info)
	exporterSecret := h.labeledExpand(t, secret, "exp", ctx, sha256.Size)
	return h.labeledExpand(t, exporterSecret, "sec", exporterContext, l)
}

// xwingDecapsulate recomputes the MLKEM768-X25519 (X-Wing) shared secret from crypto/mlkem, crypto/ecdh
// and crypto/sha3: the 32-byte seed expands with SHAKE256 into a 64-byte ML-KEM seed and an X25519 key;
// ss = SHA3-256(ss_M || ss_X || ct_X || pk_X || "\./" "/^\"). It also returns the public key pk_M || pk_X.
func xwingDecapsulate(t *testing.T, seed, enc []byte) (ss, pub []byte) {
	t.Helper()
	x := sha3.NewSHAKE256()
	x.Write(seed)
	expanded := make([]byte, 96)
	x.Read(expanded)
	dkM, err := mlkem.NewDecapsulationKey768(expanded[:64])
	if err != nil {
		t.Fatal(err)
	}
	skX, err := ecdh.X25519().NewPrivateKey(expanded[64:])
	if err != nil {
		t.Fatal(err)
	}
	ctM, ctX := enc[:mlkem.CiphertextSize768], enc[mlkem.CiphertextSize768:]
	ssM, err := dkM.Decapsulate(ctM)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ecdh.X25519().NewPublicKey(ctX)
	if err != nil {
		t.Fatal(err)
	}
	ssX, err := skX.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	h := sha3.New256()
	h.Write(ssM)
	h.Write(ssX)
	h.Write(ctX)
	h.Write(skX.PublicKey().Bytes())
	h.Write([]byte(`\./` + `/^\`))
	pub = append(dkM.EncapsulationKey().Bytes(), skX.PublicKey().Bytes()...)
	return h.Sum(nil), pub
}

// TestHPKEPQVectors uses the MLKEM768-X25519 entry of the draft-ietf-hpke-pq vectors: it checks key
// derivation (ikmR → skRm → pkRm) in crypto/hpke and in NewKEMPrivateKey, the X-Wing shared secret,
// the library's exports and decryption from the vector's enc, and finally that identity's Decapsulate
// equals the RFC 9180 export-only key schedule applied to the vector's shared secret.
func TestHPKEPQVectors(t *testing.T) {
	var vectors []hpkeVector
	loadVectors(t, "hpke-pq-mlkem768x25519.json", &vectors)
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for i, v := range vectors {
		t.Run(fmt.Sprintf("%d/kdf%04x/aead%04x", i, v.KDF, v.AEAD), func(t *testing.T) {
			if v.Mode != 0 || v.KEM != kemIDMLKEM768X25519 || v.KDF != kdfIDHKDFSHA256 {
				t.Fatalf("unexpected suite mode %d kem %04x kdf %04x", v.Mode, v.KEM, v.KDF)
			}
			if len(v.SkRm) != identity.KEMSeedSize || len(v.PkRm) != identity.KEMPublicKeySize ||
				len(v.Enc) != identity.KEMCiphertextSize || len(v.SharedSecret) != identity.KEMSecretSize {
				t.Fatalf("vector sizes sk %d pk %d enc %d ss %d do not match the package constants",
					len(v.SkRm), len(v.PkRm), len(v.Enc), len(v.SharedSecret))
			}
			kem := hpke.MLKEM768X25519()
			if kem.ID() != v.KEM || hpke.HKDFSHA256().ID() != kdfIDHKDFSHA256 || hpke.ExportOnly().ID() != aeadIDExportOnly {
				t.Fatal("crypto/hpke identifiers differ from the ones this test assumes")
			}

			// Key derivation in the library.
			derived, err := kem.DeriveKeyPair(v.IkmR)
			if err != nil {
				t.Fatal(err)
			}
			if seed, err := derived.Bytes(); err != nil || !bytes.Equal(seed, v.SkRm) {
				t.Fatalf("DeriveKeyPair(ikmR) seed %x (%v), want skRm %x", seed, err, v.SkRm)
			}
			if !bytes.Equal(derived.PublicKey().Bytes(), v.PkRm) {
				t.Fatal("DeriveKeyPair(ikmR) public key differs from pkRm")
			}
			sk, err := kem.NewPrivateKey(v.SkRm)
			if err != nil {
				t.Fatal(err)
			}

			// Our wrapper: the seed is skRm, and it expands to pkRm.
			ours, err := identity.NewKEMPrivateKey(v.SkRm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.PublicKey().Bytes(), v.PkRm) {
				t.Fatal("NewKEMPrivateKey(skRm) public key differs from pkRm")
			}
			if !bytes.Equal(ours.Seed(), v.SkRm) {
				t.Fatal("Seed differs from skRm")
			}
			pub, err := identity.ParseKEMPublicKey(v.PkRm)
			if err != nil || !bytes.Equal(pub.Bytes(), v.PkRm) {
				t.Fatalf("ParseKEMPublicKey(pkRm): %v", err)
			}

			// The X-Wing combiner, recomputed from its parts.
			ss, xwPub := xwingDecapsulate(t, v.SkRm, v.Enc)
			if !bytes.Equal(xwPub, v.PkRm) {
				t.Fatal("X-Wing public key pk_M || pk_X differs from pkRm")
			}
			if !bytes.Equal(ss, v.SharedSecret) {
				t.Fatalf("X-Wing shared secret %x, want %x", ss, v.SharedSecret)
			}

			// Our RFC 9180 key schedule against the vector's intermediate values.
			ks := newRFC9180(v.KEM, v.KDF, v.AEAD)
			if !bytes.Equal(ks.suiteID, v.SuiteID) {
				t.Fatalf("suite_id %x, want %x", ks.suiteID, v.SuiteID)
			}
			secret, ctx := ks.keySchedule(t, v.SharedSecret, v.Info)
			if got := ks.labeledExpand(t, secret, "exp", ctx, sha256.Size); !bytes.Equal(got, v.ExporterSecret) {
				t.Fatalf("exporter_secret %x, want %x", got, v.ExporterSecret)
			}
			if got := ks.labeledExpand(t, secret, "key", ctx, len(v.Key)); !bytes.Equal(got, v.Key) {
				t.Fatalf("key %x, want %x", got, v.Key)
			}
			if got := ks.labeledExpand(t, secret, "base_nonce", ctx, len(v.BaseNonce)); !bytes.Equal(got, v.BaseNonce) {
				t.Fatalf("base_nonce %x, want %x", got, v.BaseNonce)
			}

			// The library, decapsulating the vector's enc with the vector's suite.
			kdf, err := hpke.NewKDF(v.KDF)
			if err != nil {
				t.Fatal(err)
			}
			aead, err := hpke.NewAEAD(v.AEAD)
			if err != nil {
				t.Fatal(err)
			}
			r, err := hpke.NewRecipient(v.Enc, sk, kdf, aead, v.Info)
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Exports) == 0 {
				t.Fatal("vector has no exports")
			}
			for _, e := range v.Exports {
				got, err := r.Export(string(e.Context), e.L)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, e.Value) {
					t.Fatalf("Export(%x, %d) = %x, want %x", e.Context, e.L, got, e.Value)
				}
				if want := ks.export(t, v.SharedSecret, v.Info, e.Context, e.L); !bytes.Equal(want, e.Value) {
					t.Fatalf("RFC 9180 export(%x, %d) = %x, want %x", e.Context, e.L, want, e.Value)
				}
			}
			if aead.ID() != aeadIDExportOnly {
				for _, e := range v.Encryptions[:1] {
					pt, err := r.Open(e.Aad, e.Ct)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(pt, e.Pt) {
						t.Fatalf("Open = %x, want %x", pt, e.Pt)
					}
				}
			}

			// Our wrapper: Decapsulate is the export-only HPKE suite's exporter over the same X-Wing
			// secret, under our label.
			exportOnly := newRFC9180(kemIDMLKEM768X25519, kdfIDHKDFSHA256, aeadIDExportOnly)
			want := exportOnly.export(t, v.SharedSecret, v.Info, []byte(kemSharedSecretLabel), identity.KEMSecretSize)
			got, err := ours.Decapsulate(v.Enc, v.Info)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Decapsulate = %x, want %x", got, want)
			}
			if other, err := ours.Decapsulate(v.Enc, nil); err != nil || bytes.Equal(other, got) {
				t.Fatalf("Decapsulate with empty info: %x, %v; want a different secret", other, err)
			}
		})
	}
}
