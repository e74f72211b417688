package meshca

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"x0tta6bl4/internal/wire"
)

var (
	policyOnce sync.Once
	policyVal  *Policy
	policyErr  error
)

// testGrants exercise every selector kind and port form.
func testGrants() []Grant {
	return []Grant{
		{ // listed out of order and with duplicates: SignPolicy sorts and de-duplicates
			Src:   []Selector{{Kind: SelectNode, TrustDomain: testTrustDomain, Name: "laptop-1"}, {Kind: SelectGroup, Group: "ops"}, {Kind: SelectGroup, Group: "ops"}},
			Dst:   []Selector{{Kind: SelectGroup, Group: "db"}},
			Ports: []PortRange{{Proto: ProtoTCP, Lo: 5432, Hi: 5432}, {Proto: ProtoICMPv6}, {Proto: ProtoUDP, Lo: 8000, Hi: 8100}, {Proto: ProtoICMPv6}},
		},
		{
			Src:   []Selector{{Kind: SelectAny}},
			Dst:   []Selector{{Kind: SelectNode, TrustDomain: "other.test", Name: "gw"}},
			Ports: []PortRange{{Proto: ProtoTCP}},
		},
		{
			Src:   []Selector{{Kind: SelectGroup, Group: "web"}, {Kind: SelectAny}}, // * absorbs the rest
			Dst:   []Selector{{Kind: SelectAny}},
			Ports: []PortRange{{Proto: ProtoUDP, Lo: 53, Hi: 53}, {Proto: ProtoAny}},
		},
	}
}

func getPolicy(tb testing.TB) (*fixture, *Policy) {
	tb.Helper()
	f := getFixture(tb)
	policyOnce.Do(func() { policyVal, policyErr = f.ca.SignPolicy(7, testGrants(), f.now) })
	if policyErr != nil {
		tb.Fatalf("policy fixture: %v", policyErr)
	}
	return f, policyVal
}

// policyEncoding returns p's to-be-signed bytes and a signature field, without normalizing or
// validating p.
func policyEncoding(p *Policy, sig []byte) []byte { return wire.AppendBytes16(p.tbs(), sig) }

