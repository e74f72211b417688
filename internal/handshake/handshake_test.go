package handshake

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func TestHandshakeBothDirections(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma, mb := alice.machine(t, p.verifier), bob.machine(t, p.verifier)

	ra, rb, nw := handshake(t, t0, alice, bob, ma, mb)
	checkPair(t, ra, rb, alice, bob)
	if nw.sent[bob.addr] > nw.sent[alice.addr] {
		t.Errorf("responder sent %d bytes for %d received", nw.sent[bob.addr], nw.sent[alice.addr])
	}
	t.Logf("alice→bob: initiation %d B in %d packets, response %d B in %d packets",
		nw.sent[alice.addr], nw.packets[alice.addr], nw.sent[bob.addr], nw.packets[bob.addr])

	rb2, ra2, _ := handshake(t, t0.Add(time.Second), bob, alice, mb, ma)
	checkPair(t, rb2, ra2, bob, alice)
	if rb2.SendKey == rb.SendKey || ra2.RecvKey == ra.RecvKey {
		t.Error("a second handshake produced the same keys")
	}
	if ma.Pending() != 0 || mb.Pending() != 0 {
		t.Errorf("pending handshakes left: %d, %d", ma.Pending(), mb.Pending())
	}
}

func TestPacketSizes(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	for _, size := range []int{MinPacketSize, DefaultPacketSize, 1400, 9000, MaxPacketSize} {
		ma := alice.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = size })
		mb := bob.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = size })
		ra, rb, nw := handshake(t, t0, alice, bob, ma, mb)
		checkPair(t, ra, rb, alice, bob)
		if nw.sent[bob.addr] > nw.sent[alice.addr] || nw.packets[bob.addr] > nw.packets[alice.addr] {
			t.Errorf("size %d: response %d B/%d pkts larger than initiation %d B/%d pkts", size,
				nw.sent[bob.addr], nw.packets[bob.addr], nw.sent[alice.addr], nw.packets[alice.addr])
		}
		t.Logf("MaxPacketSize %5d: initiation %d B in %d packets, response %d B in %d packets", size,
			nw.sent[alice.addr], nw.packets[alice.addr], nw.sent[bob.addr], nw.packets[bob.addr])
	}
}

// Every packet must respect MaxPacketSize, also across differently configured peers.
func TestMismatchedPacketSizes(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = 9000 })
	mb := bob.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = MinPacketSize })
	nw := newNet(t, t0)
	nw.add(alice.addr, ma)
	nw.add(bob.addr, mb)
	nw.mangle = func(from netip.AddrPort, pkts []Packet) []Packet {
		limit := map[netip.AddrPort]int{alice.addr: 9000, bob.addr: MinPacketSize}[from]
		for _, p := range pkts {
			if len(p.Data) > limit {
				t.Errorf("%s sent %d bytes, limit %d", from, len(p.Data), limit)
			}
		}
		return pkts
	}
	out, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	nw.send(alice.addr, out)
	nw.run()
	checkPair(t, nw.results[alice.addr][0], nw.results[bob.addr][0], alice, bob)
	if nw.sent[bob.addr] > nw.sent[alice.addr] {
		t.Errorf("response %d B larger than initiation %d B", nw.sent[bob.addr], nw.sent[alice.addr])
	}
}

func TestFragmentsReorderedAndDuplicated(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []struct{ a, b *node }{{alice, bob}, {bob, alice}} {
		ma := dir.a.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = MinPacketSize })
		mb := dir.b.machine(t, p.verifier, func(c *Config) { c.MaxPacketSize = MinPacketSize })
		nw := newNet(t, t0)
		nw.add(dir.a.addr, ma)
		nw.add(dir.b.addr, mb)
		nw.mangle = func(_ netip.AddrPort, pkts []Packet) []Packet {
			if len(pkts) < 2 {
				return pkts
			}
			out := slices.Clone(pkts)
			out = append(out, pkts[rng.IntN(len(pkts))]) // a duplicate
			rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
			if &out[0].Data[0] == &pkts[0].Data[0] {
				out[0], out[1] = out[1], out[0] // fragment 0 never arrives first
			}
			return out
		}
		out, err := ma.Initiate(t0, dir.b.addr, dir.b.cert)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Packets) < 10 {
			t.Fatalf("expected a fragmented initiation, got %d packets", len(out.Packets))
		}
		nw.send(dir.a.addr, out)
		nw.run()
		if len(nw.results[dir.a.addr]) != 1 || len(nw.results[dir.b.addr]) != 1 {
			t.Fatalf("%s→%s: results %d/%d, errors %v", dir.a.name, dir.b.name,
				len(nw.results[dir.a.addr]), len(nw.results[dir.b.addr]), nw.errs)
		}
		checkPair(t, nw.results[dir.a.addr][0], nw.results[dir.b.addr][0], dir.a, dir.b)
	}
}

