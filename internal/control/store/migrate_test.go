package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

// migrationSeeds holds, for each migration (index v-1 for migration v), rows written the way the
// release that ended with it wrote them, into the tables that migration created. A new migration
// must add its entry: TestMigrateForwardFromEveryVersion refuses to run without it.
var migrationSeeds = []struct {
	rows   []string       // INSERT/UPDATE statements
	counts map[string]int // table -> rows it must hold after the seeds of this and earlier migrations
	fresh  map[string]int // table -> rows the migration itself inserts
}{
	{ // 1
		rows: []string{
			`INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) VALUES ('alice', 'h-alice', 'admin', 0, 1, 1)`,
			`INSERT INTO sessions (prefix, hash, user_id, created_at, expires_at) VALUES ('s1', 'hs', (SELECT id FROM users WHERE username = 'alice'), 1, 4102444800000)`,
			`INSERT INTO api_keys (prefix, hash, user_id, name, role, created_at) VALUES ('k1', 'hk', (SELECT id FROM users WHERE username = 'alice'), 'ci', 'operator', 1)`,
			`INSERT INTO join_tokens (prefix, hash, node_name, groups_list, cert_ttl_ms, description, created_by, created_at, expires_at) VALUES ('j1', 'hj', 'n1', 'edge', 3600000, 'first', 'alice', 1, 4102444800000)`,
			`INSERT INTO nodes (name, key_id, overlay, spiffe_id, groups_list, public_key_pem, serial, cert_pem, svid_pem, not_before, not_after, cert_ttl_ms, enrolled_at) VALUES ('n1', 'kid1', 'fd00::1', 'spiffe://x/n1', 'edge', 'pk', '01', 'cert', 'svid', 1, 4102444800000, 3600000, 1)`,
			`INSERT INTO certificates (serial, node_id, key_id, issued_at, not_after) VALUES ('01', (SELECT id FROM nodes WHERE name = 'n1'), 'kid1', 1, 4102444800000)`,
			`INSERT INTO mesh_reports (node_id, reported_at, sequence, report) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 1, 1, '{}')`,
			`INSERT INTO audit_log (at, actor, action, target, detail, remote) VALUES (1, 'alice', 'enroll', 'n1', '', '127.0.0.1')`,
		},
		counts: map[string]int{"users": 1, "sessions": 1, "api_keys": 1, "join_tokens": 1, "nodes": 1,
			"certificates": 1, "mesh_reports": 1, "audit_log": 1},
	},
	{ // 2
		rows: []string{
			`INSERT INTO mesh_records (node_id, sequence, expires_at, certificate, record, received_at, generation, published_expires, published_digest) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 1, 4102444800000, 'cert', 'rec', 1, 1, 4102444800000, 'd')`,
			`UPDATE mesh_record_generation SET generation = 1 WHERE id = 1`,
		},
		counts: map[string]int{"mesh_records": 1, "mesh_record_generation": 1},
		fresh:  map[string]int{"mesh_record_generation": 1},
	},
	{ // 3
		rows:   []string{`INSERT INTO policies (version, issued_at, issued_by, signed, source) VALUES (1, 1, 'alice', 'signed', 'allow: all')`},
		counts: map[string]int{"policies": 1},
	},
	{ // 4
		rows: []string{
			`INSERT INTO billing_plans (name, price_usdt, price_ton, node_quota, duration_ms, created_at, updated_at) VALUES ('basic', 5000000, 2000000000, 3, 2592000000, 1, 1)`,
			`INSERT INTO billing_invoices (account, plan_id, network, amount, receiver, reference, status, created_by, created_at, expires_at, paid_at, paid_amount) VALUES ('acme', (SELECT id FROM billing_plans WHERE name = 'basic'), 'tron-usdt', 5000001, 'T-recv', 'ref1', 'paid', 'alice', 1, 4102444800000, 2, 5000001)`,
			`INSERT INTO billing_payments (network, tx_id, event_index, invoice_id, outcome, reason, sender, amount, block_time, recorded_at, recorded_by) VALUES ('tron-usdt', 'tx1', 0, (SELECT id FROM billing_invoices WHERE reference = 'ref1'), 'paid', '', 'T-send', 5000001, 2, 2, 'watcher')`,
			`INSERT INTO billing_subscriptions (account, plan_id, node_quota, expires_at, updated_at) VALUES ('acme', (SELECT id FROM billing_plans WHERE name = 'basic'), 3, 4102444800000, 2)`,
			`INSERT INTO billing_cursors (network, position, updated_at) VALUES ('tron-usdt', 42, 2)`,
			`INSERT INTO billing_join_tokens (join_token_id, account) VALUES ((SELECT id FROM join_tokens WHERE prefix = 'j1'), 'acme')`,
			`INSERT INTO billing_nodes (node_id, account) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 'acme')`,
		},
		counts: map[string]int{"billing_plans": 1, "billing_invoices": 1, "billing_payments": 1,
			"billing_subscriptions": 1, "billing_cursors": 1, "billing_join_tokens": 1, "billing_nodes": 1},
	},
	{ // 5
		rows:   []string{`INSERT INTO revocation_lists (number, signed_at, pem) VALUES (1, 1, 'pem')`},
		counts: map[string]int{"revocation_lists": 1},
	},
	{ // 6
		rows: []string{
			`INSERT INTO gov_log (seq, hash, kind, at, entry) VALUES (1, 'h1', 1, 1, '{}')`,
			`INSERT INTO gov_proposals (id, log_seq, created_by) VALUES ('p1', 1, 'alice')`,
			`INSERT INTO gov_ballots (proposal, voter, sequence, log_seq) VALUES ('p1', 'm1', 1, 2)`,
		},
		counts: map[string]int{"gov_log": 1, "gov_proposals": 1, "gov_ballots": 1},
	},
	{ // 7
		rows: []string{
			`INSERT INTO node_healing (node_id, reported_at, journal) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 1, '[]')`,
		},
		counts: map[string]int{"node_healing": 1},
	},
	{ // 8
		rows: []string{
			`INSERT INTO report_log (node_id, reported_at, size, report) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 1, 2, '{}')`,
			`INSERT INTO incidents (node_name, kind, from_at, to_at, note, created_by, created_at) VALUES ('n1', 'blackhole', 1, 2, '', 'alice', 1)`,
		},
		counts: map[string]int{"report_log": 1, "incidents": 1},
	},
	{ // 9
		rows: []string{
			`INSERT INTO mesh_proofs (node_id, area, sequence, expires_at, certificate, record, received_at, generation, published_expires, published_digest) VALUES ((SELECT id FROM nodes WHERE name = 'n1'), 7, 1, 4102444800000, 'cert', 'proof', 1, 1, 4102444800000, 'd')`,
			`UPDATE mesh_proof_generation SET generation = 1 WHERE id = 1`,
		},
		counts: map[string]int{"mesh_proofs": 1, "mesh_proof_generation": 1},
		fresh:  map[string]int{"mesh_proof_generation": 1},
	},
	{ // 10: a column of mesh_records, no table; the rows before it read as of every area (checkMigratedRows)
	},
	{ // 11: a column of nodes, no table; the nodes enrolled before it named no area (checkMigratedRows)
	},
}

