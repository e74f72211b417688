package session

import (
	"bytes"
	"errors"
	"testing"
)

// transitFixture seals an inner end-to-end packet (sessions e2eA → e2eB) and wraps it in a
// transit packet on the link linkA → linkB.
type transitFixture struct {
	linkA, linkB, e2eA, e2eB *Session
	head, payload, inner     []byte
}

func newTransitFixture(tb testing.TB) *transitFixture {
	tb.Helper()
	f := &transitFixture{head: []byte("routed header: 36 bytes of routing."), payload: []byte("an IPv6 packet end to end")}
	f.linkA, f.linkB = newPair(tb, t0)
	f.e2eA, f.e2eB = New(Config{}, t0), New(Config{}, t0)
	installDirect(tb, f.e2eA, f.e2eB, 1, 0x31, 0x32, t0)
	inner, err := f.e2eA.Seal(nil, f.payload, t0)
	if err != nil {
		tb.Fatal(err)
	}
	f.inner = inner
	return f
}

func (f *transitFixture) seal(tb testing.TB) []byte {
	tb.Helper()
	pkt, err := f.linkA.SealTransit([]byte("prefix"), f.head, f.inner, t0)
	if err != nil {
		tb.Fatal(err)
	}
	if string(pkt[:6]) != "prefix" {
		tb.Fatal("SealTransit did not append to dst")
	}
	return pkt[6:]
}

func TestTransitRoundTrip(t *testing.T) {
	f := newTransitFixture(t)
	pkt := f.seal(t)
	if len(pkt) != TransitOverhead+len(f.head)+len(f.inner) || pkt[0] != TypeTransit {
		t.Fatalf("transit packet: %d bytes, type %d", len(pkt), pkt[0])
	}
	if bytes.Contains(pkt, f.head[:10]) {
		t.Fatal("head travels in clear")
	}
	head, inner, err := f.linkB.OpenTransit(bytes.Clone(pkt), len(f.head), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, f.head) || !bytes.Equal(inner, f.inner) {
		t.Fatalf("opened head %q, inner equal %v", head, bytes.Equal(inner, f.inner))
	}
	pt, err := f.e2eB.Open(inner, t0)
	if err != nil || !bytes.Equal(pt, f.payload) {
		t.Fatalf("inner packet: %q %v", pt, err)
	}
	if _, _, err := f.linkB.OpenTransit(bytes.Clone(pkt), len(f.head), t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed transit packet: %v", err)
	}
}

// Transit and data packets of one keypair share its counter and replay window: no nonce is used
// twice under one key, and a counter accepted in one form is a replay in the other.
func TestTransitSharesCounterWithData(t *testing.T) {
	f := newTransitFixture(t)
	d0, _ := f.linkA.Seal(nil, []byte("data"), t0)
	tr := f.seal(t)
	d1, _ := f.linkA.Seal(nil, []byte("data"), t0)
	c0, _ := ParseDataHeader(d0)
	c1, _ := ParseTransitHeader(tr, len(f.head))
	c2, _ := ParseDataHeader(d1)
	if c0.Counter+1 != c1.Counter || c1.Counter+1 != c2.Counter {
		t.Fatalf("counters %d %d %d", c0.Counter, c1.Counter, c2.Counter)
	}
	if _, _, err := f.linkB.OpenTransit(bytes.Clone(tr), len(f.head), t0); err != nil {
		t.Fatal(err)
	}
	// A data packet relabelled as transit (or the reverse) must not authenticate: the type is in the aad.
	forged := bytes.Clone(d0)
	forged[0] = TypeTransit
	if _, err := f.linkB.Open(forged, t0); err == nil {
		t.Fatal("a relabelled packet opened as data")
	}
	relabelled := bytes.Clone(tr)
	relabelled[0] = TypeData
	if _, err := f.linkB.Open(relabelled, t0); err == nil {
		t.Fatal("a transit packet opened as a data packet")
	}
}

