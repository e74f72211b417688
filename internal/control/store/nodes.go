package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// JoinToken is a one-time enrollment token; only the SHA-256 of its secret is kept.
type JoinToken struct {
	ID          int64
	Prefix      string
	Hash        string
	NodeName    string // the only name it may enroll; empty: any free name
	Groups      []string
	CertTTL     time.Duration
	Description string
	CreatedBy   string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	UsedAt      time.Time
	UsedBy      string
}

const joinTokenCols = "id, prefix, hash, node_name, groups_list, cert_ttl_ms, description, created_by, created_at, expires_at, used_at, used_by"

func scanJoinToken(sc interface{ Scan(...any) error }) (*JoinToken, error) {
	var (
		t             JoinToken
		groups        string
		ttl, c, e, us int64
	)
	if err := sc.Scan(&t.ID, &t.Prefix, &t.Hash, &t.NodeName, &groups, &ttl, &t.Description, &t.CreatedBy, &c, &e, &us, &t.UsedBy); err != nil {
		return nil, err
	}
	t.Groups = splitGroups(groups)
	t.CertTTL = time.Duration(ttl) * time.Millisecond
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromMS(c), fromMS(e), fromMS(us)
	return &t, nil
}

// Groups are stored comma-separated; a group name cannot contain a comma (docs/identity.md).
func joinGroups(g []string) string { return strings.Join(g, ",") }

