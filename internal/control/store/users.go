package store

import (
	"context"
	"fmt"
	"time"
)

// MaxList bounds every list query.
const MaxList = 1000

func clampLimit(n int) int {
	if n <= 0 || n > MaxList {
		return MaxList
	}
	return n
}

// User is an operator account. PasswordHash is an argon2id PHC string, or empty for an account that
// cannot log in with a password (API keys only).
type User struct {
	ID           int64
	Username     string
	PasswordHash string
	Role         string
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

const userCols = "id, username, password_hash, role, disabled, created_at, updated_at"

func scanUser(sc interface{ Scan(...any) error }) (*User, error) {
	var (
		u        User
		disabled int
		c, up    int64
	)
	if err := sc.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Role, &disabled, &c, &up); err != nil {
		return nil, err
	}
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt = fromMS(c), fromMS(up)
	return &u, nil
}

// CreateUser inserts u and sets its ID; a taken username is ErrConflict.
func (o Ops) CreateUser(ctx context.Context, u *User) error {
	err := o.queryRow(ctx, `INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		u.Username, u.PasswordHash, u.Role, boolInt(u.Disabled), ms(u.CreatedAt), ms(u.CreatedAt)).Scan(&u.ID)
	if err != nil {
		return fmt.Errorf("store: create user: %w", mapErr(err))
	}
	u.UpdatedAt = u.CreatedAt
	return nil
}

// UserByName finds a user by exact username.
func (o Ops) UserByName(ctx context.Context, name string) (*User, error) {
	u, err := scanUser(o.queryRow(ctx, "SELECT "+userCols+" FROM users WHERE username = ?", name))
	if err != nil {
		return nil, fmt.Errorf("store: user by name: %w", mapErr(err))
	}
	return u, nil
}

// UserByID finds a user by ID.
func (o Ops) UserByID(ctx context.Context, id int64) (*User, error) {
	u, err := scanUser(o.queryRow(ctx, "SELECT "+userCols+" FROM users WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("store: user by id: %w", mapErr(err))
	}
	return u, nil
}

// ListUsers lists users with IDs above afterID, in ID order.
func (o Ops) ListUsers(ctx context.Context, afterID int64, limit int) ([]User, error) {
	rows, err := o.query(ctx, "SELECT "+userCols+" FROM users WHERE id > ? ORDER BY id LIMIT ?", afterID, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		out = append(out, *u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	return out, nil
}

// CountUsers returns the number of accounts.
func (o Ops) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM users").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// UpdateUser stores u's role, disabled flag and password hash.
func (o Ops) UpdateUser(ctx context.Context, u *User, now time.Time) error {
	res, err := o.exec(ctx, "UPDATE users SET role = ?, disabled = ?, password_hash = ?, updated_at = ? WHERE id = ?",
		u.Role, boolInt(u.Disabled), u.PasswordHash, ms(now), u.ID)
	if err != nil {
		return fmt.Errorf("store: update user: %w", mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: update user %d: %w", u.ID, ErrNotFound)
	}
	u.UpdatedAt = now
	return nil
}

// Session is a login session; only the SHA-256 of its secret is kept.
type Session struct {
	ID        int64
	Prefix    string
	Hash      string
	UserID    int64
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time
}

// CreateSession inserts s and sets its ID.
func (o Ops) CreateSession(ctx context.Context, s *Session) error {
	err := o.queryRow(ctx, `INSERT INTO sessions (prefix, hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		s.Prefix, s.Hash, s.UserID, ms(s.CreatedAt), ms(s.ExpiresAt)).Scan(&s.ID)
	if err != nil {
		return fmt.Errorf("store: create session: %w", mapErr(err))
	}
	return nil
}

// SessionByPrefix returns a session and its user.
func (o Ops) SessionByPrefix(ctx context.Context, prefix string) (*Session, *User, error) {
	var (
		s        Session
		c, e, r  int64
		u        User
		disabled int
		uc, uu   int64
		row      = o.queryRow(ctx, `SELECT s.id, s.prefix, s.hash, s.user_id, s.created_at, s.expires_at, s.revoked_at,
		u.id, u.username, u.password_hash, u.role, u.disabled, u.created_at, u.updated_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.prefix = ?`, prefix)
	)
	if err := row.Scan(&s.ID, &s.Prefix, &s.Hash, &s.UserID, &c, &e, &r,
		&u.ID, &u.Username, &u.PasswordHash, &u.Role, &disabled, &uc, &uu); err != nil {
		return nil, nil, fmt.Errorf("store: session: %w", mapErr(err))
	}
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromMS(c), fromMS(e), fromMS(r)
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt = fromMS(uc), fromMS(uu)
	return &s, &u, nil
}

// RevokeSession ends a session.
func (o Ops) RevokeSession(ctx context.Context, id int64, now time.Time) error {
	if _, err := o.exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at = 0", ms(now), id); err != nil {
		return fmt.Errorf("store: revoke session: %w", err)
	}
	return nil
}

// TrimSessions keeps at most keep live sessions of a user, revoking the oldest others.
func (o Ops) TrimSessions(ctx context.Context, userID int64, keep int, now time.Time) error {
	_, err := o.exec(ctx, `UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0 AND id NOT IN
		(SELECT id FROM sessions WHERE user_id = ? AND revoked_at = 0 AND expires_at > ? ORDER BY id DESC LIMIT ?)`,
		ms(now), userID, userID, ms(now), keep)
	if err != nil {
		return fmt.Errorf("store: trim sessions: %w", err)
	}
	return nil
}

