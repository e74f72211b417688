package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters (RFC 9106).
type Params struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory per hash, KiB
	Threads   uint8  // lanes
}

// DefaultParams is OWASP's password storage recommendation for argon2id: 19 MiB, 2 passes,
// 1 lane (Password Storage Cheat Sheet). About 20-40 ms per hash on one core of a small VM.
var DefaultParams = Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// Bounds on parameters, both for configuration and for hashes read back from the database.
const (
	maxTime      = 32
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxThreads   = 64
	saltLen      = 16
	keyLen       = 32
	// MaxPasswordLen bounds a password's length in bytes.
	MaxPasswordLen = 1024
)

// ErrBusy means too many passwords are being hashed at once; try again shortly.
var ErrBusy = errors.New("too many password checks in progress")

// Validate checks the parameters against sane bounds.
func (p Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("argon2id time %d: want 1-%d", p.Time, maxTime)
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("argon2id threads %d: want 1-%d", p.Threads, maxThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB: want %d-%d", p.MemoryKiB, 8*uint32(p.Threads), maxMemoryKiB)
	}
	return nil
}

// Hasher hashes and verifies passwords with argon2id. At most maxConcurrent hashes run at once,
// so a flood of logins costs at most maxConcurrent × MemoryKiB of memory; a caller that cannot get
// a slot within wait gets ErrBusy.
type Hasher struct {
	p     Params
	sem   chan struct{}
	wait  time.Duration
	dummy string // hash of a random password, checked for unknown users so timing does not tell
}

// NewHasher returns a Hasher.
func NewHasher(p Params, maxConcurrent int, wait time.Duration) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if maxConcurrent < 1 {
		return nil, fmt.Errorf("argon2id concurrency %d: want at least 1", maxConcurrent)
	}
	h := &Hasher{p: p, sem: make(chan struct{}, maxConcurrent), wait: wait}
	var pw [32]byte
	rand.Read(pw[:])
	d, err := h.Hash(context.Background(), base64.RawStdEncoding.EncodeToString(pw[:]))
	if err != nil {
		return nil, err
	}
	h.dummy = d
	return h, nil
}

// Params returns the parameters new hashes use.
func (h *Hasher) Params() Params { return h.p }

func (h *Hasher) acquire(ctx context.Context) (func(), error) {
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		return func() { <-h.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, ErrBusy
	}
}

// CheckPassword enforces length rules: minLen to MaxPasswordLen bytes of valid UTF-8.
func CheckPassword(pw string, minLen int) error {
	switch {
	case !utf8.ValidString(pw):
		return errors.New("password must be valid UTF-8")
	case len(pw) < minLen:
		return fmt.Errorf("password must be at least %d bytes", minLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("password must be at most %d bytes", MaxPasswordLen)
	}
	return nil
}

// Hash returns a PHC-format argon2id hash: $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", MaxPasswordLen)
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.p.MemoryKiB, h.p.Time, h.p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify checks password against a stored hash in constant time. An empty stored hash (an account
// without password login) is checked against a dummy hash and never matches, so the time taken does
// not reveal it. rehash is true when the hash uses parameters other than the current ones.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error) {
	if encoded == "" {
		encoded = h.dummy
		defer func() { ok, rehash = false, false }()
	}
	if len(password) > MaxPasswordLen {
		return false, false, nil
	}
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, false, err
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return false, false, err
	}
	defer release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	ok = subtle.ConstantTimeCompare(got, want) == 1
	return ok, ok && p != h.p, nil
}

// VerifyDummy spends the time of one verification, for logins of unknown users.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	_, _, err := h.Verify(ctx, password, "")
	return err
}

func parsePHC(s string) (Params, []byte, []byte, error) {
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("stored password hash: %s", why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported argon2 version " + parts[2])
	}
	var p Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, found := strings.Cut(kv, "=")
		if !found {
			return bad("malformed parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return bad("malformed parameter " + k)
		}
		switch k {
		case "m":
			p.MemoryKiB = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > maxThreads {
				return bad("too many threads")
			}
			p.Threads = uint8(n)
		default:
			return bad("unknown parameter " + k)
		}
	}
	if err := p.Validate(); err != nil {
		return bad(err.Error())
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return bad("bad salt")
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return bad("bad hash")
	}
	return p, salt, key, nil
}
