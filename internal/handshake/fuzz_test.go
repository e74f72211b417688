package handshake

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fuzzWorld is built once per fuzzing process: certificates are expensive, machines are not.
type fuzzWorld struct {
	p          *pki
	alice, bob *node
	init       Output      // a genuine initiation alice → bob
	resp       []Packet    // bob's genuine response to it
	cookie     []byte      // a genuine cookie reply to it
	pending    *initiation // alice's pending handshake for init, cloned into each fuzz run
	bobResult  *Result     // bob's result for init
}

var (
	fuzzOnce sync.Once
	world    *fuzzWorld
)

func getWorld(tb testing.TB) *fuzzWorld {
	fuzzOnce.Do(func() {
		w := &fuzzWorld{p: newPKI(tb, "test.mesh")}
		w.alice, w.bob = w.p.node(tb, "alice", 24*time.Hour), w.p.node(tb, "bob", 24*time.Hour)
		var err error
		ma := w.alice.machine(tb, w.p.verifier)
		w.init, err = ma.Initiate(t0, w.bob.addr, w.bob.cert)
		if err != nil {
			tb.Fatal(err)
		}
		w.pending = ma.pending[w.init.index()]
		mb0 := w.bob.machine(tb, w.p.verifier)
		for _, p := range w.init.Packets {
			o, err := mb0.Handle(t0, w.alice.addr, p.Data)
			if err != nil {
				tb.Fatal(err)
			}
			w.resp = append(w.resp, o.Packets...)
			if o.Result != nil {
				w.bobResult = o.Result
			}
		}
		mb := w.bob.machine(tb, w.p.verifier)
		mb.SetUnderLoad(true)
		o, _ := mb.Handle(t0, w.alice.addr, w.init.Packets[0].Data)
		w.cookie = o.Packets[0].Data
		world = w
	})
	return world
}

func addPacketSeeds(f *testing.F) {
	w := getWorld(f)
	for _, p := range w.init.Packets {
		f.Add(p.Data)
	}
	for _, p := range w.resp {
		f.Add(p.Data)
	}
	f.Add(w.cookie)
	f.Add([]byte{})
	f.Add([]byte{TypeInitiation, Version, SuiteXWingAES256GCM, 0, 1, 0, 0, 0, 0, 1})
}

func FuzzParseFragment(f *testing.F) {
	addPacketSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fr, err := parseFragment(pkt)
		if err != nil {
			return
		}
		if fr.num >= fr.count || fr.count > MaxFragments || len(fr.chunk) == 0 {
			t.Fatalf("accepted fragment %d/%d with %d-byte chunk", fr.num, fr.count, len(fr.chunk))
		}
		// Re-encoding the fields gives the packet back.
		b := appendHeader(nil, fr.typ, fr.index)
		b = append(b, byte(fr.num), byte(fr.count))
		b = append(b, fr.chunk...)
		if fr.typ == TypeInitiation {
			if len(fr.mac1) != macSize || len(fr.mac2) != macSize || !bytes.Equal(fr.authed, pkt[:len(fr.authed)]) {
				t.Fatal("bad MAC slices")
			}
			b = append(append(b, fr.mac1...), fr.mac2...)
		}
		if !bytes.Equal(b, pkt) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, pkt)
		}
	})
}

func FuzzParseCookieReply(f *testing.F) {
	addPacketSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		r, err := parseCookieReply(pkt)
		if err != nil {
			return
		}
		b := appendHeader(nil, r.typ, r.index)
		b = append(append(b, r.nonce...), r.sealed...)
		if len(pkt) != CookieReplySize || !bytes.Equal(b, pkt) {
			t.Fatal("re-encoding differs")
		}
		// Opening with any key must fail or yield exactly one cookie; it must never panic.
		var k [32]byte
		_, _ = openCookieReply(&k, &r, pkt[:macSize])
	})
}

func FuzzParseInitiation(f *testing.F) {
	w := getWorld(f)
	f.Add(reassemble(f, w.init.Packets))
	f.Add(make([]byte, MinInitiationSize))
	f.Fuzz(func(t *testing.T, msg []byte) {
		b, err := parseInitiation(msg)
		if err != nil {
			return
		}
		if len(b.ct1) != kemCTSize || len(b.epk) != kemPKSize || len(b.sealed) < payloadBlock+tagSize {
			t.Fatal("bad field sizes")
		}
		if !bytes.Equal(append(append(bytes.Clone(b.ct1), b.epk...), b.sealed...), msg) {
			t.Fatal("fields do not cover the message")
		}
	})
}