func TestPeerRejected(t *testing.T) {
	p := newPKI(t, "test.mesh")
	other := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	mallory := other.node(t, "mallory", time.Hour) // same names, another CA
	short := p.node(t, "short", time.Minute)

	t.Run("initiator from wrong CA", func(t *testing.T) {
		// mallory trusts p so she can start; bob does not trust her CA.
		_, rb, nw := handshake(t, t0, mallory, bob, mallory.machine(t, p.verifier), bob.machine(t, p.verifier))
		if rb != nil || !nw.hasErr(meshca.ErrUnknownIssuer) || !nw.hasErr(ErrPeer) {
			t.Fatalf("result %v, errors %v", rb != nil, nw.errs)
		}
		if nw.sent[bob.addr] != 0 {
			t.Error("responder answered a rejected initiator")
		}
	})
	t.Run("responder from wrong CA", func(t *testing.T) {
		_, err := alice.machine(t, p.verifier).Initiate(t0, mallory.addr, mallory.cert)
		if !errors.Is(err, meshca.ErrUnknownIssuer) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("revoked initiator", func(t *testing.T) {
		v, _ := meshca.NewVerifier(p.ca.Certificate())
		crl, err := p.ca.SignRevocationList(nil, []meshca.Serial{alice.cert.Serial}, nil, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.UpdateCRL(crl); err != nil {
			t.Fatal(err)
		}
		_, rb, nw := handshake(t, t0, alice, bob, alice.machine(t, p.verifier), bob.machine(t, v))
		if rb != nil || !nw.hasErr(meshca.ErrRevoked) {
			t.Fatalf("result %v, errors %v", rb != nil, nw.errs)
		}
		// An initiator holding a list that revokes the responder refuses to start.
		crl2, _ := p.ca.SignRevocationList(crl, []meshca.Serial{bob.cert.Serial}, nil, t0)
		if _, err := v.UpdateCRL(crl2); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.machine(t, v).Initiate(t0, bob.addr, bob.cert); !errors.Is(err, meshca.ErrRevoked) {
			t.Fatalf("initiate to revoked responder: %v", err)
		}
	})
	t.Run("expired initiator", func(t *testing.T) {
		later := t0.Add(2 * time.Minute)
		// short's own Initiate checks only bob's certificate; bob must refuse short's.
		_, rb, nw := handshake(t, later, short, bob, short.machine(t, p.verifier), bob.machine(t, p.verifier))
		if rb != nil || !nw.hasErr(meshca.ErrExpired) {
			t.Fatalf("result %v, errors %v", rb != nil, nw.errs)
		}
	})
	t.Run("expired responder", func(t *testing.T) {
		_, err := alice.machine(t, p.verifier).Initiate(t0.Add(2*time.Minute), short.addr, short.cert)
		if !errors.Is(err, meshca.ErrExpired) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("responder revoked during the handshake", func(t *testing.T) {
		v, _ := meshca.NewVerifier(p.ca.Certificate())
		ma := alice.machine(t, v)
		mb := bob.machine(t, p.verifier)
		out, err := ma.Initiate(t0, bob.addr, bob.cert)
		if err != nil {
			t.Fatal(err)
		}
		crl, _ := p.ca.SignRevocationList(nil, []meshca.Serial{bob.cert.Serial}, nil, t0)
		if _, err := v.UpdateCRL(crl); err != nil {
			t.Fatal(err)
		}
		nw := newNet(t, t0)
		nw.add(alice.addr, ma)
		nw.add(bob.addr, mb)
		nw.send(alice.addr, out)
		nw.run()
		if len(nw.results[alice.addr]) != 0 || !nw.hasErr(meshca.ErrRevoked) || ma.Pending() != 0 {
			t.Fatalf("results %d, errors %v, pending %d", len(nw.results[alice.addr]), nw.errs, ma.Pending())
		}
	})
	t.Run("authorize hook", func(t *testing.T) {
		deny := errors.New("alice is not welcome")
		mb := bob.machine(t, p.verifier, func(c *Config) {
			c.Authorize = func(peer *meshca.Certificate) error {
				if peer.Name == "alice" {
					return deny
				}
				return nil
			}
		})
		_, rb, nw := handshake(t, t0, alice, bob, alice.machine(t, p.verifier), mb)
		if rb != nil || !nw.hasErr(deny) {
			t.Fatalf("result %v, errors %v", rb != nil, nw.errs)
		}
	})
	t.Run("own key", func(t *testing.T) {
		if _, err := alice.machine(t, p.verifier).Initiate(t0, alice.addr, alice.cert); !errors.Is(err, ErrPeer) {
			t.Fatalf("got %v", err)
		}
	})
}

// The initiator holds carol's certificate but sends to bob's address: bob must drop it at mac1; with
// a correct mac1 (an attacker who knows bob's key re-MACs it) the AEAD fails.
func TestWrongResponderKey(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob, carol := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour), p.node(t, "carol", time.Hour)
	ma := alice.machine(t, p.verifier)
	out, err := ma.Initiate(t0, bob.addr, carol.cert)
	if err != nil {
		t.Fatal(err)
	}
	mb := bob.machine(t, p.verifier)
	for _, pkt := range out.Packets {
		if o, err := mb.Handle(t0, alice.addr, pkt.Data); !errors.Is(err, ErrMAC1) || len(o.Packets) != 0 {
			t.Fatalf("got %v, %d packets", err, len(o.Packets))
		}
	}
	bobMAC := macerFor(bob)
	var last error
	for _, pkt := range out.Packets {
		d := remac(bobMAC, pkt.Data)
		o, err := mb.Handle(t0, alice.addr, d)
		if o.Result != nil || len(o.Packets) != 0 {
			t.Fatal("responder answered an initiation for another key")
		}
		last = err
	}
	if !errors.Is(last, ErrDecrypt) {
		t.Fatalf("got %v, want ErrDecrypt", last)
	}
}

// remac returns a copy of an initiation packet with mac1 recomputed by m and mac2 zeroed.
func remac(m *macer, pkt []byte) []byte {
	d := bytes.Clone(pkt)
	if len(d) < minInitiationPacket {
		return d
	}
	end := len(d) - initTrailerSize
	m.put(d[end:end+macSize], d[:end])
	clear(d[end+macSize:])
	return d
}

func TestPrologueMismatch(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier, func(c *Config) { c.Prologue = PrologueE2E })
	_, rb, nw := handshake(t, t0, alice, bob, ma, bob.machine(t, p.verifier))
	if rb != nil || !nw.hasErr(ErrDecrypt) {
		t.Fatalf("result %v, errors %v", rb != nil, nw.errs)
	}
}

func TestUnsupportedVersionAndSuite(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	out, err := alice.machine(t, p.verifier).Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	mb := bob.machine(t, p.verifier)
	for _, off := range []int{1, 2} {
		for _, v := range []byte{0, 2, 255} {
			d := bytes.Clone(out.Packets[0].Data)
			d[off] = v
			o, err := mb.Handle(t0, alice.addr, d)
			if !errors.Is(err, ErrUnsupported) || len(o.Packets) != 0 {
				t.Errorf("byte %d = %d: %v, %d packets", off, v, err, len(o.Packets))
			}
		}
	}
	if _, err := mb.Handle(t0, alice.addr, []byte{TypeTransport, 0, 0, 0}); !errors.Is(err, ErrNotHandshake) {
		t.Errorf("transport packet: %v", err)
	}
}

// Every single-byte change of every packet of every message must stop the handshake.
func TestTamperAnyByte(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	init, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	bobMAC := macerFor(bob)

	// feed delivers the initiation with packet i byte j flipped to a fresh responder.
	feed := func(i, j int, fix bool, underLoad bool) (*Result, []error) {
		mb := bob.machine(t, p.verifier)
		mb.SetUnderLoad(underLoad)
		var errs []error
		var res *Result
		for k, pkt := range init.Packets {
			d := pkt.Data
			if k == i {
				d = bytes.Clone(d)
				d[j] ^= 0x01
				if fix {
					d = remac(bobMAC, d)
				}
			}
			o, err := mb.Handle(t0, alice.addr, d)
			if err != nil {
				errs = append(errs, err)
			}
			if o.Result != nil {
				res = o.Result
			}
		}
		return res, errs
	}
	for i, pkt := range init.Packets {
		for j := range pkt.Data {
			mac2 := j >= len(pkt.Data)-macSize
			// mac2 is only checked under load (as in WireGuard); flipping it otherwise is harmless.
			if res, _ := feed(i, j, false, mac2); res != nil {
				t.Fatalf("initiation packet %d byte %d: tampered handshake completed", i, j)
			}
		}
	}
	// With mac1 recomputed (an attacker who knows bob's public key), the cryptography must catch it.
	// The MACs themselves are excluded: remac overwrites them.
	checked := 0
	for i, pkt := range init.Packets {
		for j := 0; j < len(pkt.Data)-initTrailerSize; j++ {
			if j >= fragHeaderSize && (j-fragHeaderSize)%29 != 0 && j != len(pkt.Data)-initTrailerSize-1 {
				continue // every header byte, and a stride through the body
			}
			checked++
			if res, _ := feed(i, j, true, false); res != nil {
				t.Fatalf("initiation packet %d byte %d (mac1 fixed): tampered handshake completed", i, j)
			}
		}
	}
	t.Logf("%d initiation packets; %d positions checked with mac1 recomputed", len(init.Packets), checked)

	// The genuine initiation yields the response we tamper with next.
	mb := bob.machine(t, p.verifier)
	var resp []Packet
	for _, pkt := range init.Packets {
		o, err := mb.Handle(t0, alice.addr, pkt.Data)
		if err != nil {
			t.Fatal(err)
		}
		resp = append(resp, o.Packets...)
	}
	hs := ma.pending[ma.byPeer[peerID(bob.key.KEM.PublicKey().Bytes())].index]
	for i, pkt := range resp {
		for j := range pkt.Data {
			hs.resp = newReassembly(0, ResponseSize, t0)
			for k, q := range resp {
				d := q.Data
				if k == i {
					d = bytes.Clone(d)
					d[j] ^= 0x80
				}
				if o, _ := ma.Handle(t0, bob.addr, d); o.Result != nil {
					t.Fatalf("response packet %d byte %d: tampered handshake completed", i, j)
				}
			}
		}
	}
	// The untouched response still completes: failed attempts did not disturb the pending handshake.
	hs.resp = newReassembly(0, ResponseSize, t0)
	var done *Result
	for _, q := range resp {
		o, err := ma.Handle(t0, bob.addr, q.Data)
		if err != nil {
			t.Fatal(err)
		}
		if o.Result != nil {
			done = o.Result
		}
	}
	if done == nil {
		t.Fatal("genuine response did not complete after tampered ones")
	}
}

func TestTamperCookieReply(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	init, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	mb := bob.machine(t, p.verifier)
	mb.SetUnderLoad(true)
	o, err := mb.Handle(t0, alice.addr, init.Packets[0].Data)
	if !errors.Is(err, ErrCookieRequired) || len(o.Packets) != 1 {
		t.Fatalf("got %v, %d packets", err, len(o.Packets))
	}
	reply := o.Packets[0].Data
	if len(reply) != CookieReplySize || len(reply) > len(init.Packets[0].Data) {
		t.Fatalf("cookie reply %d bytes for a %d-byte packet", len(reply), len(init.Packets[0].Data))
	}
	for j := range reply {
		d := bytes.Clone(reply)
		d[j] ^= 0x04
		if o, err := ma.Handle(t0, bob.addr, d); err == nil || len(o.Packets) != 0 || len(ma.heldCookies) != 0 {
			t.Fatalf("byte %d: tampered cookie reply accepted (%v)", j, err)
		}
	}
	for _, n := range []int{0, 1, CookieReplySize - 1, CookieReplySize + 1} {
		d := append(bytes.Clone(reply), 0)[:n]
		if _, err := ma.Handle(t0, bob.addr, d); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cookie reply of %d bytes: %v", n, err)
		}
	}
}

func TestTruncatedAndOversized(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	init, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	mb := bob.machine(t, p.verifier)
	bobMAC := macerFor(bob)
	pkt := init.Packets[0].Data
	for n := 0; n < len(pkt); n++ {
		if o, err := mb.Handle(t0, alice.addr, pkt[:n]); err == nil || o.Result != nil || len(o.Packets) != 0 {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for _, extra := range []int{1, 100, MaxPacketSize} {
		d := append(bytes.Clone(pkt), make([]byte, extra)...)
		if o, err := mb.Handle(t0, alice.addr, d); err == nil || len(o.Packets) != 0 {
			t.Fatalf("oversized by %d: %v", extra, err)
		}
	}

	// Logical messages of the wrong length, correctly framed and MACed.
	msg := reassemble(t, init.Packets)
	for _, n := range []int{MinInitiationSize - 1, len(msg) - 1, len(msg) + 1, len(msg) + payloadBlock, MaxInitiationSize + 1} {
		body := make([]byte, n)
		copy(body, msg)
		frags, err := splitMessage(TypeInitiation, 77, body, DefaultPacketSize-fragHeaderSize-initTrailerSize)
		if err != nil {
			t.Fatal(err)
		}
		m := bob.machine(t, p.verifier)
		var res *Result
		var last error
		for _, f := range frags {
			o, err := m.Handle(t0, alice.addr, remac(bobMAC, f))
			last = err
			if o.Result != nil {
				res = o.Result
			}
		}
		if res != nil || last == nil {
			t.Fatalf("logical initiation of %d bytes accepted (%v)", n, last)
		}
	}
	// Fragments claiming more than the reassembly limit are dropped before they are all buffered.
	big := make([]byte, MaxFragments*600)
	frags, err := splitMessage(TypeInitiation, 78, big, 600)
	if err != nil {
		t.Fatal(err)
	}
	m := bob.machine(t, p.verifier)
	sawLimit := false
	for _, f := range frags {
		_, err := m.Handle(t0, alice.addr, remac(bobMAC, f))
		sawLimit = sawLimit || errors.Is(err, ErrMalformed)
	}
	// The fragments after the drop start over and are again bounded (at most one reassembly).
	if !sawLimit || m.reasm.len() > 1 {
		t.Fatalf("oversized reassembly: limit hit %v, %d reassemblies held", sawLimit, m.reasm.len())
	}

	// Truncated and oversized responses.
	resp := respondTo(t, bob.machine(t, p.verifier), alice.addr, init.Packets)
	for _, r := range resp {
		for _, d := range [][]byte{r.Data[:fragHeaderSize], r.Data[:len(r.Data)-1], append(bytes.Clone(r.Data), 1)} {
			hs := ma.pending[init.index()]
			hs.resp = newReassembly(0, ResponseSize, t0)
			for _, q := range resp {
				x := q.Data
				if &q.Data[0] == &r.Data[0] {
					x = d
				}
				if o, _ := ma.Handle(t0, bob.addr, x); o.Result != nil {
					t.Fatal("malformed response accepted")
				}
			}
		}
	}
}

// index returns the initiator index written in an output's packets.
func (o Output) index() uint32 {
	h, _ := parseHeader(o.Packets[0].Data)
	return h.index
}

func reassemble(tb testing.TB, pkts []Packet) []byte {
	tb.Helper()
	var msg []byte
	for _, p := range pkts {
		f, err := parseFragment(p.Data)
		if err != nil {
			tb.Fatal(err)
		}
		msg = append(msg, f.chunk...)
	}
	return msg
}

func respondTo(tb testing.TB, m *Machine, from netip.AddrPort, pkts []Packet) []Packet {
	tb.Helper()
	var out []Packet
	for _, p := range pkts {
		o, err := m.Handle(t0, from, p.Data)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, o.Packets...)
	}
	if len(out) == 0 {
		tb.Fatal("no response")
	}
	return out
}

// A replayed initiation must produce nothing, and must not disturb the live session.
func TestReplayedInitiation(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma, mb := alice.machine(t, p.verifier), bob.machine(t, p.verifier)
	nw := newNet(t, t0)
	nw.add(alice.addr, ma)
	nw.add(bob.addr, mb)
	init, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	nw.send(alice.addr, init)
	nw.run()
	ra, rb := nw.results[alice.addr][0], nw.results[bob.addr][0]
	checkPair(t, ra, rb, alice, bob)
	live := newToySession(rb)
	live.confirm(ra) // alice's first transport packet promotes bob's keys to current

	// Exact replay, at once and two minutes later, from alice's address and from elsewhere. At once
	// from alice's address it is a resend (docs/protocol.md §12.3) and gets a copy of the answer
	// already given, which TestDuplicateInitiationAnsweredFromCache covers; everything else is dropped.
	for _, at := range []time.Time{t0.Add(time.Second), t0.Add(2 * time.Minute)} {
		for _, from := range []netip.AddrPort{alice.addr, netip.MustParseAddrPort("[2001:db8::66]:666")} {
			if from == alice.addr && at.Sub(t0) < AnsweredLifetime {
				continue
			}
			var errs []error
			for _, pkt := range init.Packets {
				o, err := mb.Handle(at, from, pkt.Data)
				if o.Result != nil || len(o.Packets) != 0 {
					t.Fatalf("replay at %s from %s produced output", at.Sub(t0), from)
				}
				if err != nil {
					errs = append(errs, err)
				}
			}
			if !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, ErrReplay) }) {
				t.Fatalf("replay not detected: %v", errs)
			}
		}
	}

	// A responder that lost its cache (restart) processes the replay, but the result is only a
	// "next" keypair the attacker cannot confirm: the live session is untouched.
	restarted := bob.machine(t, p.verifier)
	var replayed *Result
	for _, pkt := range init.Packets {
		o, _ := restarted.Handle(t0.Add(time.Minute), alice.addr, pkt.Data)
		if o.Result != nil {
			replayed = o.Result
		}
	}
	if replayed == nil {
		t.Fatal("restarted responder did not process the initiation")
	}
	if replayed.RecvKey == rb.RecvKey || replayed.SendKey == rb.SendKey {
		t.Fatal("replayed initiation reproduced the session keys")
	}
	live.install(replayed)
	if live.current != rb.RecvKey {
		t.Fatal("an unconfirmed result replaced the live session")
	}
	// The attacker's best guess at a confirming packet is under keys it does not have.
	live.confirmWith(ra.SendKey) // alice's live key: authenticates only against current
	if live.current != rb.RecvKey {
		t.Fatal("live session changed")
	}
	// The initiator ignores responses to the replay: it has no pending handshake for that index.
	hs, _ := parseHeader(init.Packets[0].Data)
	if _, err := ma.Handle(t0, bob.addr, append(appendHeader(nil, TypeResponse, hs.index), 0, 1, 9)); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("response to replay: %v", err)
	}
}

