package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// migrations is the one schema history of both databases, oldest first; a released migration is
// never edited, only followed by a new one. "{{ID}}" stands for the dialect's auto-incrementing
// 64-bit primary key; everything else is SQL that SQLite and PostgreSQL read alike: TEXT, BIGINT
// and INTEGER columns only, timestamps as Unix milliseconds (0 = unset).
var migrations = []string{
	// 1: the initial schema.
	`CREATE TABLE users (
		id {{ID}},
		username TEXT NOT NULL UNIQUE,
		password_hash TEXT NOT NULL,
		role TEXT NOT NULL,
		disabled INTEGER NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE sessions (
		id {{ID}},
		prefix TEXT NOT NULL UNIQUE,
		hash TEXT NOT NULL,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		revoked_at BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX sessions_user ON sessions(user_id);
	CREATE INDEX sessions_expires ON sessions(expires_at);
	CREATE TABLE api_keys (
		id {{ID}},
		prefix TEXT NOT NULL UNIQUE,
		hash TEXT NOT NULL,
		user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		name TEXT NOT NULL,
		role TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL DEFAULT 0,
		revoked_at BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX api_keys_user ON api_keys(user_id);
	CREATE TABLE join_tokens (
		id {{ID}},
		prefix TEXT NOT NULL UNIQUE,
		hash TEXT NOT NULL,
		node_name TEXT NOT NULL,
		groups_list TEXT NOT NULL,
		cert_ttl_ms BIGINT NOT NULL,
		description TEXT NOT NULL,
		created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		used_at BIGINT NOT NULL DEFAULT 0,
		used_by TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX join_tokens_expires ON join_tokens(expires_at);
	CREATE TABLE nodes (
		id {{ID}},
		name TEXT NOT NULL UNIQUE,
		key_id TEXT NOT NULL,
		overlay TEXT NOT NULL,
		spiffe_id TEXT NOT NULL,
		groups_list TEXT NOT NULL,
		public_key_pem TEXT NOT NULL,
		serial TEXT NOT NULL,
		cert_pem TEXT NOT NULL,
		svid_pem TEXT NOT NULL,
		not_before BIGINT NOT NULL,
		not_after BIGINT NOT NULL,
		cert_ttl_ms BIGINT NOT NULL,
		enrolled_at BIGINT NOT NULL,
		renewed_at BIGINT NOT NULL DEFAULT 0,
		revoked_at BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX nodes_key ON nodes(key_id);
	CREATE TABLE certificates (
		serial TEXT NOT NULL PRIMARY KEY,
		node_id BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		key_id TEXT NOT NULL,
		issued_at BIGINT NOT NULL,
		not_after BIGINT NOT NULL
	);
	CREATE INDEX certificates_node ON certificates(node_id);
	CREATE TABLE mesh_reports (
		node_id BIGINT NOT NULL PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		reported_at BIGINT NOT NULL,
		sequence BIGINT NOT NULL,
		report TEXT NOT NULL
	);
	CREATE TABLE audit_log (
		id {{ID}},
		at BIGINT NOT NULL,
		actor TEXT NOT NULL,
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		detail TEXT NOT NULL,
		remote TEXT NOT NULL
	);
	CREATE INDEX audit_log_at ON audit_log(at);`,
	// 2: the latest signed link-state record of each node, handed to the nodes that may reach it, and
	// the counter that numbers what was handed out (records.go).
	`CREATE TABLE mesh_records (
		node_id BIGINT NOT NULL PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		sequence BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		certificate TEXT NOT NULL,
		record TEXT NOT NULL,
		received_at BIGINT NOT NULL,
		generation BIGINT NOT NULL,
		published_expires BIGINT NOT NULL,
		published_digest TEXT NOT NULL
	);
	CREATE UNIQUE INDEX mesh_records_generation ON mesh_records(generation);
	CREATE TABLE mesh_record_generation (
		id INTEGER NOT NULL PRIMARY KEY,
		generation BIGINT NOT NULL
	);
	INSERT INTO mesh_record_generation (id, generation) VALUES (1, 0);`,
	// 3: the signed versions of the mesh access policy (policy.go).
	`CREATE TABLE policies (
		version BIGINT NOT NULL PRIMARY KEY,
		issued_at BIGINT NOT NULL,
		issued_by TEXT NOT NULL,
		signed TEXT NOT NULL,
		source TEXT NOT NULL
	);`,
	// 4: plans, invoices, on-chain payments and subscriptions (billing.go). Money is BIGINT in the
	// network's smallest unit. UNIQUE (network, tx_id, event_index) makes the database, not only
	// the code, record each on-chain transfer once; the partial indexes keep each invoice credited
	// at most once and each open TRON invoice's amount unique (it is what identifies the invoice).
	`CREATE TABLE billing_plans (
		id {{ID}},
		name TEXT NOT NULL UNIQUE,
		price_usdt BIGINT NOT NULL,
		price_ton BIGINT NOT NULL,
		node_quota INTEGER NOT NULL,
		duration_ms BIGINT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE billing_invoices (
		id {{ID}},
		account TEXT NOT NULL,
		plan_id BIGINT NOT NULL REFERENCES billing_plans(id),
		network TEXT NOT NULL,
		amount BIGINT NOT NULL,
		receiver TEXT NOT NULL,
		reference TEXT NOT NULL UNIQUE,
		status TEXT NOT NULL,
		created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		paid_at BIGINT NOT NULL DEFAULT 0,
		paid_amount BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX billing_invoices_account ON billing_invoices(account);
	CREATE INDEX billing_invoices_status ON billing_invoices(status, network);
	CREATE UNIQUE INDEX billing_invoices_open_tron_amount ON billing_invoices(amount) WHERE status = 'open' AND network = 'tron-usdt';
	CREATE TABLE billing_payments (
		id {{ID}},
		network TEXT NOT NULL,
		tx_id TEXT NOT NULL,
		event_index INTEGER NOT NULL,
		invoice_id BIGINT NOT NULL DEFAULT 0,
		outcome TEXT NOT NULL,
		reason TEXT NOT NULL,
		sender TEXT NOT NULL,
		amount BIGINT NOT NULL,
		block_time BIGINT NOT NULL,
		recorded_at BIGINT NOT NULL,
		recorded_by TEXT NOT NULL,
		UNIQUE (network, tx_id, event_index)
	);
	CREATE UNIQUE INDEX billing_payments_credit ON billing_payments(invoice_id) WHERE outcome IN ('paid', 'overpaid');
	CREATE INDEX billing_payments_invoice ON billing_payments(invoice_id);
	CREATE TABLE billing_subscriptions (
		account TEXT NOT NULL PRIMARY KEY,
		plan_id BIGINT NOT NULL REFERENCES billing_plans(id),
		node_quota INTEGER NOT NULL,
		expires_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE billing_cursors (
		network TEXT NOT NULL PRIMARY KEY,
		position BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE billing_join_tokens (
		join_token_id BIGINT NOT NULL PRIMARY KEY REFERENCES join_tokens(id) ON DELETE CASCADE,
		account TEXT NOT NULL
	);
	CREATE TABLE billing_nodes (
		node_id BIGINT NOT NULL PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		account TEXT NOT NULL
	);
	CREATE INDEX billing_nodes_account ON billing_nodes(account);`,
	// 5: the signed revocation lists, so that every control-plane instance on one database serves
	// the same newest list (crl.go).
	`CREATE TABLE revocation_lists (
		number BIGINT NOT NULL PRIMARY KEY,
		signed_at BIGINT NOT NULL,
		pem TEXT NOT NULL
	);`,
	// 6: member governance (governance.go): the hash-chained log is the record; proposals and
	// ballots index it. The log's sequence is the primary key, so two control planes that append
	// at once cannot both succeed: one retries on the new head.
	`CREATE TABLE gov_log (
		seq BIGINT NOT NULL PRIMARY KEY,
		hash TEXT NOT NULL,
		kind INTEGER NOT NULL,
		at BIGINT NOT NULL,
		entry TEXT NOT NULL
	);
	CREATE TABLE gov_proposals (
		id TEXT NOT NULL PRIMARY KEY,
		log_seq BIGINT NOT NULL,
		created_by TEXT NOT NULL,
		policy_version BIGINT NOT NULL DEFAULT 0,
		enacted_seq BIGINT NOT NULL DEFAULT 0
	);
	CREATE TABLE gov_ballots (
		proposal TEXT NOT NULL,
		voter TEXT NOT NULL,
		sequence BIGINT NOT NULL,
		log_seq BIGINT NOT NULL,
		PRIMARY KEY (proposal, voter)
	);`,
	// The latest self-healing journal each node reported: kept apart from mesh_reports so the
	// mesh view, rebuilt from every report, does not read it.
	`CREATE TABLE node_healing (
		node_id BIGINT NOT NULL PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		reported_at BIGINT NOT NULL,
		journal TEXT NOT NULL
	);`,
	// 8: recorded reports (the detector's telemetry, opt-in with ai.record) and labelled
	// incidents, the training data of `ai train --from-records` (reportlog.go).
	`CREATE TABLE report_log (
		id {{ID}},
		node_id BIGINT NOT NULL REFERENCES nodes(id),
		reported_at BIGINT NOT NULL,
		size BIGINT NOT NULL,
		report TEXT NOT NULL
	);
	CREATE INDEX report_log_at ON report_log(reported_at);
	CREATE TABLE incidents (
		id {{ID}},
		node_name TEXT NOT NULL,
		kind TEXT NOT NULL,
		from_at BIGINT NOT NULL,
		to_at BIGINT NOT NULL,
		note TEXT NOT NULL,
		created_by TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX incidents_from ON incidents(from_at);`,
	// 9: the latest destination proof of each node of an area (its level-2 record naming its area's
	// gateways), handed to the nodes of other areas that may reach it, and the counter that numbers
	// what was handed out (proofs.go).
	`CREATE TABLE mesh_proofs (
		node_id BIGINT NOT NULL PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
		area BIGINT NOT NULL,
		sequence BIGINT NOT NULL,
		expires_at BIGINT NOT NULL,
		certificate TEXT NOT NULL,
		record TEXT NOT NULL,
		received_at BIGINT NOT NULL,
		generation BIGINT NOT NULL,
		published_expires BIGINT NOT NULL,
		published_digest TEXT NOT NULL
	);
	CREATE UNIQUE INDEX mesh_proofs_generation ON mesh_proofs(generation);
	CREATE TABLE mesh_proof_generation (
		id INTEGER NOT NULL PRIMARY KEY,
		generation BIGINT NOT NULL
	);
	INSERT INTO mesh_proof_generation (id, generation) VALUES (1, 0);`,
	// 10: the routing area each stored record is signed with, so that a node is handed the records of
	// its own area only (records.go); -1 marks a record stored before the area was kept, handed to
	// every area until the node's next report replaces it.
	`ALTER TABLE mesh_records ADD COLUMN area BIGINT NOT NULL DEFAULT -1;`,
	// 11: the routing area a node named when it enrolled (-1: none), its area until its first signed
	// record says which it is (records.go, callerArea).
	`ALTER TABLE nodes ADD COLUMN routing_area BIGINT NOT NULL DEFAULT -1;`,
}

