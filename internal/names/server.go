package names

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/netguard"
	"x0tta6bl4/internal/ratelimit"
)

// Bounds of the server. A query is a question of at most 255 bytes of name plus EDNS options, a few
// hundred bytes; 4 KiB leaves room for any client's options, and a longer one is malformed.
const (
	MaxQuery          = 4096
	DefaultRate       = 200 // queries per second per source
	DefaultBurst      = 400
	DefaultTotalRate  = 2000 // queries per second from all sources together, and the burst
	DefaultMaxTCP     = 16
	DefaultTCPTimeout = 5 * time.Second
	maxSources        = 1024 // sources with their own bucket; more share one
	maxQueriesPerConn = 128
)

// ServerConfig bounds what the server does for anyone. The zero value of a field takes the default.
type ServerConfig struct {
	// Allow is the prefix of source addresses served; a query from elsewhere is dropped unread.
	Allow netip.Prefix
	Rate  float64 // queries per second per source
	Burst int     // queries a source may send at once
	// TotalRate bounds the queries of all sources together, per second and at once: answering
	// costs about 40 µs (most of it verifying the certificate), so the default caps the server at
	// under a tenth of a core whoever asks.
	TotalRate float64
	// MaxTCP bounds concurrent TCP connections, MaxTCPPerSource those of one source (an IPv4
	// address or an IPv6 /64; default MaxTCP/4). A newcomer over either takes the slot of the
	// oldest connection of that source, or of all, that is not being answered; only when every
	// slot is answering is it closed at once (internal/netguard).
	MaxTCP          int
	MaxTCPPerSource int
	// Timeout bounds each query of a TCP connection: the wait for it to arrive (the first, or the
	// next on a kept-open connection) and the answer's write. Once half the slots are taken, in
	// all or by the connection's source, waiting connections get a tenth of it.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server serves a Responder on a UDP socket and a TCP listener. It reads the wall clock and runs
// goroutines: it is the node's shell around the responder.
type Server struct {
	r   *Responder
	cfg ServerConfig
	log *slog.Logger

	mu    sync.Mutex // guards limit and total
	limit *ratelimit.Limiter[netip.Addr]
	total *ratelimit.Limiter[struct{}]

	connMu  sync.Mutex // guards what is below
	closed  bool
	closers []io.Closer
	conns   map[net.Conn]struct{}
	tcp     *netguard.Listener // the guarded TCP listener, nil before Start gives one
	wg      sync.WaitGroup

	stats struct{ answered, malformed, limited atomic.Uint64 }
}

// Stats counts what the server did with what it received.
type Stats struct {
	Answered   uint64 // responses sent, FORMERR included
	Malformed  uint64 // messages miekg/dns could not parse
	Limited    uint64 // queries dropped: from outside Allow, or over the source's or the total rate
	TCPRefused uint64 // connections closed at once: every slot of theirs was being answered
	TCPEvicted uint64 // waiting connections closed to make room for a newcomer
	TCPTimeout uint64 // waiting connections closed after their timeout
	TCPOpen    int    // TCP connections open now
}

// NewServer returns a server for r; Start gives it its sockets.
func NewServer(r *Responder, cfg ServerConfig) (*Server, error) {
	if r == nil {
		return nil, errors.New("names: a responder is required")
	}
	if !cfg.Allow.IsValid() {
		return nil, errors.New("names: the prefix of sources to serve is required")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.TotalRate == 0 {
		cfg.TotalRate = DefaultTotalRate
	}
	if cfg.MaxTCP <= 0 {
		cfg.MaxTCP = DefaultMaxTCP
	}
	if cfg.MaxTCPPerSource <= 0 {
		cfg.MaxTCPPerSource = max(1, cfg.MaxTCP/4)
	}
	if cfg.MaxTCPPerSource > cfg.MaxTCP {
		return nil, fmt.Errorf("names: %d TCP connections per source: want at most MaxTCP (%d)", cfg.MaxTCPPerSource, cfg.MaxTCP)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTCPTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lim, err := ratelimit.New[netip.Addr](ratelimit.Config{Rate: cfg.Rate, Burst: cfg.Burst, Max: maxSources, EvictLRU: true})
	if err != nil {
		return nil, fmt.Errorf("names: %w", err)
	}
	total, err := ratelimit.New[struct{}](ratelimit.Config{Rate: cfg.TotalRate, Burst: max(1, int(min(cfg.TotalRate, 1e6))), Max: 1})
	if err != nil {
		return nil, fmt.Errorf("names: %w", err)
	}
	return &Server{r: r, cfg: cfg, log: cfg.Logger, limit: lim, total: total, conns: make(map[net.Conn]struct{})}, nil
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Answered: s.stats.answered.Load(), Malformed: s.stats.malformed.Load(), Limited: s.stats.limited.Load()}
	s.connMu.Lock()
	gl := s.tcp
	s.connMu.Unlock()
	if gl != nil {
		g := gl.Stats()
		st.TCPRefused, st.TCPEvicted, st.TCPTimeout, st.TCPOpen = g.Refused, g.Evicted, g.TimedOut, g.Open
	}
	return st
}

// Start serves queries arriving on pc and connections accepted on ln (either may be nil) until
// Close, which closes them.
func (s *Server) Start(pc net.PacketConn, ln net.Listener) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if pc != nil {
		s.closers = append(s.closers, pc)
		s.wg.Add(1)
		go s.serveUDP(pc)
	}
	if ln != nil {
		// NewServer checked the bounds, so wrapping cannot fail.
		gl, err := netguard.Wrap(ln, netguard.Config{Name: "dns tcp", MaxConns: s.cfg.MaxTCP, MaxConnsPerSource: s.cfg.MaxTCPPerSource,
			HandshakeTimeout: s.cfg.Timeout, IdleTimeout: s.cfg.Timeout, Logger: s.log})
		if err != nil {
			s.log.Error("dns: not serving TCP", "err", err)
			ln.Close()
			return
		}
		s.tcp = gl
		s.closers = append(s.closers, gl)
		s.wg.Add(1)
		go s.serveTCP(gl)
	}
}

// Close stops serving: it closes the sockets and every connection, and waits for the goroutines.
func (s *Server) Close() {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		return
	}
	s.closed = true
	for _, c := range s.closers {
		c.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	s.wg.Wait()
}

func (s *Server) isClosed() bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.closed
}

