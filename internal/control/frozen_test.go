package control

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// freezeProxy forwards TCP connections to a database until frozen; frozen, it keeps every
// connection open and forwards nothing, as a database that stopped answering (a hung host, a
// SIGSTOPped server, a partition without resets) looks from the client.
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
	conns  []net.Conn
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target, thaw: make(chan struct{})}
	close(p.thaw)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *freezeProxy) serve(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				thaw := p.thaw
				p.mu.Unlock()
				<-thaw // frozen: hold the bytes, and the connection, until thawed
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(up, c)
	pipe(c, up)
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thaw = true, make(chan struct{})
	}
}

func (p *freezeProxy) unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
}

// A frozen database gives fast 503s with Retry-After, not hung requests, and /health turns 503
// so a load balancer stops sending traffic; both recover when the database answers again.
// (Before, requests hung for as long as the database did, and /health answered 200.)
func TestFrozenDatabaseGivesFast503(t *testing.T) {
	db := postgresOnly(t)
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFreezeProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	db.DSN = u.String()
	const timeout = time.Second
	h := newHarness(t, db, func(c *Config) { c.Database.QueryTimeout = timeout })
	if r := h.do("GET", "/api/v1/nodes", h.adminKey, nil); r.status != 200 {
		t.Fatalf("before the freeze: %d", r.status)
	}

	proxy.freeze()
	start := time.Now()
	r := h.do("GET", "/api/v1/nodes", h.adminKey, nil)
	took := time.Since(start)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("frozen database: status %d, Retry-After %q, want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	// One statement's deadline (and one transaction's, twice that) bounds the wait.
	if took > 10*timeout {
		t.Fatalf("the 503 took %v with a %v statement deadline", took, timeout)
	}
	t.Logf("frozen database: 503 after %v (statement deadline %v)", took.Round(time.Millisecond), timeout)
	waitHealth(t, h, 503)

	proxy.unfreeze()
	waitHealth(t, h, 200)
	if r := h.do("GET", "/api/v1/nodes", h.adminKey, nil); r.status != 200 {
		t.Fatalf("after the thaw: %d", r.status)
	}
}

// waitHealth waits for /health to answer status (its database check runs every 5 s).
func waitHealth(t *testing.T, h *harness, status int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := h.hc.Get(h.url + "/health")
		if err == nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			if r.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health never answered %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
