package auth

import "fmt"

// Role is an access level; each includes the ones below it.
type Role string

// Roles, lowest first.
const (
	Viewer   Role = "viewer"   // read the mesh, nodes and own account
	Operator Role = "operator" // viewer, plus operational actions (votes, own API keys)
	Admin    Role = "admin"    // everything: users, enrollment tokens, revocation, audit log
)

func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Operator:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// ParseRole accepts "viewer", "operator" or "admin".
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if r.rank() == 0 {
		return "", fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
	}
	return r, nil
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// AtLeast reports whether r includes want. An unknown role includes nothing.
func (r Role) AtLeast(want Role) bool { return r.rank() > 0 && r.rank() >= want.rank() }

// Min returns the lower of two roles.
func Min(a, b Role) Role {
	if a.rank() <= b.rank() {
		return a
	}
	return b
}