// handle answers one message from src at time now; nil means send nothing. A message miekg/dns
// cannot parse is answered FORMERR when it has a query's header, and dropped otherwise. Every answer
// fits the 512 bytes of a UDP answer without EDNS (names.go, maxAnswer), so none is truncated.
func (s *Server) handle(now time.Time, src netip.Addr, raw []byte) []byte {
	if !s.cfg.Allow.Contains(src.WithZone("")) {
		s.stats.limited.Add(1)
		return nil
	}
	s.mu.Lock()
	ok := s.limit.Allow(now, src).OK && s.total.Allow(now, struct{}{}).OK
	s.mu.Unlock()
	if !ok {
		s.stats.limited.Add(1)
		return nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		s.stats.malformed.Add(1)
		out := formatError(raw)
		if out != nil {
			s.stats.answered.Add(1)
		}
		return out
	}
	resp := s.r.Answer(now, req)
	if resp == nil {
		return nil
	}
	out, err := resp.Pack()
	if err != nil {
		s.log.Warn("dns: packing an answer", "err", err, "question", req.Question)
		return nil
	}
	s.stats.answered.Add(1)
	return out
}

// formatError is the FORMERR answer to a message with a query's 12-byte header, or nil.
func formatError(raw []byte) []byte {
	const qr = 0x80
	if len(raw) < 12 || raw[2]&qr != 0 {
		return nil
	}
	m := dns.Msg{MsgHdr: dns.MsgHdr{Id: binary.BigEndian.Uint16(raw), Response: true,
		Opcode: int(raw[2]>>3) & 0xf, Rcode: dns.RcodeFormatError}}
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

func (s *Server) serveUDP(pc net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, MaxQuery)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns: udp read", "err", err)
			time.Sleep(10 * time.Millisecond) // a lasting error must not spin a core
			continue
		}
		src, ok := addrOf(from)
		if !ok {
			continue
		}
		if out := s.handle(time.Now(), src, buf[:n]); out != nil {
			if _, err := pc.WriteTo(out, from); err != nil {
				s.log.Debug("dns: udp write", "to", from, "err", err)
			}
		}
	}
}

// serveTCP serves the connections the guard admits; it retries temporary accept errors itself.
func (s *Server) serveTCP(ln *netguard.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns: tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		go s.serveConn(c, ln)
	}
}

// track registers a connection to be served, unless the server is closing.
func (s *Server) track(c net.Conn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// serveConn answers the queries of one connection (RFC 7766: each is a 2-byte length and a message)
// until the client closes it, sends something we do not answer, is too slow, or has sent
// maxQueriesPerConn. It tells the guard when it is working out an answer (Active: never evicted)
// and when it waits for the client (Idle: may be evicted, times out).
func (s *Server) serveConn(c net.Conn, gl *netguard.Listener) {
	defer func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
		c.Close()
		s.wg.Done()
	}()
	src, ok := addrOf(c.RemoteAddr())
	if !ok {
		return
	}
	buf := make([]byte, MaxQuery)
	for range maxQueriesPerConn {
		if err := c.SetDeadline(time.Now().Add(s.cfg.Timeout)); err != nil {
			return
		}
		q, err := readFrame(c, buf)
		if err != nil {
			return
		}
		gl.SetState(c, netguard.Active)
		out := s.handle(time.Now(), src, q)
		if out == nil {
			return
		}
		// Waiting again from here: a client that does not read its answers (the write blocks on a
		// full buffer) holds its slot no more firmly than a silent one.
		gl.SetState(c, netguard.Idle)
		if err := writeFrame(c, out); err != nil {
			return
		}
	}
}

var errFrame = errors.New("names: DNS message over TCP is empty or longer than the limit")

// readFrame reads one length-prefixed message into buf.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(head[:]))
	if n == 0 || n > len(buf) {
		return nil, errFrame
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// writeFrame writes msg with its length in one write.
func writeFrame(w io.Writer, msg []byte) error {
	frame := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(frame, uint16(len(msg)))
	copy(frame[2:], msg)
	_, err := w.Write(frame)
	return err
}

// addrOf is the IP address of a socket address.
func addrOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
