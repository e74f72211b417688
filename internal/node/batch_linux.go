package node

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"
)

// Linux UDP offloads (udp(7)): UDP_SEGMENT on send, UDP_GRO on receive.
const (
	solUDP     = 17  // SOL_UDP
	udpSegment = 103 // UDP_SEGMENT
	udpGRO     = 104 // UDP_GRO
)

const gsoSupported = true

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
