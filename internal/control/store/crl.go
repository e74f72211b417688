package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Revocation lists live in the database so that several control-plane instances on one
// PostgreSQL serve the same list. Exactly one signer at a time assigns the next number: a
// transaction takes LockRevocationLists, reads the newest list, signs its successor and inserts
// it; the number is the primary key, so two different lists can never share one even if the
// lock were bypassed. PostgreSQL then tells every instance at commit (NOTIFY on
// RevocationChannel); instances also poll LatestRevocationListNumber as a backstop.

// RevocationChannel is the PostgreSQL notification channel announcing new security state: a
// revocation list (the payload is its number) or an access policy (payload 0).
const RevocationChannel = "x0tta6bl4_security"

// revocationLockKey is the PostgreSQL advisory lock that serialises revocation-list signers
// (any constant distinct from the migration lock).
const revocationLockKey = 7460618

// LatestRevocationList returns the newest stored list's number and PEM, or ErrNotFound.
func (o Ops) LatestRevocationList(ctx context.Context) (uint64, []byte, error) {
	var n int64
	var pem string
	err := o.queryRow(ctx, "SELECT number, pem FROM revocation_lists ORDER BY number DESC LIMIT 1").Scan(&n, &pem)
	if err != nil {
		return 0, nil, fmt.Errorf("store: latest revocation list: %w", mapErr(err))
	}
	return uint64(n), []byte(pem), nil
}

// LatestRevocationListNumber returns the newest stored list's number, 0 when there is none.
func (o Ops) LatestRevocationListNumber(ctx context.Context) (uint64, error) {
	var n int64
	if err := o.queryRow(ctx, "SELECT COALESCE(MAX(number), 0) FROM revocation_lists").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: latest revocation list number: %w", mapErr(err))
	}
	return uint64(n), nil
}

// InsertRevocationList stores a signed list; ErrConflict if its number is taken.
func (o Ops) InsertRevocationList(ctx context.Context, number uint64, pem []byte, signedAt time.Time) error {
	if number == 0 || number > 1<<62 {
		return fmt.Errorf("store: revocation list number %d out of range", number)
	}
	if _, err := o.exec(ctx, "INSERT INTO revocation_lists (number, signed_at, pem) VALUES (?, ?, ?)",
		int64(number), ms(signedAt), string(pem)); err != nil {
		return fmt.Errorf("store: insert revocation list %d: %w", number, mapErr(err))
	}
	return nil
}

// LockRevocationLists makes this transaction the only signer until it ends. On SQLite every
// write transaction already holds the database's one write lock (BEGIN IMMEDIATE).
func (tx *Tx) LockRevocationLists(ctx context.Context) error {
	if tx.d.name != Postgres {
		return nil
	}
	if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(?)", revocationLockKey); err != nil {
		return fmt.Errorf("store: revocation lock: %w", err)
	}
	return nil
}

// NotifyRevocationList announces list number to every instance listening, when this transaction
// commits (PostgreSQL; a no-op on SQLite, which serves one instance).
func (tx *Tx) NotifyRevocationList(ctx context.Context, number uint64) error {
	if tx.d.name != Postgres {
		return nil
	}
	if _, err := tx.exec(ctx, "SELECT pg_notify(?, ?)", RevocationChannel, strconv.FormatUint(number, 10)); err != nil {
		return fmt.Errorf("store: notify revocation list: %w", err)
	}
	return nil
}

// NotifyPolicy announces a new access policy to every instance listening, at commit.
func (tx *Tx) NotifyPolicy(ctx context.Context) error {
	if tx.d.name != Postgres {
		return nil
	}
	if _, err := tx.exec(ctx, "SELECT pg_notify(?, '0')", RevocationChannel); err != nil {
		return fmt.Errorf("store: notify policy: %w", err)
	}
	return nil
}

// ErrNoNotifications says the database cannot push notifications (SQLite): poll instead.
var ErrNoNotifications = errors.New("store: this database has no notifications")

// ListenRevocationLists calls fn with the number of every revocation list announced on
// RevocationChannel (0 for an access policy), and once with 0 each time the listening connection
// is (re)established (the caller should then re-read: announcements may have been missed). It returns when ctx ends or
// the connection fails; the caller reconnects. On SQLite it returns ErrNoNotifications at once.
func (s *Store) ListenRevocationLists(ctx context.Context, fn func(number uint64)) error {
	if s.d.name != Postgres {
		return ErrNoNotifications
	}
	cctx, cancel := context.WithTimeout(ctx, 2*s.timeout)
	conn, err := pgx.Connect(cctx, s.dsn)
	cancel()
	if err != nil {
		return fmt.Errorf("store: listen: %w", markUnavailable(cctx, err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err = conn.Exec(lctx, "LISTEN "+RevocationChannel)
	cancel()
	if err != nil {
		return fmt.Errorf("store: listen: %w", markUnavailable(lctx, err))
	}
	fn(0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: wait for notification: %w", err)
		}
		v, err := strconv.ParseUint(n.Payload, 10, 64)
		if err != nil {
			continue // another writer's payload; the poll backstop covers anything missed
		}
		fn(v)
	}
}