// toySession models the transport's keypair rule of docs/transport.md just enough to state the
// property: results from the responder go to next and are promoted only by a packet under RecvKey.
type toySession struct {
	current, next [32]byte
	hasNext       bool
}

func newToySession(r *Result) *toySession { return &toySession{next: r.RecvKey, hasNext: true} }

func (s *toySession) install(r *Result) { s.next, s.hasNext = r.RecvKey, true }

func (s *toySession) confirm(initiator *Result) { s.confirmWith(initiator.SendKey) }

// confirmWith models a packet sealed under key k arriving.
func (s *toySession) confirmWith(k [32]byte) {
	if s.hasNext && k == s.next {
		s.current, s.hasNext = s.next, false
	}
}

// A packet with a bad mac1 must cost no allocation and leave no state behind.
func TestBadMAC1AllocatesNothing(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	init, err := alice.machine(t, p.verifier).Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	mb := bob.machine(t, p.verifier)
	bad := bytes.Clone(init.Packets[0].Data)
	bad[len(bad)-initTrailerSize] ^= 1
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := mb.Handle(t0, alice.addr, bad); !errors.Is(err, ErrMAC1) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per bad-mac1 packet", allocs)
	}
	if mb.reasm.len() != 0 || mb.limiter.Len() != 0 || mb.cookies.initialised {
		t.Fatal("bad-mac1 packet left state behind")
	}
	// Garbage of every short length and unknown types cost nothing either.
	for _, d := range [][]byte{nil, {1}, {1, 1, 1, 0}, {9, 9, 9}, make([]byte, 64)} {
		if a := testing.AllocsPerRun(100, func() { mb.Handle(t0, alice.addr, d) }); a != 0 {
			t.Fatalf("%v allocations for %x", a, d)
		}
	}
}

