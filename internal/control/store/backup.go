package store

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// backupFormat names the dump format; backupFormatVersion changes if its layout does.
const (
	backupFormat        = "x0tta6bl4-control-database"
	backupFormatVersion = 1
	// maxBackupLine bounds one line of a dump read back: one row, whose largest values are a
	// report (limits.max_report_bytes, 1 MiB by default) or a certificate chain, JSON-escaped.
	maxBackupLine = 16 << 20
	// backupStatementTimeout bounds one statement of a dump (reading one whole table).
	backupStatementTimeout = 30 * time.Minute
)

// restoreOrder lists every table in an order where each comes after the tables it references, so
// rows restore without deferring foreign keys (which PostgreSQL cannot do for these constraints).
// A table the schema has and this list lacks makes Backup fail: a new migration that adds one
// must place it here.
var restoreOrder = []string{
	"users", "sessions", "api_keys", "join_tokens", "nodes", "certificates", "mesh_reports",
	"audit_log", "mesh_records", "mesh_record_generation", "mesh_proofs", "mesh_proof_generation", "policies",
	"billing_plans", "billing_invoices", "billing_payments", "billing_subscriptions", "billing_cursors",
	"billing_join_tokens", "billing_nodes", "revocation_lists",
	"gov_log", "gov_proposals", "gov_ballots", "node_healing",
	"report_log", "incidents",
}

// dataTables must be empty for a restore: they hold what users and nodes created. The others hold
// only rows that migrations seed, which the restore replaces.
var dataTables = []string{"users", "nodes", "join_tokens", "audit_log", "policies", "billing_plans", "billing_invoices", "billing_payments", "revocation_lists", "gov_log", "report_log", "incidents"}

// BackupHeader is the first line of a dump.
type BackupHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Schema is the schema version (migrations applied) of the database dumped.
	Schema int    `json:"schema"`
	Driver string `json:"driver"`
}

// backupLine is every other line: a table's columns once, then its rows, each value a JSON number
// (INTEGER and BIGINT columns), string (TEXT) or null.
type backupLine struct {
	Table   string   `json:"table"`
	Columns []string `json:"columns,omitempty"`
	Row     []any    `json:"row,omitempty"`
}

// BackupStats counts what a backup wrote or a restore read, by table.
type BackupStats struct {
	Schema int
	Rows   map[string]int
}

// Backup writes the whole database as a dump that Restore reads into either driver. It reads in
// one transaction, so the dump is one consistent point in time while the service goes on serving:
// a snapshot on PostgreSQL (repeatable read), and on SQLite a transaction that writers queue behind
// (busy_timeout) for the few milliseconds it takes.
func (s *Store) Backup(ctx context.Context, w io.Writer) (BackupStats, error) {
	st := BackupStats{Rows: map[string]int{}}
	opts := &sql.TxOptions{ReadOnly: true}
	if s.d.name == Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return st, fmt.Errorf("store: backup: begin: %w", err)
	}
	defer tx.Rollback()
	// A dump reads whole tables, so its statements get backupStatementTimeout rather than the
	// service's short deadline; the caller's context still bounds the whole backup.
	o := s.Ops
	o.q = tx
	o.timeout = max(o.timeout, backupStatementTimeout)
	if err := o.queryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&st.Schema); err != nil {
		return st, fmt.Errorf("store: backup: schema version: %w", err)
	}
	tables, err := o.tables(ctx)
	if err != nil {
		return st, err
	}
	for _, t := range tables {
		if !slices.Contains(restoreOrder, t) {
			return st, fmt.Errorf("store: backup: table %q has no place in the restore order", t)
		}
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(BackupHeader{Format: backupFormat, Version: backupFormatVersion, Schema: st.Schema, Driver: s.d.name}); err != nil {
		return st, err
	}
	for _, t := range restoreOrder {
		if !slices.Contains(tables, t) {
			continue
		}
		n, err := o.dumpTable(ctx, enc, t)
		if err != nil {
			return st, err
		}
		st.Rows[t] = n
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("store: backup: write: %w", err)
	}
	return st, nil
}

func (o Ops) dumpTable(ctx context.Context, enc *json.Encoder, table string) (int, error) {
	rows, err := o.query(ctx, "SELECT * FROM "+table)
	if err != nil {
		return 0, fmt.Errorf("store: backup %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, err
	}
	if err := enc.Encode(backupLine{Table: table, Columns: cols}); err != nil {
		return 0, err
	}
	n := 0
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("store: backup %s: %w", table, err)
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case []byte:
				row[i] = string(v)
			case nil, int64, string:
				row[i] = v
			case int32:
				row[i] = int64(v)
			default:
				return n, fmt.Errorf("store: backup %s.%s: unexpected %T", table, cols[i], v)
			}
		}
		if err := enc.Encode(backupLine{Table: table, Row: row}); err != nil {
			return n, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("store: backup %s: %w", table, err)
	}
	return n, nil
}