// TestMigrateForwardFromEveryVersion builds the database every earlier schema version left behind,
// with rows in each of its tables, and opens it with this build: it must reach the newest version
// with every row still there and the stores' methods still reading and writing it.
func TestMigrateForwardFromEveryVersion(t *testing.T) {
	if len(migrationSeeds) != store.SchemaVersion {
		t.Fatalf("%d migrations but seeds for %d: add the rows the new migration's tables hold", store.SchemaVersion, len(migrationSeeds))
	}
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		for k := 1; k < store.SchemaVersion; k++ {
			t.Run(fmt.Sprintf("%s/from-%d", b.Name, k), func(t *testing.T) {
				cfg := b.Config(t)
				old, err := store.OpenAtVersion(ctx, cfg, k)
				if err != nil {
					t.Fatal(err)
				}
				if v, err := old.Version(ctx); err != nil || v != k {
					old.Close()
					t.Fatalf("old database at version %d, %v; want %d", v, err, k)
				}
				want := map[string]int{} // tables newer than k hold only what their migration inserts
				for _, seed := range migrationSeeds {
					for table, n := range seed.fresh {
						want[table] = n
					}
				}
				for v := 1; v <= k; v++ {
					for _, q := range migrationSeeds[v-1].rows {
						if err := old.ExecSQL(ctx, q); err != nil {
							old.Close()
							t.Fatalf("seed of migration %d: %v\n%s", v, err, q)
						}
					}
					for table, n := range migrationSeeds[v-1].counts {
						want[table] = n
					}
				}
				old.Close()

				s := storetest.Open(t, cfg)
				if v, err := s.Version(ctx); err != nil || v != store.SchemaVersion {
					t.Fatalf("after opening: version %d, %v; want %d", v, err, store.SchemaVersion)
				}
				for v := 1; v <= store.SchemaVersion; v++ {
					for table := range migrationSeeds[v-1].counts {
						n, err := s.CountRows(ctx, table)
						if err != nil {
							t.Fatalf("%s: %v", table, err)
						}
						if n != want[table] {
							t.Errorf("%s holds %d rows after migrating from %d; want %d", table, n, k, want[table])
						}
					}
				}
				checkMigratedRows(t, s, k)
			})
		}
	}
}

