package api

import (
	"time"

	"x0tta6bl4/internal/policy"
)

// Policy is GET /api/v1/policy and the answer to PUT /api/v1/policy: the mesh access policy
// (docs/control.md, "Policy"). The request body of PUT is a policy.Source.
type Policy struct {
	// Version is the policy's number; 0 means no policy has been set, and nodes apply their local
	// firewall rules alone.
	Version     uint64     `json:"version"`
	TrustDomain string     `json:"trust_domain"`
	IssuedAt    *time.Time `json:"issued_at,omitempty"`
	// Issuer is the key ID of the CA that signed it (the CA pin).
	Issuer string `json:"issuer,omitempty"`
	// Signed is the canonical signed encoding (base64): what nodes verify against their CA, spread
	// over the mesh and apply. Everything else here is for people.
	Signed []byte `json:"signed,omitempty"`
	// Source is the policy as it was set, tests included.
	Source *policy.Source `json:"source,omitempty"`
}
