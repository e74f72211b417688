package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// markUnavailable wraps err with ErrUnavailable when it says the database could not answer: the
// statement's own deadline passed (not the caller's cancellation), the connection failed, or the
// server refused work for a passing reason. Other errors pass unchanged.
func markUnavailable(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if unavailable(ctx, err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func unavailable(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, driver.ErrBadConn) || pgconn.Timeout(err) {
		return true
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		// Class 08: connection exception; 53: insufficient resources; 57P0x: the server is
		// shutting down, or not yet accepting connections.
		switch {
		case pe.Code[:2] == "08", pe.Code[:2] == "53", pe.Code[:4] == "57P0":
			return true
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR:
			return true
		}
	}
	return false
}
