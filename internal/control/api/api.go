// Package api defines the JSON documents of the control plane's HTTP API, shared by the server
// (internal/control) and its clients (internal/control/client), and the rules both sides apply to
// them (limits, validation of node reports).
//
// It must never do I/O and never hold a secret beyond the fields that carry one once (a new API
// key, session or join token shown to its creator).
package api

import (
	"crypto/mldsa"
	"crypto/x509"
	"fmt"
	"time"

	"x0tta6bl4/internal/identity"
)

// Error is the body of every error response.
type Error struct {
	Error   string `json:"error"`   // machine-readable code, e.g. "unauthorized", "rate_limited"
	Message string `json:"message"` // for people
}

// Health is GET /health.
type Health struct {
	Status            string    `json:"status"`   // "ok" or "degraded" (database unreachable)
	Version           string    `json:"version"`  // program version
	Database          string    `json:"database"` // "sqlite" or "postgres"
	DatabaseOK        bool      `json:"database_ok"`
	DatabaseCheckedAt time.Time `json:"database_checked_at"`
	UptimeSeconds     int64     `json:"uptime_seconds"`
	TrustDomain       string    `json:"trust_domain"`
	CRLNumber         uint64    `json:"crl_number"`
}

// RegisterRequest is POST /api/v1/users/register.
type RegisterRequest struct {
	Username string `json:"username"`
	Password string `json:"password,omitempty"` // empty: an account that can only use API keys
	Role     string `json:"role,omitempty"`     // default viewer; only an admin may set another
}

// LoginRequest is POST /api/v1/users/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse carries a new session token, shown once.
type LoginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
}

// User is an account as the API shows it (never with its password hash).
type User struct {
	ID          int64     `json:"id"`
	Username    string    `json:"username"`
	Role        string    `json:"role"`
	Disabled    bool      `json:"disabled"`
	HasPassword bool      `json:"has_password"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Me is GET /api/v1/users/me: the account and how this request authenticated.
type Me struct {
	User          User   `json:"user"`
	AuthMethod    string `json:"auth_method"`    // "session" or "api_key"
	EffectiveRole string `json:"effective_role"` // the lower of the account's and the key's role
	APIKeyID      int64  `json:"api_key_id,omitempty"`
}

// UpdateUserRequest is PATCH /api/v1/users/{id}; absent fields are unchanged.
type UpdateUserRequest struct {
	Role     *string `json:"role,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
	Password *string `json:"password,omitempty"`
}

// UserList is GET /api/v1/users.
type UserList struct {
	Users []User `json:"users"`
}

// CreateAPIKeyRequest is POST /api/v1/keys.
type CreateAPIKeyRequest struct {
	Name             string `json:"name"`
	Role             string `json:"role,omitempty"`               // default: the caller's role; never above it
	ExpiresInSeconds int64  `json:"expires_in_seconds,omitempty"` // 0: never expires
}

