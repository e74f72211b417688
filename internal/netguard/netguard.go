package netguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// State is what a connection is doing, as its server reports it.
type State uint8

const (
	// New: accepted, no request started yet (a TLS handshake or a request head in progress).
	// Closed after HandshakeTimeout; may be evicted.
	New State = iota
	// Active: serving a request. Never closed here; the server's own timeouts bound it.
	Active
	// Idle: between requests on a kept-alive connection. Closed after IdleTimeout; may be evicted.
	Idle
)

// Config bounds a listener's connections.
type Config struct {
	// MaxConns is the most connections open at once (required).
	MaxConns int
	// MaxConnsPerSource is the most connections open at once from one source: an IPv4 address or
	// an IPv6 /64 (one subscriber's allocation). 0 means MaxConns/4, at least 1. Connections
	// without an IP source (Unix sockets) all count as one source.
	MaxConnsPerSource int
	// HandshakeTimeout is how long a connection may stay New: it covers a TLS handshake and the
	// head of the first request. 0 means no limit.
	HandshakeTimeout time.Duration
	// IdleTimeout is how long a kept-alive connection may stay Idle. 0 means no limit.
	IdleTimeout time.Duration
	// Under pressure (at least half the slots taken, in total or by the connection's source) the
	// timeouts shrink to these; 0 means a tenth of the normal timeout.
	PressureHandshakeTimeout time.Duration
	PressureIdleTimeout      time.Duration
	// Name labels log lines ("metrics", "admin socket").
	Name   string
	Logger *slog.Logger
}

// Accept backs off between retries of a temporary error from minBackoff, doubling to maxBackoff.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Stats are counters since the listener was created.
type Stats struct {
	Open          int    // connections open now
	Accepted      uint64 // connections handed to the server
	Refused       uint64 // closed at once: no slot and nothing to evict
	Evicted       uint64 // New or Idle connections closed to make room for a newcomer
	TimedOut      uint64 // New or Idle connections closed for exceeding their timeout
	AcceptRetries uint64 // temporary accept errors survived
}

// Listener is a guarded net.Listener.
type Listener struct {
	inner net.Listener
	cfg   Config
	log   *slog.Logger

	mu        sync.Mutex
	conns     map[*Conn]struct{}
	perSource map[netip.Prefix]int
	closed    bool
	done      chan struct{}
	reaper    sync.Once

	accepted, refused, evicted, timedOut, retries atomic.Uint64
}

// Wrap guards ln. Closing the returned listener closes ln.
func Wrap(ln net.Listener, cfg Config) (*Listener, error) {
	if cfg.MaxConns < 1 {
		return nil, fmt.Errorf("netguard: max connections %d: want at least 1", cfg.MaxConns)
	}
	if cfg.MaxConnsPerSource == 0 {
		cfg.MaxConnsPerSource = max(1, cfg.MaxConns/4)
	}
	if cfg.MaxConnsPerSource < 1 || cfg.MaxConnsPerSource > cfg.MaxConns {
		return nil, fmt.Errorf("netguard: max connections per source %d: want 1 to %d", cfg.MaxConnsPerSource, cfg.MaxConns)
	}
	if cfg.HandshakeTimeout < 0 || cfg.IdleTimeout < 0 || cfg.PressureHandshakeTimeout < 0 || cfg.PressureIdleTimeout < 0 {
		return nil, errors.New("netguard: timeouts must not be negative")
	}
	if cfg.PressureHandshakeTimeout == 0 {
		cfg.PressureHandshakeTimeout = cfg.HandshakeTimeout / 10
	}
	if cfg.PressureIdleTimeout == 0 {
		cfg.PressureIdleTimeout = cfg.IdleTimeout / 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{inner: ln, cfg: cfg, log: log.With("listener", cfg.Name), conns: make(map[*Conn]struct{}),
		perSource: make(map[netip.Prefix]int), done: make(chan struct{})}, nil
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close closes the inner listener; open connections stay open (their server closes them).
func (l *Listener) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	l.mu.Unlock()
	return l.inner.Close()
}

// Accept returns the next connection that found a slot. Temporary errors are retried with a
// growing pause; only the inner listener's permanent errors (it was closed) are returned.
func (l *Listener) Accept() (net.Conn, error) {
	l.reaper.Do(func() {
		if l.cfg.HandshakeTimeout > 0 || l.cfg.IdleTimeout > 0 {
			go l.reap()
		}
	})
	backoff := time.Duration(0)
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if !temporary(err) || l.isClosed() {
				return nil, err
			}
			l.retries.Add(1)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			l.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		if gc := l.admit(c); gc != nil {
			l.accepted.Add(1)
			return gc, nil
		}
		l.refused.Add(1)
		c.Close()
	}
}

