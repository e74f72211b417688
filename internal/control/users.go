package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
)

const (
	maxUsernameLen = 64
	maxNameLen     = 128 // API key names, token descriptions
)

// validUsername accepts 1-64 bytes of UTF-8 without control characters or surrounding spaces,
// and without characters a reader cannot see or that reorder what they see: format characters
// (zero-width spaces and joiners, bidirectional overrides and isolates, the byte order mark),
// default-ignorable ones (variation selectors, Hangul fillers), spaces other than U+0020 and the
// replacement character U+FFFD. Otherwise "admin" and "admin​", or a name whose bidi
// override makes it display as another, would be two accounts that look alike in every listing
// and audit entry. Anything else, quotes and SQL keywords included, is data: it is bound, never
// spliced.
func validUsername(s string) error {
	if err := validText(s, maxUsernameLen, false); err != nil {
		return fmt.Errorf("username: %w", err)
	}
	for i, r := range s {
		switch {
		case unicode.Is(unicode.Bidi_Control, r):
			return fmt.Errorf("username: must not contain bidirectional control characters (U+%04X at byte %d)", r, i)
		case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r),
			unicode.Is(unicode.Variation_Selector, r), unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
			return fmt.Errorf("username: must not contain invisible characters (U+%04X at byte %d)", r, i)
		case unicode.IsSpace(r) && r != ' ':
			return fmt.Errorf("username: the only space allowed is U+0020 (U+%04X at byte %d)", r, i)
		case r == utf8.RuneError:
			return fmt.Errorf("username: must not contain U+FFFD, the mark of bytes that were not UTF-8 (byte %d)", i)
		}
	}
	return nil
}

func validText(s string, max int, emptyOK bool) error {
	switch {
	case s == "" && !emptyOK:
		return errors.New("must not be empty")
	case len(s) > max:
		return fmt.Errorf("at most %d bytes", max)
	case !utf8.ValidString(s):
		return errors.New("must be valid UTF-8")
	case strings.TrimSpace(s) != s:
		return errors.New("must not start or end with white space")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters")
		}
	}
	return nil
}

