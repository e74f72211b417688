package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// burstFixture seals a burst packet end to end (e2eA → e2eB) and cuts it into fragment transit
// packets on the link linkA → linkB.
type burstFixture struct {
	linkA, linkB, e2eA, e2eB *Session
	head, plain, burst       []byte
	pieceSize                int
}

const testHead = 36

func newBurstFixture(tb testing.TB, size, pieceSize int) *burstFixture {
	tb.Helper()
	f := &burstFixture{head: bytes.Repeat([]byte{'h'}, testHead), pieceSize: pieceSize}
	f.linkA, f.linkB = newPair(tb, t0)
	f.e2eA, f.e2eB = New(Config{}, t0), New(Config{}, t0)
	installDirect(tb, f.e2eA, f.e2eB, 1, 0x31, 0x32, t0)
	confirm(tb, f.e2eA, f.e2eB, t0)
	f.plain = payload(nil, 7, size)
	burst, err := f.e2eA.SealBurst(nil, f.plain, t0)
	if err != nil {
		tb.Fatal(err)
	}
	f.burst = burst
	return f
}

// fragments returns the burst's fragment transit packets, in order.
func (f *burstFixture) fragments(tb testing.TB) [][]byte {
	tb.Helper()
	h, err := ParseBurstHeader(f.burst)
	if err != nil {
		tb.Fatal(err)
	}
	k := Pieces(len(f.burst), f.pieceSize)
	out := make([][]byte, k)
	for i := range k {
		fr, end := Cut(h, len(f.burst), f.pieceSize, i)
		p, err := f.linkA.SealFragment(nil, f.head, fr, f.burst[fr.Offset:end], t0)
		if err != nil {
			tb.Fatalf("piece %d: %v", i, err)
		}
		out[i] = p
	}
	return out
}

// receive opens fragment transit packets on linkB and reassembles them; it returns the opened
// burst plaintext once complete.
func (f *burstFixture) receive(tb testing.TB, r *Reassembler, pkts [][]byte) ([]byte, error) {
	tb.Helper()
	for i, p := range pkts {
		head, inner, err := f.linkB.OpenTransit(bytes.Clone(p), testHead, t0)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(head, f.head) {
			tb.Fatalf("piece %d: head %q", i, head)
		}
		fr, piece, err := ParseFragment(inner)
		if err != nil {
			tb.Fatalf("piece %d: %v", i, err)
		}
		if !f.e2eB.Fresh(fr.Burst, t0) {
			return nil, ErrReplay
		}
		packet, _, err := r.Add(t0, fr, piece)
		if err != nil {
			return nil, err
		}
		if packet != nil {
			if i != len(pkts)-1 {
				tb.Fatalf("burst complete after %d of %d pieces", i+1, len(pkts))
			}
			return f.e2eB.OpenBurst(packet, t0)
		}
	}
	return nil, errors.New("burst incomplete")
}

func TestBurstRoundTrip(t *testing.T) {
	for _, size := range []int{1, 1000, 1392, 57_000, MaxPlaintextSize} {
		f := newBurstFixture(t, size, PieceSize(1472, testHead))
		pkts := f.fragments(t)
		if len(pkts) > MaxFragments {
			t.Fatalf("%d bytes: %d pieces", size, len(pkts))
		}
		for _, p := range pkts {
			if p[0] != TypeFragment || len(p) > 1472 {
				t.Fatalf("fragment: type %d, %d bytes", p[0], len(p))
			}
		}
		rand.New(rand.NewPCG(1, uint64(size))).Shuffle(len(pkts), func(i, j int) { pkts[i], pkts[j] = pkts[j], pkts[i] })
		// receive insists that the last packet fed completes the burst.
		got, err := f.receive(t, NewReassembler(4), pkts)
		if err != nil || !bytes.Equal(got, f.plain) {
			t.Fatalf("%d bytes: %v, equal %v", size, err, bytes.Equal(got, f.plain))
		}
		// The burst is accepted once: its pieces again, even under new link counters, are stale.
		if _, err := f.receive(t, NewReassembler(4), f.fragments(t)); !errors.Is(err, ErrReplay) {
			t.Fatalf("%d bytes: replayed burst: %v", size, err)
		}
	}
}

