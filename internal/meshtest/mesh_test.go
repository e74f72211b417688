package meshtest

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"
	"x0tta6bl4/internal/node"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/meshca"
)

// ping has from's host send an echo request to to's host every 200 ms, as ping(8) does, and runs
// the mesh until a reply is back; it reports whether one came within limit.
func ping(m *Mesh, from, to *Node, seq int, limit time.Duration) bool {
	replied := func() bool {
		return slices.ContainsFunc(from.Delivered(), func(p Packet) bool {
			typ, e, ok := ParseEcho(p.Data)
			return ok && typ == ipv6.ICMPTypeEchoReply && e.ID == 0x77 && e.Seq == seq
		})
	}
	for end := m.Now().Add(limit); m.Now().Before(end); {
		from.Inject(EchoRequest(from.Addr(), to.Addr(), 0x77, seq, []byte("meshtest ping")))
		if _, ok := m.RunUntil(replied, min(200*time.Millisecond, end.Sub(m.Now()))); ok {
			return true
		}
	}
	return false
}

func chain(t *testing.T, seed uint64, names ...string) *Mesh {
	t.Helper()
	return chainWith(t, Config{Seed: seed}, names...)
}

// chainWith starts a line of the named nodes, in order, under cfg.
func chainWith(t *testing.T, cfg Config, names ...string) *Mesh {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes(names...); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(names); i++ {
		if err := m.Link(names[i-1], names[i], LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLineMeshPing: a line of four nodes learns 3-hop routes; an echo request crosses two relays
// end to end, and the reply comes back.
func TestLineMeshPing(t *testing.T) {
	m := chain(t, 2, "a", "b", "c", "d")
	a, d := m.Node("a"), m.Node("d")
	took, ok := m.RunUntil(hasRoute(a, "d", 3, "b"), 5*time.Second)
	if !ok {
		t.Fatalf("no 3-hop route a -> d\n%s", dump(m))
	}
	t.Logf("a learned a 3-hop route to d in %s", took)
	if !ping(m, a, d, 1, time.Second) {
		t.Fatalf("no echo reply a -> d\n%s", dump(m))
	}
	if s := m.Node("b").Status().Stats; s.Forwarded == 0 {
		t.Errorf("relay b forwarded nothing: %+v", s)
	}
}

// TestRevokedNodeDropsOut: a revocation list given to one node spreads over the mesh; its neighbour
// of the revoked node drops the link, and nobody reaches the revoked node any more.
func TestRevokedNodeDropsOut(t *testing.T) {
	m := chain(t, 3, "a", "b", "c")
	a, b, c := m.Node("a"), m.Node("b"), m.Node("c")
	if _, ok := m.RunUntil(hasRoute(a, "c", 2, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> c\n%s", dump(m))
	}
	if !ping(m, a, c, 1, time.Second) {
		t.Fatal("no echo reply before the revocation")
	}
	crl, err := m.CA().SignRevocationList(nil, []meshca.Serial{c.Cert.Serial}, nil, m.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Only a learns of the list; it must spread over the mesh to b, which then drops c.
	if changed, err := a.UpdateCRL(crl); err != nil || !changed {
		t.Fatalf("UpdateCRL: %v %v", changed, err)
	}
	gone := func() bool {
		return !slices.ContainsFunc(b.Peers(), func(p node.PeerStatus) bool { return p.Name == "c" })
	}
	if _, ok := m.RunUntil(gone, time.Second); !ok {
		t.Fatalf("b still has revoked c as a peer: %+v", b.Peers())
	}
	if ping(m, a, c, 2, 2*time.Second) {
		t.Fatal("a can still reach revoked c")
	}
}

// TestFirewallReload: new rules apply to the next packet; invalid rules are refused and the old ones
// stay.
func TestFirewallReload(t *testing.T) {
	m := chain(t, 4, "a", "b")
	a, b := m.Node("a"), m.Node("b")
	if _, ok := m.RunUntil(hasRoute(a, "b", 1, "b"), 5*time.Second); !ok {
		t.Fatalf("no route a -> b\n%s", dump(m))
	}
	if !ping(m, a, b, 1, time.Second) {
		t.Fatal("no echo reply with allow-all rules")
	}
	tcpOnly := firewall.Config{Inbound: []firewall.Rule{{Proto: "tcp", Port: "22", Any: true}}, Outbound: allowAll.Outbound}
	if err := b.ReloadFirewall(tcpOnly); err != nil {
		t.Fatal(err)
	}
	if ping(m, a, b, 2, time.Second) {
		t.Fatal("ping passed after b's rules stopped allowing ICMPv6")
	}
	if s := b.Status().Stats; s.DropFirewall == 0 {
		t.Errorf("b counted no firewall drop: %+v", s)
	}
	if err := b.ReloadFirewall(firewall.Config{Inbound: []firewall.Rule{{Proto: "tcp", Port: "99999", Any: true}}}); err == nil {
		t.Fatal("invalid rules accepted")
	}
	if err := b.ReloadFirewall(allowAll); err != nil {
		t.Fatal(err)
	}
	if !ping(m, a, b, 3, time.Second) {
		t.Fatal("no echo reply after restoring the rules")
	}
}

// TestUDPPacketChecksum: the host's UDP packets carry a checksum that verifies over the IPv6
// pseudo-header, for even and odd payloads.
func TestUDPPacketChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("fd74::1"), netip.MustParseAddr("fd74::2")
	for _, payload := range []string{"", "x", "even", "odd!!"} {
		pkt := UDPPacket(src, dst, 40000, 7, []byte(payload))
		u := pkt[40:]
		psh := icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice())
		binary.BigEndian.PutUint32(psh[32:], uint32(len(u)))
		psh[39] = 17
		if sum := checksum.Checksum(u, checksum.Checksum(psh, 0)); sum != 0xffff {
			t.Errorf("payload %q: checksum does not verify (sum %#04x)", payload, sum)
		}
	}
}
