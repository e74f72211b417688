// Package session is the transport half of the mesh's secure session protocol: it seals and opens
// data packets with the directional keys a completed handshake produced, keeps up to three
// keypairs per peer (previous, current, next) so traffic survives rekeys without loss, rejects
// replays with an RFC 6479 sliding window, and tells its owner when to rekey or send a keepalive.
// The wire format and the state machine are specified in docs/transport.md.
//
// It is a pure protocol core: callers feed it packets and the current time. It must never open a
// socket, start a goroutine, read a clock, negotiate an algorithm at run time, reuse a
// (key, nonce) pair, accept a packet that did not authenticate, let an unauthenticated packet
// change its state, or allocate on the per-packet path.
package session