// TestBurstRelay: a relay opens a fragment transit packet and seals it again for the next link
// with SealTransit, which keeps it a fragment (type 7), and the destination still reassembles it.
func TestBurstRelay(t *testing.T) {
	f := newBurstFixture(t, 5000, 1024)
	nextA, nextB := newPair(t, t0)
	var relayed [][]byte
	for _, p := range f.fragments(t) {
		head, inner, err := f.linkB.OpenTransit(p, testHead, t0)
		if err != nil {
			t.Fatal(err)
		}
		out, err := nextA.SealTransit(nil, head, inner, t0)
		if err != nil || out[0] != TypeFragment {
			t.Fatalf("relay: %v, type %d", err, out[0])
		}
		relayed = append(relayed, out)
	}
	f.linkB = nextB
	got, err := f.receive(t, NewReassembler(2), relayed)
	if err != nil || !bytes.Equal(got, f.plain) {
		t.Fatalf("relayed burst: %v", err)
	}
}

// TestBurstTamper: the link authenticates a fragment's head and prefix; a changed piece passes the
// link but the destination refuses the whole burst.
func TestBurstTamper(t *testing.T) {
	f := newBurstFixture(t, 3000, 1024)
	pkts := f.fragments(t)
	prefixAt := TransitOverhead + testHead
	for _, at := range []int{0, 4, 8, 17, prefixAt, prefixAt + 4, prefixAt + 8, prefixAt + 16, prefixAt + 20, prefixAt + 22, prefixAt + 23} {
		p := bytes.Clone(pkts[1])
		p[at] ^= 1
		if _, _, err := f.linkB.OpenTransit(p, testHead, t0); err == nil {
			t.Errorf("byte %d flipped: the link accepted the fragment", at)
		}
	}
	for _, at := range []int{prefixAt + FragmentPrefixSize, len(pkts[1]) - 1} {
		bad := f.fragments(t) // new link counters
		bad[1][at] ^= 1
		if _, err := f.receive(t, NewReassembler(2), bad); !errors.Is(err, ErrAuth) {
			t.Errorf("piece byte %d flipped: %v, want ErrAuth", at, err)
		}
	}
}

// TestBurstTypesApart: a burst packet is not a data packet, and a fragment is not a transit packet.
func TestBurstTypesApart(t *testing.T) {
	f := newBurstFixture(t, 100, 1024)
	if _, err := f.e2eB.Open(bytes.Clone(f.burst), t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Open took a burst packet: %v", err)
	}
	data, err := f.e2eA.Seal(nil, f.plain, t0)
	if err != nil {
		t.Fatal(err)
	}
	data[0] = TypeBurst
	if _, err := f.e2eB.OpenBurst(data, t0); !errors.Is(err, ErrAuth) {
		t.Fatalf("a data packet retyped as a burst: %v, want ErrAuth", err)
	}
	frag := f.fragments(t)[0]
	frag[0] = TypeTransit
	if _, _, err := f.linkB.OpenTransit(frag, testHead, t0); err == nil {
		t.Fatal("a fragment retyped as a transit packet was accepted")
	}
}