// temporary says whether an accept error will likely pass: the process or the system ran out of
// descriptors or memory, or one pending connection failed before it was accepted.
func temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EAGAIN, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// admit gives c a slot, evicting the oldest New or Idle connection of its source (when the
// source is at its cap) or of all (when the listener is), or returns nil to refuse it.
func (l *Listener) admit(c net.Conn) *Conn {
	src := sourceOf(c.RemoteAddr())
	now := time.Now()
	var victims []*Conn
	l.mu.Lock()
	if l.perSource[src] >= l.cfg.MaxConnsPerSource {
		v := l.oldestEvictable(func(o *Conn) bool { return o.src == src })
		if v == nil {
			l.mu.Unlock()
			return nil
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	if len(l.conns) >= l.cfg.MaxConns {
		v := l.oldestEvictable(func(*Conn) bool { return true })
		if v == nil {
			l.mu.Unlock()
			closeAll(victims) // the source's slot freed above stays free
			return nil
		}
		l.releaseLocked(v)
		victims = append(victims, v)
	}
	gc := &Conn{Conn: c, l: l, src: src, since: now}
	l.conns[gc] = struct{}{}
	l.perSource[src]++
	l.mu.Unlock()
	l.evicted.Add(uint64(len(victims)))
	closeAll(victims)
	return gc
}

func (l *Listener) oldestEvictable(match func(*Conn) bool) *Conn {
	var oldest *Conn
	for c := range l.conns {
		if c.state != Active && match(c) && (oldest == nil || c.since.Before(oldest.since)) {
			oldest = c
		}
	}
	return oldest
}

// releaseLocked frees c's slot; it reports false if c had none (already released).
func (l *Listener) releaseLocked(c *Conn) bool {
	if _, ok := l.conns[c]; !ok {
		return false
	}
	delete(l.conns, c)
	if l.perSource[c.src]--; l.perSource[c.src] <= 0 {
		delete(l.perSource, c.src)
	}
	return true
}

func closeAll(cs []*Conn) {
	for _, c := range cs {
		c.Conn.Close()
	}
}

// reap closes New and Idle connections past their timeout, a few times per shortest timeout.
func (l *Listener) reap() {
	period := time.Second
	for _, d := range []time.Duration{l.cfg.PressureHandshakeTimeout, l.cfg.PressureIdleTimeout} {
		if d > 0 {
			period = min(period, d/2)
		}
	}
	period = max(period, 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			l.reapOnce(now)
		}
	}
}

func (l *Listener) reapOnce(now time.Time) {
	var victims []*Conn
	l.mu.Lock()
	busy := 2*len(l.conns) >= l.cfg.MaxConns
	for c := range l.conns {
		pressed := busy || 2*l.perSource[c.src] >= l.cfg.MaxConnsPerSource
		var limit time.Duration
		switch {
		case c.state == New && pressed:
			limit = l.cfg.PressureHandshakeTimeout
		case c.state == New:
			limit = l.cfg.HandshakeTimeout
		case c.state == Idle && pressed:
			limit = l.cfg.PressureIdleTimeout
		case c.state == Idle:
			limit = l.cfg.IdleTimeout
		}
		if limit > 0 && now.Sub(c.since) >= limit {
			victims = append(victims, c)
		}
	}
	for _, c := range victims {
		l.releaseLocked(c)
	}
	l.mu.Unlock()
	l.timedOut.Add(uint64(len(victims)))
	closeAll(victims)
}

// SetState records what c (a connection this listener returned, or a TLS connection over one) is
// doing. Connections nobody reports on stay New.
func (l *Listener) SetState(c net.Conn, s State) {
	gc := l.unwrap(c)
	if gc == nil {
		return
	}
	l.mu.Lock()
	if gc.state != s {
		gc.state, gc.since = s, time.Now()
	}
	l.mu.Unlock()
}

// HTTPConnState is an http.Server ConnState hook that reports the server's connection states.
func (l *Listener) HTTPConnState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		l.SetState(c, New)
	case http.StateActive, http.StateHijacked:
		l.SetState(c, Active)
	case http.StateIdle:
		l.SetState(c, Idle)
	}
}

func (l *Listener) unwrap(c net.Conn) *Conn {
	for range 4 {
		if gc, ok := c.(*Conn); ok && gc.l == l {
			return gc
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := len(l.conns)
	l.mu.Unlock()
	return Stats{Open: open, Accepted: l.accepted.Load(), Refused: l.refused.Load(), Evicted: l.evicted.Load(),
		TimedOut: l.timedOut.Load(), AcceptRetries: l.retries.Load()}
}

// Conn is a connection holding a slot of its listener until closed.
type Conn struct {
	net.Conn
	l     *Listener
	src   netip.Prefix
	state State     // guarded by l.mu
	since time.Time // when state was entered; guarded by l.mu
}

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// sourceOf is the source a connection counts against: its IPv4 address, or its IPv6 /64.
// Addresses that are not IP (Unix sockets) are all the zero prefix.
func sourceOf(a net.Addr) netip.Prefix {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}
