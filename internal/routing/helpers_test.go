package routing

import (
	"slices"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// fixture holds ML-DSA material made once for every test (a key and a certificate cost about a
// millisecond each). Nothing in it may be modified.
type fixture struct {
	now      time.Time
	ca       *meshca.CA
	verifier *meshca.Verifier
	keys     []*identity.NodeKey
	certs    []*meshca.Certificate
	ids      []NodeID // sorted: ids[0] is the lowest

	otherCA   *meshca.CA // a CA the verifier does not trust
	otherKey  *identity.NodeKey
	otherCert *meshca.Certificate
}

const fixtureNodes = 6

var (
	fixtureOnce sync.Once
	fixtureVal  *fixture
	fixtureErr  error
)

func getFixture(tb testing.TB) *fixture {
	tb.Helper()
	fixtureOnce.Do(func() { fixtureVal, fixtureErr = newFixture() })
	if fixtureErr != nil {
		tb.Fatalf("fixture: %v", fixtureErr)
	}
	return fixtureVal
}

func newFixture() (*fixture, error) {
	f := &fixture{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	if f.ca, err = meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "test.mesh", Name: "root", Duration: 365 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	if f.verifier, err = meshca.NewVerifier(f.ca.Certificate()); err != nil {
		return nil, err
	}
	type kc struct {
		k *identity.NodeKey
		c *meshca.Certificate
	}
	var all []kc
	for i := range fixtureNodes {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			return nil, err
		}
		c, err := f.ca.Issue(meshca.IssueRequest{Name: string(rune('a'+i)) + "-node", PublicKey: k.Public(), Duration: 30 * 24 * time.Hour}, f.now)
		if err != nil {
			return nil, err
		}
		all = append(all, kc{k, c})
	}
	slices.SortFunc(all, func(a, b kc) int { return cmpID(a.c.SignPublicKey.ID(), b.c.SignPublicKey.ID()) })
	for _, x := range all {
		f.keys = append(f.keys, x.k)
		f.certs = append(f.certs, x.c)
		f.ids = append(f.ids, x.c.SignPublicKey.ID())
	}
	otherCAKey, err := identity.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	if f.otherCA, err = meshca.NewRootCA(otherCAKey, meshca.CAOptions{TrustDomain: "test.mesh", Name: "evil", Duration: 365 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	if f.otherKey, err = identity.GenerateNodeKey(); err != nil {
		return nil, err
	}
	if f.otherCert, err = f.otherCA.Issue(meshca.IssueRequest{Name: "mallory", PublicKey: f.otherKey.Public(), Duration: 30 * 24 * time.Hour}, f.now); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *fixture) router(tb testing.TB, i int, mod func(*Config)) *Router {
	tb.Helper()
	cfg := Config{Key: f.keys[i].Sign, Certificate: f.certs[i], Verifier: f.verifier}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// signRecord makes a record signed by key for origin (which may be a lie), with the given links.
func signRecord(tb testing.TB, key *identity.SigningKey, cert *meshca.Certificate, origin NodeID, seq uint64, expires time.Time, links []LinkInfo) *Record {
	tb.Helper()
	rec := &Record{Origin: origin, Seq: seq, Expires: time.UnixMilli(expires.UnixMilli()), CertFingerprint: cert.Fingerprint(), Links: links, cert: cert}
	sig, err := key.Sign(SignatureContext, rec.appendTBS(nil))
	if err != nil {
		tb.Fatal(err)
	}
	rec.Signature = sig
	rec.raw = rec.encode()
	return rec
}

// mesh moves messages between routers instantly (no delay, no loss unless drop says so).
type mesh struct {
	tb    testing.TB
	now   time.Time
	rs    map[NodeID]*Router
	order []NodeID
	links map[[2]NodeID]bool
	drop  func(from, to NodeID, msg []byte) bool
	errs  []error
	sent  int
}

func newMesh(tb testing.TB, now time.Time, rs ...*Router) *mesh {
	m := &mesh{tb: tb, now: now, rs: make(map[NodeID]*Router), links: make(map[[2]NodeID]bool)}
	for _, r := range rs {
		m.rs[r.ID()] = r
		m.order = append(m.order, r.ID())
	}
	return m
}

func (m *mesh) connect(a, b *Router, met Metrics) {
	m.links[[2]NodeID{a.ID(), b.ID()}] = true
	m.links[[2]NodeID{b.ID(), a.ID()}] = true
	a.LinkUp(m.now, b.ID(), met)
	b.LinkUp(m.now, a.ID(), met)
}

func (m *mesh) cut(a, b *Router) {
	delete(m.links, [2]NodeID{a.ID(), b.ID()})
	delete(m.links, [2]NodeID{b.ID(), a.ID()})
	a.LinkDown(m.now, b.ID())
	b.LinkDown(m.now, a.ID())
}

// pump runs ticks and deliveries at the current time until nothing moves.
func (m *mesh) pump() {
	m.tb.Helper()
	for round := 0; ; round++ {
		if round > 10000 {
			m.tb.Fatal("mesh does not quiesce")
		}
		moved := false
		for _, id := range m.order {
			r := m.rs[id]
			if !r.NextDeadline().After(m.now) {
				r.Tick(m.now)
			}
			for _, o := range r.Drain() {
				moved = true
				m.sent++
				to := m.rs[o.To]
				if to == nil || !m.links[[2]NodeID{id, o.To}] || (m.drop != nil && m.drop(id, o.To, o.Msg)) {
					continue
				}
				if err := to.HandleMessage(m.now, id, o.Msg); err != nil {
					m.errs = append(m.errs, err)
				}
			}
		}
		if !moved {
			return
		}
	}
}

// advance moves time forward in steps, pumping at each.
func (m *mesh) advance(d, step time.Duration) {
	end := m.now.Add(d)
	for m.now.Before(end) {
		m.now = m.now.Add(step)
		m.pump()
	}
}
