package identity_test

import (
	"strings"
	"testing"

	"x0tta6bl4/internal/identity"
)

func TestParseSPIFFEID(t *testing.T) {
	const prefix = "spiffe://example.org/"
	maxLen := prefix + strings.Repeat("a", 2048-len(prefix))
	td255 := strings.Repeat("a", 255)

	valid := []struct {
		in       string
		td, path string
	}{
		{"spiffe://example.org", "example.org", ""},
		{"spiffe://example.org/node/a-1", "example.org", "/node/a-1"},
		{"spiffe://a.b-c_d/x.y/z", "a.b-c_d", "/x.y/z"},
		{"spiffe://example.org/Node/A_b.c-D", "example.org", "/Node/A_b.c-D"},
		{"spiffe://1.2.3.4/x", "1.2.3.4", "/x"},
		{"spiffe://example.org/...", "example.org", "/..."},
		{"spiffe://example.org/.a/a.", "example.org", "/.a/a."},
		{maxLen, "example.org", maxLen[len("spiffe://example.org"):]},
		{"spiffe://" + td255, td255, ""},
	}
	for _, tc := range valid {
		name := tc.in
		if len(name) > 60 {
			name = name[:60] + "..."
		}
		t.Run("valid/"+name, func(t *testing.T) {
			id, err := identity.ParseSPIFFEID(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if id.TrustDomain != tc.td || id.Path != tc.path {
				t.Fatalf("parsed as %q %q, want %q %q", id.TrustDomain, id.Path, tc.td, tc.path)
			}
			if id.String() != tc.in {
				t.Fatalf("String = %q", id.String())
			}
		})
	}

	invalid := []struct{ name, in string }{
		{"empty", ""},
		{"uppercase trust domain", "spiffe://Example.org/x"},
		{"missing scheme", "example.org/node/a"},
		{"other scheme", "https://example.org/node/a"},
		{"uppercase scheme", "SPIFFE://example.org/node/a"},
		{"mixed-case scheme", "Spiffe://example.org"},
		{"single slash", "spiffe:/example.org"},
		{"scheme only", "spiffe://"},
		{"empty trust domain with path", "spiffe:///node/a"},
		{"trailing slash", "spiffe://example.org/"},
		{"trailing slash after path", "spiffe://example.org/node/a/"},
		{"empty segment", "spiffe://example.org/node//a"},
		{"dot segment", "spiffe://example.org/node/./a"},
		{"dot-dot segment", "spiffe://example.org/node/../a"},
		{"final dot segment", "spiffe://example.org/node/."},
		{"final dot-dot segment", "spiffe://example.org/.."},
		{"percent-encoding", "spiffe://example.org/node%2Fa"},
		{"percent-encoding in trust domain", "spiffe://example%2Eorg/x"},
		{"query", "spiffe://example.org/node/a?x=1"},
		{"query on trust domain", "spiffe://example.org?x=1"},
		{"fragment", "spiffe://example.org/node/a#f"},
		{"fragment on trust domain", "spiffe://example.org#f"},
		{"port", "spiffe://example.org:8080/node/a"},
		{"userinfo", "spiffe://user@example.org/node/a"},
		{"space in path", "spiffe://example.org/node a"},
		{"space in trust domain", "spiffe://exam ple.org"},
		{"non-ASCII", "spiffe://example.org/nöde"},
		{"NUL", "spiffe://example.org/a\x00"},
		{"backslash", `spiffe://example.org/a\b`},
		{"leading whitespace", " spiffe://example.org"},
		{"too long", maxLen + "a"},
		{"trust domain too long", "spiffe://" + td255 + "a"},
		{"trust domain too long with path", "spiffe://" + td255 + "a/x"},
	}
	for _, tc := range invalid {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			if id, err := identity.ParseSPIFFEID(tc.in); err == nil {
				t.Fatalf("%q accepted as %+v", tc.in, id)
			}
		})
	}
}

func TestValidateTrustDomain(t *testing.T) {
	for _, td := range []string{"a", "example.org", "a-b_c.d0", strings.Repeat("x", 255)} {
		if err := identity.ValidateTrustDomain(td); err != nil {
			t.Errorf("%q: %v", td, err)
		}
	}
	for _, td := range []string{"", "Example.org", "a/b", "a:1", "a@b", "a b", "a%2e", strings.Repeat("x", 256)} {
		if err := identity.ValidateTrustDomain(td); err == nil {
			t.Errorf("%q accepted", td)
		}
	}
}

func TestValidatePathSegment(t *testing.T) {
	for _, s := range []string{"a", "A", "node", "a-b_c.D9", "...", ".x", "x."} {
		if err := identity.ValidatePathSegment(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "a/b", "a%20", "a b", "a?", "a#", "ü"} {
		if err := identity.ValidatePathSegment(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestValidateNodeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"node-1", true},
		{"0", true},
		{"a-b-c", true},
		{"1node", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"-", false},
		{"Node", false},
		{"node_1", false},
		{"node.1", false},
		{"node 1", false},
		{"node/1", false},
		{".", false},
		{"..", false},
		{"nöde", false},
	} {
		err := identity.ValidateNodeName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateNodeName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		// Every valid node name must also be a valid path segment (and so a valid group).
		if tc.ok {
			if err := identity.ValidatePathSegment(tc.name); err != nil {
				t.Errorf("valid node name %q is not a valid path segment: %v", tc.name, err)
			}
		}
	}
}

func TestValidateGroup(t *testing.T) {
	for _, tc := range []struct {
		group string
		ok    bool
	}{
		{"a", true},
		{"core", true},
		{"Edge_Nodes-2.eu", true},
		{strings.Repeat("g", 64), true},
		{strings.Repeat("g", 65), false},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a%2F", false},
		{"grüppe", false},
	} {
		err := identity.ValidateGroup(tc.group)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateGroup(%q) = %v, want ok=%v", tc.group, err, tc.ok)
		}
	}
}
