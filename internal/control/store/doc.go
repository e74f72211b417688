// Package store keeps the control plane's state — users, sessions, API keys, join tokens, enrolled
// nodes and their certificates, mesh reports and the audit log — in SQLite (embedded, the default,
// through the pure-Go modernc.org/sqlite driver in WAL mode) or PostgreSQL (through pgx), with one
// set of migrations for both.
//
// Every statement uses bind parameters; no value is ever spliced into SQL text. Secrets arrive here
// already hashed: the store must never see or keep a plaintext password, session token, API key or
// join token, and must never acknowledge a write before the database has committed it.
package store