func splitGroups(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// CreateJoinToken inserts t and sets its ID.
func (o Ops) CreateJoinToken(ctx context.Context, t *JoinToken) error {
	for _, g := range t.Groups {
		if strings.Contains(g, ",") || g == "" {
			return fmt.Errorf("store: join token group %q", g)
		}
	}
	err := o.queryRow(ctx, `INSERT INTO join_tokens (prefix, hash, node_name, groups_list, cert_ttl_ms, description, created_by, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.Prefix, t.Hash, t.NodeName, joinGroups(t.Groups), t.CertTTL.Milliseconds(), t.Description, t.CreatedBy,
		ms(t.CreatedAt), ms(t.ExpiresAt)).Scan(&t.ID)
	if err != nil {
		return fmt.Errorf("store: create join token: %w", mapErr(err))
	}
	return nil
}

// JoinTokenByPrefix finds a token.
func (o Ops) JoinTokenByPrefix(ctx context.Context, prefix string) (*JoinToken, error) {
	t, err := scanJoinToken(o.queryRow(ctx, "SELECT "+joinTokenCols+" FROM join_tokens WHERE prefix = ?", prefix))
	if err != nil {
		return nil, fmt.Errorf("store: join token: %w", mapErr(err))
	}
	return t, nil
}

// ConsumeJoinToken marks a token used if it is unused and unexpired at now, and reports whether it
// did. The check and the mark are one statement, so two enrollments racing for one token cannot both
// win, on either database.
func (o Ops) ConsumeJoinToken(ctx context.Context, id int64, usedBy string, now time.Time) (bool, error) {
	res, err := o.exec(ctx, "UPDATE join_tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at = 0 AND expires_at > ?",
		ms(now), usedBy, id, ms(now))
	if err != nil {
		return false, fmt.Errorf("store: consume join token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: consume join token: %w", err)
	}
	return n == 1, nil
}

// ListJoinTokens lists tokens, newest first.
func (o Ops) ListJoinTokens(ctx context.Context, limit int) ([]JoinToken, error) {
	rows, err := o.query(ctx, "SELECT "+joinTokenCols+" FROM join_tokens ORDER BY id DESC LIMIT ?", clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list join tokens: %w", err)
	}
	defer rows.Close()
	var out []JoinToken
	for rows.Next() {
		t, err := scanJoinToken(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list join tokens: %w", err)
		}
		out = append(out, *t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list join tokens: %w", err)
	}
	return out, nil
}

// CountPendingJoinTokens counts tokens that are unused and unexpired.
func (o Ops) CountPendingJoinTokens(ctx context.Context, now time.Time) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM join_tokens WHERE used_at = 0 AND expires_at > ?", ms(now)).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count join tokens: %w", err)
	}
	return n, nil
}

// DeleteJoinTokensBefore removes tokens that expired before cutoff.
func (o Ops) DeleteJoinTokensBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := o.exec(ctx, "DELETE FROM join_tokens WHERE expires_at < ?", ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("store: delete join tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Node is an enrolled node and its current certificate.
type Node struct {
	ID           int64
	Name         string
	KeyID        string // hex key ID of the node's ML-DSA key
	Overlay      string
	SPIFFEID     string
	Groups       []string
	PublicKeyPEM string
	Serial       string // hex serial of the current certificate (and X.509-SVID)
	CertPEM      string
	SVIDPEM      string
	NotBefore    time.Time
	NotAfter     time.Time
	CertTTL      time.Duration // lifetime renewals get
	EnrolledAt   time.Time
	RenewedAt    time.Time
	RevokedAt    time.Time
	// EnrolmentArea is the routing area the node named when it enrolled (nil: none). The area it
	// signs in its records counts over it (docs/control.md, "Signed records").
	EnrolmentArea *uint32
	// RecordArea is the routing area signed in the node's stored record (nil: it has reported none,
	// or only one stored before records' areas were kept). Filled by reads.
	RecordArea *uint32
}

// RoutingArea returns the node's routing area as the control plane knows it: the one its stored
// record is signed with, else the one it named at enrolment (fromRecord false); known is false when
// there is neither. Server.areaOf applies the same rule to a fresh read of the record.
func (n *Node) RoutingArea() (area uint32, fromRecord, known bool) {
	switch {
	case n.RecordArea != nil:
		return *n.RecordArea, true, true
	case n.EnrolmentArea != nil:
		return *n.EnrolmentArea, false, true
	}
	return 0, false, false
}

// Revoked reports whether the node has been revoked.
func (n *Node) Revoked() bool { return !n.RevokedAt.IsZero() }

// nodeCols are the columns scanNode reads from nodes: the last is the area of the node's stored
// record (-1: none, or unknown).
const nodeCols = "id, name, key_id, overlay, spiffe_id, groups_list, public_key_pem, serial, cert_pem, svid_pem, not_before, not_after, " +
	"cert_ttl_ms, enrolled_at, renewed_at, revoked_at, routing_area, COALESCE((SELECT r.area FROM mesh_records r WHERE r.node_id = nodes.id), -1)"

func scanNode(sc interface{ Scan(...any) error }) (*Node, error) {
	var (
		n                    Node
		groups               string
		nb, na, ttl, e, r, v int64
		area, recordArea     int64
	)
	if err := sc.Scan(&n.ID, &n.Name, &n.KeyID, &n.Overlay, &n.SPIFFEID, &groups, &n.PublicKeyPEM, &n.Serial, &n.CertPEM, &n.SVIDPEM,
		&nb, &na, &ttl, &e, &r, &v, &area, &recordArea); err != nil {
		return nil, err
	}
	n.EnrolmentArea, n.RecordArea = storedArea(area), storedArea(recordArea)
	n.Groups = splitGroups(groups)
	n.NotBefore, n.NotAfter = fromMS(nb), fromMS(na)
	n.CertTTL = time.Duration(ttl) * time.Millisecond
	n.EnrolledAt, n.RenewedAt, n.RevokedAt = fromMS(e), fromMS(r), fromMS(v)
	return &n, nil
}

// storedArea reads a routing-area column: -1 (or anything outside 32 bits) is none.
func storedArea(v int64) *uint32 {
	if v < 0 || v > math.MaxUint32 {
		return nil
	}
	a := uint32(v)
	return &a
}

// InsertNode records a newly enrolled node and its first certificate. A name held by a revoked
// node is taken over (its old record, certificates and report go); a name held by a live node is
// ErrConflict.
func (o Ops) InsertNode(ctx context.Context, n *Node) error {
	if _, err := o.exec(ctx, "DELETE FROM nodes WHERE name = ? AND revoked_at > 0", n.Name); err != nil {
		return fmt.Errorf("store: insert node: %w", err)
	}
	area := int64(-1)
	if n.EnrolmentArea != nil {
		area = int64(*n.EnrolmentArea)
	}
	err := o.queryRow(ctx, `INSERT INTO nodes (name, key_id, overlay, spiffe_id, groups_list, public_key_pem, serial, cert_pem, svid_pem,
		not_before, not_after, cert_ttl_ms, enrolled_at, routing_area) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		n.Name, n.KeyID, n.Overlay, n.SPIFFEID, joinGroups(n.Groups), n.PublicKeyPEM, n.Serial, n.CertPEM, n.SVIDPEM,
		ms(n.NotBefore), ms(n.NotAfter), n.CertTTL.Milliseconds(), ms(n.EnrolledAt), area).Scan(&n.ID)
	if err != nil {
		return fmt.Errorf("store: insert node %q: %w", n.Name, mapErr(err))
	}
	return o.addCertificate(ctx, n, n.EnrolledAt)
}

func (o Ops) addCertificate(ctx context.Context, n *Node, at time.Time) error {
	if _, err := o.exec(ctx, "INSERT INTO certificates (serial, node_id, key_id, issued_at, not_after) VALUES (?, ?, ?, ?, ?)",
		n.Serial, n.ID, n.KeyID, ms(at), ms(n.NotAfter)); err != nil {
		return fmt.Errorf("store: record certificate: %w", mapErr(err))
	}
	return nil
}

// UpdateNodeCertificate records a renewal: n's Serial, CertPEM, SVIDPEM, NotBefore, NotAfter.
// It fails with ErrNotFound if the node is gone or revoked.
func (o Ops) UpdateNodeCertificate(ctx context.Context, n *Node, now time.Time) error {
	res, err := o.exec(ctx, `UPDATE nodes SET serial = ?, cert_pem = ?, svid_pem = ?, not_before = ?, not_after = ?, renewed_at = ?
		WHERE id = ? AND revoked_at = 0`, n.Serial, n.CertPEM, n.SVIDPEM, ms(n.NotBefore), ms(n.NotAfter), ms(now), n.ID)
	if err != nil {
		return fmt.Errorf("store: renew node: %w", err)
	}
	if c, _ := res.RowsAffected(); c == 0 {
		return fmt.Errorf("store: renew node %q: %w", n.Name, ErrNotFound)
	}
	n.RenewedAt = now
	return o.addCertificate(ctx, n, now)
}

// MarkNodeRevoked records a revocation.
func (o Ops) MarkNodeRevoked(ctx context.Context, id int64, now time.Time) error {
	if _, err := o.exec(ctx, "UPDATE nodes SET revoked_at = ? WHERE id = ? AND revoked_at = 0", ms(now), id); err != nil {
		return fmt.Errorf("store: revoke node: %w", err)
	}
	return nil
}

// NodeByName finds a node.
func (o Ops) NodeByName(ctx context.Context, name string) (*Node, error) {
	n, err := scanNode(o.queryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE name = ?", name))
	if err != nil {
		return nil, fmt.Errorf("store: node %q: %w", name, mapErr(err))
	}
	return n, nil
}

// LiveNodeByKeyID finds the unrevoked node holding a signing key.
func (o Ops) LiveNodeByKeyID(ctx context.Context, keyID string) (*Node, error) {
	n, err := scanNode(o.queryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE key_id = ? AND revoked_at = 0", keyID))
	if err != nil {
		return nil, fmt.Errorf("store: node by key: %w", mapErr(err))
	}
	return n, nil
}

// ListNodes lists nodes by name.
func (o Ops) ListNodes(ctx context.Context, limit int) ([]Node, error) {
	rows, err := o.query(ctx, "SELECT "+nodeCols+" FROM nodes ORDER BY name LIMIT ?", clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list nodes: %w", err)
		}
		out = append(out, *n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list nodes: %w", err)
	}
	return out, nil
}

// CountNodes returns the number of node records, revoked ones included.
func (o Ops) CountNodes(ctx context.Context) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM nodes").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count nodes: %w", err)
	}
	return n, nil
}