// SchemaVersion is the number of migrations this build knows.
var SchemaVersion = len(migrations)

// migrate applies the migrations after the database's version up to and including target.
func (s *Store) migrate(ctx context.Context, target int) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if s.d.name == Postgres {
			// Two control processes starting at once migrate one after the other.
			if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(7460617)"); err != nil {
				return fmt.Errorf("store: migration lock: %w", err)
			}
		}
		if _, err := tx.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER NOT NULL PRIMARY KEY,
			applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("store: create schema_migrations: %w", err)
		}
		var have int
		if err := tx.queryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&have); err != nil {
			return fmt.Errorf("store: read schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("store: database schema version %d is newer than this build's %d; upgrade the binary", have, len(migrations))
		}
		for v := have + 1; v <= target; v++ {
			text := strings.ReplaceAll(migrations[v-1], "{{ID}}", s.d.autoID)
			for _, stmt := range strings.Split(text, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.exec(ctx, stmt); err != nil {
					return fmt.Errorf("store: migration %d: %w", v, err)
				}
			}
			if _, err := tx.exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", v, time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("store: record migration %d: %w", v, err)
			}
		}
		return nil
	})
}

// Version returns the schema version recorded in the database.
func (s *Store) Version(ctx context.Context) (int, error) {
	var v int
	if err := s.queryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return v, nil
}
