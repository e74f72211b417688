package meshca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAdvisoriesRoundTripAndVerify(t *testing.T) {
	f := getFixture(t)
	a, err := f.ca.SignAdvisories(7, []Advisory{
		{Subject: "n2", Multiplier: 8, Confidence: 0.91234, Reason: "greyhole"},
		{Subject: "bravo", Multiplier: 2, Confidence: 1, Reason: "operator: maintenance"},
	}, f.now, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a.Entries[0].Subject != "bravo" || a.Entries[1].Confidence != 0.9123 {
		t.Fatalf("entries not sorted or rounded: %+v", a.Entries)
	}
	b, err := ParseAdvisories(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := b.Find("n2"); !ok || e.Multiplier != 8 || e.Reason != "greyhole" {
		t.Fatalf("Find n2: %+v %v", e, ok)
	}
	if _, ok := b.Find("charlie"); ok {
		t.Fatal("found an entry that is not there")
	}
	v := newTestVerifier(t, f.ca.Certificate())
	if err := v.CheckAdvisories(b, f.now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := v.CheckAdvisories(b, f.now.Add(2*time.Minute)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired list accepted: %v", err)
	}
	if err := newTestVerifier(t, f.otherCA.Certificate()).CheckAdvisories(b, f.now); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("list of another CA: %v", err)
	}
	// A flipped bit anywhere in the signed part fails the signature (or the parse).
	raw := bytes.Clone(a.Bytes())
	raw[60] ^= 1
	if c, err := ParseAdvisories(raw); err == nil {
		if err := v.CheckAdvisories(c, f.now); err == nil {
			t.Fatal("tampered list verified")
		}
	}
}

func TestAdvisoriesSequence(t *testing.T) {
	f := getFixture(t)
	sign := func(seq uint64, es ...Advisory) *Advisories {
		a, err := f.ca.SignAdvisories(seq, es, f.now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	one := sign(5, Advisory{Subject: "n2", Multiplier: 8, Confidence: 0.9, Reason: "greyhole"})
	withdrawn := sign(6)
	if ok, err := AdvisoriesSupersede(nil, one); !ok || err != nil {
		t.Fatalf("first list: %v %v", ok, err)
	}
	if ok, err := AdvisoriesSupersede(one, withdrawn); !ok || err != nil {
		t.Fatalf("withdrawal: %v %v", ok, err)
	}
	if ok, err := AdvisoriesSupersede(withdrawn, one); ok || !errors.Is(err, ErrAdvisoriesRollback) {
		t.Fatalf("replay of the older list: %v %v", ok, err)
	}
	if ok, err := AdvisoriesSupersede(one, one); ok || err != nil {
		t.Fatalf("same list again: %v %v", ok, err)
	}
	if ok, err := AdvisoriesSupersede(one, sign(5)); ok || err == nil {
		t.Fatalf("two lists with one sequence: %v %v", ok, err)
	}
}

func TestAdvisoriesRefused(t *testing.T) {
	f := getFixture(t)
	for _, c := range []struct {
		name     string
		seq      uint64
		es       []Advisory
		lifetime time.Duration
	}{
		{"sequence 0", 0, nil, time.Minute},
		{"no lifetime", 1, nil, 0},
		{"lifetime too long", 1, nil, MaxAdvisoryLifetime + time.Second},
		{"multiplier above the cap", 1, []Advisory{{Subject: "n2", Multiplier: MaxAdvisoryMultiplier + 1, Reason: "x"}}, time.Minute},
		{"multiplier 1", 1, []Advisory{{Subject: "n2", Multiplier: 1, Reason: "x"}}, time.Minute},
		{"duplicate subject", 1, []Advisory{{Subject: "n2", Multiplier: 2, Reason: "x"}, {Subject: "n2", Multiplier: 3, Reason: "y"}}, time.Minute},
		{"bad name", 1, []Advisory{{Subject: "N 2", Multiplier: 2, Reason: "x"}}, time.Minute},
		{"empty reason", 1, []Advisory{{Subject: "n2", Multiplier: 2}}, time.Minute},
		{"control characters", 1, []Advisory{{Subject: "n2", Multiplier: 2, Reason: "a\nb"}}, time.Minute},
	} {
		if _, err := f.ca.SignAdvisories(c.seq, c.es, f.now, c.lifetime); err == nil {
			t.Errorf("%s: signed", c.name)
		}
	}
	many := make([]Advisory, MaxAdvisories+1)
	for i := range many {
		many[i] = Advisory{Subject: "n" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + string(rune('a'+i/26)), Multiplier: 2, Reason: "x"}
	}
	if _, err := f.ca.SignAdvisories(1, many, f.now, time.Minute); err == nil {
		t.Error("more than MaxAdvisories signed")
	}
}

func FuzzParseAdvisories(f *testing.F) {
	fx := getFixture(f)
	a, err := fx.ca.SignAdvisories(3, []Advisory{{Subject: "n2", Multiplier: 8, Confidence: 0.9, Reason: "greyhole"}}, fx.now, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	enc := a.Bytes()
	f.Add(enc)
	f.Add(enc[:len(enc)-1])
	f.Add(enc[:len(enc)/2])
	f.Add(append(bytes.Clone(enc), 0))
	countOff := len(advisoryMagic) + 1 + 32 + 1 + len(a.TrustDomain) + 24
	b := bytes.Clone(enc)
	binary.BigEndian.PutUint16(b[countOff:], 0xffff)
	f.Add(b)
	f.Add([]byte(advisoryMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseScribbled(data, ParseAdvisories)
		if err != nil {
			if a != nil {
				t.Fatal("list returned with an error")
			}
			return
		}
		if !bytes.Equal(a.Bytes(), data) || !bytes.Equal(append(a.tbs(), data[len(a.tbs()):]...), data) ||
			!bytes.Equal(a.Signature, data[len(data)-len(a.Signature):]) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if len(a.Entries) > MaxAdvisories {
			t.Fatal("more entries than allowed")
		}
		for _, e := range a.Entries {
			if e.Multiplier < MinAdvisoryMultiplier || e.Multiplier > MaxAdvisoryMultiplier {
				t.Fatalf("multiplier %d accepted", e.Multiplier)
			}
		}
	})
}
