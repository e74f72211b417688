// Package storetest opens fresh control-plane stores for tests: an SQLite file in a temporary
// directory always, and a PostgreSQL schema of its own when X0TTA6BL4_TEST_POSTGRES names a server
// (.ci/postgres.sh starts one and prints that variable).
//
// It must never be imported by non-test code and never touch a schema it did not create.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"x0tta6bl4/internal/control/store"
)

// EnvPostgres names the environment variable holding the PostgreSQL test DSN.
const EnvPostgres = "X0TTA6BL4_TEST_POSTGRES"

// Backend is one database to run a test against.
type Backend struct {
	Name string
	// Config returns a configuration for a fresh, empty database; each call gives another one.
	Config func(t testing.TB) store.Config
}

// Backends returns SQLite and, when configured, PostgreSQL. When PostgreSQL is not configured it
// logs that those runs are skipped.
func Backends(t testing.TB) []Backend {
	out := []Backend{{Name: "sqlite", Config: func(t testing.TB) store.Config {
		return store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "control.db"), Synchronous: "normal"}
	}}}
	dsn := os.Getenv(EnvPostgres)
	if dsn == "" {
		t.Logf("PostgreSQL runs skipped: %s is not set (eval \"$(bash .ci/postgres.sh)\" starts a server and sets it)", EnvPostgres)
		return out
	}
	out = append(out, Backend{Name: "postgres", Config: func(t testing.TB) store.Config {
		return store.Config{Driver: store.Postgres, DSN: freshSchema(t, dsn)}
	}})
	return out
}

// Each runs fn as a subtest against every backend with a freshly opened store.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	for _, b := range Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := Open(t, b.Config(t))
			fn(t, s)
		})
	}
}

// Open opens a store and closes it when the test ends.
func Open(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s store: %v", cfg.Driver, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freshSchema creates a schema of its own for one test and returns a DSN whose search_path points
// at it; the schema is dropped when the test ends.
func freshSchema(t testing.TB, dsn string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close()
	// schema is generated here from hex digits only, so splicing it into the DDL is safe.
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("postgres: create schema (is %s right?): %v", EnvPostgres, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	return withSearchPath(t, dsn, schema)
}

func withSearchPath(t testing.TB, dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: %v", EnvPostgres, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}
