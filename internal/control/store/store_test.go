package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Strings shaped like SQL injection, stored and read back verbatim through bind parameters.
var nasty = []string{
	`robert'); DROP TABLE users;--`,
	`" OR 1=1 --`,
	`'; DELETE FROM api_keys WHERE '1'='1`,
	`x' UNION SELECT password_hash FROM users --`,
	`$1 ? ?? $2 \x00-ish ; COMMIT; --`,
	"名前 with ünïcödé and 'quotes'",
}

func TestMigrationsIdempotent(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			cfg := b.Config(t)
			s1 := storetest.Open(t, cfg)
			ctx := context.Background()
			u := &store.User{Username: "alice", PasswordHash: "h", Role: "admin", CreatedAt: t0}
			if err := s1.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			s1.Close()
			s2 := storetest.Open(t, cfg) // migrating again must keep data and not fail
			v, err := s2.Version(ctx)
			if err != nil || v != store.SchemaVersion {
				t.Fatalf("version %d, %v; want %d", v, err, store.SchemaVersion)
			}
			if got, err := s2.UserByName(ctx, "alice"); err != nil || got.ID != u.ID {
				t.Fatalf("user after reopen: %+v, %v", got, err)
			}
		})
	}
}

func TestUsers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for i, name := range nasty {
			u := &store.User{Username: name, PasswordHash: "$argon2id$" + name, Role: "viewer", CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatalf("create %q: %v", name, err)
			}
			got, err := s.UserByName(ctx, name)
			if err != nil {
				t.Fatalf("read %q: %v", name, err)
			}
			if got.Username != name || got.PasswordHash != u.PasswordHash || got.ID != u.ID || !got.CreatedAt.Equal(u.CreatedAt) {
				t.Fatalf("round trip: got %+v, want %+v", got, u)
			}
		}
		if n, err := s.CountUsers(ctx); err != nil || n != len(nasty) {
			t.Fatalf("count = %d, %v; want %d (an injection must not have dropped or added rows)", n, err, len(nasty))
		}
		dup := &store.User{Username: nasty[0], PasswordHash: "x", Role: "viewer", CreatedAt: t0}
		if err := s.CreateUser(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate username: %v, want ErrConflict", err)
		}
		if _, err := s.UserByName(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing user: %v, want ErrNotFound", err)
		}
		u, _ := s.UserByName(ctx, nasty[1])
		u.Role, u.Disabled = "admin", true
		if err := s.UpdateUser(ctx, u, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, _ := s.UserByID(ctx, u.ID)
		if got.Role != "admin" || !got.Disabled || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("after update: %+v", got)
		}
		list, err := s.ListUsers(ctx, 0, 2)
		if err != nil || len(list) != 2 {
			t.Fatalf("list: %d, %v", len(list), err)
		}
		rest, err := s.ListUsers(ctx, list[1].ID, 0)
		if err != nil || len(rest) != len(nasty)-2 {
			t.Fatalf("list after: %d, %v", len(rest), err)
		}
		if err := s.UpdateUser(ctx, &store.User{ID: 99999, Role: "viewer"}, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
	})
}

func TestSessionsAndKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		u := &store.User{Username: "op", PasswordHash: "h", Role: "operator", CreatedAt: t0}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			ss := &store.Session{Prefix: fmt.Sprintf("p%d", i), Hash: "h", UserID: u.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			if err := s.CreateSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.TrimSessions(ctx, u.ID, 2, t0); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			ss, su, err := s.SessionByPrefix(ctx, fmt.Sprintf("p%d", i))
			if err != nil || su.ID != u.ID {
				t.Fatal(err)
			}
			if live := ss.RevokedAt.IsZero(); live != (i >= 3) {
				t.Fatalf("session %d live=%v after trim to 2", i, live)
			}
		}
		if n, err := s.DeleteExpiredSessions(ctx, t0.Add(2*time.Hour)); err != nil || n != 5 {
			t.Fatalf("delete expired: %d, %v", n, err)
		}
		if _, _, err := s.SessionByPrefix(ctx, "p4"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted session: %v", err)
		}

		k := &store.APIKey{Prefix: "kp", Hash: "kh", UserID: u.ID, Name: nasty[2], Role: "viewer", CreatedAt: t0}
		if err := s.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAPIKey(ctx, &store.APIKey{Prefix: "kp", Hash: "x", UserID: u.ID, Role: "viewer", CreatedAt: t0}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate prefix: %v", err)
		}
		gk, gu, err := s.APIKeyByPrefix(ctx, "kp")
		if err != nil || gk.Name != nasty[2] || gk.Hash != "kh" || gu.Username != "op" || gk.Username != "op" {
			t.Fatalf("key: %+v %+v %v", gk, gu, err)
		}
		if n, _ := s.CountLiveAPIKeys(ctx, u.ID, t0); n != 1 {
			t.Fatalf("live keys %d", n)
		}
		if err := s.RevokeAPIKey(ctx, k.ID, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAPIKey(ctx, k.ID, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		if n, _ := s.CountLiveAPIKeys(ctx, u.ID, t0); n != 0 {
			t.Fatalf("live keys after revoke %d", n)
		}
		keys, err := s.ListAPIKeys(ctx, u.ID, 10)
		if err != nil || len(keys) != 1 || keys[0].RevokedAt.IsZero() {
			t.Fatalf("list keys: %+v %v", keys, err)
		}
	})
}

func TestJoinTokenConsumedOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		tok := &store.JoinToken{Prefix: "jt", Hash: "h", Groups: []string{"ops", "web"}, CertTTL: 24 * time.Hour,
			Description: nasty[3], CreatedBy: "user:alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		if err := s.CreateJoinToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		got, err := s.JoinTokenByPrefix(ctx, "jt")
		if err != nil || got.Description != nasty[3] || len(got.Groups) != 2 || got.CertTTL != 24*time.Hour {
			t.Fatalf("token: %+v %v", got, err)
		}
		if ok, err := s.ConsumeJoinToken(ctx, tok.ID, "late", t0.Add(2*time.Hour)); ok || err != nil {
			t.Fatalf("consume after expiry: %v %v", ok, err)
		}
		// Many concurrent consumers: exactly one wins.
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := s.ConsumeJoinToken(ctx, tok.ID, fmt.Sprintf("n%d", i), t0)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d consumers won one token", wins)
		}
		if n, _ := s.CountPendingJoinTokens(ctx, t0); n != 0 {
			t.Fatalf("pending %d", n)
		}
		if n, err := s.DeleteJoinTokensBefore(ctx, t0.Add(3*time.Hour)); err != nil || n != 1 {
			t.Fatalf("delete tokens: %d %v", n, err)
		}
	})
}