// NodeSerials returns every certificate serial issued to a node.
func (o Ops) NodeSerials(ctx context.Context, nodeID int64) ([]string, error) {
	rows, err := o.query(ctx, "SELECT serial FROM certificates WHERE node_id = ? ORDER BY issued_at", nodeID)
	if err != nil {
		return nil, fmt.Errorf("store: node serials: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("store: node serials: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: node serials: %w", err)
	}
	return out, nil
}

// Report is the latest status report of a node.
type Report struct {
	NodeID     int64
	NodeName   string // filled by reads
	Overlay    string // filled by reads
	Revoked    bool   // filled by reads
	ReportedAt time.Time
	Sequence   int64
	Body       string // the validated report JSON
}

// PutReport stores a node's report, replacing its previous one (the latest arrival wins; the
// sequence number is kept for display and for spotting a restarted node).
func (o Ops) PutReport(ctx context.Context, r *Report) error {
	_, err := o.exec(ctx, `INSERT INTO mesh_reports (node_id, reported_at, sequence, report) VALUES (?, ?, ?, ?)
		ON CONFLICT (node_id) DO UPDATE SET reported_at = excluded.reported_at, sequence = excluded.sequence, report = excluded.report`,
		r.NodeID, ms(r.ReportedAt), r.Sequence, r.Body)
	if err != nil {
		return fmt.Errorf("store: put report: %w", err)
	}
	return nil
}

// ListReports returns the latest report of every node that has one, by node name.
func (o Ops) ListReports(ctx context.Context, limit int) ([]Report, error) {
	rows, err := o.query(ctx, `SELECT r.node_id, n.name, n.overlay, n.revoked_at, r.reported_at, r.sequence, r.report
		FROM mesh_reports r JOIN nodes n ON n.id = r.node_id ORDER BY n.name LIMIT ?`, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var (
			r          Report
			revoked, a int64
		)
		if err := rows.Scan(&r.NodeID, &r.NodeName, &r.Overlay, &revoked, &a, &r.Sequence, &r.Body); err != nil {
			return nil, fmt.Errorf("store: list reports: %w", err)
		}
		r.Revoked = revoked != 0
		r.ReportedAt = fromMS(a)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list reports: %w", err)
	}
	return out, nil
}

// Healing is the latest self-healing journal a node reported.
type Healing struct {
	NodeID     int64
	ReportedAt time.Time
	Journal    string // the validated entries, JSON
}

// PutHealing stores a node's journal, replacing the one it reported before.
func (o Ops) PutHealing(ctx context.Context, h *Healing) error {
	_, err := o.exec(ctx, `INSERT INTO node_healing (node_id, reported_at, journal) VALUES (?, ?, ?)
		ON CONFLICT (node_id) DO UPDATE SET reported_at = excluded.reported_at, journal = excluded.journal`,
		h.NodeID, ms(h.ReportedAt), h.Journal)
	if err != nil {
		return fmt.Errorf("store: put healing journal: %w", err)
	}
	return nil
}

// HealingOf returns the latest journal node nodeID reported, or ErrNotFound.
func (o Ops) HealingOf(ctx context.Context, nodeID int64) (*Healing, error) {
	h := Healing{NodeID: nodeID}
	var at int64
	err := o.queryRow(ctx, `SELECT reported_at, journal FROM node_healing WHERE node_id = ?`, nodeID).Scan(&at, &h.Journal)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: read healing journal: %w", err)
	}
	h.ReportedAt = fromMS(at)
	return &h, nil
}