// tables lists the schema's tables, schema_migrations aside.
func (o Ops) tables(ctx context.Context) ([]string, error) {
	q := "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	if o.d.name == Postgres {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
	}
	rows, err := o.query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		if t != "schema_migrations" {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, rows.Err()
}

// Restore reads a dump made by Backup, from either driver, into this database, which must be
// empty of users, nodes, tokens, audit entries and policies and at the dump's schema version
// (restore with the release that made the dump, then upgrade). It runs in one transaction: on any
// error nothing is restored.
func (s *Store) Restore(ctx context.Context, r io.Reader) (BackupStats, error) {
	st := BackupStats{Rows: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBackupLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return st, fmt.Errorf("store: restore: %w", err)
		}
		return st, errors.New("store: restore: empty dump")
	}
	var h BackupHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != backupFormat {
		return st, errors.New("store: restore: not a control-plane database dump")
	}
	if h.Version != backupFormatVersion {
		return st, fmt.Errorf("store: restore: dump format %d, this build reads %d", h.Version, backupFormatVersion)
	}
	st.Schema = h.Schema
	have, err := s.Version(ctx)
	if err != nil {
		return st, err
	}
	if h.Schema != have {
		return st, fmt.Errorf("store: restore: the dump has schema version %d and this database %d: restore with the release that made the dump, then upgrade", h.Schema, have)
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		for _, t := range dataTables {
			var n int
			if err := tx.queryRow(ctx, "SELECT COUNT(*) FROM "+t).Scan(&n); err != nil {
				return fmt.Errorf("store: restore: %w", err)
			}
			if n > 0 {
				return fmt.Errorf("store: restore: the database is not empty (%s has %d rows); restore into a new one", t, n)
			}
		}
		for i := len(restoreOrder) - 1; i >= 0; i-- { // rows seeded by migrations
			if _, err := tx.exec(ctx, "DELETE FROM "+restoreOrder[i]); err != nil {
				return fmt.Errorf("store: restore: clear %s: %w", restoreOrder[i], err)
			}
		}
		var (
			table  string
			cols   []string
			insert string
			seen   = -1
		)
		for sc.Scan() {
			var l backupLine
			d := json.NewDecoder(strings.NewReader(sc.Text()))
			d.UseNumber()
			if err := d.Decode(&l); err != nil {
				return fmt.Errorf("store: restore: line after %s: %w", table, err)
			}
			if l.Columns != nil {
				pos := slices.Index(restoreOrder, l.Table)
				if pos < 0 || pos <= seen {
					return fmt.Errorf("store: restore: unexpected table %q", l.Table)
				}
				seen, table, cols = pos, l.Table, l.Columns
				for _, c := range cols {
					if !isIdent(c) {
						return fmt.Errorf("store: restore: %s: bad column name %q", table, c)
					}
				}
				insert = "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" +
					strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
				st.Rows[table] = 0
				continue
			}
			if l.Table != table || len(l.Row) != len(cols) {
				return fmt.Errorf("store: restore: a %s row does not match its columns", l.Table)
			}
			args := make([]any, len(l.Row))
			for i, v := range l.Row {
				switch v := v.(type) {
				case json.Number:
					n, err := v.Int64()
					if err != nil {
						return fmt.Errorf("store: restore: %s.%s: %w", table, cols[i], err)
					}
					args[i] = n
				case string, nil:
					args[i] = v
				default:
					return fmt.Errorf("store: restore: %s.%s: unexpected %T", table, cols[i], v)
				}
			}
			if _, err := tx.exec(ctx, insert, args...); err != nil {
				return fmt.Errorf("store: restore: insert into %s: %w", table, err)
			}
			st.Rows[table]++
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("store: restore: %w", err)
		}
		return tx.resetIdentities(ctx)
	})
	return st, err
}

// resetIdentities moves PostgreSQL's identity sequences past the restored ids, so new rows do not
// collide with them. SQLite's AUTOINCREMENT follows explicit ids by itself.
func (o Ops) resetIdentities(ctx context.Context) error {
	if o.d.name != Postgres {
		return nil
	}
	rows, err := o.query(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return fmt.Errorf("store: restore: identities: %w", err)
	}
	type col struct{ table, name string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.name); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range cols {
		q := fmt.Sprintf("SELECT setval(pg_get_serial_sequence('%s', '%s'), COALESCE((SELECT MAX(%s) FROM %s), 0) + 1, false)",
			c.table, c.name, c.name, c.table)
		if _, err := o.exec(ctx, q); err != nil {
			return fmt.Errorf("store: restore: identity of %s.%s: %w", c.table, c.name, err)
		}
	}
	return nil
}

// isIdent accepts the lower-case SQL identifiers this schema uses; column names come from a
// dump, so they are checked before they are put into a statement.
func isIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}
