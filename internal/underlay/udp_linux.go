package underlay

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// Linux UDP offloads (udp(7)): UDP_SEGMENT on send, UDP_GRO on receive.
const (
	solUDP     = 17  // SOL_UDP
	udpSegment = 103 // UDP_SEGMENT
	udpGRO     = 104 // UDP_GRO
)

// SegmentationOffload: the kernel can take a run of datagrams in one send (UDP_SEGMENT).
const SegmentationOffload = true

var gsoControlSize = syscall.CmsgSpace(2)

// appendGSOControl appends a UDP_SEGMENT control message giving the segment size.
func appendGSOControl(b []byte, seg int) []byte {
	n := len(b)
	b = b[:n+gsoControlSize]
	clear(b[n:])
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[n]))
	h.Level, h.Type = solUDP, udpSegment
	h.SetLen(syscall.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[n+syscall.CmsgLen(0):], uint16(seg))
	return b
}

// gsoUnsupported tells the errors by which the kernel refuses segmentation offload on this path.
func gsoUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) ||
		errors.Is(err, syscall.EOPNOTSUPP)
}

// groControlSize is room for the UDP_GRO control message (an int) on reads.
var groControlSize = syscall.CmsgSpace(4)

// enableGRO asks the kernel to coalesce received datagrams; it reports whether it agreed.
func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), solUDP, udpGRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// groSegment returns the segment size of a coalesced read from its control messages, or 0.
func groSegment(oob []byte) int {
	hdr := syscall.CmsgLen(0)
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == solUDP && h.Type == udpGRO && l >= hdr+2 {
			if l >= hdr+4 {
				return int(binary.NativeEndian.Uint32(oob[hdr:]))
			}
			return int(binary.NativeEndian.Uint16(oob[hdr:]))
		}
		sp := syscall.CmsgSpace(l - hdr)
		if sp > len(oob) {
			return 0
		}
		oob = oob[sp:]
	}
	return 0
}

// socketBuffers is the send and receive buffer the node asks for: a few coalesced 64 KiB reads must
// fit while the loop is busy, or the kernel drops them and TCP inside the tunnel backs off.
const socketBuffers = 4 << 20

// growBuffers raises the socket's buffers, past net.core.[rw]mem_max when the process may (root).
func growBuffers(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF}, {syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF}} {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[0], socketBuffers) != nil {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[1], socketBuffers)
			}
		}
	})
}

// rxMessages is how many coalesced reads one recvmmsg may return: with UDP_GRO each can hold up to
// 64 KiB of datagrams, so one call drains what a burst left in the socket and the device write that
// follows sees whole TCP bursts to coalesce.
const rxMessages = 8

// mmsghdr is struct mmsghdr (recvmmsg(2)).
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

// udpReader reads datagrams with recvmmsg into buffers it owns. It allocates nothing per read and
// belongs to the receive loop.
type udpReader struct {
	rc    syscall.RawConn
	msgs  []mmsghdr
	iovs  []syscall.Iovec
	names []syscall.RawSockaddrAny
	bufs  [][]byte
	oobs  [][]byte
	zones map[uint32]string // interface names of link-local senders' scope IDs
	n     int
	err   error
	read  func(fd uintptr) bool // r.recvmmsg, bound once so that Read allocates nothing
}

func newUDPReader(c *net.UDPConn) (*udpReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &udpReader{rc: rc, msgs: make([]mmsghdr, rxMessages), iovs: make([]syscall.Iovec, rxMessages),
		names: make([]syscall.RawSockaddrAny, rxMessages), bufs: make([][]byte, rxMessages), oobs: make([][]byte, rxMessages),
		zones: make(map[uint32]string)}
	for i := range r.msgs {
		r.bufs[i] = make([]byte, readBufSize)
		r.oobs[i] = make([]byte, groControlSize)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(readBufSize)
		h := &r.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.Iovlen = 1
		h.Control = &r.oobs[i][0]
	}
	r.read = r.recvmmsg
	return r, nil
}

func (r *udpReader) recvmmsg(fd uintptr) bool {
	for i := range r.msgs {
		h := &r.msgs[i].hdr
		h.Namelen = syscall.SizeofSockaddrAny
		h.SetControllen(len(r.oobs[i]))
		h.Flags = 0
	}
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(len(r.msgs)),
		syscall.MSG_DONTWAIT, 0, 0)
	switch errno {
	case 0:
		r.n, r.err = int(n), nil
		return true
	case syscall.EAGAIN, syscall.EINTR:
		return false // wait until the socket is readable
	default:
		r.n, r.err = 0, os.NewSyscallError("recvmmsg", errno)
		return true
	}
}

// Read waits for datagrams and returns how many messages arrived; Message gives each.
func (r *udpReader) Read() (int, error) {
	if err := r.rc.Read(r.read); err != nil {
		return 0, err
	}
	return r.n, r.err
}

// Message returns the i-th message of the last Read: its bytes, its control messages and its sender.
func (r *udpReader) Message(i int) (buf, oob []byte, from netip.AddrPort) {
	m := &r.msgs[i]
	return r.bufs[i][:m.len], r.oobs[i][:m.hdr.Controllen], r.sender(&r.names[i])
}

// sender decodes a sender's address as the net package does: IPv4-mapped addresses unmapped, and a
// link-local address zoned with its interface's name, so that replies and comparisons work.
func (r *udpReader) sender(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		addr := netip.AddrFrom16(p.Addr).Unmap()
		if p.Scope_id != 0 && addr.Is6() {
			addr = addr.WithZone(r.zone(p.Scope_id))
		}
		return netip.AddrPortFrom(addr, port)
	}
	return netip.AddrPort{}
}

// zone names the interface with index i (the number itself if it has gone), remembering the answer:
// Linux hands out interface indices cyclically, so an index is not soon reused. (An interface renamed
// while the node runs keeps its old name here, as a zone only.)
func (r *udpReader) zone(i uint32) string {
	if z, ok := r.zones[i]; ok {
		return z
	}
	z := strconv.FormatUint(uint64(i), 10)
	if ifi, err := net.InterfaceByIndex(int(i)); err == nil {
		z = ifi.Name
		if len(r.zones) < 1024 {
			r.zones[i] = z
		}
	}
	return z
}

// hopLimitControl returns the control message that sets one datagram's IP TTL (IPv4 destinations,
// including through a dual-stack socket) or IPv6 hop limit.
func hopLimitControl(to netip.AddrPort, hops int) []byte {
	b := make([]byte, syscall.CmsgSpace(4))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	if to.Addr().Unmap().Is4() {
		h.Level, h.Type = syscall.SOL_IP, syscall.IP_TTL
	} else {
		h.Level, h.Type = syscall.SOL_IPV6, syscall.IPV6_HOPLIMIT
	}
	h.SetLen(syscall.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[syscall.CmsgLen(0):], uint32(hops))
	return b
}
