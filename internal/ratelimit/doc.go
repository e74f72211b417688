// Package ratelimit is a token-bucket rate limiter over a bounded table of keys (client addresses,
// credential prefixes, handshake sources). Each key's bucket holds up to Burst tokens and refills
// at Rate per second; a request takes one.
//
// It is fed the time on every call, like the protocol cores, so the handshake machine, the control
// plane and tests drive it with their own clocks. It must never read the clock, start a goroutine,
// or hold more than Max keys whatever the callers send. A Limiter is not safe for concurrent use:
// its owner serialises calls (the handshake machine's caller, or auth.Limiter's mutex).
package ratelimit