func TestPolicyRoundTrip(t *testing.T) {
	f, p := getPolicy(t)
	want := []Grant{
		{
			Src:   []Selector{{Kind: SelectGroup, Group: "ops"}, {Kind: SelectNode, TrustDomain: testTrustDomain, Name: "laptop-1"}},
			Dst:   []Selector{{Kind: SelectGroup, Group: "db"}},
			Ports: []PortRange{{Proto: ProtoTCP, Lo: 5432, Hi: 5432}, {Proto: ProtoUDP, Lo: 8000, Hi: 8100}, {Proto: ProtoICMPv6}},
		},
		{Src: []Selector{{Kind: SelectAny}}, Dst: []Selector{{Kind: SelectNode, TrustDomain: "other.test", Name: "gw"}}, Ports: []PortRange{{Proto: ProtoTCP}}},
		{Src: []Selector{{Kind: SelectAny}}, Dst: []Selector{{Kind: SelectAny}}, Ports: []PortRange{{Proto: ProtoAny}}},
	}
	if !reflect.DeepEqual(p.Grants, want) {
		t.Fatalf("normalized grants:\n got %+v\nwant %+v", p.Grants, want)
	}
	if p.Version != 7 || p.TrustDomain != testTrustDomain || !p.IssuedAt.Equal(f.now) || p.Issuer != f.caKey.PublicKey().ID() {
		t.Fatalf("header: %+v", p)
	}
	q, err := ParsePolicy(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q.Grants, p.Grants) || q.Version != p.Version || q.TrustDomain != p.TrustDomain ||
		!q.IssuedAt.Equal(p.IssuedAt) || q.Issuer != p.Issuer || !bytes.Equal(q.Signature, p.Signature) {
		t.Fatalf("parsed policy differs:\n got %+v\nwant %+v", q, p)
	}
	if !bytes.Equal(policyEncoding(q, q.Signature), p.Bytes()) {
		t.Fatal("parsed policy does not re-encode to its input")
	}
	r, err := DecodePolicyPEM(EncodePolicyPEM(p))
	if err != nil || !bytes.Equal(r.Bytes(), p.Bytes()) {
		t.Fatalf("PEM round trip: %v", err)
	}
	if err := newTestVerifier(t, f.ca.Certificate()).CheckPolicy(q); err != nil {
		t.Fatalf("parsed policy does not verify: %v", err)
	}
	// The caller's grants are not touched by normalization.
	in := testGrants()
	if _, err := f.ca.SignPolicy(1, in, f.now); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, testGrants()) {
		t.Fatal("SignPolicy changed its argument")
	}
	empty, err := f.ca.SignPolicy(1, nil, f.now)
	if err != nil {
		t.Fatalf("a policy without grants (deny everything) must be signable: %v", err)
	}
	if _, err := ParsePolicy(empty.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestSignPolicyRefusesInvalid(t *testing.T) {
	f := getFixture(t)
	any1 := []Selector{{Kind: SelectAny}}
	icmp := []PortRange{{Proto: ProtoICMPv6}}
	many := func(n int) []Selector {
		out := make([]Selector, n)
		for i := range out {
			out[i] = Selector{Kind: SelectGroup, Group: "g" + string(rune('a'+i/26)) + string(rune('a'+i%26))}
		}
		return out
	}
	manyPorts := func(n int) []PortRange {
		out := make([]PortRange, n)
		for i := range out {
			out[i] = PortRange{Proto: ProtoTCP, Lo: uint16(i + 1), Hi: uint16(i + 1)}
		}
		return out
	}
	cases := []struct {
		name    string
		version uint64
		grants  []Grant
		want    string
	}{
		{"version 0", 0, nil, "version 0"},
		{"no source", 1, []Grant{{Dst: any1, Ports: icmp}}, "src"},
		{"no destination", 1, []Grant{{Src: any1, Ports: icmp}}, "dst"},
		{"no ports", 1, []Grant{{Src: any1, Dst: any1}}, "port entries"},
		{"bad group", 1, []Grant{{Src: []Selector{{Kind: SelectGroup, Group: "bad group"}}, Dst: any1, Ports: icmp}}, "src"},
		{"bad node name", 1, []Grant{{Src: any1, Dst: []Selector{{Kind: SelectNode, TrustDomain: testTrustDomain, Name: "-x"}}, Ports: icmp}}, "dst"},
		{"bad trust domain", 1, []Grant{{Src: any1, Dst: []Selector{{Kind: SelectNode, TrustDomain: "UPPER", Name: "x"}}, Ports: icmp}}, "trust domain"},
		{"unknown kind", 1, []Grant{{Src: []Selector{{Kind: 9}}, Dst: any1, Ports: icmp}}, "kind"},
		{"icmp port", 1, []Grant{{Src: any1, Dst: any1, Ports: []PortRange{{Proto: ProtoICMPv6, Lo: 1, Hi: 1}}}}, "no ports"},
		{"backwards range", 1, []Grant{{Src: any1, Dst: any1, Ports: []PortRange{{Proto: ProtoTCP, Lo: 9, Hi: 8}}}}, "backwards"},
		{"half range", 1, []Grant{{Src: any1, Dst: any1, Ports: []PortRange{{Proto: ProtoTCP, Lo: 0, Hi: 8}}}}, "backwards"},
		{"unknown protocol", 1, []Grant{{Src: any1, Dst: any1, Ports: []PortRange{{Proto: 47}}}}, "protocol"},
		{"too many selectors", 1, []Grant{{Src: many(MaxGrantSelectors + 1), Dst: any1, Ports: icmp}}, "selectors"},
		{"too many ports", 1, []Grant{{Src: any1, Dst: any1, Ports: manyPorts(MaxGrantPorts + 1)}}, "port entries"},
		{"too many grants", 1, make([]Grant, MaxPolicyGrants+1), "grants"},
		{"too many rules", 1, func() []Grant {
			g := Grant{Src: many(64), Dst: any1, Ports: manyPorts(64)}
			return []Grant{g, g} // 2 × 64 × 64 = 8192 inbound rules on a node both name
		}(), "firewall rules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.ca.SignPolicy(tc.version, tc.grants, f.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}

	// Within every count bound, but too large for a link frame: long node names in many grants.
	var big []Grant
	for i := range 200 {
		var dst []Selector
		for j := range 5 {
			dst = append(dst, Selector{Kind: SelectNode, TrustDomain: testTrustDomain, Name: strings.Repeat("n", 50) + string(rune('a'+j)) + string(rune('a'+i%26)) + string(rune('a'+i/26))})
		}
		big = append(big, Grant{Src: any1, Dst: dst, Ports: icmp})
	}
	if _, err := f.ca.SignPolicy(1, big, f.now); err == nil || !strings.Contains(err.Error(), "bytes encoded") {
		t.Fatalf("oversized policy: err = %v", err)
	}
	if _, err := f.ca.SignPolicy(1, big[:100], f.now); err != nil {
		t.Fatalf("half of it fits: %v", err)
	}
}

func TestParsePolicyTruncatedAtEveryLength(t *testing.T) {
	_, p := getPolicy(t)
	enc := p.Bytes()
	for n := range len(enc) {
		if _, err := ParsePolicy(enc[:n]); !errors.Is(err, ErrMalformedPolicy) {
			t.Fatalf("truncated to %d of %d bytes: err = %v", n, len(enc), err)
		}
	}
}

func TestParsePolicyNonCanonical(t *testing.T) {
	_, p := getPolicy(t)
	sig := p.Signature
	enc := p.Bytes()
	variant := func(mutate func(q *Policy)) []byte {
		q := *p
		q.Grants = normalizeGrants(p.Grants) // deep copy
		mutate(&q)
		return policyEncoding(&q, sig)
	}
	if !bytes.Equal(variant(func(*Policy) {}), enc) {
		t.Fatal("control encoding differs from the genuine one")
	}
	set := func(off int, v byte) []byte { b := bytes.Clone(enc); b[off] = v; return b }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"revocation list magic", append([]byte(crlMagic), enc[4:]...), "magic"},
		{"format 0", set(4, 0), "format"},
		{"format 2", set(4, 2), "format"},
		{"trailing byte", append(bytes.Clone(enc), 0), "trailing"},
		{"version 0", variant(func(q *Policy) { q.Version = 0 }), "version 0"},
		{"bad trust domain", variant(func(q *Policy) { q.TrustDomain = "Bad" }), "trust domain"},
		{"unsorted sources", variant(func(q *Policy) { s := q.Grants[0].Src; s[0], s[1] = s[1], s[0] }), "sorted"},
		{"duplicate sources", variant(func(q *Policy) { q.Grants[0].Src[1] = q.Grants[0].Src[0] }), "sorted"},
		{"* with others", variant(func(q *Policy) {
			q.Grants[1].Src = []Selector{{Kind: SelectAny}, {Kind: SelectGroup, Group: "ops"}}
		}), "alone"},
		{"unsorted ports", variant(func(q *Policy) { r := q.Grants[0].Ports; r[0], r[1] = r[1], r[0] }), "sorted"},
		{"port * with others", variant(func(q *Policy) { q.Grants[2].Ports = []PortRange{{Proto: ProtoAny}, {Proto: ProtoTCP}} }), "alone"},
		{"icmp with a port", variant(func(q *Policy) { q.Grants[0].Ports[2].Lo = 1; q.Grants[0].Ports[2].Hi = 1 }), "no ports"},
		{"empty destinations", variant(func(q *Policy) { q.Grants[0].Dst = nil }), "selectors"},
		{"short signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), sig[:len(sig)-1]), "signature"},
		{"no signature", wire.AppendBytes16(bytes.Clone(enc[:len(enc)-2-len(sig)]), nil), "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy(tc.data)
			if !errors.Is(err, ErrMalformedPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformedPolicy mentioning %q", err, tc.want)
			}
		})
	}
}

// TestParsePolicyHugeCounts checks that counts larger than the data fail before anything
// proportional to them is allocated.
func TestParsePolicyHugeCounts(t *testing.T) {
	_, p := getPolicy(t)
	enc := p.Bytes()
	grantOff := 4 + 1 + 32 + 1 + len(p.TrustDomain) + 8 + 8
	if got := binary.BigEndian.Uint16(enc[grantOff:]); int(got) != len(p.Grants) {
		t.Fatalf("grant count at %d is %d, want %d", grantOff, got, len(p.Grants))
	}
	// A policy of one grant whose port count claims 255 entries, and one of 0xffff grants.
	withGrants := bytes.Clone(enc)
	binary.BigEndian.PutUint16(withGrants[grantOff:], 0xffff)
	withMax := bytes.Clone(enc)
	binary.BigEndian.PutUint16(withMax[grantOff:], MaxPolicyGrants)
	firstPorts := grantOff + 2 + 1 + 1 + 1 + len("ops") + 1 + 1 + len(testTrustDomain) + 1 + len("laptop-1") + 1 + 1 + 1 + len("db")
	if enc[firstPorts] != byte(len(p.Grants[0].Ports)) {
		t.Fatalf("port count at %d is %d, want %d", firstPorts, enc[firstPorts], len(p.Grants[0].Ports))
	}
	withPorts := bytes.Clone(enc)
	withPorts[firstPorts] = 0xff
	for name, data := range map[string][]byte{"grants 0xffff": withGrants, "grants max": withMax, "ports 255": withPorts} {
		const runs = 50
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			if _, err := ParsePolicy(data); !errors.Is(err, ErrMalformedPolicy) {
				t.Fatalf("%s: err = %v", name, err)
			}
		}
		runtime.ReadMemStats(&after)
		if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 64<<10 {
			t.Errorf("%s: %d bytes allocated per parse", name, perRun)
		}
	}
	if _, err := ParsePolicy(make([]byte, MaxPolicySize+1)); !errors.Is(err, ErrMalformedPolicy) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized input: %v", err)
	}
}

