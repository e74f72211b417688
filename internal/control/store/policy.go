package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"time"
)

// KeptPolicies is how many policy versions the store keeps: the current one and the ones before it,
// for the record. Older ones are deleted when a new one is stored.
const KeptPolicies = 100

// Policy is one signed version of the mesh access policy.
type Policy struct {
	Version  uint64 // at most math.MaxInt64
	IssuedAt time.Time
	IssuedBy string // who set it (an audit actor)
	Signed   []byte // the canonical signed encoding (meshca.Policy.Bytes)
	Source   string // the source it was compiled from, as JSON, tests included
}

const policyCols = "version, issued_at, issued_by, signed, source"

func scanPolicy(sc interface{ Scan(...any) error }) (*Policy, error) {
	var (
		p         Policy
		v, at     int64
		signedB64 string
	)
	if err := sc.Scan(&v, &at, &p.IssuedBy, &signedB64, &p.Source); err != nil {
		return nil, err
	}
	signed, err := base64.StdEncoding.DecodeString(signedB64)
	if err != nil {
		return nil, fmt.Errorf("signed policy %d: %w", v, err)
	}
	p.Version, p.IssuedAt, p.Signed = uint64(v), fromMS(at), signed
	return &p, nil
}

// LatestPolicy returns the policy with the highest version, or ErrNotFound when none was set.
func (o Ops) LatestPolicy(ctx context.Context) (*Policy, error) {
	p, err := scanPolicy(o.queryRow(ctx, "SELECT "+policyCols+" FROM policies ORDER BY version DESC LIMIT 1"))
	if err != nil {
		return nil, fmt.Errorf("store: latest policy: %w", mapErr(err))
	}
	return p, nil
}

// InsertPolicy stores a new policy version; a version that is already stored is ErrConflict (two
// writers that read the same latest version cannot both store its successor). Versions more than
// KeptPolicies below it are deleted.
func (o Ops) InsertPolicy(ctx context.Context, p *Policy) error {
	if p.Version == 0 || p.Version > math.MaxInt64 {
		return errors.New("store: insert policy: version must be 1 to 2^63-1")
	}
	if _, err := o.exec(ctx, "INSERT INTO policies ("+policyCols+") VALUES (?, ?, ?, ?, ?)",
		int64(p.Version), ms(p.IssuedAt), p.IssuedBy, base64.StdEncoding.EncodeToString(p.Signed), p.Source); err != nil {
		return fmt.Errorf("store: insert policy %d: %w", p.Version, mapErr(err))
	}
	if p.Version > KeptPolicies {
		if _, err := o.exec(ctx, "DELETE FROM policies WHERE version <= ?", int64(p.Version-KeptPolicies)); err != nil {
			return fmt.Errorf("store: prune policies: %w", err)
		}
	}
	return nil
}

// CountPolicies returns how many policy versions are stored.
func (o Ops) CountPolicies(ctx context.Context) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM policies").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count policies: %w", err)
	}
	return n, nil
}