func TestCookieUnderLoad(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma, mb := alice.machine(t, p.verifier), bob.machine(t, p.verifier)
	mb.SetUnderLoad(true)
	ra, rb, nw := handshake(t, t0, alice, bob, ma, mb)
	checkPair(t, ra, rb, alice, bob)
	if !nw.hasErr(ErrCookieRequired) {
		t.Fatal("no cookie was required under load")
	}
	if nw.sent[bob.addr] > nw.sent[alice.addr] {
		t.Errorf("responder sent %d bytes for %d", nw.sent[bob.addr], nw.sent[alice.addr])
	}
	// The cookie is kept per responder: the next handshake carries mac2 and needs no round trip.
	ra2, rb2, nw2 := handshake(t, t0.Add(time.Second), alice, bob, ma, mb)
	checkPair(t, ra2, rb2, alice, bob)
	if nw2.hasErr(ErrCookieRequired) {
		t.Fatalf("second handshake needed a new cookie: %v", nw2.errs)
	}
	// After CookieLifetime the cookie is dropped and a new one is fetched.
	ra3, rb3, nw3 := handshake(t, t0.Add(CookieLifetime+time.Second), alice, bob, ma, mb)
	checkPair(t, ra3, rb3, alice, bob)
	if !nw3.hasErr(ErrCookieRequired) {
		t.Fatal("stale cookie was used")
	}

	// A cookie is bound to the address: another source using alice's mac2 is refused.
	out, err := alice.machine(t, p.verifier).Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	o, err := mb.Handle(t0, alice.addr, out.Packets[0].Data)
	if !errors.Is(err, ErrCookieRequired) {
		t.Fatal(err)
	}
	cookie := cookieFor(&mb.cookies.cur, alice.addr)
	withMAC2 := bytes.Clone(out.Packets[1].Data)
	m2 := mac2With(&cookie, withMAC2[:len(withMAC2)-macSize])
	copy(withMAC2[len(withMAC2)-macSize:], m2[:])
	if _, err := mb.Handle(t0, alice.addr, withMAC2); err != nil {
		t.Fatalf("valid mac2 refused: %v", err)
	}
	if _, err := mb.Handle(t0, netip.MustParseAddrPort("[2001:db8::99]:1"), withMAC2); !errors.Is(err, ErrCookieRequired) {
		t.Fatalf("mac2 from another address: %v", err)
	}
	if len(o.Packets) != 1 {
		t.Fatal("no cookie reply")
	}
	// Cookies survive one secret rotation, not two.
	if _, err := mb.Handle(t0.Add(130*time.Second), alice.addr, withMAC2); errors.Is(err, ErrCookieRequired) {
		t.Fatalf("cookie from the previous secret refused: %v", err)
	}
	if _, err := mb.Handle(t0.Add(260*time.Second), alice.addr, withMAC2); !errors.Is(err, ErrCookieRequired) {
		t.Fatalf("cookie two secrets old accepted: %v", err)
	}
}