func TestParseFragmentRefuses(t *testing.T) {
	good := Fragment{Burst: DataHeader{Receiver: 9, Counter: 3}, Total: 100, Offset: 64, Index: 1, Count: 2}
	enc := func(fr Fragment, piece int) []byte {
		b := make([]byte, FragmentPrefixSize+piece)
		fr.put(b)
		return b
	}
	if _, _, err := ParseFragment(enc(good, 36)); err != nil {
		t.Fatalf("good fragment: %v", err)
	}
	with := func(change func(*Fragment)) Fragment { fr := good; change(&fr); return fr }
	cases := map[string][]byte{
		"prefix only":      enc(good, 0),
		"piece too long":   enc(good, 37),
		"last too short":   enc(good, 35),
		"not last, ends":   enc(with(func(f *Fragment) { f.Count = 3 }), 36),
		"index ≥ count":    enc(with(func(f *Fragment) { f.Index = 2 }), 36),
		"count 0":          enc(with(func(f *Fragment) { f.Count, f.Index = 0, 0 }), 36),
		"count 65":         enc(with(func(f *Fragment) { f.Count, f.Index = 65, 64 }), 36),
		"total too short":  enc(with(func(f *Fragment) { f.Total, f.Offset = 31, 8 }), 23),
		"total too long":   enc(with(func(f *Fragment) { f.Total, f.Offset = MaxPacketSize+1, MaxPacketSize+1-40 }), 40),
		"index 0 not at 0": enc(with(func(f *Fragment) { f.Index = 0; f.Count = 1 }), 36),
		"unaligned piece":  enc(with(func(f *Fragment) { f.Index, f.Offset, f.Count = 0, 0, 2 }), 60),
		"burst type":       func() []byte { b := enc(good, 36); b[0] = TypeData; return b }(),
		"reserved":         func() []byte { b := enc(good, 36); b[2] = 1; return b }(),
		"counter":          enc(with(func(f *Fragment) { f.Burst.Counter = RejectAfterMessages }), 36),
	}
	for name, b := range cases {
		if _, _, err := ParseFragment(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	var raw [FragmentPrefixSize + 8]byte
	good.put(raw[:])
	binary.LittleEndian.PutUint32(raw[16:], 1<<31)
	if _, _, err := ParseFragment(raw[:]); err == nil {
		t.Error("a total of 2^31 parsed")
	}
}

func TestReassemblerBounds(t *testing.T) {
	frag := func(recv uint32, ctr uint64, i, count int) (Fragment, []byte) {
		total := count * 64
		return Fragment{Burst: DataHeader{Receiver: recv, Counter: ctr}, Total: total, Offset: i * 64, Index: i, Count: count},
			make([]byte, 64)
	}
	r := NewReassembler(3)
	fr, p := frag(1, 10, 0, 2)
	if _, d, err := r.Add(t0, fr, p); err != nil || d.Why != LossNone {
		t.Fatal(d, err)
	}
	if _, _, err := r.Add(t0, fr, p); !errors.Is(err, ErrDuplicatePiece) {
		t.Fatalf("duplicate: %v", err)
	}
	fr2, p2 := frag(1, 10, 1, 3)
	if _, _, err := r.Add(t0, fr2, p2); !errors.Is(err, ErrPieceMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	// A session holds at most ReassemblyPerSession slots: its third burst evicts its oldest.
	fr, p = frag(1, 11, 0, 2)
	r.Add(t0, fr, p)
	fr, p = frag(1, 12, 0, 2)
	if _, d, _ := r.Add(t0, fr, p); d != (Dropped{Receiver: 1, Why: LossEvicted}) {
		t.Fatalf("third burst of a session: dropped %+v", d)
	}
	if r.Pending() != 2 {
		t.Fatalf("%d pending", r.Pending())
	}
	// A full pool evicts the least recently used slot (session 1's counter 11).
	fr, p = frag(2, 1, 0, 2)
	if _, d, _ := r.Add(t0, fr, p); d.Why != LossNone {
		t.Fatalf("free slot: dropped %+v", d)
	}
	fr, p = frag(3, 1, 0, 2)
	if _, d, _ := r.Add(t0, fr, p); d != (Dropped{Receiver: 1, Why: LossEvicted}) {
		t.Fatalf("full pool: dropped %+v", d)
	}
	// Session 1's counter 12 survived and completes.
	fr, p = frag(1, 12, 1, 2)
	if pkt, _, err := r.Add(t0, fr, p); err != nil || len(pkt) != 128 {
		t.Fatalf("completion: %d bytes, %v", len(pkt), err)
	}
	// Expiry.
	later := t0.Add(ReassemblyTimeout + time.Millisecond)
	var lost []Dropped
	r.Expire(later, func(d Dropped) { lost = append(lost, d) })
	if len(lost) != 2 || r.Pending() != 0 {
		t.Fatalf("expired %v, %d pending", lost, r.Pending())
	}
}

func TestBurstNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector (sync.Pool drops items)")
	}
	f := newBurstFixture(t, 57_000, PieceSize(1472, testHead))
	h, _ := ParseBurstHeader(f.burst)
	dst := make([]byte, 0, 2048)
	sealBuf := make([]byte, 0, MaxPacketSize)
	if n := testing.AllocsPerRun(20, func() {
		b, err := f.e2eA.SealBurst(sealBuf, f.plain, t0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range Pieces(len(b), f.pieceSize) {
			fr, end := Cut(h, len(b), f.pieceSize, i)
			if _, err := f.linkA.SealFragment(dst[:0], f.head, fr, b[fr.Offset:end], t0); err != nil {
				t.Fatal(err)
			}
		}
	}); n != 0 {
		t.Fatalf("sealing a burst allocates %v times", n)
	}
	// Fresh link counters for every run (AllocsPerRun runs once more than asked).
	rounds := make([][][]byte, 21)
	for i := range rounds {
		rounds[i] = f.fragments(t)
	}
	r := NewReassembler(2)
	r.Add(t0, Fragment{Burst: DataHeader{Receiver: 1}, Total: 40, Count: 1}, make([]byte, 40)) // allocates the pool
	var round uint64
	if n := testing.AllocsPerRun(20, func() {
		for _, p := range rounds[round] {
			_, inner, err := f.linkB.OpenTransit(p, testHead, t0)
			if err != nil {
				t.Fatal(err)
			}
			fr, piece, _ := ParseFragment(inner)
			fr.Burst.Counter += round // a new burst each run, so reassembly never refuses
			if _, _, err := r.Add(t0, fr, piece); err != nil {
				t.Fatal(err)
			}
		}
		round++
	}); n != 0 {
		t.Fatalf("receiving a burst allocates %v times", n)
	}
}

// FuzzParseFragment: the parser never panics, and what it accepts re-encodes to the same bytes and
// lies within its burst.
func FuzzParseFragment(f *testing.F) {
	var b [FragmentPrefixSize + 64]byte
	Fragment{Burst: DataHeader{Receiver: 1, Counter: 2}, Total: 128, Offset: 64, Index: 1, Count: 2}.put(b[:])
	f.Add(b[:])
	f.Add(b[:30])
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, piece, err := ParseFragment(in)
		if err != nil {
			return
		}
		var re [FragmentPrefixSize]byte
		fr.put(re[:])
		if !bytes.Equal(re[:], in[:FragmentPrefixSize]) || !bytes.Equal(piece, in[FragmentPrefixSize:]) {
			t.Fatalf("%+v does not re-encode to its input", fr)
		}
		if fr.Offset+len(piece) > fr.Total || fr.Total > MaxPacketSize || fr.Count > MaxFragments {
			t.Fatalf("accepted %+v with a %d-byte piece", fr, len(piece))
		}
	})
}

