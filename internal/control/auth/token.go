package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TokenKind says what a bearer token is for; it is the token's first field, so a token of one kind
// is never accepted as another.
type TokenKind string

// Token kinds.
const (
	KindSession TokenKind = "x6s" // login session
	KindAPIKey  TokenKind = "x6k" // API key
	KindJoin    TokenKind = "x6j" // one-time node enrollment token
)

const (
	prefixBytes = 8  // lookup prefix: random, not secret, indexed
	secretBytes = 32 // the secret: 256 random bits
)

// ErrMalformedToken is returned for a string that is not a token of the expected kind.
var ErrMalformedToken = errors.New("malformed token")

// Token is a freshly generated bearer token. String() is shown to its owner once; the store keeps
// only Prefix and Hash.
type Token struct {
	Kind   TokenKind
	Prefix string // 16 hex digits
	secret string // 64 hex digits
}

// String is the full token: <kind>_<prefix>_<secret>.
func (t Token) String() string { return string(t.Kind) + "_" + t.Prefix + "_" + t.secret }

// Hash is what the store keeps.
func (t Token) Hash() string { return HashSecret(t.Kind, t.secret) }

// NewToken generates a token of the given kind from crypto/rand.
func NewToken(kind TokenKind) (Token, error) {
	var p [prefixBytes]byte
	var s [secretBytes]byte
	if _, err := rand.Read(p[:]); err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	if _, err := rand.Read(s[:]); err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	return Token{Kind: kind, Prefix: hex.EncodeToString(p[:]), secret: hex.EncodeToString(s[:])}, nil
}

// ParseToken splits a presented token of the wanted kind into its lookup prefix and secret.
func ParseToken(kind TokenKind, s string) (prefix, secret string, err error) {
	rest, ok := strings.CutPrefix(s, string(kind)+"_")
	if !ok {
		return "", "", ErrMalformedToken
	}
	prefix, secret, ok = strings.Cut(rest, "_")
	if !ok || len(prefix) != 2*prefixBytes || len(secret) != 2*secretBytes || !isLowerHex(prefix) || !isLowerHex(secret) {
		return "", "", ErrMalformedToken
	}
	return prefix, secret, nil
}

// KindOf returns the kind named by a token's first field, or "" if it is none of ours.
func KindOf(s string) TokenKind {
	k, _, _ := strings.Cut(s, "_")
	switch TokenKind(k) {
	case KindSession, KindAPIKey, KindJoin:
		return TokenKind(k)
	}
	return ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HashSecret is SHA-256 over a per-kind label and the secret, in hex. A fast hash is right here:
// the secret is 256 random bits, so there is nothing to brute-force, and a slow hash would only
// hand a stranger a way to burn CPU.
func HashSecret(kind TokenKind, secret string) string {
	h := sha256.New()
	h.Write([]byte("x0tta6bl4 token v1\x00" + string(kind) + "\x00"))
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil))
}

// CheckSecret compares a presented secret with a stored hash in constant time.
func CheckSecret(kind TokenKind, secret, storedHash string) bool {
	got := HashSecret(kind, secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(storedHash)) == 1
}

// A join token as handed to an operator carries the CA pin after the token proper:
// x6j_<prefix>_<secret>_<pin>, where pin is the 64-hex-digit key ID of the CA's ML-DSA-65 key.
// The node sends only the token proper and checks that the CA it is given has that key, so a
// man in the middle cannot hand it another CA (the idea of kubeadm's discovery hash).

// JoinTokenWithPin appends the CA pin to a join token.
func JoinTokenWithPin(t Token, pin string) string { return t.String() + "_" + pin }

// SplitJoinToken separates a join token from its CA pin; a token without a pin returns pin "".
func SplitJoinToken(s string) (token, pin string, err error) {
	if i := strings.LastIndexByte(s, '_'); i >= 0 && len(s)-i-1 == 64 && strings.Count(s, "_") == 3 {
		token, pin = s[:i], s[i+1:]
		if !isLowerHex(pin) {
			return "", "", ErrMalformedToken
		}
	} else {
		token = s
	}
	if _, _, err := ParseToken(KindJoin, token); err != nil {
		return "", "", err
	}
	return token, pin, nil
}
