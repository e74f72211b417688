// Package control is the control plane: an HTTP API (OpenAPI 3.1 at /openapi.json, HTML at /docs)
// where operators enrol nodes with one-time join tokens, revoke them, manage users, roles and API
// keys, read the audit log and the mesh graph that nodes report, and scrape Prometheus metrics.
// It issues certificates through the mesh CA (internal/meshca) and keeps its state in
// internal/control/store (SQLite or PostgreSQL). It serves TLS 1.3 only, with X25519MLKEM768 key
// exchange and an ML-DSA-65 X.509-SVID from the mesh CA; nodes call it with mutual TLS.
//
// It must never store a secret in plaintext (passwords are argon2id hashes; session tokens, API
// keys and join tokens are SHA-256 of 256-bit secrets, compared in constant time), never acknowledge
// a change before it is committed together with its audit entry, never let a stranger make it
// allocate without bound (body limits, rate-limit tables, connection and waiter caps, hashing
// concurrency), and never serve plain HTTP except on loopback with --insecure-dev.
package control
