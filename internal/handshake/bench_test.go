package handshake

import (
	"net/netip"
	"testing"
	"time"
)

type benchPair struct {
	alice, bob *node
	ma, mb     *Machine
	now        time.Time
}

func newBenchPair(b *testing.B) *benchPair {
	p := newPKI(b, "test.mesh")
	alice, bob := p.node(b, "alice", 24*time.Hour), p.node(b, "bob", 24*time.Hour)
	return &benchPair{alice: alice, bob: bob, ma: alice.machine(b, p.verifier), mb: bob.machine(b, p.verifier), now: t0}
}

// step advances the clock so per-source limits never interfere with a benchmark of CPU cost.
func (bp *benchPair) step() { bp.now = bp.now.Add(time.Second) }

func (bp *benchPair) initiate(b *testing.B) Output {
	out, err := bp.ma.Initiate(bp.now, bp.bob.addr, bp.bob.cert)
	if err != nil || len(out.Packets) == 0 {
		b.Fatalf("initiate: %v", err)
	}
	return out
}

func (bp *benchPair) respond(b *testing.B, init Output) []Packet {
	var resp []Packet
	for _, p := range init.Packets {
		o, err := bp.mb.Handle(bp.now, bp.alice.addr, p.Data)
		if err != nil {
			b.Fatalf("responder: %v", err)
		}
		resp = append(resp, o.Packets...)
	}
	return resp
}

func (bp *benchPair) finish(b *testing.B, resp []Packet) {
	var done bool
	for _, p := range resp {
		o, err := bp.ma.Handle(bp.now, bp.bob.addr, p.Data)
		if err != nil {
			b.Fatalf("initiator: %v", err)
		}
		done = done || o.Result != nil
	}
	if !done {
		b.Fatal("handshake did not complete")
	}
}

// respondUnderLoad is respond with the cookie round trip when the initiator's cookie has expired
// (every CookieLifetime); only the responder's work is timed.
func (bp *benchPair) respondUnderLoad(b *testing.B, init Output) []Packet {
	var resp []Packet
	pkts := init.Packets
	for round := 0; len(pkts) > 0; round++ {
		if round > 1 {
			b.Fatal("cookie round trip did not settle")
		}
		var replies []Packet
		for _, p := range pkts {
			o, err := bp.mb.Handle(bp.now, bp.alice.addr, p.Data)
			if err != nil && err != ErrCookieRequired {
				b.Fatalf("responder: %v", err)
			}
			for _, q := range o.Packets {
				if q.Data[0] == TypeCookieReply {
					replies = append(replies, q)
				} else {
					resp = append(resp, q)
				}
			}
		}
		pkts = nil
		b.StopTimer()
		for _, r := range replies {
			o, _ := bp.ma.Handle(bp.now, bp.bob.addr, r.Data)
			pkts = append(pkts, o.Packets...)
		}
		b.StartTimer()
	}
	return resp
}

// BenchmarkHandshakeInitiator is the initiator's CPU per handshake: writing the initiation
// (ephemeral key generation, one encapsulation) and reading the response (two decapsulations).
func BenchmarkHandshakeInitiator(b *testing.B) {
	bp := newBenchPair(b)
	for b.Loop() {
		bp.step()
		init := bp.initiate(b)
		b.StopTimer()
		resp := bp.respond(b, init)
		b.StartTimer()
		bp.finish(b, resp)
	}
}

// BenchmarkHandshakeResponder is the responder's CPU per handshake: MAC checks, reassembly, one
// decapsulation, certificate check (cached), two encapsulations.
func BenchmarkHandshakeResponder(b *testing.B) {
	bp := newBenchPair(b)
	for b.Loop() {
		b.StopTimer()
		bp.step()
		init := bp.initiate(b)
		b.StartTimer()
		resp := bp.respond(b, init)
		b.StopTimer()
		bp.finish(b, resp)
		b.StartTimer()
	}
}

// BenchmarkHandshakeFull is both sides together, as on one machine.
func BenchmarkHandshakeFull(b *testing.B) {
	bp := newBenchPair(b)
	for b.Loop() {
		bp.step()
		bp.finish(b, bp.respond(b, bp.initiate(b)))
	}
}

// BenchmarkMAC1Reject is the cost of dropping an initiation packet with a wrong mac1.
func BenchmarkMAC1Reject(b *testing.B) {
	bp := newBenchPair(b)
	bad := append([]byte(nil), bp.initiate(b).Packets[0].Data...)
	bad[len(bad)-initTrailerSize] ^= 1
	b.SetBytes(int64(len(bad)))
	b.ReportAllocs()
	for b.Loop() {
		bp.mb.Handle(bp.now, bp.alice.addr, bad)
	}
}

// BenchmarkFloodWithCookies measures the responder under load against a flood of initiation
// packets that carry a valid mac1 (the attacker knows the responder's public key) but no mac2,
// from many spoofed sources.
//
//   - replies: one flood packet per op, each answered with a 64-byte cookie reply.
//   - mixed: per op, 100 flood packets plus one genuine handshake whose initiator holds a cookie;
//     handshakes/s is the rate the responder completes genuine handshakes while flooded.
func BenchmarkFloodWithCookies(b *testing.B) {
	bp := newBenchPair(b)
	bp.mb.SetUnderLoad(true)
	flood := bp.initiate(b).Packets[0].Data
	sources := make([]netip.AddrPort, 4096)
	for i := range sources {
		sources[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 4000)
	}
	// Complete the pending handshake through the cookie round trip, so alice holds a cookie.
	bp.step()
	nw := newNet(b, bp.now)
	nw.add(bp.alice.addr, bp.ma)
	nw.add(bp.bob.addr, bp.mb)
	nw.send(bp.alice.addr, bp.ma.Tick(bp.now.Add(RetryInterval+RetryJitter)))
	nw.run()
	if len(nw.results[bp.alice.addr]) != 1 {
		b.Fatalf("setup handshake under load failed: %v", nw.errs)
	}

	b.Run("replies", func(b *testing.B) {
		i := 0
		for b.Loop() {
			o, err := bp.mb.Handle(bp.now, sources[i%len(sources)], flood)
			if err != ErrCookieRequired || len(o.Packets) != 1 {
				b.Fatalf("flood packet: %v", err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "replies/s")
	})
	b.Run("mixed", func(b *testing.B) {
		const perHandshake = 100
		i, handshakes := 0, 0
		for b.Loop() {
			for range perHandshake {
				bp.mb.Handle(bp.now, sources[i%len(sources)], flood)
				i++
			}
			b.StopTimer()
			bp.now = bp.now.Add(time.Second / 8)
			init := bp.initiate(b)
			b.StartTimer()
			resp := bp.respondUnderLoad(b, init)
			b.StopTimer()
			bp.finish(b, resp)
			b.StartTimer()
			handshakes++
		}
		b.ReportMetric(float64(handshakes)/b.Elapsed().Seconds(), "handshakes/s")
		b.ReportMetric(float64(handshakes*perHandshake)/b.Elapsed().Seconds(), "floodpkts/s")
	})
}
