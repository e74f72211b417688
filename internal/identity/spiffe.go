package identity

import (
	"errors"
	"fmt"
	"strings"
)

// SPIFFE ID rules follow the SPIFFE-ID specification (spiffe/spiffe standards/SPIFFE-ID.md).
const (
	maxSPIFFEIDLen    = 2048
	maxTrustDomainLen = 255
	// MaxNodeNameLen bounds node names; they are DNS-label-like so they are usable as host names too.
	MaxNodeNameLen = 63
	// MaxGroupLen bounds a group name.
	MaxGroupLen = 64
)

// ValidateTrustDomain checks a trust domain name: lowercase letters, digits, '.', '-' and '_', 1 to 255 bytes.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return errors.New("trust domain is empty")
	}
	if len(td) > maxTrustDomainLen {
		return fmt.Errorf("trust domain is %d bytes, at most %d allowed", len(td), maxTrustDomainLen)
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q at %d not allowed (use lowercase a-z, 0-9, '.', '-', '_')", td, c, i)
		}
	}
	return nil
}

// ValidatePathSegment checks one SPIFFE path segment: letters, digits, '.', '-', '_', not "." or "..".
func ValidatePathSegment(s string) error {
	if s == "" {
		return errors.New("path segment is empty")
	}
	if s == "." || s == ".." {
		return fmt.Errorf("path segment %q not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		if !isSegmentChar(s[i]) {
			return fmt.Errorf("path segment %q: character %q at %d not allowed (use a-z, A-Z, 0-9, '.', '-', '_')", s, s[i], i)
		}
	}
	return nil
}

func isSegmentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// ValidateNodeName checks a node name: 1 to 63 bytes of lowercase letters, digits and '-', not starting
// or ending with '-'. Every valid node name is also a valid SPIFFE path segment and DNS label.
func ValidateNodeName(name string) error {
	if name == "" {
		return errors.New("node name is empty")
	}
	if len(name) > MaxNodeNameLen {
		return fmt.Errorf("node name is %d bytes, at most %d allowed", len(name), MaxNodeNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("node name %q: character %q at %d not allowed (use lowercase a-z, 0-9, '-')", name, c, i)
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("node name %q must not start or end with '-'", name)
	}
	return nil
}

// ValidateGroup checks a group name: a valid SPIFFE path segment of at most 64 bytes.
func ValidateGroup(g string) error {
	if len(g) > MaxGroupLen {
		return fmt.Errorf("group %q is %d bytes, at most %d allowed", g, len(g), MaxGroupLen)
	}
	if err := ValidatePathSegment(g); err != nil {
		return fmt.Errorf("group: %w", err)
	}
	return nil
}

// SPIFFEID is a parsed SPIFFE ID.
type SPIFFEID struct {
	TrustDomain string
	Path        string // "" or "/seg/seg..."
}

// String returns the URI form.
func (id SPIFFEID) String() string { return "spiffe://" + id.TrustDomain + id.Path }

// ParseSPIFFEID parses and validates a SPIFFE ID.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	if len(s) > maxSPIFFEIDLen {
		return SPIFFEID{}, fmt.Errorf("SPIFFE ID is %d bytes, at most %d allowed", len(s), maxSPIFFEIDLen)
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return SPIFFEID{}, fmt.Errorf("SPIFFE ID %q must start with spiffe:// (scheme is lowercase)", s)
	}
	td, path, hasPath := strings.Cut(rest, "/")
	if err := ValidateTrustDomain(td); err != nil {
		return SPIFFEID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	if !hasPath {
		return SPIFFEID{TrustDomain: td}, nil
	}
	for _, seg := range strings.Split(path, "/") {
		if err := ValidatePathSegment(seg); err != nil {
			return SPIFFEID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
		}
	}
	return SPIFFEID{TrustDomain: td, Path: "/" + path}, nil
}
