// Package auth holds the control plane's credential primitives: argon2id password hashing with a
// bound on concurrent hashing, random bearer tokens (sessions, API keys, join tokens) kept as a
// lookup prefix plus a SHA-256 of the secret, roles, and token-bucket rate limiters with bounded
// tables.
//
// It must never store, log or return a plaintext secret after creating it, never compare secrets
// in variable time, and never let a stranger make it allocate without bound (hashing concurrency
// and limiter tables are capped).
package auth
