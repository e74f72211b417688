package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"time"
)

// MeshRecord is the latest signed link-state record a node reported, with its certificate, as the
// control plane hands it to the nodes that may reach it. The server verifies both before storing
// them; the store keeps them as opaque bytes.
type MeshRecord struct {
	NodeID      int64
	NodeName    string   // filled by reads
	NodeGroups  []string // filled by reads
	Sequence    uint64   // the record's sequence number; at most math.MaxInt64
	Expires     time.Time
	Certificate []byte
	Record      []byte
	ReceivedAt  time.Time
	// Generation numbers the last time the record was published: handed out as news to nodes
	// that long-poll for records changed after a generation. Every publication takes a new number
	// from NextRecordGeneration, so generations are unique.
	Generation uint64
	// PublishedExpires and PublishedDigest describe the record as last published, so that the
	// server can tell whether a newer one is news (docs/control.md, "Signed records").
	PublishedExpires time.Time
	PublishedDigest  string
	// Area is the routing area the record or proof is signed with.
	Area uint32
	// AreaUnknown marks a record stored before the area was kept (Area reads 0); it is handed to
	// every area until its node's next report replaces it.
	AreaUnknown bool
}

// Directory names what the control plane hands out by generation: nodes' signed link-state records,
// or their destination proofs (docs/control.md, "Destination proofs"). Both are kept the same way,
// one row per node, numbered by their own generation counter.
type Directory struct {
	table    string
	genTable string // its counter: one row, id 1
}

var (
	// Records are the nodes' latest signed link-state records (mesh_records), handed to the nodes of
	// their area.
	Records = Directory{table: "mesh_records", genTable: "mesh_record_generation"}
	// Proofs are the nodes' latest destination proofs (mesh_proofs): their level-2 records naming the
	// gateways of their area, handed to the nodes of other areas.
	Proofs = Directory{table: "mesh_proofs", genTable: "mesh_proof_generation"}
)

// AreaFilter picks the rows of a Directory by the routing area they are signed with. The zero value
// picks every row.
type AreaFilter struct {
	Area uint32
	// Same keeps the rows of Area only (and the records stored before their area was kept, which may
	// be of any); otherwise a non-zero Area leaves the rows of Area out.
	Same bool
}

func (f AreaFilter) where() (string, []any) {
	switch {
	case f.Same:
		return " AND (r.area = ? OR r.area < 0)", []any{int64(f.Area)}
	case f.Area != 0:
		return " AND r.area <> ?", []any{int64(f.Area)}
	}
	return "", nil
}

func (d Directory) cols() string {
	return "r.node_id, n.name, n.groups_list, r.sequence, r.expires_at, r.certificate, r.record, r.received_at, r.generation, r.published_expires, r.published_digest, r.area"
}

func scanRecord(sc interface{ Scan(...any) error }) (*MeshRecord, error) {
	var (
		r                     MeshRecord
		groups, cert, rec     string
		seq, gen, e, got, pub int64
		area                  int64
	)
	if err := sc.Scan(&r.NodeID, &r.NodeName, &groups, &seq, &e, &cert, &rec, &got, &gen, &pub, &r.PublishedDigest, &area); err != nil {
		return nil, err
	}
	var err error
	if r.Certificate, err = base64.StdEncoding.DecodeString(cert); err != nil {
		return nil, fmt.Errorf("stored certificate: %w", err)
	}
	if r.Record, err = base64.StdEncoding.DecodeString(rec); err != nil {
		return nil, fmt.Errorf("stored record: %w", err)
	}
	r.NodeGroups = splitGroups(groups)
	r.Sequence, r.Generation, r.Area, r.AreaUnknown = uint64(seq), uint64(gen), uint32(max(area, 0)), area < 0
	r.Expires, r.ReceivedAt, r.PublishedExpires = fromMS(e), fromMS(got), fromMS(pub)
	return &r, nil
}

// RecordOf returns the stored record of a node (ErrNotFound if it has none).
func (o Ops) RecordOf(ctx context.Context, nodeID int64) (*MeshRecord, error) {
	return o.SignedOf(ctx, Records, nodeID)
}

// SignedOf returns the stored record or proof of a node (ErrNotFound if it has none).
func (o Ops) SignedOf(ctx context.Context, d Directory, nodeID int64) (*MeshRecord, error) {
	r, err := scanRecord(o.queryRow(ctx, "SELECT "+d.cols()+" FROM "+d.table+" r JOIN nodes n ON n.id = r.node_id WHERE r.node_id = ?", nodeID))
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", d.table, mapErr(err))
	}
	return r, nil
}

// PutRecord stores r as its node's record if the node has none or only one with a lower sequence
// number, and reports whether it did: a stored record never goes back, whichever of two racing
// writers commits last.
func (o Ops) PutRecord(ctx context.Context, r *MeshRecord) (bool, error) {
	return o.PutSigned(ctx, Records, r)
}

