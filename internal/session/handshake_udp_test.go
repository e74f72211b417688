package session

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"x0tta6bl4/internal/handshake"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// TestUDPLoopback100kAfterHandshake is the issue's end-to-end check of the session protocol: two real
// UDP sockets on 127.0.0.1 run the post-quantum handshake (fragmented initiation, response), install
// its keys, and exchange 100,000 packets whose content is checked.
func TestUDPLoopback100kAfterHandshake(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ca, cb := listenLoopbackPair(t)
	now := time.Now()

	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	root, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: "udp.test", Name: "root", Duration: 2 * time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := meshca.NewVerifier(root.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	machine := func(name string) (*handshake.Machine, *meshca.Certificate) {
		k, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		c, err := root.Issue(meshca.IssueRequest{Name: name, PublicKey: k.Public(), Duration: time.Hour}, now)
		if err != nil {
			t.Fatal(err)
		}
		m, err := handshake.New(handshake.Config{Key: k, Cert: c, Verifier: verifier})
		if err != nil {
			t.Fatal(err)
		}
		return m, c
	}
	ma, _ := machine("alice")
	mb, certB := machine("bob")
	addrOf := func(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

	send := func(c *net.UDPConn, pkts []handshake.Packet) {
		for _, p := range pkts {
			if _, err := c.WriteToUDPAddrPort(p.Data, p.To); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	// recvUntil feeds packets arriving on c to m until it completes a handshake.
	recvUntil := func(c *net.UDPConn, m *handshake.Machine, reply *net.UDPConn) *handshake.Result {
		buf := make([]byte, 65535)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		defer c.SetReadDeadline(time.Time{})
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("handshake over UDP: %v", err)
			}
			out, err := m.Handle(time.Now(), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), buf[:n])
			if err != nil {
				t.Fatalf("handshake over UDP: %v", err)
			}
			send(reply, out.Packets)
			if out.Result != nil {
				return out.Result
			}
		}
	}

	start := time.Now()
	out, err := ma.Initiate(start, addrOf(cb), certB)
	if err != nil {
		t.Fatal(err)
	}
	send(ca, out.Packets)
	rb := recvUntil(cb, mb, cb) // bob answers from his socket
	ra := recvUntil(ca, ma, ca)
	t.Logf("handshake over UDP: %d initiation packets, completed in %s", len(out.Packets), time.Since(start).Round(time.Microsecond))
	if !ra.Initiator || rb.Initiator || ra.Peer.Name != "bob" || rb.Peer.Name != "alice" {
		t.Fatalf("results: initiator %v/%v, peers %q/%q", ra.Initiator, rb.Initiator, ra.Peer.Name, rb.Peer.Name)
	}

	keys := func(r *handshake.Result) *Keys {
		k := &Keys{LocalIndex: r.LocalIndex, RemoteIndex: r.RemoteIndex, SendKey: r.SendKey, RecvKey: r.RecvKey, Initiator: r.Initiator}
		r.Wipe()
		return k
	}
	a, b := New(Config{}, now), New(Config{}, now)
	if err := a.Install(keys(ra), now); err != nil {
		t.Fatal(err)
	}
	if err := b.Install(keys(rb), now); err != nil {
		t.Fatal(err)
	}
	runUDPTransfer(t, ctx, ca, cb, a, b, 100_000, 0)
}
