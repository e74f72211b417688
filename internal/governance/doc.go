// Package governance is the mesh's member governance (docs/governance.md): the roster of members
// and their weights, proposals carrying one typed action, ML-DSA-65-signed ballots, the integer
// tally, quorum certificates that anyone can verify against a roster, and the append-only
// hash-chained log with its verifier.
//
// Everything here is pure: bytes and a clock in, decisions out. It never opens a socket, starts a
// goroutine, reads the clock or holds a private key longer than one Sign call. Every decoder accepts
// only the canonical encoding and bounds what it allocates by the bytes it was given.
package governance
