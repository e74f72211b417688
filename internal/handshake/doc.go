// Package handshake implements the mesh's post-quantum authenticated key exchange: the PQNoise pqIK
// pattern (Angel et al., CCS 2022) over the hybrid ML-KEM-768 + X25519 KEM of package identity, with
// static KEM keys certified by the mesh CA (package meshca), as specified in docs/protocol.md.
//
// A Machine is a pure state machine. It is fed packets, their source address and the current time,
// and returns packets to send and completed handshakes (Result) for the transport (package session).
// Around the cryptographic core it implements fragmentation with bounded reassembly, WireGuard-style
// DoS protection (mac1 on every initiation packet, mac2 and encrypted cookie replies under load,
// per-source rate limits) and replay protection without timestamps. Lost fragments are recovered
// by resending the current attempt on a short schedule, which the responder answers from a bounded
// cache of its recent answers without repeating any asymmetric work.
//
// It must never open a socket, start a goroutine or read the clock; never do KEM work for a packet
// whose mac1 is wrong; never send more bytes than it received to an address that has not proven it
// can receive; never let a replayed initiation replace a live session or create a second one; never
// fall back to another suite; and never allocate without a bound for what a peer sends.
package handshake