func FuzzParsePayload(f *testing.F) {
	w := getWorld(f)
	f.Add(encodePayload(payloadKindCertificate, w.alice.cert.Bytes()))
	fp := w.alice.cert.Fingerprint()
	f.Add(encodePayload(payloadKindFingerprint, fp[:]))
	f.Add(make([]byte, payloadBlock))
	mb := w.bob.machine(f, w.p.verifier)
	f.Fuzz(func(t *testing.T, p []byte) {
		pl, err := parsePayload(p)
		if err != nil {
			return
		}
		re := encodePayload(pl.kind, pl.data)
		// The encoder pads minimally; the decoder accepts more padding, all zero.
		if len(re) > len(p) || !bytes.Equal(re, p[:len(re)]) || !isZero(p[len(re):]) {
			t.Fatal("payload does not round-trip")
		}
		_, _ = mb.resolveCert(pl) // read-only on the machine
	})
}

func FuzzParseResponse(f *testing.F) {
	w := getWorld(f)
	var msg []byte
	for _, p := range w.resp {
		fr, _ := parseFragment(p.Data)
		msg = append(msg, fr.chunk...)
	}
	f.Add(msg)
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := parseResponse(msg)
		if err != nil {
			return
		}
		b := binary.LittleEndian.AppendUint32(nil, r.indexR)
		b = append(append(append(b, r.ct2...), r.ct3...), r.tag...)
		if r.indexR == 0 || !bytes.Equal(b, msg) {
			t.Fatal("response does not round-trip")
		}
	})
}

// FuzzReassembly feeds a reassembly fragments described by the input: each record is
// num, count, length (LE u16). Whatever arrives, the held bytes stay under the limit and a completed
// message is the concatenation of the chunks in fragment order.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{0, 2, 0x10, 0, 1, 2, 0x10, 0})
	f.Add([]byte{1, 3, 0xff, 0xff, 0, 3, 1, 0, 2, 3, 5, 0, 1, 3, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var r *reassembly
		chunks := map[int][]byte{}
		for len(in) >= 4 {
			num, count, n := int(in[0]), int(in[1]), int(binary.LittleEndian.Uint16(in[2:4]))
			in = in[4:]
			if count < 1 || count > MaxFragments || num >= count {
				continue
			}
			if r == nil {
				r = newReassembly(count, MaxInitiationSize, t0)
			}
			chunk := bytes.Repeat([]byte{byte(num)}, n%4096+1)
			fr := fragment{num: num, count: count, chunk: chunk}
			msg, done, err := r.add(&fr, len(chunk)+fragHeaderSize)
			if r.size > MaxInitiationSize {
				t.Fatalf("holding %d bytes", r.size)
			}
			if err == errReassemblyTooLarge {
				r = nil
				clear(chunks)
				continue
			}
			if err == nil {
				if _, dup := chunks[num]; !dup {
					chunks[num] = chunk
				}
			}
			if done {
				var want []byte
				for i := range r.count {
					want = append(want, chunks[i]...)
				}
				if !bytes.Equal(msg, want) {
					t.Fatal("reassembled message differs from the chunks")
				}
				r = nil
				clear(chunks)
			}
		}
	})
}