// PutSigned is PutRecord for the records or the proofs.
func (o Ops) PutSigned(ctx context.Context, d Directory, r *MeshRecord) (bool, error) {
	if r.Sequence > math.MaxInt64 || r.Generation > math.MaxInt64 {
		return false, fmt.Errorf("store: put %s: sequence or generation beyond 2^63-1", d.table)
	}
	args := []any{r.NodeID, int64(r.Sequence), ms(r.Expires), base64.StdEncoding.EncodeToString(r.Certificate),
		base64.StdEncoding.EncodeToString(r.Record), ms(r.ReceivedAt), int64(r.Generation), ms(r.PublishedExpires), r.PublishedDigest,
		int64(r.Area)}
	res, err := o.exec(ctx, `INSERT INTO `+d.table+` (node_id, sequence, expires_at, certificate, record, received_at, generation,
		published_expires, published_digest, area) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (node_id) DO UPDATE SET sequence = excluded.sequence, expires_at = excluded.expires_at,
			certificate = excluded.certificate, record = excluded.record, received_at = excluded.received_at,
			generation = excluded.generation, published_expires = excluded.published_expires,
			published_digest = excluded.published_digest, area = excluded.area
		WHERE `+d.table+`.sequence < excluded.sequence`, args...)
	if err != nil {
		return false, fmt.Errorf("store: put %s: %w", d.table, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: put %s: %w", d.table, err)
	}
	return n == 1, nil
}

// NextRecordGeneration takes the next record generation number. Call it in the transaction that
// publishes the record, so that a generation is visible only with its record.
func (o Ops) NextRecordGeneration(ctx context.Context) (uint64, error) {
	return o.NextGeneration(ctx, Records)
}

// NextGeneration is NextRecordGeneration for the records or the proofs.
func (o Ops) NextGeneration(ctx context.Context, d Directory) (uint64, error) {
	var g int64
	if err := o.queryRow(ctx, "UPDATE "+d.genTable+" SET generation = generation + 1 WHERE id = 1 RETURNING generation").Scan(&g); err != nil {
		return 0, fmt.Errorf("store: next %s generation: %w", d.table, mapErr(err))
	}
	return uint64(g), nil
}

// RecordGeneration returns the last record generation number taken (0: none yet).
func (o Ops) RecordGeneration(ctx context.Context) (uint64, error) {
	return o.Generation(ctx, Records)
}

// Generation is RecordGeneration for the records or the proofs.
func (o Ops) Generation(ctx context.Context, d Directory) (uint64, error) {
	var g int64
	if err := o.queryRow(ctx, "SELECT generation FROM "+d.genTable+" WHERE id = 1").Scan(&g); err != nil {
		return 0, fmt.Errorf("store: %s generation: %w", d.table, mapErr(err))
	}
	return uint64(g), nil
}

// ListRecords returns, oldest publication first, at most limit records of unrevoked nodes that
// have not expired at now and were last published at a generation in (after, upTo].
func (o Ops) ListRecords(ctx context.Context, after, upTo uint64, now time.Time, limit int) ([]MeshRecord, error) {
	return o.ListSigned(ctx, Records, AreaFilter{}, after, upTo, now, limit)
}

// ListSigned is ListRecords for the records or the proofs, of the areas area picks.
func (o Ops) ListSigned(ctx context.Context, d Directory, area AreaFilter, after, upTo uint64, now time.Time, limit int) ([]MeshRecord, error) {
	if after > math.MaxInt64 || upTo > math.MaxInt64 {
		return nil, fmt.Errorf("store: list %s: generation beyond 2^63-1", d.table)
	}
	where, areaArgs := area.where()
	args := append([]any{ms(now), int64(after), int64(upTo)}, areaArgs...)
	rows, err := o.query(ctx, "SELECT "+d.cols()+" FROM "+d.table+` r JOIN nodes n ON n.id = r.node_id
		WHERE n.revoked_at = 0 AND r.expires_at > ? AND r.generation > ? AND r.generation <= ?`+where+`
		ORDER BY r.generation LIMIT ?`, append(args, clampLimit(limit))...)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", d.table, err)
	}
	defer rows.Close()
	var out []MeshRecord
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list %s: %w", d.table, err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", d.table, err)
	}
	return out, nil
}

// PublishedArea is the latest generation at which a Directory published an item of one area.
type PublishedArea struct {
	Area        uint32
	AreaUnknown bool // items stored before their area was kept (Area reads 0)
	Generation  uint64
}

// PublishedAreas returns, for each area, the latest generation in (after, upTo] at which an item of
// that area was last published: the areas whose long polls another instance's publications concern.
// An item republished since has left its earlier generation, and is found at its new one.
func (o Ops) PublishedAreas(ctx context.Context, d Directory, after, upTo uint64) ([]PublishedArea, error) {
	if after > math.MaxInt64 || upTo > math.MaxInt64 {
		return nil, fmt.Errorf("store: %s areas: generation beyond 2^63-1", d.table)
	}
	rows, err := o.query(ctx, "SELECT area, MAX(generation) FROM "+d.table+
		" WHERE generation > ? AND generation <= ? GROUP BY area ORDER BY MAX(generation)", int64(after), int64(upTo))
	if err != nil {
		return nil, fmt.Errorf("store: %s areas: %w", d.table, err)
	}
	defer rows.Close()
	var out []PublishedArea
	for rows.Next() {
		var area, gen int64
		if err := rows.Scan(&area, &gen); err != nil {
			return nil, fmt.Errorf("store: %s areas: %w", d.table, err)
		}
		out = append(out, PublishedArea{Area: uint32(max(area, 0)), AreaUnknown: area < 0, Generation: uint64(gen)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s areas: %w", d.table, err)
	}
	return out, nil
}