// The machine enters the under-load mode by itself when initiations arrive faster than its threshold.
func TestAutomaticLoad(t *testing.T) {
	p := newPKI(t, "test.mesh")
	bob := p.node(t, "bob", time.Hour)
	var initiators []*node
	for i := range 3 {
		initiators = append(initiators, p.node(t, "n"+string(rune('a'+i)), time.Hour))
	}
	mb := bob.machine(t, p.verifier, func(c *Config) { c.LoadThreshold = 2 })
	for i, n := range initiators {
		if i < 2 && mb.UnderLoad(t0) {
			t.Fatalf("under load after %d handshakes", i)
		}
		_, rb, _ := handshake(t, t0, n, bob, n.machine(t, p.verifier), mb)
		if rb == nil {
			t.Fatalf("handshake %d failed", i)
		}
	}
	if !mb.UnderLoad(t0) {
		t.Fatal("not under load after the threshold")
	}
	if mb.UnderLoad(t0.Add(2 * time.Second)) {
		t.Fatal("still under load after a quiet second")
	}
}

func TestRateLimitAndReassemblyBounds(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	bobMAC := macerFor(bob)
	frag := func(index uint32, num, count int) []byte {
		pk, err := splitMessage(TypeInitiation, index, make([]byte, 600*count), 600)
		if err != nil {
			t.Fatal(err)
		}
		return remac(bobMAC, pk[num])
	}

	t.Run("per source", func(t *testing.T) {
		mb := bob.machine(t, p.verifier)
		for i := range uint32(reassembliesPerSource) {
			if _, err := mb.Handle(t0, alice.addr, frag(100+i, 0, 4)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := mb.Handle(t0, alice.addr, frag(200, 0, 4)); !errors.Is(err, ErrBusy) {
			t.Fatalf("third reassembly from one source: %v", err)
		}
		// Another port of the same address is the same source.
		other := netip.AddrPortFrom(alice.addr.Addr(), alice.addr.Port()+1)
		if _, err := mb.Handle(t0, other, frag(201, 0, 4)); !errors.Is(err, ErrBusy) {
			t.Fatalf("other port: %v", err)
		}
		// After the timeout the slots are free again.
		if _, err := mb.Handle(t0.Add(ReassemblyTimeout), alice.addr, frag(202, 0, 4)); err != nil {
			t.Fatalf("after timeout: %v", err)
		}
	})
	t.Run("rate", func(t *testing.T) {
		mb := bob.machine(t, p.verifier, func(c *Config) { c.RatePerSecond, c.RateBurst = 1, 3 })
		limited := 0
		for i := range uint32(10) {
			// Single-fragment "messages" complete at once and free their slot.
			_, err := mb.Handle(t0, alice.addr, frag(300+i, 0, 1))
			if errors.Is(err, ErrRateLimited) {
				limited++
			}
		}
		if limited != 7 {
			t.Fatalf("%d of 10 limited, want 7", limited)
		}
		if _, err := mb.Handle(t0.Add(time.Second), alice.addr, frag(400, 0, 1)); errors.Is(err, ErrRateLimited) {
			t.Fatal("bucket did not refill")
		}
	})
	t.Run("global table and eviction by proven sources", func(t *testing.T) {
		mb := bob.machine(t, p.verifier, func(c *Config) { c.MaxReassemblies = 4; c.LoadThreshold = 1000 })
		for i := range 4 {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1)
			if _, err := mb.Handle(t0, src, frag(500+uint32(i), 0, 4)); err != nil && !errors.Is(err, ErrCookieRequired) {
				t.Fatal(err)
			}
		}
		if mb.reasm.len() != 2 || !mb.UnderLoad(t0) {
			t.Fatalf("half-full table: %d held, under load %v", mb.reasm.len(), mb.UnderLoad(t0))
		}
		// Under load, a source with a cookie still gets in.
		src := netip.MustParseAddrPort("10.0.1.1:1")
		mb.cookies.refresh(t0, mb.rand)
		cookie := cookieFor(&mb.cookies.cur, src)
		d := frag(600, 0, 4)
		m2 := mac2With(&cookie, d[:len(d)-macSize])
		copy(d[len(d)-macSize:], m2[:])
		if _, err := mb.Handle(t0, src, d); err != nil {
			t.Fatalf("proven source refused: %v", err)
		}
		// Fill the table with proven sources; the unproven ones are evicted first.
		for i := range 3 {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 2, byte(i)}), 1)
			cookie := cookieFor(&mb.cookies.cur, src)
			d := frag(700+uint32(i), 0, 4)
			m2 := mac2With(&cookie, d[:len(d)-macSize])
			copy(d[len(d)-macSize:], m2[:])
			if _, err := mb.Handle(t0, src, d); err != nil {
				t.Fatalf("proven source %d refused: %v", i, err)
			}
		}
		if mb.reasm.len() != 4 {
			t.Fatalf("%d reassemblies held, want 4", mb.reasm.len())
		}
		for _, r := range mb.reasm.entries {
			if !r.proven {
				t.Fatal("an unproven reassembly survived eviction")
			}
		}
	})
}