// APIKey describes a key without its secret.
type APIKey struct {
	ID        int64      `json:"id"`
	Prefix    string     `json:"prefix"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Owner     string     `json:"owner"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// APIKeyCreated is the answer to POST /api/v1/keys: the only time the key is shown.
type APIKeyCreated struct {
	APIKey
	Key string `json:"key"`
}

// APIKeyList is GET /api/v1/keys.
type APIKeyList struct {
	Keys []APIKey `json:"keys"`
}

// CreateJoinTokenRequest is POST /api/v1/enroll/tokens.
type CreateJoinTokenRequest struct {
	NodeName       string   `json:"node_name,omitempty"` // the only name the token may enroll; empty: any
	Groups         []string `json:"groups,omitempty"`
	TTLSeconds     int64    `json:"ttl_seconds,omitempty"`      // how long the token is valid; default from config
	CertTTLSeconds int64    `json:"cert_ttl_seconds,omitempty"` // lifetime of the node's certificates
	Description    string   `json:"description,omitempty"`
	// Account is charged for the nodes the token enrols; required when billing is enabled.
	Account string `json:"account,omitempty"`
}

// JoinToken describes a join token without its secret.
type JoinToken struct {
	ID             int64      `json:"id"`
	Prefix         string     `json:"prefix"`
	NodeName       string     `json:"node_name,omitempty"`
	Groups         []string   `json:"groups"`
	CertTTLSeconds int64      `json:"cert_ttl_seconds"`
	Description    string     `json:"description"`
	CreatedBy      string     `json:"created_by"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	UsedAt         *time.Time `json:"used_at,omitempty"`
	UsedBy         string     `json:"used_by,omitempty"`
}

// JoinTokenCreated is the answer to POST /api/v1/enroll/tokens: the only time the token is shown.
// Token embeds the CA pin, so a node that enrolls with it checks it is talking to this CA.
type JoinTokenCreated struct {
	JoinToken
	Token string `json:"token"`
	CAPin string `json:"ca_pin"`
}

// JoinTokenList is GET /api/v1/enroll/tokens.
type JoinTokenList struct {
	Tokens []JoinToken `json:"tokens"`
}

// EnrollRequest is POST /api/v1/enroll.
type EnrollRequest struct {
	Token     string `json:"token"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"` // the node's public key file (PEM "X0TTA6BL4 NODE PUBLIC KEY")
	// RoutingArea, if set, is the routing area the node is configured with (routing_area): the
	// enrolment answer then carries the records of that area only, and the control plane takes it as
	// the node's area until the node's first signed record names one (which counts). Without it,
	// every area's.
	RoutingArea *uint32 `json:"routing_area,omitempty"`
}

// Bundle is what an enrolled or renewed node receives: its certificates, the CA and the current
// revocation list, all PEM.
type Bundle struct {
	Name           string    `json:"name"`
	SPIFFEID       string    `json:"spiffe_id"`
	Overlay        string    `json:"overlay"`
	Serial         string    `json:"serial"`
	Groups         []string  `json:"groups"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	RenewAfter     time.Time `json:"renew_after"` // when the node should renew (2/3 of the lifetime)
	TrustDomain    string    `json:"trust_domain"`
	CertificatePEM string    `json:"certificate_pem"`
	SVIDPEM        string    `json:"svid_pem"`
	CAPEM          string    `json:"ca_pem"`
	CAX509PEM      string    `json:"ca_x509_pem"`
	CRLPEM         string    `json:"crl_pem"`
	CRLNumber      uint64    `json:"crl_number"`
}

// CABundle is GET /api/v1/ca.
type CABundle struct {
	TrustDomain string `json:"trust_domain"`
	CAKeyID     string `json:"ca_key_id"` // the CA pin: hex key ID of the CA's ML-DSA-65 key
	CAPEM       string `json:"ca_pem"`
	CAX509PEM   string `json:"ca_x509_pem"`
	CRLNumber   uint64 `json:"crl_number"`
}

// Node is an enrolled node.
type Node struct {
	Name           string     `json:"name"`
	SPIFFEID       string     `json:"spiffe_id"`
	Overlay        string     `json:"overlay"`
	KeyID          string     `json:"key_id"`
	Groups         []string   `json:"groups"`
	Serial         string     `json:"serial"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	Status         string     `json:"status"` // "active", "expired" or "revoked"
	EnrolledAt     time.Time  `json:"enrolled_at"`
	RenewedAt      *time.Time `json:"renewed_at,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	CertificatePEM string     `json:"certificate_pem"`
	SVIDPEM        string     `json:"svid_pem"`
	// RoutingArea is the node's routing area: the one signed in its newest record, else the one it
	// named at enrolment; absent when there is neither (it then gets every area's records).
	RoutingArea *uint32 `json:"routing_area,omitempty"`
	// RoutingAreaSource says where RoutingArea comes from: "record" or "enrolment".
	RoutingAreaSource string `json:"routing_area_source,omitempty"`
}

// Sources of Node.RoutingArea.
const (
	AreaFromRecord    = "record"
	AreaFromEnrolment = "enrolment"
)

// NodeList is GET /api/v1/nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// RevokeResponse is POST /api/v1/nodes/{name}/revoke.
type RevokeResponse struct {
	Node           string   `json:"node"`
	CRLNumber      uint64   `json:"crl_number"`
	RevokedSerials []string `json:"revoked_serials"`
	RevokedKeyID   string   `json:"revoked_key_id"`
}

// AuditEntry is one audit log line.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
	Remote string    `json:"remote"`
}

// AuditList is GET /api/v1/audit.
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
}

// PublicKeyInfo is one certified public key.
type PublicKeyInfo struct {
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"` // base64 (standard, padded)
	Size      int    `json:"size"`       // bytes
	KeyID     string `json:"key_id,omitempty"`
}

// KeyAlgorithms names the algorithms the node's keys are used with.
type KeyAlgorithms struct {
	KEM           string `json:"kem"`
	Signature     string `json:"signature"`
	TLS           string `json:"tls"`
	MeshHandshake string `json:"mesh_handshake"`
}

// NodeKeys is GET /api/v1/nodes/{name}/keys: the node's certified keys and algorithms, read from
// its current certificate, and the result of verifying that certificate now.
type NodeKeys struct {
	Node          string        `json:"node"`
	SPIFFEID      string        `json:"spiffe_id"`
	Overlay       string        `json:"overlay"`
	Serial        string        `json:"serial"`
	Fingerprint   string        `json:"fingerprint"`
	Groups        []string      `json:"groups"`
	NotBefore     time.Time     `json:"not_before"`
	NotAfter      time.Time     `json:"not_after"`
	CertificateOK bool          `json:"certificate_ok"`
	Verification  string        `json:"verification"` // "ok" or why the certificate fails now
	KEM           PublicKeyInfo `json:"kem"`
	Signature     PublicKeyInfo `json:"signature"`
	Algorithms    KeyAlgorithms `json:"algorithms"`
}

// HandshakeRequest is the deprecated POST /api/v1/security/handshake.
type HandshakeRequest struct {
	Node string `json:"node"`
}

// LiveCheck says whether a live handshake with the node was performed.
type LiveCheck struct {
	Performed bool   `json:"performed"`
	Reason    string `json:"reason"`
}

// HandshakeResponse is the deprecated POST /api/v1/security/handshake: NodeKeys, and a live_check
// that says no handshake was performed.
type HandshakeResponse struct {
	NodeKeys
	LiveCheck LiveCheck `json:"live_check"`
}

// ReportAccepted answers POST /api/v1/mesh/report; CRLNumber tells the node whether to fetch a
// newer revocation list, Record what became of the report's signed record (RecordPublished, …;
// absent when the report carried none).
type ReportAccepted struct {
	Accepted  bool   `json:"accepted"`
	CRLNumber uint64 `json:"crl_number"`
	Record    string `json:"record,omitempty"`
	// Proof is what became of the report's destination proof, in the same terms (absent when the
	// report carried none).
	Proof string `json:"proof,omitempty"`
	// Advisories is the control plane's current signed list of cost advisories (meshca.Advisories,
	// base64), when it has one in force.
	Advisories string `json:"advisories,omitempty"`
}

// ControlNodeName is the node name in the control plane's own X.509-SVID
// (spiffe://<trust-domain>/node/control). Enrollment refuses it, so no node can pose as the
// control plane; clients accept a server only with exactly this identity.
const ControlNodeName = "control"

// X509KeyID returns the key ID (docs/identity.md) of an X.509 certificate's ML-DSA-65 key.
func X509KeyID(c *x509.Certificate) (identity.KeyID, error) {
	pk, ok := c.PublicKey.(*mldsa.PublicKey)
	if !ok {
		return identity.KeyID{}, fmt.Errorf("certificate key is %T, want ML-DSA-65", c.PublicKey)
	}
	vk, err := identity.ParseVerifyKey(pk.Bytes())
	if err != nil {
		return identity.KeyID{}, err
	}
	return vk.ID(), nil
}
