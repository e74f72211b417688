package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

const (
	protoICMPv6     = 58
	icmpEchoRequest = 128
	icmpEchoReply   = 129
)

// checksum6 is the Internet checksum (RFC 1071) of an upper-layer message with the IPv6 pseudo-header.
func checksum6(src, dst netip.Addr, proto uint8, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[:4], uint32(len(msg)))
	tail[7] = proto
	add(tail[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// echoPacket builds an ICMPv6 echo request or reply.
func echoPacket(src, dst netip.Addr, typ uint8, id, seq uint16, data []byte) []byte {
	pkt := make([]byte, ipv6HeaderLen+8+len(data))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:6], uint16(8+len(data)))
	pkt[6] = protoICMPv6
	pkt[7] = 64
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	icmp := pkt[ipv6HeaderLen:]
	icmp[0] = typ
	binary.BigEndian.PutUint16(icmp[4:6], id)
	binary.BigEndian.PutUint16(icmp[6:8], seq)
	copy(icmp[8:], data)
	binary.BigEndian.PutUint16(icmp[2:4], checksum6(src, dst, protoICMPv6, icmp))
	return pkt
}

// echo returns the ICMPv6 echo fields of pkt, if it is an echo message with no extension headers.
func echo(pkt []byte) (typ uint8, id, seq uint16, ok bool) {
	if len(pkt) < ipv6HeaderLen+8 || pkt[6] != protoICMPv6 {
		return 0, 0, 0, false
	}
	icmp := pkt[ipv6HeaderLen:]
	if icmp[0] != icmpEchoRequest && icmp[0] != icmpEchoReply {
		return 0, 0, 0, false
	}
	return icmp[0], binary.BigEndian.Uint16(icmp[4:6]), binary.BigEndian.Uint16(icmp[6:8]), true
}

// pingIdentBase keeps the node's own echo identifiers apart from those of programs on the host.
const pingIdentBase = 0xa000

// Ping sends one ICMPv6 echo request from the node's overlay address to dst through the mesh and
// returns the round-trip time.
func (n *Node) Ping(ctx context.Context, dst netip.Addr) (time.Duration, error) {
	n.mu.Lock()
	n.pingID++
	id := pingIdentBase | n.pingID&0x0fff
	reply := make(chan time.Time, 1)
	n.pings[id] = reply
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pings, id)
		n.mu.Unlock()
	}()
	start := n.now()
	n.sendPacket(start, echoPacket(n.addr, dst, icmpEchoRequest, id, 1, []byte("x0tta6bl4 ping")))
	select {
	case at := <-reply:
		return at.Sub(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("ping %s: %w", dst, ctx.Err())
	case <-n.done:
		return 0, errors.New("ping: node stopped")
	}
}

// consumePingReply takes an echo reply to one of the node's own pings off the packet path.
func (n *Node) consumePingReply(now time.Time, pkt []byte) bool {
	if n.consumeHealReply(now, pkt) {
		return true
	}
	typ, id, _, ok := echo(pkt)
	if !ok || typ != icmpEchoReply || id&0xf000 != pingIdentBase {
		return false
	}
	n.mu.Lock()
	ch, ok := n.pings[id]
	n.mu.Unlock()
	if ok {
		select {
		case ch <- now:
		default:
		}
	}
	return ok
}

// answerEcho replies to echo requests on a node without a device, so relays answer ping too.
func (n *Node) answerEcho(now time.Time, pkt []byte) {
	typ, id, seq, ok := echo(pkt)
	if !ok || typ != icmpEchoRequest {
		return
	}
	n.sendPacket(now, echoPacket(n.addr, srcOf(pkt), icmpEchoReply, id, seq, pkt[ipv6HeaderLen+8:]))
}