// Every byte of the outer header, the sealed head and the inner header and tag is authenticated by
// the link; the inner ciphertext is authenticated end to end only (docs/transport.md).
func TestTransitTamper(t *testing.T) {
	f := newTransitFixture(t)
	pkt := f.seal(t)
	innerAt := TransitOverhead + len(f.head)
	for i := range pkt {
		bad := bytes.Clone(pkt)
		bad[i] ^= 0x40
		lb := New(Config{}, t0) // fresh replay state, the link's keys
		la := New(Config{}, t0)
		installDirect(t, la, lb, 0, 0x0a0a0a0a, 0x0b0b0b0b, t0)
		_, inner, err := lb.OpenTransit(bad, len(f.head), t0)
		bodyByte := i >= innerAt+HeaderSize && i < len(pkt)-TagSize
		if !bodyByte {
			if err == nil {
				t.Fatalf("byte %d flipped: accepted by the link", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("byte %d of the inner ciphertext flipped: link refused it (%v); it binds only header and tag", i, err)
		}
		e2eB := New(Config{}, t0)
		e2eA := New(Config{}, t0)
		installDirect(t, e2eA, e2eB, 1, 0x31, 0x32, t0)
		if _, err := e2eB.Open(inner, t0); !errors.Is(err, ErrAuth) {
			t.Fatalf("byte %d of the inner ciphertext flipped: end to end %v, want ErrAuth", i, err)
		}
	}
}

func TestTransitMalformed(t *testing.T) {
	f := newTransitFixture(t)
	pkt := f.seal(t)
	cases := map[string][]byte{
		"empty":          nil,
		"short":          pkt[:TransitOverhead+len(f.head)+MinPacketSize-1],
		"data type":      append([]byte{TypeData}, pkt[1:]...),
		"reserved":       append([]byte{TypeTransit, 1}, pkt[2:]...),
		"inner not data": func() []byte { b := bytes.Clone(pkt); b[TransitOverhead+len(f.head)] = TypeTransit; return b }(),
		"too long":       make([]byte, MaxPacketSize+1),
	}
	for name, b := range cases {
		if _, _, err := f.linkB.OpenTransit(bytes.Clone(b), len(f.head), t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := f.linkA.SealTransit(nil, f.head, []byte("not a data packet, definitely not"), t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sealing around a non-packet: %v", err)
	}
	if _, err := f.linkA.SealTransit(nil, f.head, make([]byte, MaxPacketSize), t0); err == nil {
		t.Fatal("oversized transit packet sealed")
	}
}

func TestTransitNoAllocs(t *testing.T) {
	f := newTransitFixture(t)
	dst := make([]byte, 0, 4096)
	var pkt []byte
	if n := testing.AllocsPerRun(100, func() {
		pkt, _ = f.linkA.SealTransit(dst[:0], f.head, f.inner, t0)
	}); n != 0 {
		t.Fatalf("SealTransit allocates %v times", n)
	}
	buf := make([]byte, len(pkt))
	if n := testing.AllocsPerRun(100, func() {
		copy(buf, pkt)
		_, _, _ = f.linkB.OpenTransit(buf, len(f.head), t0)
	}); n != 0 {
		t.Fatalf("OpenTransit allocates %v times", n)
	}
}

// FuzzOpenTransit: OpenTransit never panics and accepts only the genuine transit and fragment transit
// packets, each with its own head (a changed inner ciphertext or piece is the one documented
// exception: the link binds only the inner packet's header and tag, or the piece's prefix and length).
func FuzzOpenTransit(f *testing.F) {
	ka, kb := mirrorKeys(9, 0x41, 0x42)
	sender := New(Config{}, t0)
	if err := sender.Install(&ka, t0); err != nil {
		f.Fatal(err)
	}
	e2eA, e2eB := New(Config{}, t0), New(Config{}, t0)
	installDirect(f, e2eA, e2eB, 3, 0x51, 0x52, t0)
	const headSize = 36
	type genuine struct{ head, inner []byte }
	var all []genuine
	for _, msg := range []string{"", "x", "an inner payload of some size"} {
		inner, err := e2eA.Seal(nil, []byte(msg), t0)
		if err != nil {
			f.Fatal(err)
		}
		head := bytes.Repeat([]byte{byte(len(msg))}, headSize)
		p, err := sender.SealTransit(nil, head, inner, t0)
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, genuine{head, inner})
		f.Add(p)
		flipped := bytes.Clone(p)
		flipped[len(p)/3] ^= 1
		f.Add(flipped)
	}
	// Fragment transit packets: the link binds the piece's prefix and length, not its bytes.
	type genuineFragment struct {
		head, prefix []byte
		n            int
	}
	var frags []genuineFragment
	burst, err := e2eA.SealBurst(nil, []byte("a burst of some length, cut in pieces"), t0)
	if err != nil {
		f.Fatal(err)
	}
	bh, _ := ParseBurstHeader(burst)
	for i := range Pieces(len(burst), 24) {
		fr, end := Cut(bh, len(burst), 24, i)
		head := bytes.Repeat([]byte{byte(0x80 + i)}, headSize)
		p, err := sender.SealFragment(nil, head, fr, burst[fr.Offset:end], t0)
		if err != nil {
			f.Fatal(err)
		}
		inner := p[TransitOverhead+headSize:]
		frags = append(frags, genuineFragment{head, bytes.Clone(inner[:FragmentPrefixSize]), len(inner)})
		f.Add(p)
	}
	f.Add(make([]byte, 120))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		kb := kb
		s := New(Config{}, t0)
		if err := s.Install(&kb, t0); err != nil {
			t.Fatal(err)
		}
		head, inner, err := s.OpenTransit(bytes.Clone(pkt), headSize, t0)
		if err != nil {
			return
		}
		if pkt[0] == TypeFragment {
			for _, g := range frags {
				if bytes.Equal(head, g.head) && len(inner) == g.n && bytes.Equal(inner[:FragmentPrefixSize], g.prefix) {
					return
				}
			}
			t.Fatalf("accepted a fragment transit packet that was never sealed: % x", pkt)
		}
		for _, g := range all {
			n := len(g.inner)
			if bytes.Equal(head, g.head) && len(inner) == n &&
				bytes.Equal(inner[:HeaderSize], g.inner[:HeaderSize]) && bytes.Equal(inner[n-TagSize:], g.inner[n-TagSize:]) {
				return
			}
		}
		t.Fatalf("accepted a transit packet that was never sealed: % x", pkt)
	})
}
