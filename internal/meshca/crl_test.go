package meshca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/wire"
)

// crlEncoding returns l's to-be-signed bytes and a signature field, without sorting or validating l.
func crlEncoding(l *RevocationList, sig []byte) []byte { return wire.AppendBytes16(l.tbs(), sig) }

// crlCountOffsets returns the offsets of the serial count and key count of an encoded list.
func crlCountOffsets(l *RevocationList) (serialCount, keyCount int) {
	serialCount = 4 + 1 + 32 + 1 + len(l.TrustDomain) + 8 + 8
	keyCount = serialCount + 4 + serialSize*len(l.Serials)
	return
}

func TestParseRevocationListTruncatedAtEveryLength(t *testing.T) {
	f := getFixture(t)
	enc := f.crl.Bytes()
	for n := range len(enc) {
		if _, err := ParseRevocationList(enc[:n]); !errors.Is(err, ErrMalformedCRL) {
			t.Fatalf("truncated to %d of %d bytes: err = %v", n, len(enc), err)
		}
	}
}

func TestParseRevocationListNonCanonical(t *testing.T) {
	f := getFixture(t)
	base := *f.crl
	sig := base.Signature
	if !bytes.Equal(crlEncoding(&base, sig), f.crl.Bytes()) {
		t.Fatal("control encoding differs from the genuine one")
	}
	enc := f.crl.Bytes()
	variant := func(mutate func(l *RevocationList)) []byte {
		l := base
		l.Serials = append([]Serial(nil), base.Serials...)
		l.Keys = append([]identity.KeyID(nil), base.Keys...)
		mutate(&l)
		return crlEncoding(&l, sig)
	}
	set := func(off int, v byte) []byte { b := bytes.Clone(enc); b[off] = v; return b }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"wrong magic", append([]byte("X6CT"), enc[4:]...), "magic"},
		{"version 0", set(4, 0), "version"},
		{"version 2", set(4, 2), "version"},
		{"trailing byte", append(bytes.Clone(enc), 0), "trailing"},
		{"unsorted serials", variant(func(l *RevocationList) { l.Serials[0], l.Serials[1] = l.Serials[1], l.Serials[0] }), "sorted"},
		{"duplicate serials", variant(func(l *RevocationList) { l.Serials[1] = l.Serials[0] }), "sorted"},
		{"unsorted keys", variant(func(l *RevocationList) { l.Keys[0], l.Keys[1] = l.Keys[1], l.Keys[0] }), "sorted"},
		{"duplicate keys", variant(func(l *RevocationList) { l.Keys = append(l.Keys, l.Keys[1]) }), "sorted"},
		{"bad trust domain", variant(func(l *RevocationList) { l.TrustDomain = "UPPER" }), "trust domain"},
		{"empty trust domain", variant(func(l *RevocationList) { l.TrustDomain = "" }), "trust domain"},
		{"short signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), sig[:len(sig)-1]), "signature"},
		{"no signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), nil), "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRevocationList(tc.data)
			if !errors.Is(err, ErrMalformedCRL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformedCRL mentioning %q", err, tc.want)
			}
		})
	}
}

func TestSignRevocationListRefusesInvalid(t *testing.T) {
	f := getFixture(t)
	l := &RevocationList{Issuer: f.crl.Issuer, TrustDomain: "Bad Domain"}
	if err := l.sign(f.caKey); err == nil {
		t.Fatal("list with an invalid trust domain signed")
	}
}

