package meshca

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssueDurationRules(t *testing.T) {
	f := getFixture(t)
	req := IssueRequest{Name: "gamma", PublicKey: f.nodeKey.Public()}
	for _, d := range []time.Duration{0, -time.Second, -24 * time.Hour, MaxDuration + time.Second} {
		req.Duration = d
		if _, err := f.ca.Issue(req, f.now); err == nil || !strings.Contains(err.Error(), "duration") {
			t.Errorf("duration %s: err = %v", d, err)
		}
	}
	// Longer than the CA has left.
	req.Duration = 366 * 24 * time.Hour
	_, err := f.ca.Issue(req, f.now)
	if err == nil || !strings.Contains(err.Error(), "after the CA certificate") || !strings.Contains(err.Error(), "shorter duration") {
		t.Fatalf("past the CA's not-after: err = %v", err)
	}
	// Exactly up to the CA's not-after is fine.
	left := f.ca.Certificate().NotAfter.Sub(f.now)
	req.Duration = left
	c, err := f.ca.Issue(req, f.now)
	if err != nil {
		t.Fatalf("duration up to the CA's end: %v", err)
	}
	if !c.NotAfter.Equal(f.ca.Certificate().NotAfter) {
		t.Fatalf("not-after %s, want the CA's %s", c.NotAfter, f.ca.Certificate().NotAfter)
	}
	req.Duration = left + time.Second
	if _, err := f.ca.Issue(req, f.now); err == nil {
		t.Fatal("one second past the CA's end accepted")
	}
	if _, err := f.ca.Issue(IssueRequest{Name: "gamma", Duration: time.Hour}, f.now); err == nil {
		t.Fatal("request without a public key accepted")
	}
}