// checkMigratedRows reads the seeded rows back through the store's own methods and writes new ones,
// so a migration that kept the rows but broke their columns or sequences fails too.
func checkMigratedRows(t *testing.T, s *store.Store, k int) {
	t.Helper()
	ctx := context.Background()
	u, err := s.UserByName(ctx, "alice")
	if err != nil || u.PasswordHash != "h-alice" || u.Role != "admin" {
		t.Fatalf("alice after migration: %+v, %v", u, err)
	}
	bob := &store.User{Username: "bob", PasswordHash: "h-bob", Role: "viewer", CreatedAt: time.UnixMilli(5)}
	if err := s.CreateUser(ctx, bob); err != nil || bob.ID == u.ID {
		t.Fatalf("new user after migration: id %d (alice %d), %v", bob.ID, u.ID, err)
	}
	if k >= 4 {
		plans, err := s.ListPlans(ctx)
		if err != nil || len(plans) != 1 || plans[0].Name != "basic" || plans[0].NodeQuota != 3 {
			t.Fatalf("plans after migration: %+v, %v", plans, err)
		}
	}
	if k >= 5 {
		n, _, err := s.LatestRevocationList(ctx)
		if err != nil || n != 1 {
			t.Fatalf("revocation list after migration: %d, %v", n, err)
		}
	}
	if k >= 2 {
		// n1's record was written before records kept their area: it is handed to every area. (Its
		// seeded bytes are not base64, which reading it back decodes.)
		if err := s.ExecSQL(ctx, `UPDATE mesh_records SET record = 'cmVj'`); err != nil {
			t.Fatal(err)
		}
		rs, err := s.ListSigned(ctx, store.Records, store.AreaFilter{Area: 5, Same: true}, 0, 1<<40, time.UnixMilli(2), 0)
		if err != nil || len(rs) != 1 || rs[0].NodeName != "n1" {
			t.Fatalf("records for area 5 after migration from %d: %+v, %v", k, rs, err)
		}
	}
	if k >= 1 && k < 11 {
		// n1 enrolled before nodes kept the area they named: it named none.
		if n, err := s.NodeByName(ctx, "n1"); err != nil || n.EnrolmentArea != nil {
			t.Fatalf("n1 after migration from %d: %+v, %v", k, n, err)
		}
	}
	if k >= 2 && k < 10 {
		// ... and its record was stored before records kept theirs: its area is unknown.
		if n, err := s.NodeByName(ctx, "n1"); err != nil || n.RecordArea != nil {
			t.Fatalf("n1's record area after migration from %d: %+v, %v", k, n, err)
		}
	}
	p := &store.Plan{Name: "pro", PriceUSDT: 1, PriceTON: 1, NodeQuota: 10, Duration: time.Hour, CreatedAt: time.UnixMilli(5)}
	if err := s.CreatePlan(ctx, p); err != nil {
		t.Fatalf("new plan after migration from %d: %v", k, err)
	}
}