func TestPolicySignature(t *testing.T) {
	f, p := getPolicy(t)
	v := newTestVerifier(t, f.ca.Certificate(), f.groupCA.Certificate())
	if err := v.CheckPolicy(p); err != nil {
		t.Fatal(err)
	}
	if err := newTestVerifier(t, f.otherCA.Certificate()).CheckPolicy(p); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("policy of an untrusted CA: %v", err)
	}
	if err := p.CheckSignature(f.otherKey.PublicKey()); err == nil {
		t.Fatal("verified with another key")
	}

	// Every signed field is covered: change the version, re-encode with the same signature.
	q := *p
	q.Version++
	forged, err := ParsePolicy(policyEncoding(&q, p.Signature))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckPolicy(forged); err == nil {
		t.Fatal("a policy with a raised version kept its signature")
	}
	q = *p
	q.Grants = normalizeGrants(p.Grants)
	q.Grants[0].Dst[0].Group = "dc"
	if forged, err = ParsePolicy(policyEncoding(&q, p.Signature)); err != nil {
		t.Fatal(err)
	}
	if err := v.CheckPolicy(forged); err == nil {
		t.Fatal("a policy with a changed grant kept its signature")
	}

	// The issuer's trust domain is the policy's.
	q = *p
	q.TrustDomain = "elsewhere.test"
	sig, err := f.caKey.Sign(policySignatureContext, q.tbs())
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ParsePolicy(policyEncoding(&q, sig))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckPolicy(wrong); !errors.Is(err, ErrWrongDomain) {
		t.Fatalf("policy for another trust domain: %v", err)
	}
}