func TestIssueOutsideCAValidity(t *testing.T) {
	f := getFixture(t)
	root := f.ca.Certificate()
	req := IssueRequest{Name: "gamma", PublicKey: f.nodeKey.Public(), Duration: time.Minute}
	for _, at := range []time.Time{root.NotAfter, root.NotAfter.Add(time.Hour), root.NotBefore.Add(-time.Second)} {
		if _, err := f.ca.Issue(req, at); err == nil || !strings.Contains(err.Error(), "not valid now") {
			t.Errorf("issue at %s: err = %v", at, err)
		}
	}
	// Right after the CA was created, not-before is clamped to the CA's instead of backdated past it.
	at := root.NotBefore.Add(10 * time.Second)
	c, err := f.ca.Issue(req, at)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotBefore.Equal(root.NotBefore) {
		t.Fatalf("not-before %s, want the CA's %s", c.NotBefore, root.NotBefore)
	}
	// Sub-second times are truncated so the encoding round-trips.
	c, err = f.ca.Issue(req, f.now.Add(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.Nanosecond() != 0 || c.NotBefore.Nanosecond() != 0 {
		t.Fatalf("times not truncated to seconds: %s %s", c.NotBefore, c.NotAfter)
	}
	if p, err := ParseCertificate(c.Bytes()); err != nil || !p.NotAfter.Equal(c.NotAfter) {
		t.Fatalf("round trip of a sub-second issue: %v", err)
	}
}

func TestIssueNodeNames(t *testing.T) {
	f := getFixture(t)
	req := IssueRequest{PublicKey: f.nodeKey.Public(), Duration: time.Hour}
	for _, name := range []string{"", "Alpha", "ALPHA", strings.Repeat("a", 64), "-a", "a-", "a/b", "a.b", "a_b", "a b", "ä", "../x"} {
		req.Name = name
		if _, err := f.ca.Issue(req, f.now); err == nil || !strings.Contains(err.Error(), "node name") {
			t.Errorf("name %q: err = %v", name, err)
		}
	}
	for _, name := range []string{"a", "0", "a-b", "node-01", strings.Repeat("z", 63)} {
		req.Name = name
		c, err := f.ca.Issue(req, f.now)
		if err != nil {
			t.Errorf("name %q: %v", name, err)
			continue
		}
		if got := c.SPIFFEID().String(); got != "spiffe://mesh.test/node/"+name {
			t.Errorf("name %q: SPIFFE ID %s", name, got)
		}
	}
}

func TestIssueGroups(t *testing.T) {
	f := getFixture(t)
	req := IssueRequest{Name: "gamma", PublicKey: f.nodeKey.Public(), Duration: time.Hour}
	tooMany := make([]string, MaxGroups+1)
	for i := range tooMany {
		tooMany[i] = "g" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	for name, groups := range map[string][]string{
		"slash":     {"a/b"},
		"dot":       {"."},
		"dot-dot":   {".."},
		"space":     {"a b"},
		"65 bytes":  {strings.Repeat("g", 65)},
		"non-ASCII": {"grüppe"},
		"33 groups": tooMany,
	} {
		req.Groups = groups
		if _, err := f.ca.Issue(req, f.now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	req.Groups = []string{" web", "ops", "web ", "", "Ops", strings.Repeat("g", 64), "ops", "a.b_c-D"}
	c, err := f.ca.Issue(req, f.now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Ops", "a.b_c-D", strings.Repeat("g", 64), "ops", "web"}
	if !slices.Equal(c.Groups, want) {
		t.Fatalf("groups %q, want %q", c.Groups, want)
	}
	p, err := ParseCertificate(c.Bytes())
	if err != nil || !slices.Equal(p.Groups, want) {
		t.Fatalf("parsed groups %v (err %v)", p, err)
	}
	req.Groups = tooMany[:MaxGroups]
	if _, err := f.ca.Issue(req, f.now); err != nil {
		t.Fatalf("%d groups: %v", MaxGroups, err)
	}
}

func TestNewRootCARules(t *testing.T) {
	f := getFixture(t)
	good := CAOptions{TrustDomain: "mesh.test", Name: "root", Duration: time.Hour}
	for name, mutate := range map[string]func(o *CAOptions){
		"zero duration":     func(o *CAOptions) { o.Duration = 0 },
		"negative duration": func(o *CAOptions) { o.Duration = -time.Hour },
		"too long":          func(o *CAOptions) { o.Duration = MaxDuration + time.Second },
		"bad trust domain":  func(o *CAOptions) { o.TrustDomain = "Mesh.Test" },
		"no trust domain":   func(o *CAOptions) { o.TrustDomain = "" },
		"bad name":          func(o *CAOptions) { o.Name = "a/b" },
		"no name":           func(o *CAOptions) { o.Name = "" },
		"long name":         func(o *CAOptions) { o.Name = strings.Repeat("n", 64) },
		"bad group":         func(o *CAOptions) { o.Groups = []string{"a/b"} },
	} {
		o := good
		mutate(&o)
		if _, err := NewRootCA(f.caKey, o, f.now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadCA(t *testing.T) {
	f := getFixture(t)
	ca, err := LoadCA(f.ca.Certificate(), f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Certificate() != f.ca.Certificate() {
		t.Fatal("LoadCA did not keep the certificate")
	}
	if _, err := LoadCA(f.ca.Certificate(), f.otherKey); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if _, err := LoadCA(f.node, f.caKey); err == nil {
		t.Fatal("node certificate accepted as CA")
	}
	bad := append([]byte(nil), f.ca.Certificate().Bytes()...)
	bad[len(bad)-1] ^= 1
	broken, err := ParseCertificate(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(broken, f.caKey); err == nil {
		t.Fatal("CA certificate with a broken signature accepted")
	}
}

func TestIssueGroupNotAllowedIsWrapped(t *testing.T) {
	f := getFixture(t)
	_, err := f.groupCA.Issue(IssueRequest{Name: "x", Groups: []string{"db"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now)
	if !errors.Is(err, ErrGroupNotAllowed) {
		t.Fatalf("err = %v", err)
	}
	// An unconstrained CA grants any valid group.
	if _, err := f.ca.Issue(IssueRequest{Name: "x", Groups: []string{"db"}, PublicKey: f.nodeKey.Public(), Duration: time.Hour}, f.now); err != nil {
		t.Fatal(err)
	}
}