func TestNodesReportsAudit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		n := &store.Node{Name: "alpha", KeyID: "k1", Overlay: "fd74::1", SPIFFEID: "spiffe://m/node/alpha", Groups: []string{"web"},
			PublicKeyPEM: "pub", Serial: "s1", CertPEM: "c1", SVIDPEM: "v1", NotBefore: t0, NotAfter: t0.Add(time.Hour),
			CertTTL: time.Hour, EnrolledAt: t0}
		if err := s.InsertNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		dup := *n
		dup.Serial = "s2"
		if err := s.InsertNode(ctx, &dup); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second live node of one name: %v", err)
		}
		n.Serial, n.CertPEM, n.NotAfter = "s3", "c3", t0.Add(2*time.Hour)
		if err := s.UpdateNodeCertificate(ctx, n, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		got, err := s.NodeByName(ctx, "alpha")
		if err != nil || got.Serial != "s3" || got.CertPEM != "c3" || !got.RenewedAt.Equal(t0.Add(time.Minute)) || got.Groups[0] != "web" {
			t.Fatalf("after renew: %+v %v", got, err)
		}
		serials, err := s.NodeSerials(ctx, n.ID)
		if err != nil || len(serials) != 2 || serials[0] != "s1" || serials[1] != "s3" {
			t.Fatalf("serials %v %v", serials, err)
		}
		body := `{"version":"` + nasty[0] + `"}`
		for seq := range 3 {
			if err := s.PutReport(ctx, &store.Report{NodeID: n.ID, ReportedAt: t0.Add(time.Duration(seq) * time.Second), Sequence: int64(seq), Body: body}); err != nil {
				t.Fatal(err)
			}
		}
		reps, err := s.ListReports(ctx, 0)
		if err != nil || len(reps) != 1 || reps[0].Sequence != 2 || reps[0].Body != body || reps[0].NodeName != "alpha" {
			t.Fatalf("reports %+v %v", reps, err)
		}
		if err := s.MarkNodeRevoked(ctx, n.ID, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		n.Serial = "s4"
		if err := s.UpdateNodeCertificate(ctx, n, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("renewing a revoked node: %v", err)
		}
		// A revoked node's name can be enrolled again (with new keys); the old record goes.
		again := &store.Node{Name: "alpha", KeyID: "k2", Overlay: "fd74::2", SPIFFEID: "spiffe://m/node/alpha", PublicKeyPEM: "p2",
			Serial: "s5", CertPEM: "c5", SVIDPEM: "v5", NotBefore: t0, NotAfter: t0.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: t0}
		if err := s.InsertNode(ctx, again); err != nil {
			t.Fatal(err)
		}
		if reps, _ := s.ListReports(ctx, 0); len(reps) != 0 {
			t.Fatalf("old report survived re-enrollment: %+v", reps)
		}
		if c, _ := s.CountNodes(ctx); c != 1 {
			t.Fatalf("nodes %d", c)
		}

		for i, d := range nasty {
			if err := s.AddAudit(ctx, &store.AuditEntry{At: t0.Add(time.Duration(i) * time.Hour), Actor: "user:" + d, Action: "test", Target: d, Detail: d, Remote: "127.0.0.1"}); err != nil {
				t.Fatal(err)
			}
		}
		entries, err := s.ListAudit(ctx, 0, 2)
		if err != nil || len(entries) != 2 || entries[0].Target != nasty[len(nasty)-1] {
			t.Fatalf("audit %+v %v", entries, err)
		}
		older, _ := s.ListAudit(ctx, entries[1].ID, 0)
		if len(older) != len(nasty)-2 {
			t.Fatalf("older audit entries %d", len(older))
		}
		if n, err := s.PruneAudit(ctx, t0.Add(2*time.Hour)); err != nil || n != 2 {
			t.Fatalf("prune %d %v", n, err)
		}
	})
}

func TestTxRollback(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		boom := errors.New("boom")
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.CreateUser(ctx, &store.User{Username: "ghost", PasswordHash: "h", Role: "viewer", CreatedAt: t0}); err != nil {
				return err
			}
			if err := tx.AddAudit(ctx, &store.AuditEntry{At: t0, Actor: "system", Action: "user.register", Target: "ghost"}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("InTx: %v", err)
		}
		if _, err := s.UserByName(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("rolled-back user exists: %v", err)
		}
		if a, _ := s.ListAudit(ctx, 0, 0); len(a) != 0 {
			t.Fatalf("rolled-back audit entry exists")
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []store.Config{
		{Driver: "mysql"},
		{Driver: store.SQLite},
		{Driver: store.Postgres},
		{Driver: store.SQLite, Path: t.TempDir() + "/x.db", Synchronous: "off"},
		{Driver: store.SQLite, Path: t.TempDir() + "/no/such/dir/x.db"},
	} {
		if s, err := store.Open(ctx, cfg); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// The SQLite database and its WAL and shared-memory files are private to the service's user,
// whatever the umask, and an older database left readable by others is tightened on open.
func TestSQLiteFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "control.db")
	check := func() {
		t.Helper()
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("%s: mode %o, want 600", filepath.Base(p), perm)
			}
		}
	}
	s := storetest.Open(t, store.Config{Driver: store.SQLite, Path: path})
	if _, err := s.CountNodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	check()
	s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Chmod(p, 0o644)
	}
	storetest.Open(t, store.Config{Driver: store.SQLite, Path: path})
	check()
}