// FuzzReassemble feeds a reassembler an arbitrary sequence of genuine and forged pieces of a few
// bursts (the input is a program: each 4-byte step picks a burst, a piece, whether to forge its
// bytes, and a time step). It checks that nothing panics, that no more bursts are pending than the
// pool has slots, and that a reassembled burst opens only if it is the genuine one.
func FuzzReassemble(f *testing.F) {
	e2eA, e2eB := New(Config{}, t0), New(Config{}, t0)
	installDirect(f, e2eA, e2eB, 1, 0x31, 0x32, t0)
	confirm(f, e2eA, e2eB, t0)
	const bursts, pieceSize = 3, 512
	var plain, sealed [bursts][]byte
	for i := range bursts {
		plain[i] = payload(nil, uint64(i), 700+900*i)
		var err error
		if sealed[i], err = e2eA.SealBurst(nil, plain[i], t0); err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 1, 1, 0, 0, 1, 2, 1, 0, 1, 3, 0, 0, 1, 4, 0, 0})
	f.Add([]byte{2, 0, 0, 200, 2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 4*256 {
			return
		}
		recv := New(Config{}, t0)
		_, kb := mirrorKeys(1, 0x31, 0x32)
		if err := recv.Install(&kb, t0); err != nil {
			t.Fatal(err)
		}
		r := NewReassembler(2)
		now := t0
		var piece [pieceSize]byte
		for ; len(prog) >= 4; prog = prog[4:] {
			which, idx, forge, step := int(prog[0])%bursts, int(prog[1]), prog[2], prog[3]
			now = now.Add(time.Duration(step) * time.Millisecond)
			h, _ := ParseBurstHeader(sealed[which])
			k := Pieces(len(sealed[which]), pieceSize)
			fr, end := Cut(h, len(sealed[which]), pieceSize, idx%k)
			p := piece[:end-fr.Offset]
			copy(p, sealed[which][fr.Offset:end])
			if forge != 0 {
				p[int(forge)%len(p)] ^= forge
			}
			if idx >= k { // a forged place: another count
				fr.Count = min(MaxFragments, fr.Count+idx/k)
				if !fr.fits(len(p)) {
					continue
				}
			}
			if !recv.Fresh(fr.Burst, now) {
				continue
			}
			packet, _, err := r.Add(now, fr, p)
			if err != nil || packet == nil {
				continue
			}
			pt, err := recv.OpenBurst(packet, now)
			if err != nil {
				continue
			}
			if !bytes.Equal(pt, plain[which]) {
				t.Fatalf("burst %d opened to something else", which)
			}
		}
		if r.Pending() > 2 {
			t.Fatal("more bursts pending than slots")
		}
	})
}
