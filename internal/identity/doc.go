// Package identity holds a node's long-term post-quantum keys and the names derived from them.
//
// A node has two key pairs:
//   - a hybrid KEM key (ML-KEM-768 + X25519, the X-Wing combiner as implemented by crypto/hpke's
//     MLKEM768X25519), used by the session protocol to authenticate and agree keys;
//   - an ML-DSA-65 signing key (crypto/mldsa), used for signed state: link-state records, votes,
//     model updates and, as the key of its X.509-SVID, TLS.
//
// The package also derives the node's overlay IPv6 address from its public keys, validates SPIFFE IDs,
// and reads and writes key files (see docs/identity.md for the formats).
//
// It must never implement a cryptographic primitive itself, never use randomness other than
// crypto/rand, and never load a private key file that other users can read.
package identity
