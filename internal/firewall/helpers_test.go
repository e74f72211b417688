package firewall

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/meshca"
)

const testDomain = "mesh.test"

// t0 is the virtual clock's start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// addrOf returns a stable fd74::/16 address for a test node name.
func addrOf(name string) netip.Addr {
	h := sha256.Sum256([]byte(name))
	var a [16]byte
	a[0], a[1] = 0xfd, 0x74
	copy(a[2:], h[:14])
	return netip.AddrFrom16(a)
}

// peer returns a node certificate as the verifier would hand it over. The firewall reads only
// Kind, TrustDomain, Name, Groups and Overlay, so tests need no keys or signatures.
func peer(name string, groups ...string) *meshca.Certificate {
	return &meshca.Certificate{
		Kind:        meshca.KindNode,
		TrustDomain: testDomain,
		Name:        name,
		Groups:      meshca.NormalizeGroups(groups),
		Overlay:     addrOf(name),
	}
}

var self = addrOf("self")

// layer is one header of a packet under construction; its next-header value is the following
// layer's proto.
type layer struct {
	proto uint8
	data  []byte
}

// build assembles an IPv6 packet from src to dst with the given layers (extension headers first,
// upper-layer header with payload last).
func build(src, dst netip.Addr, layers ...layer) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	if len(layers) > 0 {
		b[6] = layers[0].proto
	} else {
		b[6] = ProtoNoNext
	}
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	for i, l := range layers {
		start := len(b)
		b = append(b, l.data...)
		if isExt(l.proto) {
			next := uint8(ProtoNoNext)
			if i+1 < len(layers) {
				next = layers[i+1].proto
			}
			b[start] = next
		}
	}
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-40))
	return b
}

func isExt(p uint8) bool {
	return p == ProtoHopByHop || p == ProtoRouting || p == ProtoDestOpts || p == ProtoFragment || p == ProtoAH
}

// ext returns an extension header of n 8-byte units (n >= 1); the next-header byte is filled in by build.
func ext(proto uint8, n int) layer {
	d := make([]byte, 8*n)
	d[1] = byte(n - 1)
	if proto == ProtoAH {
		d[1] = byte(2*n - 2)
	}
	return layer{proto, d}
}

// frag returns a fragment header for offset (in 8-byte units), more-fragments flag and id.
func frag(offset uint16, more bool, id uint32) layer {
	d := make([]byte, 8)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(d[2:4], v)
	binary.BigEndian.PutUint32(d[4:8], id)
	return layer{ProtoFragment, d}
}

func tcp(sport, dport uint16, flags uint8) layer {
	d := make([]byte, 20)
	binary.BigEndian.PutUint16(d[0:2], sport)
	binary.BigEndian.PutUint16(d[2:4], dport)
	d[12] = 5 << 4
	d[13] = flags
	return layer{ProtoTCP, d}
}

func udp(sport, dport uint16, payload int) layer {
	d := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(d[0:2], sport)
	binary.BigEndian.PutUint16(d[2:4], dport)
	binary.BigEndian.PutUint16(d[4:6], uint16(8+payload))
	return layer{ProtoUDP, d}
}

func icmp(typ, code uint8, id uint16, body []byte) layer {
	d := make([]byte, 8, 8+len(body))
	d[0], d[1] = typ, code
	binary.BigEndian.PutUint16(d[4:6], id)
	return layer{ProtoICMPv6, append(d, body...)}
}

// in and out are packets between self and p.
func in(p *meshca.Certificate, layers ...layer) []byte  { return build(p.Overlay, self, layers...) }
func out(p *meshca.Certificate, layers ...layer) []byte { return build(self, p.Overlay, layers...) }

func newFW(t testing.TB, cfg Config) *Firewall {
	t.Helper()
	fw, err := New(cfg, t0)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return fw
}

func mustYAML(t testing.TB, s string) Config {
	t.Helper()
	cfg, err := ParseYAML([]byte(s))
	if err != nil {
		t.Fatalf("ParseYAML: %v\n%s", err, s)
	}
	return cfg
}

// want checks a verdict's reason and rule index.
func want(t *testing.T, what string, got Verdict, reason Reason, rule int) {
	t.Helper()
	if got.Reason != reason || got.Rule != rule {
		t.Errorf("%s: got %v (rule %d), want %v (rule %d)", what, got, got.Rule, reason, rule)
	}
}

func at(d time.Duration) time.Time { return t0.Add(d) }