// AuditEntry is one line of the audit log: who changed what.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  string // "user:<name>", "apikey:<prefix>", "node:<name>", "system"
	Action string // e.g. "user.register", "node.revoke"
	Target string
	Detail string
	Remote string // client address
}

// AddAudit appends an entry; call it in the transaction that makes the change.
func (o Ops) AddAudit(ctx context.Context, e *AuditEntry) error {
	err := o.queryRow(ctx, "INSERT INTO audit_log (at, actor, action, target, detail, remote) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
		ms(e.At), e.Actor, e.Action, e.Target, e.Detail, e.Remote).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// ListAudit returns entries with IDs below beforeID (0: from the newest), newest first.
func (o Ops) ListAudit(ctx context.Context, beforeID int64, limit int) ([]AuditEntry, error) {
	q := "SELECT id, at, actor, action, target, detail, remote FROM audit_log"
	args := []any{}
	if beforeID > 0 {
		q += " WHERE id < ?"
		args = append(args, beforeID)
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, clampLimit(limit))
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var (
			e  AuditEntry
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Detail, &e.Remote); err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		e.At = fromMS(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}

// PruneAudit deletes entries older than cutoff.
func (o Ops) PruneAudit(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := o.exec(ctx, "DELETE FROM audit_log WHERE at < ?", ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("store: prune audit: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
