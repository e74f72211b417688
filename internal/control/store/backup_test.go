package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

// fill puts rows in every table, with the SQL-shaped strings of nasty in text columns.
func fill(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	for i, name := range []string{"alice", "bob", nasty[0]} {
		u := &store.User{Username: name, PasswordHash: "h" + name, Role: "admin", CreatedAt: t0}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateSession(ctx, &store.Session{Prefix: fmt.Sprint("s", i), Hash: "sh", UserID: u.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateAPIKey(ctx, &store.APIKey{Prefix: fmt.Sprint("k", i), Hash: "kh", UserID: u.ID, Name: nasty[1], Role: "viewer", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateJoinToken(ctx, &store.JoinToken{Prefix: "j1", Hash: "jh", NodeName: "alpha", Groups: []string{"web", "db"},
		CertTTL: time.Hour, Description: nasty[2], CreatedBy: "user:alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"alpha", "beta"} {
		n := &store.Node{Name: name, KeyID: "k" + name, Overlay: fmt.Sprintf("fd74::%d", i+1), SPIFFEID: "spiffe://m/node/" + name,
			Groups: []string{"web"}, PublicKeyPEM: "pub", Serial: "s" + name, CertPEM: "c", SVIDPEM: "v", NotBefore: t0,
			NotAfter: t0.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: t0}
		if err := s.InsertNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if err := s.PutReport(ctx, &store.Report{NodeID: n.ID, ReportedAt: t0, Sequence: 7, Body: `{"v":"` + nasty[3] + `"}`}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddRecordedReport(ctx, &store.RecordedReport{NodeID: n.ID, ReportedAt: t0, Body: `{"v":"` + nasty[4] + `"}`}); err != nil {
			t.Fatal(err)
		}
		g, err := s.NextRecordGeneration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutRecord(ctx, &store.MeshRecord{NodeID: n.ID, Sequence: 3, Expires: t0.Add(time.Hour), Certificate: []byte("cert"),
			Record: []byte("rec\x00\xff"), ReceivedAt: t0, Generation: g, PublishedExpires: t0.Add(time.Hour), PublishedDigest: "d"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range nasty {
		if err := s.AddAudit(ctx, &store.AuditEntry{At: t0.Add(time.Duration(i) * time.Second), Actor: "user:alice", Action: "test", Target: d, Detail: d, Remote: "::1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertPolicy(ctx, &store.Policy{Version: 1, IssuedAt: t0, IssuedBy: "user:alice", Signed: []byte{0, 1, 2, 255}, Source: nasty[5]}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertIncident(ctx, &store.Incident{NodeName: "alpha", Kind: "greyhole", From: t0, To: t0.Add(time.Minute), Note: nasty[0], CreatedBy: "user:alice", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

// rowsOf returns a driver-neutral picture of a dump: per table, each row as sorted
// column=value pairs, the rows sorted.
func rowsOf(t *testing.T, dump []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	var cols []string
	lines := bytes.Split(bytes.TrimSpace(dump), []byte("\n"))
	for _, l := range lines[1:] {
		var v struct {
			Table   string   `json:"table"`
			Columns []string `json:"columns"`
			Row     []any    `json:"row"`
		}
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatal(err)
		}
		if v.Columns != nil {
			cols = v.Columns
			out[v.Table] = []string{}
			continue
		}
		pairs := make([]string, len(cols))
		for i, c := range cols {
			pairs[i] = fmt.Sprintf("%s=%v", c, v.Row[i])
		}
		sort.Strings(pairs)
		out[v.Table] = append(out[v.Table], strings.Join(pairs, " "))
	}
	for _, r := range out {
		sort.Strings(r)
	}
	return out
}

// TestBackupRestoreAcrossDrivers dumps a filled database of each driver and restores the dump into
// a fresh database of every driver (SQLite to PostgreSQL and back); the restored database dumps
// to the same rows and takes new rows after the restored ones.
func TestBackupRestoreAcrossDrivers(t *testing.T) {
	ctx := context.Background()
	backends := storetest.Backends(t)
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.Name+"-to-"+to.Name, func(t *testing.T) {
				src := storetest.Open(t, from.Config(t))
				fill(t, src)
				var dump bytes.Buffer
				st, err := src.Backup(ctx, &dump)
				if err != nil {
					t.Fatal(err)
				}
				if st.Schema != store.SchemaVersion || st.Rows["users"] != 3 || st.Rows["audit_log"] != len(nasty) || st.Rows["mesh_records"] != 2 {
					t.Fatalf("backup stats %+v", st)
				}
				dst := storetest.Open(t, to.Config(t))
				rst, err := dst.Restore(ctx, bytes.NewReader(dump.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(rst.Rows) != fmt.Sprint(st.Rows) {
					t.Fatalf("restored %v, dumped %v", rst.Rows, st.Rows)
				}
				var again bytes.Buffer
				if _, err := dst.Backup(ctx, &again); err != nil {
					t.Fatal(err)
				}
				want, got := rowsOf(t, dump.Bytes()), rowsOf(t, again.Bytes())
				if fmt.Sprint(want) != fmt.Sprint(got) {
					t.Fatalf("restored database differs:\nwant %v\ngot  %v", want, got)
				}
				u, err := dst.UserByName(ctx, nasty[0])
				if err != nil || u.PasswordHash != "h"+nasty[0] {
					t.Fatalf("restored user %+v %v", u, err)
				}
				p, err := dst.LatestPolicy(ctx)
				if err != nil || !bytes.Equal(p.Signed, []byte{0, 1, 2, 255}) || p.Source != nasty[5] {
					t.Fatalf("restored policy %+v %v", p, err)
				}
				// New rows take ids after the restored ones, and the record generation goes on.
				nu := &store.User{Username: "carol", PasswordHash: "h", Role: "viewer", CreatedAt: t0}
				if err := dst.CreateUser(ctx, nu); err != nil || nu.ID <= 3 {
					t.Fatalf("new user after restore: id %d, %v", nu.ID, err)
				}
				if g, err := dst.NextRecordGeneration(ctx); err != nil || g != 3 {
					t.Fatalf("record generation after restore: %d %v", g, err)
				}
				// A second restore into the now non-empty database is refused and changes nothing.
				if _, err := dst.Restore(ctx, bytes.NewReader(dump.Bytes())); err == nil || !strings.Contains(err.Error(), "not empty") {
					t.Fatalf("restore into a filled database: %v", err)
				}
				if n, _ := dst.CountUsers(ctx); n != 4 {
					t.Fatalf("users after refused restore: %d", n)
				}
			})
		}
	}
}

// TestRestoreIsAllOrNothing feeds dumps cut short or corrupted mid-way: each is refused and the
// database stays empty.
func TestRestoreIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := storetest.Open(t, b.Config(t))
			fill(t, s)
			var dump bytes.Buffer
			if _, err := s.Backup(ctx, &dump); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(dump.String()), "\n")
			bad := map[string]string{
				"not a dump":         "hello\n",
				"empty":              "",
				"newer format":       strings.Replace(lines[0], `"version":1`, `"version":9`, 1) + "\n",
				"other schema":       strings.Replace(lines[0], fmt.Sprintf(`"schema":%d`, store.SchemaVersion), `"schema":1`, 1) + "\n",
				"truncated row":      strings.Join(lines[:len(lines)-1], "\n") + "\n" + lines[len(lines)-1][:10] + "\n",
				"row of wrong width": strings.Join(lines, "\n") + "\n" + `{"table":"policies","row":[1]}` + "\n",
				"unknown table":      strings.Join(lines[:3], "\n") + "\n" + `{"table":"evil","columns":["a"]}` + "\n",
				"bad column name":    lines[0] + "\n" + `{"table":"users","columns":["id; DROP TABLE users"]}` + "\n",
				"table out of order": lines[0] + "\n" + `{"table":"policies","columns":["version"]}` + "\n" + `{"table":"users","columns":["id"]}` + "\n",
			}
			for name, d := range bad {
				t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
					dst := storetest.Open(t, b.Config(t))
					if _, err := dst.Restore(ctx, strings.NewReader(d)); err == nil {
						t.Fatal("accepted")
					}
					var again bytes.Buffer
					if st, err := dst.Backup(ctx, &again); err != nil || st.Rows["users"] != 0 || st.Rows["audit_log"] != 0 || st.Rows["mesh_record_generation"] != 1 {
						t.Fatalf("after a refused restore: %+v %v", st, err)
					}
				})
			}
		})
	}
}

// TestBackupKnowsEveryTable fails when a migration adds a table that the restore order lacks.
func TestBackupKnowsEveryTable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if _, err := s.Backup(context.Background(), new(bytes.Buffer)); err != nil {
			t.Fatal(err)
		}
	})
}
