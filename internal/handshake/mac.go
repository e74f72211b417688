package handshake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"time"
)

const (
	cookieSize      = 16
	cookieNonceSize = 24
)

// macKeys are the DoS keys derived from a responder's static KEM public key.
type macKeys struct {
	mac1   [32]byte // K_mac1
	cookie [32]byte // K_cookie: encrypts cookie replies
}

func deriveMACKeys(staticPub []byte) macKeys {
	var k macKeys
	d := sha256.New()
	d.Write([]byte(labelMAC1))
	d.Write(staticPub)
	d.Sum(k.mac1[:0])
	d.Reset()
	d.Write([]byte(labelCookieKey))
	d.Write(staticPub)
	d.Sum(k.cookie[:0])
	return k
}

// macer computes truncated HMAC-SHA256 with a fixed key, reusing its state so that a check
// allocates nothing.
type macer struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newMACer(key []byte) *macer { return &macer{h: hmac.New(sha256.New, key)} }

// check reports in constant time whether mac is the truncated MAC of data.
func (m *macer) check(data, mac []byte) bool {
	m.h.Reset()
	m.h.Write(data)
	return hmac.Equal(m.h.Sum(m.sum[:0])[:macSize], mac)
}

// put writes the truncated MAC of data into out.
func (m *macer) put(out, data []byte) {
	m.h.Reset()
	m.h.Write(data)
	copy(out, m.h.Sum(m.sum[:0])[:macSize])
}

// mac2With computes the truncated HMAC keyed by a cookie.
func mac2With(cookie *[cookieSize]byte, data []byte) [macSize]byte {
	h := hmac.New(sha256.New, cookie[:])
	h.Write(data)
	var out [macSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// cookieJar holds the responder's rotating cookie secrets (docs/protocol.md §7).
type cookieJar struct {
	cur, prev   [32]byte
	hasPrev     bool
	born        time.Time
	initialised bool
}

func (j *cookieJar) refresh(now time.Time, rand io.Reader) error {
	if j.initialised && now.Sub(j.born) < cookieSecretLifetime && !now.Before(j.born) {
		return nil
	}
	var fresh [32]byte
	if _, err := io.ReadFull(rand, fresh[:]); err != nil {
		return fmt.Errorf("cookie secret: %w", err)
	}
	if j.initialised {
		j.prev, j.hasPrev = j.cur, true
	}
	j.cur, j.born, j.initialised = fresh, now, true
	clear(fresh[:])
	return nil
}

func cookieFor(secret *[32]byte, addr netip.AddrPort) [cookieSize]byte {
	h := hmac.New(sha256.New, secret[:])
	h.Write([]byte(labelCookieValue))
	a := addr.Addr().As16()
	h.Write(a[:])
	var port [2]byte
	binary.LittleEndian.PutUint16(port[:], addr.Port())
	h.Write(port[:])
	var out [cookieSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

// checkMAC2 reports whether f carries a mac2 made with a cookie for addr under the current or the
// previous secret.
func (j *cookieJar) checkMAC2(addr netip.AddrPort, f *fragment) bool {
	if !j.initialised {
		return false
	}
	c := cookieFor(&j.cur, addr)
	m := mac2With(&c, f.withM1)
	if hmac.Equal(m[:], f.mac2) {
		return true
	}
	if !j.hasPrev {
		return false
	}
	c = cookieFor(&j.prev, addr)
	m = mac2With(&c, f.withM1)
	return hmac.Equal(m[:], f.mac2)
}

// cookieAEAD returns AES-256-GCM under K_reply = HMAC(K_cookie, label ‖ nonce): one key per reply.
func cookieAEAD(cookieKey *[32]byte, nonce []byte) (cipher.AEAD, error) {
	h := hmac.New(sha256.New, cookieKey[:])
	h.Write([]byte(labelCookieReply))
	h.Write(nonce)
	k := h.Sum(nil)
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

var zeroNonce [12]byte

// sealCookieReply builds the 64-byte cookie reply for an initiation fragment 0 (docs/protocol.md §4.3).
func sealCookieReply(cookieKey *[32]byte, index uint32, mac1 []byte, cookie *[cookieSize]byte, rand io.Reader) ([]byte, error) {
	pkt := make([]byte, headerSize+cookieNonceSize, CookieReplySize)
	appendHeader(pkt[:0], TypeCookieReply, index)
	nonce := pkt[headerSize : headerSize+cookieNonceSize]
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, fmt.Errorf("cookie reply nonce: %w", err)
	}
	g, err := cookieAEAD(cookieKey, nonce)
	if err != nil {
		return nil, fmt.Errorf("cookie reply: %w", err)
	}
	return g.Seal(pkt, zeroNonce[:], cookie[:], mac1), nil
}

// openCookieReply decrypts a cookie reply; mac1 is the one the initiator sent on fragment 0.
func openCookieReply(cookieKey *[32]byte, r *cookieReply, mac1 []byte) ([cookieSize]byte, error) {
	var cookie [cookieSize]byte
	g, err := cookieAEAD(cookieKey, r.nonce)
	if err != nil {
		return cookie, fmt.Errorf("cookie reply: %w", err)
	}
	p, err := g.Open(cookie[:0], zeroNonce[:], r.sealed, mac1)
	if err != nil || len(p) != cookieSize {
		return cookie, fmt.Errorf("cookie reply: %w", ErrDecrypt)
	}
	return cookie, nil
}