func toAPIUser(u *store.User) api.User {
	return api.User{ID: u.ID, Username: u.Username, Role: u.Role, Disabled: u.Disabled, HasPassword: u.PasswordHash != "",
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
}

func (s *Server) audit(ctx context.Context, o store.Ops, rc *reqCtx, action, target, detail string) error {
	return o.AddAudit(ctx, &store.AuditEntry{At: s.now(), Actor: rc.actor(), Action: action, Target: target, Detail: detail, Remote: rc.ip})
}

// hashErr answers a password hashing failure: 503 when the hashing slots are all busy.
func (s *Server) hashErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, auth.ErrBusy) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "busy", "too many password operations in progress; retry shortly")
		return
	}
	s.internal(w, r, err)
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.RegisterRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	isAdmin := rc.user != nil && rc.user.role.AtLeast(auth.Admin)
	role := auth.Viewer
	if req.Role != "" {
		var err error
		if role, err = auth.ParseRole(req.Role); err != nil {
			badRequest(w, err.Error())
			return
		}
	}
	switch {
	case isAdmin:
	case rc.user != nil:
		writeError(w, http.StatusForbidden, "forbidden", "only an admin can create accounts")
		return
	case s.cfg.Auth.Registration != "open":
		w.Header().Set("WWW-Authenticate", `Bearer realm="x0tta6bl4"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "registration is by admins only: authenticate as an admin")
		return
	case role != auth.Viewer:
		writeError(w, http.StatusForbidden, "forbidden", "self-registered accounts are viewers; an admin can grant more")
		return
	}
	if err := validUsername(req.Username); err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.Password == "" && !isAdmin {
		badRequest(w, "password is required")
		return
	}
	hash := ""
	if req.Password != "" {
		if err := auth.CheckPassword(req.Password, s.cfg.Auth.MinPasswordLen); err != nil {
			badRequest(w, err.Error())
			return
		}
		var err error
		if hash, err = s.hasher.Hash(r.Context(), req.Password); err != nil {
			s.hashErr(w, r, err)
			return
		}
	}
	now := s.now()
	u := &store.User{Username: req.Username, PasswordHash: hash, Role: string(role), CreatedAt: now}
	err := s.st.InTx(r.Context(), func(tx *store.Tx) error {
		n, err := tx.CountUsers(r.Context())
		if err != nil {
			return err
		}
		if n >= s.cfg.Auth.MaxUsers {
			return errLimit
		}
		if err := tx.CreateUser(r.Context(), u); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "user.register", u.Username, "role="+u.Role)
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "username is taken")
	case errors.Is(err, errLimit):
		writeError(w, http.StatusConflict, "limit", fmt.Sprintf("the account limit (%d) is reached", s.cfg.Auth.MaxUsers))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, toAPIUser(u))
	}
}

var errLimit = errors.New("limit reached")

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if res, ok := s.login(w, r, rc); ok {
		writeJSON(w, http.StatusOK, res)
	}
}

// login checks a username and password and starts a session; it writes the error answer and
// returns false when it fails.
func (s *Server) login(w http.ResponseWriter, r *http.Request, rc *reqCtx) (*api.LoginResponse, bool) {
	var req api.LoginRequest
	if !decodeJSON(w, r, &req) {
		return nil, false
	}
	if len(req.Username) > maxUsernameLen || len(req.Password) > auth.MaxPasswordLen {
		badRequest(w, "username or password too long")
		return nil, false
	}
	fail := func() {
		s.m.authFailures.WithLabelValues("login").Inc()
		writeError(w, http.StatusUnauthorized, "unauthorized", "invalid username or password")
	}
	u, err := s.st.UserByName(r.Context(), req.Username)
	if errors.Is(err, store.ErrNotFound) {
		// Spend the time a real check takes, so response times do not reveal which names exist.
		if err := s.hasher.VerifyDummy(r.Context(), req.Password); err != nil {
			s.hashErr(w, r, err)
			return nil, false
		}
		fail()
		return nil, false
	}
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	ok, rehash, err := s.hasher.Verify(r.Context(), req.Password, u.PasswordHash)
	if err != nil {
		s.hashErr(w, r, err)
		return nil, false
	}
	if !ok || u.Disabled {
		fail()
		return nil, false
	}
	tok, err := auth.NewToken(auth.KindSession)
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	now := s.now()
	sess := &store.Session{Prefix: tok.Prefix, Hash: tok.Hash(), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.Auth.SessionTTL)}
	rc.user = &principal{user: u, role: auth.Role(u.Role), method: "session", prefix: tok.Prefix}
	newHash := ""
	if rehash {
		// The hash uses old parameters: store one with the current ones (hashed outside the
		// transaction, so the database is not held for the hashing time).
		if h, err := s.hasher.Hash(r.Context(), req.Password); err == nil {
			newHash = h
		}
	}
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		if newHash != "" {
			u.PasswordHash = newHash
			if err := tx.UpdateUser(r.Context(), u, now); err != nil {
				return err
			}
		}
		if err := tx.CreateSession(r.Context(), sess); err != nil {
			return err
		}
		if err := tx.TrimSessions(r.Context(), u.ID, s.cfg.Auth.MaxSessionsPerUser, now); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "session.create", u.Username, "session "+tok.Prefix+" expires "+sess.ExpiresAt.UTC().Format(time.RFC3339))
	})
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	return &api.LoginResponse{Token: tok.String(), ExpiresAt: sess.ExpiresAt.UTC(), User: toAPIUser(u)}, true
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if rc.user.method != "session" {
		badRequest(w, "logout ends a session; this request used an API key (revoke it with DELETE /api/v1/keys/{id})")
		return
	}
	err := s.st.InTx(r.Context(), func(tx *store.Tx) error {
		if err := tx.RevokeSession(r.Context(), rc.user.sessionID, s.now()); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "session.revoke", rc.user.user.Username, "session "+rc.user.prefix)
	})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if rc.user.cookie {
		clearSessionCookie(w)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	writeJSON(w, http.StatusOK, api.Me{User: toAPIUser(rc.user.user), AuthMethod: rc.user.method,
		EffectiveRole: string(rc.user.role), APIKeyID: rc.user.apiKeyID})
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	after, limit, err := pageQuery(r, "after_id")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	users, err := s.st.ListUsers(r.Context(), after, int(limit))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.UserList{Users: make([]api.User, 0, len(users))}
	for i := range users {
		out.Users = append(out.Users, toAPIUser(&users[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%s %q: want a positive integer", name, r.PathValue(name))
	}
	return id, nil
}

func (s *Server) handleUpdateUser(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, err := pathID(r, "id")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	var req api.UpdateUserRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Role == nil && req.Disabled == nil && req.Password == nil {
		badRequest(w, "nothing to change: send role, disabled or password")
		return
	}
	if id == rc.user.user.ID && (req.Role != nil || req.Disabled != nil) {
		badRequest(w, "admins cannot change their own role or disable themselves (ask another admin)")
		return
	}
	var changes []string
	var role auth.Role
	if req.Role != nil {
		if role, err = auth.ParseRole(*req.Role); err != nil {
			badRequest(w, err.Error())
			return
		}
		changes = append(changes, "role="+string(role))
	}
	hash := ""
	if req.Password != nil {
		if err := auth.CheckPassword(*req.Password, s.cfg.Auth.MinPasswordLen); err != nil {
			badRequest(w, err.Error())
			return
		}
		if hash, err = s.hasher.Hash(r.Context(), *req.Password); err != nil {
			s.hashErr(w, r, err)
			return
		}
		changes = append(changes, "password")
	}
	if req.Disabled != nil {
		changes = append(changes, "disabled="+strconv.FormatBool(*req.Disabled))
	}
	var u *store.User
	now := s.now()
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		if u, err = tx.UserByID(r.Context(), id); err != nil {
			return err
		}
		if req.Role != nil {
			u.Role = string(role)
		}
		if req.Disabled != nil {
			u.Disabled = *req.Disabled
		}
		if req.Password != nil {
			u.PasswordHash = hash
		}
		if err := tx.UpdateUser(r.Context(), u, now); err != nil {
			return err
		}
		// A disabled account or a new password ends every session.
		if u.Disabled || req.Password != nil {
			if err := tx.RevokeUserSessions(r.Context(), u.ID, now); err != nil {
				return err
			}
		}
		return s.audit(r.Context(), tx.Ops, rc, "user.update", u.Username, strings.Join(changes, " "))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no user with id %d", id))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusOK, toAPIUser(u))
	}
}

func toAPIKey(k *store.APIKey) api.APIKey {
	return api.APIKey{ID: k.ID, Prefix: k.Prefix, Name: k.Name, Role: k.Role, Owner: k.Username, CreatedAt: k.CreatedAt,
		ExpiresAt: timePtr(k.ExpiresAt), RevokedAt: timePtr(k.RevokedAt)}
}

func (s *Server) handleCreateKey(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.CreateAPIKeyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if err := validText(req.Name, maxNameLen, false); err != nil {
		badRequest(w, "name: "+err.Error())
		return
	}
	role := rc.user.role
	if req.Role != "" {
		var err error
		if role, err = auth.ParseRole(req.Role); err != nil {
			badRequest(w, err.Error())
			return
		}
		if !rc.user.role.AtLeast(role) {
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("a key cannot have more than your role (%s)", rc.user.role))
			return
		}
	}
	now := s.now()
	var expires time.Time
	switch {
	case req.ExpiresInSeconds < 0:
		badRequest(w, "expires_in_seconds must not be negative")
		return
	case req.ExpiresInSeconds > 0:
		d := time.Duration(req.ExpiresInSeconds) * time.Second
		if req.ExpiresInSeconds > int64(100*365*24*3600) || (s.cfg.Auth.MaxKeyTTL > 0 && d > s.cfg.Auth.MaxKeyTTL) {
			badRequest(w, "expires_in_seconds is above the allowed maximum")
			return
		}
		expires = now.Add(d)
	case s.cfg.Auth.MaxKeyTTL > 0:
		expires = now.Add(s.cfg.Auth.MaxKeyTTL)
	}
	tok, err := auth.NewToken(auth.KindAPIKey)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	k := &store.APIKey{Prefix: tok.Prefix, Hash: tok.Hash(), UserID: rc.user.user.ID, Username: rc.user.user.Username,
		Name: req.Name, Role: string(role), CreatedAt: now, ExpiresAt: expires}
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		n, err := tx.CountLiveAPIKeys(r.Context(), rc.user.user.ID, now)
		if err != nil {
			return err
		}
		if n >= s.cfg.Auth.MaxKeysPerUser {
			return errLimit
		}
		if err := tx.CreateAPIKey(r.Context(), k); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "apikey.create", tok.Prefix, "name="+req.Name+" role="+string(role))
	})
	switch {
	case errors.Is(err, errLimit):
		writeError(w, http.StatusConflict, "limit", fmt.Sprintf("you have %d live API keys, the most allowed; revoke one", s.cfg.Auth.MaxKeysPerUser))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, api.APIKeyCreated{APIKey: toAPIKey(k), Key: tok.String()})
	}
}

func (s *Server) handleListKeys(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	owner := rc.user.user.ID
	switch r.URL.Query().Get("all") {
	case "", "false":
	case "true":
		if !rc.user.role.AtLeast(auth.Admin) {
			writeError(w, http.StatusForbidden, "forbidden", "listing every user's keys needs the admin role")
			return
		}
		owner = 0
	default:
		badRequest(w, "query parameter all: want true or false")
		return
	}
	keys, err := s.st.ListAPIKeys(r.Context(), owner, store.MaxList)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.APIKeyList{Keys: make([]api.APIKey, 0, len(keys))}
	for i := range keys {
		out.Keys = append(out.Keys, toAPIKey(&keys[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleRevokeKey(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, err := pathID(r, "id")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		k, err := tx.APIKeyByID(r.Context(), id)
		if err != nil {
			return err
		}
		// Someone else's key is "not found" to a non-admin, so key IDs cannot be probed.
		if k.UserID != rc.user.user.ID && !rc.user.role.AtLeast(auth.Admin) {
			return store.ErrNotFound
		}
		if err := tx.RevokeAPIKey(r.Context(), id, s.now()); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "apikey.revoke", k.Prefix, "owner="+k.Username)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no live API key %d of yours", id))
	case err != nil:
		s.internal(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	before, limit, err := pageQuery(r, "before_id")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	entries, err := s.st.ListAudit(r.Context(), before, int(limit))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.AuditList{Entries: make([]api.AuditEntry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, api.AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail, Remote: e.Remote})
	}
	writeJSON(w, http.StatusOK, out)
}