// TestPolicyDomainSeparation: the CA key's signature over the same bytes in another context (a
// certificate's, a revocation list's) is not a policy signature, and a policy signature is neither.
func TestPolicyDomainSeparation(t *testing.T) {
	f, p := getPolicy(t)
	tbs := p.tbs()
	for _, ctx := range []string{certSignatureContext, crlSignatureContext, ""} {
		sig, err := f.caKey.Sign(ctx, tbs)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePolicy(policyEncoding(p, sig))
		if err != nil {
			t.Fatal(err)
		}
		if err := q.CheckSignature(f.caKey.PublicKey()); err == nil {
			t.Fatalf("a signature in context %q verified as a policy signature", ctx)
		}
	}
	for _, ctx := range []string{certSignatureContext, crlSignatureContext} {
		if err := f.caKey.PublicKey().Verify(ctx, tbs, p.Signature); err == nil {
			t.Fatalf("the policy signature verified in context %q", ctx)
		}
	}
}

func TestPolicySupersedes(t *testing.T) {
	f, p := getPolicy(t)
	newer, err := f.ca.SignPolicy(p.Version+1, nil, f.now)
	if err != nil {
		t.Fatal(err)
	}
	twin, err := f.ca.SignPolicy(p.Version, nil, f.now) // same version, other grants
	if err != nil {
		t.Fatal(err)
	}
	same, err := ParsePolicy(p.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := PolicySupersedes(nil, p); !ok || err != nil {
		t.Fatalf("first policy: %v %v", ok, err)
	}
	if ok, err := PolicySupersedes(p, newer); !ok || err != nil {
		t.Fatalf("newer: %v %v", ok, err)
	}
	if ok, err := PolicySupersedes(newer, p); ok || !errors.Is(err, ErrPolicyRollback) {
		t.Fatalf("older: %v %v", ok, err)
	}
	if ok, err := PolicySupersedes(p, same); ok || err != nil {
		t.Fatalf("the same policy again: %v %v", ok, err)
	}
	if ok, err := PolicySupersedes(p, twin); ok || err == nil || errors.Is(err, ErrPolicyRollback) {
		t.Fatalf("another policy with the same version: %v %v", ok, err)
	}
}

func TestPolicyAllows(t *testing.T) {
	f, p := getPolicy(t)
	node := func(name string, groups ...string) *Certificate {
		return &Certificate{Kind: KindNode, TrustDomain: testTrustDomain, Name: name, Groups: NormalizeGroups(groups)}
	}
	ops, db, laptop, web := node("o1", "ops"), node("d1", "db"), node("laptop-1"), node("w1", "web")
	gw := &Certificate{Kind: KindNode, TrustDomain: "other.test", Name: "gw"}
	// Grant 2 lets everyone reach everyone; check the others without it.
	q := *p
	q.Grants = p.Grants[:2]
	cases := []struct {
		src, dst *Certificate
		proto    uint8
		port     uint16
		hasPort  bool
		want     bool
	}{
		{ops, db, ProtoTCP, 5432, true, true},
		{laptop, db, ProtoTCP, 5432, true, true},
		{ops, db, ProtoTCP, 5433, true, false},
		{ops, db, ProtoUDP, 8050, true, true},
		{ops, db, ProtoUDP, 8101, true, false},
		{ops, db, ProtoICMPv6, 0, false, true},
		{ops, db, ProtoTCP, 0, false, false}, // a later fragment: no ports, and no port-any grant for tcp
		{db, ops, ProtoTCP, 5432, true, false},
		{web, db, ProtoTCP, 5432, true, false},
		{web, gw, ProtoTCP, 1, true, true},
		{web, gw, ProtoTCP, 0, false, true},
		{web, gw, ProtoUDP, 1, true, false},
		{web, &Certificate{Kind: KindNode, TrustDomain: testTrustDomain, Name: "gw"}, ProtoTCP, 1, true, false},
	}
	for i, c := range cases {
		if got := q.AllowsPacket(c.src, c.dst, c.proto, c.port, c.hasPort); got != c.want {
			t.Errorf("case %d: %s→%s proto %d port %d: %v, want %v", i, c.src.Name, c.dst.Name, c.proto, c.port, got, c.want)
		}
		if !p.AllowsPacket(c.src, c.dst, c.proto, c.port, c.hasPort) {
			t.Errorf("case %d: the * grant does not allow it", i)
		}
	}
	if !q.Allows(ops, db) || !q.Allows(laptop, db) || q.Allows(db, ops) || q.Allows(web, db) || !q.Allows(db, gw) {
		t.Error("Allows disagrees with the grants")
	}
	_ = f
}

func BenchmarkParsePolicy(b *testing.B) {
	_, p := getPolicy(b)
	enc := p.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePolicy(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParsePolicy checks that the decoder never panics and accepts only canonical, valid policies.
func FuzzParsePolicy(f *testing.F) {
	_, p := getPolicy(f)
	enc := p.Bytes()
	f.Add(enc)
	f.Add(enc[:len(enc)-1])
	f.Add(enc[:len(enc)/2])
	f.Add(enc[:80])
	f.Add(append(bytes.Clone(enc), 0))
	f.Add([]byte(policyMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := parseScribbled(data, ParsePolicy)
		if err != nil {
			if q != nil {
				t.Fatal("policy returned with an error")
			}
			return
		}
		if !bytes.Equal(q.Bytes(), data) || !bytes.Equal(policyEncoding(q, q.Signature), data) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if err := q.validate(); err != nil {
			t.Fatalf("parsed policy is invalid: %v", err)
		}
		if !reflect.DeepEqual(normalizeGrants(q.Grants), q.Grants) {
			t.Fatal("parsed grants are not in normal form")
		}
		if q.IssuedAt.Location() != time.UTC {
			t.Fatal("issued-at not in UTC")
		}
	})
}
