//go:build !linux

package node

import "net"

const gsoSupported = false

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
