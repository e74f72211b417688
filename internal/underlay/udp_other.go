//go:build !linux

package underlay

import (
	"net"
	"net/netip"
)

// SegmentationOffload: the kernel can take a run of datagrams in one send (UDP_SEGMENT).
const SegmentationOffload = false

var gsoControlSize = 0

var groControlSize = 0

func appendGSOControl(b []byte, seg int) []byte { return b }

func gsoUnsupported(err error) bool { return true }

func enableGRO(c *net.UDPConn) bool { return false }

func groSegment(oob []byte) int { return 0 }

func growBuffers(c *net.UDPConn) {
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
}

// udpReader reads one datagram at a time where recvmmsg is not available.
type udpReader struct {
	c    *net.UDPConn
	buf  []byte
	size int
	from netip.AddrPort
}

func newUDPReader(c *net.UDPConn) (*udpReader, error) {
	return &udpReader{c: c, buf: make([]byte, readBufSize)}, nil
}

// Read waits for a datagram; it returns 1 message.
func (r *udpReader) Read() (int, error) {
	size, from, err := r.c.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return 0, err
	}
	r.size, r.from = size, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return 1, nil
}

// Message returns the datagram of the last Read and its sender.
func (r *udpReader) Message(int) (buf, oob []byte, from netip.AddrPort) {
	return r.buf[:r.size], nil, r.from
}

// hopLimitControl is not built elsewhere: datagrams go with the system's TTL.
func hopLimitControl(to netip.AddrPort, hops int) []byte { return nil }
