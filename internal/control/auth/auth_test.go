package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var testParams = Params{Time: 1, MemoryKiB: 64, Threads: 1}

func TestPasswordHashVerify(t *testing.T) {
	h, err := NewHasher(testParams, 2, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string with the configured parameters", enc)
	}
	enc2, _ := h.Hash(ctx, "correct horse battery staple")
	if enc == enc2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if ok, rehash, err := h.Verify(ctx, "correct horse battery staple", enc); !ok || rehash || err != nil {
		t.Fatalf("right password: ok=%v rehash=%v err=%v", ok, rehash, err)
	}
	if ok, _, err := h.Verify(ctx, "correct horse battery stapl", enc); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	if ok, _, _ := h.Verify(ctx, "", ""); ok {
		t.Fatal("empty stored hash matched")
	}
	if err := h.VerifyDummy(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	// A hash made with other parameters verifies and asks for a rehash.
	h2, _ := NewHasher(Params{Time: 2, MemoryKiB: 128, Threads: 1}, 1, time.Second)
	if ok, rehash, err := h2.Verify(ctx, "correct horse battery staple", enc); !ok || !rehash || err != nil {
		t.Fatalf("old parameters: ok=%v rehash=%v err=%v", ok, rehash, err)
	}
}

func TestPasswordMalformedHashes(t *testing.T) {
	h, _ := NewHasher(testParams, 1, time.Second)
	for _, bad := range []string{
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", // 95 GiB: refused, not allocated
		"$argon2id$v=19$m=64,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
	} {
		if ok, _, err := h.Verify(context.Background(), "pw", bad); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want an error", bad, ok, err)
		}
	}
}

func TestHasherBoundsConcurrency(t *testing.T) {
	h, _ := NewHasher(testParams, 1, 20*time.Millisecond)
	release, err := h.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Hash(context.Background(), "pw"); !errors.Is(err, ErrBusy) {
		t.Fatalf("hash with every slot taken: %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.wait = time.Hour
	if _, _, err := h.Verify(ctx, "pw", h.dummy); !errors.Is(err, context.Canceled) {
		t.Fatalf("verify with cancelled context: %v", err)
	}
	release()
	if _, err := h.Hash(context.Background(), "pw"); err != nil {
		t.Fatal(err)
	}
}

func TestParamsAndPasswordRules(t *testing.T) {
	for _, p := range []Params{{0, 64, 1}, {1, 4, 1}, {1, 64, 0}, {1, 2 << 20, 1}, {33, 64, 1}} {
		if p.Validate() == nil {
			t.Errorf("params %+v accepted", p)
		}
	}
	if DefaultParams.Validate() != nil {
		t.Fatal("default params invalid")
	}
	if _, err := NewHasher(testParams, 0, time.Second); err == nil {
		t.Fatal("zero concurrency accepted")
	}
	for pw, ok := range map[string]bool{
		"short":                          false,
		"twelve chars":                   true,
		strings.Repeat("a", 1024):        true,
		strings.Repeat("a", 1025):        false,
		"invalid utf8 \xff\xfe padding!": false,
	} {
		if err := CheckPassword(pw, 12); (err == nil) != ok {
			t.Errorf("CheckPassword(%.20q) = %v, want ok=%v", pw, err, ok)
		}
	}
}

func TestTokens(t *testing.T) {
	tok, err := NewToken(KindAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	s := tok.String()
	if !strings.HasPrefix(s, "x6k_"+tok.Prefix+"_") || len(s) != 4+16+1+64 {
		t.Fatalf("token %q", s)
	}
	if KindOf(s) != KindAPIKey || KindOf("Bearer x") != "" {
		t.Fatal("KindOf")
	}
	prefix, secret, err := ParseToken(KindAPIKey, s)
	if err != nil || prefix != tok.Prefix {
		t.Fatalf("parse: %v", err)
	}
	if !CheckSecret(KindAPIKey, secret, tok.Hash()) {
		t.Fatal("secret does not match its own hash")
	}
	if CheckSecret(KindSession, secret, tok.Hash()) {
		t.Fatal("an API key secret matched as a session secret")
	}
	if strings.Contains(tok.Hash(), secret) {
		t.Fatal("hash contains the secret")
	}
	other, _ := NewToken(KindAPIKey)
	if other.Prefix == tok.Prefix || other.String() == s {
		t.Fatal("two tokens alike")
	}
	for _, bad := range []string{"", "x6k_", s[:len(s)-1], s + "0", strings.ToUpper(s), "x6s" + s[3:], strings.Replace(s, "_", "-", 1),
		"x6k_" + tok.Prefix + "_" + strings.Repeat("g", 64)} {
		if _, _, err := ParseToken(KindAPIKey, bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
}

func TestRoles(t *testing.T) {
	if !Admin.AtLeast(Operator) || !Operator.AtLeast(Viewer) || Viewer.AtLeast(Operator) || Role("root").AtLeast(Viewer) {
		t.Fatal("role order")
	}
	if Min(Admin, Viewer) != Viewer || Min(Operator, Admin) != Operator {
		t.Fatal("Min")
	}
	if _, err := ParseRole("superuser"); err == nil {
		t.Fatal("unknown role parsed")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l, err := NewLimiter(LimitConfig{Rate: 2, Burst: 3}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("request %d within burst refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over burst: ok=%v wait=%v, want refused with 500ms", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if ok, _ := l.Allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("not refilled after the announced wait")
	}
	var nilL *Limiter
	if ok, _ := nilL.Allow("x", now); !ok {
		t.Fatal("disabled limiter refused")
	}
	if l, err := NewLimiter(LimitConfig{}, 10); l != nil || err != nil {
		t.Fatal("zero rate should disable")
	}
	for _, c := range []LimitConfig{{Rate: -1, Burst: 1}, {Rate: 1, Burst: 0}} {
		if _, err := NewLimiter(c, 10); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l, _ := NewLimiter(LimitConfig{Rate: 1, Burst: 2}, 10)
	// 1000 distinct keys: the table never grows past 10, and each newcomer gets a bucket of its own
	// by pushing out the key used least recently, so a spray of keys locks no one out.
	allowed := 0
	for i := range 1000 {
		if ok, _ := l.Allow(fmt.Sprintf("ip-%d", i), now); ok {
			allowed++
		}
		if l.Len() > 10 {
			t.Fatalf("table grew to %d", l.Len())
		}
	}
	if allowed != 1000 {
		t.Fatalf("%d requests allowed from 1000 new keys, want 1000", allowed)
	}
	// Once the tracked clients are idle long enough to be full again, they are swept and new keys
	// get buckets of their own.
	later := now.Add(10 * time.Second)
	if ok, _ := l.Allow("fresh", later); !ok {
		t.Fatal("new key refused after idle buckets could be swept")
	}
	if l.Len() != 1 {
		t.Fatalf("after sweep %d keys tracked, want 1", l.Len())
	}
}