func TestFingerprintMode(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier, func(c *Config) { c.SendFingerprint = true })
	mb := bob.machine(t, p.verifier)
	nw := newNet(t, t0)
	nw.add(alice.addr, ma)
	nw.add(bob.addr, mb)
	out, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Packets) != 3 {
		t.Errorf("fingerprint initiation in %d packets, want 3", len(out.Packets))
	}
	nw.send(alice.addr, out)
	nw.run()
	if len(nw.results[bob.addr]) != 0 || !nw.hasErr(ErrPeer) {
		t.Fatalf("unknown fingerprint: %d results, %v", len(nw.results[bob.addr]), nw.errs)
	}
	// The retry carries the certificate.
	nw.now = t0.Add(RetryInterval + RetryJitter)
	nw.send(alice.addr, ma.Tick(nw.now))
	nw.run()
	if len(nw.results[alice.addr]) != 1 || len(nw.results[bob.addr]) != 1 {
		t.Fatalf("retry with certificate: results %d/%d, %v", len(nw.results[alice.addr]), len(nw.results[bob.addr]), nw.errs)
	}
	checkPair(t, nw.results[alice.addr][0], nw.results[bob.addr][0], alice, bob)
	// Now bob knows alice's certificate: the next fingerprint handshake completes at once.
	ra, rb, nw2 := handshake(t, nw.now, alice, bob, ma, mb)
	checkPair(t, ra, rb, alice, bob)
	if nw2.sent[bob.addr] > nw2.sent[alice.addr] || nw2.packets[bob.addr] > nw2.packets[alice.addr] {
		t.Errorf("fingerprint handshake: response %d B/%d pkts, initiation %d B/%d pkts",
			nw2.sent[bob.addr], nw2.packets[bob.addr], nw2.sent[alice.addr], nw2.packets[alice.addr])
	}
	t.Logf("fingerprint initiation %d B in %d packets, response %d B in %d packets",
		nw2.sent[alice.addr], nw2.packets[alice.addr], nw2.sent[bob.addr], nw2.packets[bob.addr])
	// A directory lookup serves a responder that never saw the certificate.
	mc := bob.machine(t, p.verifier, func(c *Config) {
		c.CertByFingerprint = func(fp meshca.Fingerprint) *meshca.Certificate {
			if fp == alice.cert.Fingerprint() {
				return alice.cert
			}
			return nil
		}
	})
	ra, rb, _ = handshake(t, nw.now, alice, bob, alice.machine(t, p.verifier, func(c *Config) { c.SendFingerprint = true }), mc)
	checkPair(t, ra, rb, alice, bob)
}