// RevokeUserSessions ends every session of a user (on disable or password change).
func (o Ops) RevokeUserSessions(ctx context.Context, userID int64, now time.Time) error {
	if _, err := o.exec(ctx, "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0", ms(now), userID); err != nil {
		return fmt.Errorf("store: revoke sessions: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions that expired or were revoked before cutoff.
func (o Ops) DeleteExpiredSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := o.exec(ctx, "DELETE FROM sessions WHERE expires_at < ? OR (revoked_at > 0 AND revoked_at < ?)", ms(cutoff), ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("store: delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// APIKey is a long-lived credential for programs; only the SHA-256 of its secret is kept.
type APIKey struct {
	ID        int64
	Prefix    string
	Hash      string
	UserID    int64
	Username  string // filled by reads
	Name      string
	Role      string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time
}

// CreateAPIKey inserts k and sets its ID.
func (o Ops) CreateAPIKey(ctx context.Context, k *APIKey) error {
	err := o.queryRow(ctx, `INSERT INTO api_keys (prefix, hash, user_id, name, role, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		k.Prefix, k.Hash, k.UserID, k.Name, k.Role, ms(k.CreatedAt), ms(k.ExpiresAt)).Scan(&k.ID)
	if err != nil {
		return fmt.Errorf("store: create API key: %w", mapErr(err))
	}
	return nil
}

// APIKeyByPrefix returns a key and its owner.
func (o Ops) APIKeyByPrefix(ctx context.Context, prefix string) (*APIKey, *User, error) {
	var (
		k        APIKey
		c, e, r  int64
		u        User
		disabled int
		uc, uu   int64
	)
	row := o.queryRow(ctx, `SELECT k.id, k.prefix, k.hash, k.user_id, k.name, k.role, k.created_at, k.expires_at, k.revoked_at,
		u.id, u.username, u.password_hash, u.role, u.disabled, u.created_at, u.updated_at
		FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.prefix = ?`, prefix)
	if err := row.Scan(&k.ID, &k.Prefix, &k.Hash, &k.UserID, &k.Name, &k.Role, &c, &e, &r,
		&u.ID, &u.Username, &u.PasswordHash, &u.Role, &disabled, &uc, &uu); err != nil {
		return nil, nil, fmt.Errorf("store: API key: %w", mapErr(err))
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromMS(c), fromMS(e), fromMS(r)
	k.Username = u.Username
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt = fromMS(uc), fromMS(uu)
	return &k, &u, nil
}

// ListAPIKeys lists keys of one user (userID > 0) or of everyone (0), newest first.
func (o Ops) ListAPIKeys(ctx context.Context, userID int64, limit int) ([]APIKey, error) {
	q := `SELECT k.id, k.prefix, k.hash, k.user_id, u.username, k.name, k.role, k.created_at, k.expires_at, k.revoked_at
		FROM api_keys k JOIN users u ON u.id = k.user_id`
	args := []any{}
	if userID > 0 {
		q += " WHERE k.user_id = ?"
		args = append(args, userID)
	}
	q += " ORDER BY k.id DESC LIMIT ?"
	args = append(args, clampLimit(limit))
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list API keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var (
			k       APIKey
			c, e, r int64
		)
		if err := rows.Scan(&k.ID, &k.Prefix, &k.Hash, &k.UserID, &k.Username, &k.Name, &k.Role, &c, &e, &r); err != nil {
			return nil, fmt.Errorf("store: list API keys: %w", err)
		}
		k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromMS(c), fromMS(e), fromMS(r)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list API keys: %w", err)
	}
	return out, nil
}

// APIKeyByID returns one key.
func (o Ops) APIKeyByID(ctx context.Context, id int64) (*APIKey, error) {
	var (
		k       APIKey
		c, e, r int64
	)
	err := o.queryRow(ctx, `SELECT k.id, k.prefix, k.hash, k.user_id, u.username, k.name, k.role, k.created_at, k.expires_at, k.revoked_at
		FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = ?`, id).
		Scan(&k.ID, &k.Prefix, &k.Hash, &k.UserID, &k.Username, &k.Name, &k.Role, &c, &e, &r)
	if err != nil {
		return nil, fmt.Errorf("store: API key %d: %w", id, mapErr(err))
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fromMS(c), fromMS(e), fromMS(r)
	return &k, nil
}

// CountLiveAPIKeys counts a user's keys that are neither revoked nor expired.
func (o Ops) CountLiveAPIKeys(ctx context.Context, userID int64, now time.Time) (int, error) {
	var n int
	err := o.queryRow(ctx, "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)",
		userID, ms(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count API keys: %w", err)
	}
	return n, nil
}

// RevokeAPIKey revokes a key; revoking a revoked key is ErrNotFound.
func (o Ops) RevokeAPIKey(ctx context.Context, id int64, now time.Time) error {
	res, err := o.exec(ctx, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at = 0", ms(now), id)
	if err != nil {
		return fmt.Errorf("store: revoke API key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: revoke API key %d: %w", id, ErrNotFound)
	}
	return nil
}

// RevokeUserAPIKeys revokes every key of a user.
func (o Ops) RevokeUserAPIKeys(ctx context.Context, userID int64, now time.Time) error {
	if _, err := o.exec(ctx, "UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at = 0", ms(now), userID); err != nil {
		return fmt.Errorf("store: revoke API keys: %w", err)
	}
	return nil
}
