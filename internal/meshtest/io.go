package meshtest

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"slices"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"x0tta6bl4/internal/virtio"
)

// Packet is an IPv6 packet a node's device delivered to its host.
type Packet struct {
	At   time.Time
	Data []byte
	// Segments is how many packets a TCP burst delivered whole stands for; 0 for a single packet.
	Segments int
}

// maxDelivered bounds what a device keeps for a test to look at.
const maxDelivered = 1 << 16

// memDevice is a node's device. Its host answers ICMPv6 echo requests to the node, as a kernel does,
// and keeps every other packet for the test.
type memDevice struct {
	m         *Mesh
	self      *Node
	in        [][]byte // packets the host sent, waiting for the node's read
	delivered []Packet
	count     int
	closed    bool
	raw       bool // moves whole bursts with virtio-net headers (node.RawDevice)
}

func (d *memDevice) BatchSize() int { return 64 }
func (d *memDevice) Close() error   { d.closed = true; return nil }

func (d *memDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if d.raw {
		return 0, errors.New("meshtest: a raw device is read with ReadRaw")
	}
	if d.closed {
		return 0, os.ErrClosed
	}
	k := min(len(d.in), len(bufs))
	for i := range k {
		sizes[i] = copy(bufs[i][offset:], d.in[i])
	}
	d.in = d.in[k:]
	return k, nil
}

// Raw, ReadRaw, ReadRawNow and WriteRaw make the device a node.RawDevice.
func (d *memDevice) Raw() bool { return d.raw }

func (d *memDevice) ReadRaw(buf []byte) (int, error) { return d.ReadRawNow(buf) }

func (d *memDevice) ReadRawNow(buf []byte) (int, error) {
	if d.closed {
		return 0, os.ErrClosed
	}
	if len(d.in) == 0 {
		return 0, nil
	}
	k := copy(buf, d.in[0])
	d.in = d.in[1:]
	return k, nil
}

func (d *memDevice) WriteRaw(frame []byte) error {
	if d.closed {
		return os.ErrClosed
	}
	h, err := virtio.ParseHeader(frame)
	if err != nil {
		return err
	}
	pkt := frame[virtio.HeaderLen:]
	segments := 0
	if h.GSOType != virtio.GSONone {
		if segments = virtio.Segments(h, pkt); segments == 0 {
			return errors.New("meshtest: a burst whose header does not pass Check")
		}
	}
	d.record(pkt, segments)
	return nil
}

func (d *memDevice) record(pkt []byte, segments int) {
	if reply := echoReply(pkt); reply != nil {
		d.queue(reply)
		return
	}
	d.count += max(1, segments)
	if len(d.delivered) < maxDelivered {
		d.delivered = append(d.delivered, Packet{At: d.m.Now(), Data: slices.Clone(pkt), Segments: segments})
	}
}

// queue puts a packet from the host in front of the node's next read; a raw device's reads carry a
// virtio-net header.
func (d *memDevice) queue(pkt []byte) {
	if d.raw {
		pkt = append(make([]byte, virtio.HeaderLen, virtio.HeaderLen+len(pkt)), pkt...)
	} else {
		pkt = slices.Clone(pkt)
	}
	d.in = append(d.in, pkt)
}

func (d *memDevice) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed {
		return 0, os.ErrClosed
	}
	for _, b := range bufs {
		d.record(b[offset:], 0)
	}
	return len(bufs), nil
}

// Inject hands an IPv6 packet to the node's device, as its host would send it; the node reads it
// at once.
func (n *Node) Inject(pkt []byte) {
	n.dev.queue(pkt)
	n.dev.m.pumpAll()
}

// InjectRaw hands the raw device a frame with its virtio-net header, such as a TCP burst.
func (n *Node) InjectRaw(frame []byte) {
	n.dev.in = append(n.dev.in, slices.Clone(frame))
	n.dev.m.pumpAll()
}

// Delivered returns the packets the node's device delivered to its host (echo requests, which the
// host answers, aside), oldest first; the first 65,536 are kept.
func (n *Node) Delivered() []Packet { return n.dev.delivered }

// DeliveredCount is how many packets the device delivered in all.
func (n *Node) DeliveredCount() int { return n.dev.count }

// Addr is the node's overlay address.
func (n *Node) Addr() netip.Addr { return n.Cert.Overlay }

// UDPPacket builds an IPv6 UDP packet from src to dst carrying payload.
func UDPPacket(src, dst netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	pkt := make([]byte, 40+8+len(payload))
	putIPv6Header(pkt, 17, src, dst)
	u := pkt[40:]
	binary.BigEndian.PutUint16(u[0:], srcPort)
	binary.BigEndian.PutUint16(u[2:], dstPort)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	psh := icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice())
	binary.BigEndian.PutUint32(psh[32:], uint32(len(u))) // x/net leaves the length to its caller
	psh[39] = 17
	binary.BigEndian.PutUint16(u[6:], ^checksum.Checksum(u, checksum.Checksum(psh, 0)))
	return pkt
}

// EchoRequest builds an ICMPv6 echo request from src to dst.
func EchoRequest(src, dst netip.Addr, id, seq int, data []byte) []byte {
	msg := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}
	return icmpPacket(src, dst, msg)
}

// ParseEcho returns the echo message in an IPv6 packet, if it is one.
func ParseEcho(pkt []byte) (typ ipv6.ICMPType, e *icmp.Echo, ok bool) {
	if len(pkt) < 48 || pkt[0]>>4 != 6 || pkt[6] != 58 {
		return 0, nil, false
	}
	msg, err := icmp.ParseMessage(58, pkt[40:])
	if err != nil {
		return 0, nil, false
	}
	e, ok = msg.Body.(*icmp.Echo)
	t, _ := msg.Type.(ipv6.ICMPType)
	return t, e, ok
}

// echoReply is the host's answer to an echo request pkt, or nil.
func echoReply(pkt []byte) []byte {
	typ, e, ok := ParseEcho(pkt)
	if !ok || typ != ipv6.ICMPTypeEchoRequest {
		return nil
	}
	src, dst := netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	return icmpPacket(dst, src, icmp.Message{Type: ipv6.ICMPTypeEchoReply, Body: e})
}

func icmpPacket(src, dst netip.Addr, msg icmp.Message) []byte {
	body, err := msg.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		panic(err) // an echo message always marshals
	}
	pkt := make([]byte, 40+len(body))
	putIPv6Header(pkt, 58, src, dst)
	copy(pkt[40:], body)
	return pkt
}

func putIPv6Header(p []byte, proto byte, src, dst netip.Addr) {
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
	p[6], p[7] = proto, 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
}
