// Package meshca is the mesh certificate authority: it issues, encodes, verifies and revokes the
// certificates that bind a node name, its SPIFFE ID, groups, overlay address and public keys together.
//
// Mesh certificates use a canonical, versioned binary encoding signed with ML-DSA-65 (docs/identity.md).
// The same CA key also issues standard X.509-SVIDs for TLS (svid.go). Revocation lists are signed,
// versioned, and can never be replaced by an older list.
//
// It must never accept a certificate whose encoding is not canonical, never trust a certificate whose
// issuer is not a configured CA, and never allocate more than a bounded amount for input it decodes.
package meshca
