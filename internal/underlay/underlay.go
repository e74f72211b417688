// Package underlay is the node's UDP socket behind a small interface, as wireguard-go's conn.Bind and
// Nebula's udp.Conn are: batched receives (recvmmsg, with UDP_GRO where the kernel has it) and sends
// of runs of equal-sized datagrams to one address (UDP_SEGMENT where the kernel has it), with the
// fallbacks where it does not. The node sees only Conn, so tests and the whole-mesh harness
// (internal/meshtest) give it an in-memory one.
//
// It never interprets a datagram, never retries a send behind its caller's back except to split a
// refused segmented send into single datagrams, and allocates nothing per datagram.
package underlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Datagram is one received UDP payload and its sender. Data is a view into the reader's buffers,
// valid until its next Read.
type Datagram struct {
	Data []byte
	From netip.AddrPort
}

// Conn is a UDP socket as the node uses it.
type Conn interface {
	// NewReader returns a reader with its own buffers, for one goroutine.
	NewReader() (Reader, error)
	// Send sends buf, which holds datagrams of seg bytes back to back (the last may be shorter), to
	// one address, and reports how many datagrams left. It is safe for concurrent use.
	Send(buf []byte, seg int, to netip.AddrPort) (int, error)
	// LocalAddr is the bound address.
	LocalAddr() netip.AddrPort
	// Close makes every Read and Send fail with net.ErrClosed.
	Close() error
}

// Reader reads batches of datagrams.
type Reader interface {
	// Read waits for datagrams and returns them; the slice and the datagrams' bytes are valid until
	// the next Read.
	Read() ([]Datagram, error)
}

// Bounds of one Send: UDP_SEGMENT takes at most 64 KiB and, on older kernels, 64 segments.
const (
	MaxSendBytes    = 65000
	MaxSendSegments = 64
	// MaxDatagram is the largest datagram a reader returns whole.
	MaxDatagram = 65535
)

// UDPConn is a Conn on a kernel UDP socket.
type UDPConn struct {
	c   *net.UDPConn
	log *slog.Logger
	gro bool        // the kernel coalesces received datagrams
	gso atomic.Bool // segmented sends work (cleared when the kernel refuses one)
	oob sync.Pool   // *[]byte of gsoControlSize: UDP_SEGMENT control messages
}

// ListenUDP binds addr (port 0 picks one), grows the socket's buffers and turns on the offloads the
// kernel has.
func ListenUDP(addr netip.AddrPort, log *slog.Logger) (*UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("underlay: listen %s: %w", addr, err)
	}
	if log == nil {
		log = slog.Default()
	}
	u := &UDPConn{c: c, log: log}
	growBuffers(c)
	u.gro = enableGRO(c)
	u.gso.Store(SegmentationOffload)
	u.oob.New = func() any { b := make([]byte, 0, gsoControlSize); return &b }
	return u, nil
}

// LocalAddr is the bound address.
func (u *UDPConn) LocalAddr() netip.AddrPort { return u.c.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket.
func (u *UDPConn) Close() error { return u.c.Close() }

// NewReader returns a reader with its own buffers.
func (u *UDPConn) NewReader() (Reader, error) {
	r, err := newUDPReader(u.c)
	if err != nil {
		return nil, fmt.Errorf("underlay: reader: %w", err)
	}
	return &splitReader{r: r, gro: u.gro}, nil
}

// Send sends the datagrams in buf: one plain send for one datagram, one segmented send for a run
// where the kernel takes them, else one send per datagram.
func (u *UDPConn) Send(buf []byte, seg int, to netip.AddrPort) (int, error) {
	if seg <= 0 || len(buf) == 0 {
		return 0, errors.New("underlay: empty send")
	}
	if len(buf) <= seg {
		if _, err := u.c.WriteToUDPAddrPort(buf, to); err != nil {
			return 0, err
		}
		return 1, nil
	}
	if u.gso.Load() {
		p := u.oob.Get().(*[]byte)
		*p = appendGSOControl((*p)[:0], seg)
		_, _, err := u.c.WriteMsgUDPAddrPort(buf, *p, to)
		u.oob.Put(p)
		if err == nil {
			return (len(buf) + seg - 1) / seg, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return 0, err
		}
		if gsoUnsupported(err) && u.gso.CompareAndSwap(true, false) {
			u.log.Info("UDP segmentation offload refused by the kernel; sending datagrams one by one", "err", err)
		}
	}
	sent := 0
	var err error
	for off := 0; off < len(buf); off += seg {
		if _, e := u.c.WriteToUDPAddrPort(buf[off:min(off+seg, len(buf))], to); e != nil {
			err = e
		} else {
			sent++
		}
	}
	return sent, err
}

// HopLimitedSender sends one datagram with a given IP TTL (IPv6 hop limit). Hole punching uses it to
// open its own NAT's mapping with a packet that dies before it reaches the other side's NAT, where
// it would otherwise leave a conntrack entry that spoils the other side's mapping
// (docs/connectivity.md, "Hole punching").
type HopLimitedSender interface {
	SendHopLimited(pkt []byte, to netip.AddrPort, hops int) error
}

// SendHopLimited sends pkt to to with at most hops router hops.
func (u *UDPConn) SendHopLimited(pkt []byte, to netip.AddrPort, hops int) error {
	_, _, err := u.c.WriteMsgUDPAddrPort(pkt, hopLimitControl(to, hops), to)
	return err
}

// splitReader cuts coalesced reads into their datagrams.
type splitReader struct {
	r   *udpReader
	gro bool
	out []Datagram
}

func (s *splitReader) Read() ([]Datagram, error) {
	k, err := s.r.Read()
	if err != nil {
		return nil, err
	}
	s.out = s.out[:0]
	for i := range k {
		buf, oob, from := s.r.Message(i)
		seg := len(buf)
		if s.gro {
			if g := groSegment(oob); g > 0 {
				seg = g
			}
		}
		if seg == 0 {
			s.out = append(s.out, Datagram{Data: buf, From: from})
			continue
		}
		for off := 0; off < len(buf); off += seg {
			s.out = append(s.out, Datagram{Data: buf[off:min(off+seg, len(buf))], From: from})
		}
	}
	return s.out, nil
}

// readBufSize holds the largest coalesced read UDP_GRO can return.
const readBufSize = 65536
