package store

import (
	"context"
	"fmt"
	"time"
)

// RecordedReport is one node report kept for training (ai.record_reports): the detector's part of
// it, as the control plane received it.
type RecordedReport struct {
	ID         int64
	NodeID     int64
	NodeName   string // filled by reads
	ReportedAt time.Time
	Body       string // JSON: the report's features, kernel features and peers with their features
}

// AddRecordedReport appends a recorded report.
func (o Ops) AddRecordedReport(ctx context.Context, r *RecordedReport) error {
	err := o.queryRow(ctx, "INSERT INTO report_log (node_id, reported_at, size, report) VALUES (?, ?, ?, ?) RETURNING id",
		r.NodeID, ms(r.ReportedAt), len(r.Body), r.Body).Scan(&r.ID)
	if err != nil {
		return fmt.Errorf("store: record report: %w", err)
	}
	return nil
}

// ListRecordedReports returns recorded reports received in [from, to] with IDs above afterID,
// oldest first.
func (o Ops) ListRecordedReports(ctx context.Context, from, to time.Time, afterID int64, limit int) ([]RecordedReport, error) {
	rows, err := o.query(ctx, `SELECT r.id, r.node_id, n.name, r.reported_at, r.report FROM report_log r JOIN nodes n ON n.id = r.node_id
		WHERE r.id > ? AND r.reported_at >= ? AND r.reported_at <= ? ORDER BY r.id LIMIT ?`, afterID, ms(from), ms(to), clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list recorded reports: %w", err)
	}
	defer rows.Close()
	var out []RecordedReport
	for rows.Next() {
		var (
			r  RecordedReport
			at int64
		)
		if err := rows.Scan(&r.ID, &r.NodeID, &r.NodeName, &at, &r.Body); err != nil {
			return nil, fmt.Errorf("store: list recorded reports: %w", err)
		}
		r.ReportedAt = fromMS(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list recorded reports: %w", err)
	}
	return out, nil
}

// PruneRecordedReports deletes recorded reports received before cutoff, then the oldest ones
// beyond the newest maxRows and beyond the newest maxBytes of report text. It returns how many
// rows it deleted.
func (o Ops) PruneRecordedReports(ctx context.Context, cutoff time.Time, maxRows, maxBytes int64) (int64, error) {
	var total int64
	for _, q := range []struct {
		sql string
		arg any
	}{
		{"DELETE FROM report_log WHERE reported_at < ?", ms(cutoff)},
		{"DELETE FROM report_log WHERE id <= (SELECT id FROM report_log ORDER BY id DESC LIMIT 1 OFFSET ?)", maxRows},
		// The newest rows whose running total of sizes stays within maxBytes are kept.
		{`DELETE FROM report_log WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM
			(SELECT id, SUM(size) OVER (ORDER BY id DESC) AS newer FROM report_log) t WHERE newer > ?)`, maxBytes},
	} {
		res, err := o.exec(ctx, q.sql, q.arg)
		if err != nil {
			return total, fmt.Errorf("store: prune recorded reports: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// RecordedReportTotals returns how many recorded reports are kept and their total size in bytes.
func (o Ops) RecordedReportTotals(ctx context.Context) (rows, bytes int64, err error) {
	if err := o.queryRow(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM report_log").Scan(&rows, &bytes); err != nil {
		return 0, 0, fmt.Errorf("store: recorded report totals: %w", err)
	}
	return rows, bytes, nil
}

// Incident is a labelled fault: from From to To, node NodeName was faulty in the way Kind names
// (a detector class).
type Incident struct {
	ID        int64
	NodeName  string
	Kind      string
	From, To  time.Time
	Note      string
	CreatedBy string
	CreatedAt time.Time
}

// InsertIncident stores a labelled incident; call it in the transaction that writes its audit
// entry.
func (o Ops) InsertIncident(ctx context.Context, in *Incident) error {
	err := o.queryRow(ctx, `INSERT INTO incidents (node_name, kind, from_at, to_at, note, created_by, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		in.NodeName, in.Kind, ms(in.From), ms(in.To), in.Note, in.CreatedBy, ms(in.CreatedAt)).Scan(&in.ID)
	if err != nil {
		return fmt.Errorf("store: insert incident: %w", err)
	}
	return nil
}

// CountIncidents returns how many incidents are stored.
func (o Ops) CountIncidents(ctx context.Context) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM incidents").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count incidents: %w", err)
	}
	return n, nil
}

// ListIncidents returns the incidents that overlap [from, to] with IDs above afterID, oldest
// first.
func (o Ops) ListIncidents(ctx context.Context, from, to time.Time, afterID int64, limit int) ([]Incident, error) {
	rows, err := o.query(ctx, `SELECT id, node_name, kind, from_at, to_at, note, created_by, created_at FROM incidents
		WHERE id > ? AND to_at >= ? AND from_at <= ? ORDER BY id LIMIT ?`, afterID, ms(from), ms(to), clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list incidents: %w", err)
	}
	defer rows.Close()
	var out []Incident
	for rows.Next() {
		var (
			in         Incident
			f, t, made int64
		)
		if err := rows.Scan(&in.ID, &in.NodeName, &in.Kind, &f, &t, &in.Note, &in.CreatedBy, &made); err != nil {
			return nil, fmt.Errorf("store: list incidents: %w", err)
		}
		in.From, in.To, in.CreatedAt = fromMS(f), fromMS(t), fromMS(made)
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list incidents: %w", err)
	}
	return out, nil
}

// PruneIncidents deletes incidents that ended before cutoff: without the reports they label they
// teach nothing.
func (o Ops) PruneIncidents(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := o.exec(ctx, "DELETE FROM incidents WHERE to_at < ?", ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("store: prune incidents: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