// TestParseRevocationListHugeCounts checks that count fields larger than the data fail before
// anything proportional to the count is allocated.
func TestParseRevocationListHugeCounts(t *testing.T) {
	f := getFixture(t)
	enc := f.crl.Bytes()
	serialOff, keyOff := crlCountOffsets(f.crl)
	if got := binary.BigEndian.Uint32(enc[serialOff:]); got != uint32(len(f.crl.Serials)) {
		t.Fatalf("serial count at %d is %d, want %d", serialOff, got, len(f.crl.Serials))
	}
	if got := binary.BigEndian.Uint32(enc[keyOff:]); got != uint32(len(f.crl.Keys)) {
		t.Fatalf("key count at %d is %d, want %d", keyOff, got, len(f.crl.Keys))
	}
	withCount := func(off int, n uint32) []byte {
		b := bytes.Clone(enc)
		binary.BigEndian.PutUint32(b[off:], n)
		return b
	}
	cases := map[string][]byte{
		"serials 2^32-1":        withCount(serialOff, 0xffffffff),
		"serials 2^31":          withCount(serialOff, 0x80000000),
		"serials MaxRevoked":    withCount(serialOff, MaxRevoked),
		"serials MaxRevoked+1":  withCount(serialOff, MaxRevoked+1),
		"serials one too many":  withCount(serialOff, uint32(len(f.crl.Serials))+1),
		"keys 2^32-1":           withCount(keyOff, 0xffffffff),
		"keys 2^31":             withCount(keyOff, 0x80000000),
		"keys 2^28 (overflows)": withCount(keyOff, 1<<28),
		"keys MaxRevoked":       withCount(keyOff, MaxRevoked),
		"keys one too many":     withCount(keyOff, uint32(len(f.crl.Keys))+1),
		"keys one too few":      withCount(keyOff, uint32(len(f.crl.Keys))-1),
	}
	for name, data := range cases {
		const runs = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := ParseRevocationList(data); !errors.Is(err, ErrMalformedCRL) {
				t.Fatalf("%s: err = %v", name, err)
			}
		}
		runtime.ReadMemStats(&after)
		// A MaxRevoked count would cost 1.6 MB (serials) or 3.2 MB (keys) per parse if allocated. The
		// bound leaves room for what other goroutines of the test binary allocate meanwhile
		// (TotalAlloc is process-wide).
		if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 512<<10 {
			t.Errorf("%s: %d bytes allocated per parse", name, perRun)
		}
	}
}

func TestParseRevocationListSizeLimits(t *testing.T) {
	f := getFixture(t)
	big := make([]byte, MaxCRLSize+1)
	copy(big, f.crl.Bytes())
	if _, err := ParseRevocationList(big); !errors.Is(err, ErrMalformedCRL) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized list: err = %v", err)
	}

	// More than MaxRevoked entries in total, each part within its own bound and present in the data.
	l := *f.crl
	l.Serials = make([]Serial, MaxRevoked/2+1)
	for i := range l.Serials {
		binary.BigEndian.PutUint32(l.Serials[i][:], uint32(i))
	}
	l.Keys = make([]identity.KeyID, MaxRevoked/2)
	for i := range l.Keys {
		binary.BigEndian.PutUint32(l.Keys[i][:], uint32(i))
	}
	data := crlEncoding(&l, f.crl.Signature)
	if len(data) > MaxCRLSize {
		t.Fatalf("test list is %d bytes, over MaxCRLSize %d", len(data), MaxCRLSize)
	}
	if _, err := ParseRevocationList(data); !errors.Is(err, ErrMalformedCRL) || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("list with %d entries: err = %v", len(l.Serials)+len(l.Keys), err)
	}
	// One entry fewer is within bounds: it parses (the signature is not checked by Parse).
	l.Keys = l.Keys[:len(l.Keys)-1]
	if _, err := ParseRevocationList(crlEncoding(&l, f.crl.Signature)); err != nil {
		t.Fatalf("list with MaxRevoked entries: %v", err)
	}
	if err := l.sign(f.caKey); err != nil {
		t.Fatalf("signing a list with MaxRevoked entries: %v", err)
	}
	l.Keys = append(l.Keys, identity.KeyID{0xff})
	if err := l.sign(f.caKey); err == nil {
		t.Fatal("signed a list with more than MaxRevoked entries")
	}
}
