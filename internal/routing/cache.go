package routing

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"x0tta6bl4/internal/meshca"
)

// ErrBadSignature: a record's ML-DSA-65 signature does not verify with its originator's key.
var ErrBadSignature = errors.New("routing: record signature does not verify")

// DefaultCacheSize bounds a Cache made by New.
const DefaultCacheSize = 8192

// Cache remembers which record encodings carry a valid signature (by SHA-256 of the encoding) and the
// parsed records and certificates, so that the same bytes are parsed and verified only once. A router
// makes its own by default; a simulator passes one Cache to all its routers so that each record is
// verified once in the whole simulation rather than once per node. A cache answers only "these bytes
// are a well-formed record validly signed by the key whose ID is its origin": every other decision
// (freshness, the certificate's validity and revocation) stays with each router.
//
// It keeps at most perOrigin verified records of each originator: a router asks only about records
// newer than the one it holds, so a superseded version is never asked for again. It is safe for
// concurrent use. When full it is emptied.
type Cache struct {
	mu      sync.Mutex
	max     int
	records map[[32]byte]*Record // nil value: known bad signature
	certs   map[meshca.Fingerprint]certEntry
	// bufs maps the start of the encoding inside each buffer of a verified record (its encoding, its
	// messages) to that record. Those buffers are never modified (see Outgoing), and the map keeps
	// them alive, so bytes at such an address with the record's length are the record's bytes: a
	// router handed such a buffer (a simulator delivers one buffer to many routers) finds the record
	// without hashing it. Bytes from anywhere else (a daemon's receive buffers) never match.
	bufs map[*byte]*Record
	// origins holds each originator's verified records in the cache, oldest first.
	origins map[NodeID][]*Record

	verifications atomic.Uint64
}

// perOrigin bounds the verified records of one originator that a Cache keeps: the newest, and a few
// before it for routers of a simulation that lag behind. Without the bound every refresh and cost
// change of every originator (a record of about 4 KB each) stayed until the cache filled, and a
// node's heap grew by megabytes an hour.
const perOrigin = 4

// NewCache returns a cache of at most maxEntries records and as many certificates.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheSize
	}
	return &Cache{
		max:     maxEntries,
		records: make(map[[32]byte]*Record),
		bufs:    make(map[*byte]*Record),
		origins: make(map[NodeID][]*Record),
		certs:   make(map[meshca.Fingerprint]certEntry),
	}
}

// Verifications returns how many ML-DSA signature checks the cache has performed.
func (c *Cache) Verifications() uint64 { return c.verifications.Load() }

type certEntry struct {
	cert *meshca.Certificate
	id   NodeID // key ID of its signing key, computed once
}

// certificate returns the parsed certificate with fingerprint fp whose encoding is raw, and the key
// ID of its signing key.
func (c *Cache) certificate(fp meshca.Fingerprint, raw []byte) (*meshca.Certificate, NodeID, error) {
	c.mu.Lock()
	e, ok := c.certs[fp]
	c.mu.Unlock()
	if ok { // the fingerprint names the certificate; raw is not needed
		return e.cert, e.id, nil
	}
	if sha256.Sum256(raw) != fp {
		return nil, NodeID{}, errors.New("attached certificate does not match the record's fingerprint")
	}
	cert, err := meshca.ParseCertificate(raw) // it copies: the certificate shares no memory with raw
	if err != nil {
		return nil, NodeID{}, err
	}
	if cert.Kind != meshca.KindNode || cert.SignPublicKey == nil {
		return nil, NodeID{}, errors.New("not a node certificate")
	}
	e = certEntry{cert: cert, id: cert.SignPublicKey.ID()}
	c.mu.Lock()
	if len(c.certs) >= c.max {
		clear(c.certs)
	}
	c.certs[fp] = e
	c.mu.Unlock()
	return e.cert, e.id, nil
}

// verify returns the parsed record encoded by raw if its signature verifies with cert's key. The
// caller has checked that cert's key ID is the record's origin and its fingerprint the record's.
func (c *Cache) verify(raw []byte, cert *meshca.Certificate) (*Record, error) {
	if len(raw) > 0 {
		c.mu.Lock()
		rec := c.bufs[&raw[0]]
		c.mu.Unlock()
		if rec != nil && len(rec.raw) == len(raw) {
			return rec, nil
		}
	}
	h := sha256.Sum256(raw)
	c.mu.Lock()
	rec, known := c.records[h]
	c.mu.Unlock()
	if known {
		if rec == nil {
			return nil, ErrBadSignature
		}
		return rec, nil
	}
	buf := newRecordBuffer(raw) // raw is the caller's buffer; the record is kept
	rec, err := ParseRecord(buf[2:])
	if err != nil {
		return nil, err
	}
	rec.setMessage(buf)
	c.verifications.Add(1)
	if err := cert.SignPublicKey.Verify(SignatureContext, rec.tbs(), rec.Signature); err != nil {
		c.store(h, nil)
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	rec.hash = h
	rec.cert = cert
	rec.cache = c
	c.store(h, rec)
	c.register(rec.raw, rec)
	return rec, nil
}

func (c *Cache) store(h [32]byte, rec *Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.records) >= c.max {
		clear(c.records)
		clear(c.bufs)
		clear(c.origins)
	}
	c.records[h] = rec
	if rec == nil {
		return
	}
	held := append(c.origins[rec.Origin], rec)
	if len(held) > perOrigin {
		c.forget(held[0])
		held = append(held[:0], held[1:]...)
	}
	c.origins[rec.Origin] = held
}

// forget removes a superseded record and the buffers registered for it. Called with mu held.
func (c *Cache) forget(rec *Record) {
	if c.records[rec.hash] == rec {
		delete(c.records, rec.hash)
	}
	unregister := func(b []byte) {
		if len(b) >= len(rec.raw) && len(rec.raw) > 0 {
			if at := &b[len(b)-len(rec.raw)]; c.bufs[at] == rec {
				delete(c.bufs, at)
			}
		}
	}
	unregister(rec.raw)
	for i := range rec.msg {
		if p := rec.msg[i].Load(); p != nil {
			unregister(*p)
		}
	}
}

// register notes that raw, a buffer belonging to the verified record rec, holds rec's encoding.
func (c *Cache) register(raw []byte, rec *Record) {
	c.mu.Lock()
	if len(c.bufs) >= 2*c.max {
		clear(c.bufs)
	}
	c.bufs[&raw[0]] = rec
	c.mu.Unlock()
}