func TestRetryAndGiveUp(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	first, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ma.Initiate(t0, bob.addr, bob.cert); err != nil || len(again.Packets) != 0 {
		t.Fatalf("second Initiate while pending: %v, %d packets", err, len(again.Packets))
	}
	// Before the interval only resends of the first attempt go out (same index, same bytes).
	if out := ma.Tick(t0.Add(RetryInterval - time.Millisecond)); len(out.Packets) != 0 && out.index() != first.index() {
		t.Fatal("retry before the interval")
	}
	now := t0.Add(RetryInterval + RetryJitter)
	retry := ma.Tick(now)
	if len(retry.Packets) == 0 || retry.index() == first.index() {
		t.Fatalf("retry: %d packets, index %d (first %d)", len(retry.Packets), retry.index(), first.index())
	}
	if !bytes.Equal(reassemble(t, retry.Packets)[kemCTSize:kemCTSize+kemPKSize], reassemble(t, retry.Packets)[kemCTSize:kemCTSize+kemPKSize]) ||
		bytes.Equal(reassemble(t, retry.Packets)[:kemCTSize], reassemble(t, first.Packets)[:kemCTSize]) {
		t.Fatal("retry reused the first attempt's KEM ciphertext")
	}
	// A late response to the first attempt is for an index that is gone.
	mb := bob.machine(t, p.verifier)
	late := respondTo(t, mb, alice.addr, first.Packets)
	if _, err := ma.Handle(now, bob.addr, late[0].Data); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("late response: %v", err)
	}
	var failed []Failure
	for now.Before(t0.Add(GiveUpAfter + time.Second)) {
		now = now.Add(time.Second)
		failed = append(failed, ma.Tick(now).Failed...)
	}
	if len(failed) != 1 || !errors.Is(failed[0].Err, ErrTimeout) || ma.Pending() != 0 || len(ma.pending) != 0 {
		t.Fatalf("give up: %v, pending %d/%d", failed, ma.Pending(), len(ma.pending))
	}
}