// FuzzMachine feeds random packets to a responder (bob) and to an initiator (alice) with a pending
// handshake. Records are: control byte, length (LE u16), packet. Control byte: 0x01 = deliver to
// alice (else to bob); 0x02 = recompute mac1 (as an attacker knowing bob's key can); 0x04 = write
// alice's pending index into the header; 0x08 = bob is under load; 0x70 = advance the clock by that
// many quarter seconds and run both machines' timers (resends, retries, expiry); 0x80 = the packet
// to bob comes from a second source address.
// Invariants: no panic, alice completes only with bob's genuine response, bob never sends a source
// more bytes than it received from it, no packet is larger than MaxPacketSize, bob makes at most one
// session per initiation however often it is duplicated and holds exactly one index per session,
// and alice's timers send only her attempt's own packets until the attempt is replaced.
func FuzzMachine(f *testing.F) {
	w := getWorld(f)
	rec := func(ctl byte, pkts ...Packet) []byte {
		var b []byte
		for _, p := range pkts {
			b = append(b, ctl)
			b = binary.LittleEndian.AppendUint16(b, uint16(len(p.Data)))
			b = append(b, p.Data...)
		}
		return b
	}
	f.Add(rec(0, w.init.Packets...))
	f.Add(rec(2, w.init.Packets...))
	f.Add(rec(8, w.init.Packets...))
	f.Add(rec(1, w.resp...))
	f.Add(rec(5, w.resp...))
	f.Add(rec(5, Packet{Data: w.cookie}))
	f.Add(append(rec(0, w.init.Packets...), rec(0x10, w.init.Packets...)...))
	f.Add(append(rec(0, w.init.Packets...), rec(0x20, w.init.Packets...)...))
	f.Add(append(append(rec(0, w.init.Packets...), rec(0x80, w.init.Packets...)...), rec(0x70, w.init.Packets...)...))
	f.Add(append(rec(0, w.init.Packets[1:]...), rec(0x20, w.init.Packets...)...))
	f.Add(append(rec(0x08, w.init.Packets...), rec(0x28, w.init.Packets...)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		// alice gets a copy of the template's pending handshake: no KEM work per run. The copy shares
		// only read-only values (ephemeral key, packets) with the template.
		ma := w.alice.machine(t, w.p.verifier)
		hs := *w.pending
		hs.resp = newReassembly(0, ResponseSize, t0)
		ma.pending[hs.index] = &hs
		ma.byPeer[hs.id] = &hs
		aliceIndex := hs.index
		indices := &countingIndices{live: map[uint32]bool{}}
		mb := w.bob.machine(t, w.p.verifier, func(c *Config) { c.Indices = indices })
		bobMAC := macerFor(w.bob)
		sessions := map[uint32]int{} // bob's results by the initiator's index
		ownPackets := func(out Output) {
			for _, p := range out.Packets {
				if len(p.Data) > DefaultPacketSize {
					t.Fatalf("initiator sent %d bytes", len(p.Data))
				}
				if _, still := ma.pending[aliceIndex]; still && !slices.ContainsFunc(hs.frags, func(f []byte) bool {
					// a resend equals the attempt's packet up to mac2 (set once a cookie arrived)
					return len(f) == len(p.Data) && bytes.Equal(f[:len(f)-macSize], p.Data[:len(f)-macSize])
				}) {
					t.Fatal("initiator sent a packet that is not its attempt's")
				}
			}
		}
		received := map[netip.AddrPort]int{}
		sent := map[netip.AddrPort]int{}
		now := t0
		for i := 0; len(in) >= 3 && i < 64; i++ {
			ctl, n := in[0], int(binary.LittleEndian.Uint16(in[1:3]))
			in = in[3:]
			n = min(n, len(in))
			pkt := bytes.Clone(in[:n])
			in = in[n:]
			if step := time.Duration(ctl>>4&7) * 250 * time.Millisecond; step > 0 {
				now = now.Add(step)
				ownPackets(ma.Tick(now))
				for _, p := range mb.Tick(now).Packets {
					t.Fatalf("responder timers sent %d bytes", len(p.Data))
				}
			}
			if ctl&4 != 0 && len(pkt) >= headerSize {
				binary.LittleEndian.PutUint32(pkt[4:8], aliceIndex)
			}
			from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, ctl >> 7}), 7)
			if ctl&1 != 0 {
				out, _ := ma.Handle(now, w.bob.addr, pkt)
				if r := out.Result; r != nil && (r.SendKey != w.bobResult.RecvKey || r.RecvKey != w.bobResult.SendKey ||
					r.RemoteIndex != w.bobResult.LocalIndex) {
					t.Fatal("initiator completed with something other than the genuine response")
				}
				ownPackets(out)
				continue
			}
			if ctl&2 != 0 {
				pkt = remac(bobMAC, pkt)
			}
			mb.SetUnderLoad(ctl&8 != 0)
			received[from] += len(pkt)
			out, _ := mb.Handle(now, from, pkt)
			if r := out.Result; r != nil {
				if sessions[r.RemoteIndex]++; sessions[r.RemoteIndex] > 1 {
					t.Fatalf("responder made a second session for initiator index %d", r.RemoteIndex)
				}
				if len(indices.live) != len(sessions) {
					t.Fatalf("responder holds %d indices for %d sessions", len(indices.live), len(sessions))
				}
			}
			for _, p := range out.Packets {
				if p.To != from {
					t.Fatalf("responder sent to %s, not the source %s", p.To, from)
				}
				if len(p.Data) > DefaultPacketSize {
					t.Fatalf("responder sent %d bytes", len(p.Data))
				}
				sent[from] += len(p.Data)
			}
			if sent[from] > received[from] {
				t.Fatalf("amplification: sent %d bytes to %s for %d received", sent[from], from, received[from])
			}
		}
		mb.Tick(now)
		ma.Tick(now)
	})
}