// A forged response (right index, garbage) does not abort the pending handshake.
func TestForgedResponseDoesNotAbort(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	init, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	forged := make([]byte, ResponseSize)
	rand.NewChaCha8([32]byte{3}).Read(forged)
	forged[0] = 1
	frags, _ := splitMessage(TypeResponse, init.index(), forged, 1200)
	var last error
	for _, f := range frags {
		_, last = ma.Handle(t0, bob.addr, f)
	}
	if !errors.Is(last, ErrDecrypt) {
		t.Fatalf("forged response: %v", last)
	}
	resp := respondTo(t, bob.machine(t, p.verifier), alice.addr, init.Packets)
	var done *Result
	for _, r := range resp {
		o, err := ma.Handle(t0, bob.addr, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		done = o.Result
	}
	if done == nil {
		t.Fatal("genuine response after a forged one did not complete")
	}
}

type countingIndices struct {
	next     uint32
	live     map[uint32]bool
	released int
}

func (c *countingIndices) Allocate() (uint32, error) {
	c.next++
	c.live[c.next] = true
	return c.next, nil
}

func (c *countingIndices) Release(i uint32) {
	if !c.live[i] {
		panic("release of an index not allocated")
	}
	delete(c.live, i)
	c.released++
}

func TestIndexAllocator(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ia := &countingIndices{live: map[uint32]bool{}}
	ib := &countingIndices{next: 1000, live: map[uint32]bool{}}
	ma := alice.machine(t, p.verifier, func(c *Config) { c.Indices = ia })
	mb := bob.machine(t, p.verifier, func(c *Config) { c.Indices = ib })
	ra, rb, _ := handshake(t, t0, alice, bob, ma, mb)
	checkPair(t, ra, rb, alice, bob)
	if !ia.live[ra.LocalIndex] || !ib.live[rb.LocalIndex] || len(ia.live) != 1 || len(ib.live) != 1 {
		t.Fatalf("indices: alice %v (result %d), bob %v (result %d)", ia.live, ra.LocalIndex, ib.live, rb.LocalIndex)
	}
	// Retries and give-up release what they allocated.
	carol := p.node(t, "carol", time.Hour)
	if _, err := ma.Initiate(t0, carol.addr, carol.cert); err != nil {
		t.Fatal(err)
	}
	for now := t0; now.Before(t0.Add(GiveUpAfter + 2*time.Second)); now = now.Add(time.Second) {
		ma.Tick(now)
	}
	if len(ia.live) != 1 || ia.released < 10 {
		t.Fatalf("after give-up: %d live, %d released", len(ia.live), ia.released)
	}
}

func TestConfigErrors(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	good := Config{Key: alice.key, Cert: alice.cert, Verifier: p.verifier}
	for name, mod := range map[string]func(*Config){
		"no key":         func(c *Config) { c.Key = nil },
		"no cert":        func(c *Config) { c.Cert = nil },
		"CA cert":        func(c *Config) { c.Cert = p.ca.Certificate() },
		"no verifier":    func(c *Config) { c.Verifier = nil },
		"other key":      func(c *Config) { c.Key = bob.key },
		"tiny packets":   func(c *Config) { c.MaxPacketSize = 100 },
		"huge packets":   func(c *Config) { c.MaxPacketSize = 70000 },
		"negative limit": func(c *Config) { c.MaxPending = -1 },
	} {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	var k identity.NodeKey
	if _, err := New(Config{Key: &k, Cert: alice.cert, Verifier: p.verifier}); err == nil {
		t.Error("empty key accepted")
	}
}

// macerFor returns a mac1 computer for initiations to n (what anyone knowing n's public key can do).
func macerFor(n *node) *macer {
	k := deriveMACKeys(n.key.KEM.PublicKey().Bytes())
	return newMACer(k.mac1[:])
}

// Abandon drops a pending handshake so that Initiate starts a new one at once; a response to the
// abandoned attempt finds its index gone. Abandoning a peer with nothing pending is harmless.
func TestAbandon(t *testing.T) {
	p := newPKI(t, "test.mesh")
	alice, bob := p.node(t, "alice", time.Hour), p.node(t, "bob", time.Hour)
	ma := alice.machine(t, p.verifier)
	ma.Abandon(bob.cert)
	first, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	ma.Abandon(bob.cert)
	if ma.Pending() != 0 || len(ma.pending) != 0 {
		t.Fatalf("abandoned, but %d/%d pending", ma.Pending(), len(ma.pending))
	}
	again, err := ma.Initiate(t0, bob.addr, bob.cert)
	if err != nil || len(again.Packets) == 0 || again.index() == first.index() {
		t.Fatalf("Initiate after Abandon: %v, %d packets", err, len(again.Packets))
	}
	mb := bob.machine(t, p.verifier)
	late := respondTo(t, mb, alice.addr, first.Packets)
	if _, err := ma.Handle(t0, bob.addr, late[0].Data); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("response to the abandoned attempt: %v", err)
	}
	nw := newNet(t, t0)
	nw.add(alice.addr, ma)
	nw.add(bob.addr, bob.machine(t, p.verifier))
	nw.send(alice.addr, again)
	nw.run()
	if len(nw.results[alice.addr]) != 1 || len(nw.results[bob.addr]) != 1 {
		t.Fatal("the new attempt did not complete")
	}
	checkPair(t, nw.results[alice.addr][0], nw.results[bob.addr][0], alice, bob)
}
