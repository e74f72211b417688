package session

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

// TestTwoStepSeal: a reserved packet is the packet Seal or SealBurst would have made, opens as one,
// and a reservation seals only once.
func TestTwoStepSeal(t *testing.T) {
	a, b := newPair(t, t0)
	pt := payload(nil, 7, 1372)
	r, err := a.Reserve(false, t0)
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := r.Seal([]byte("x"), pt)
	if err != nil || pkt[0] != 'x' {
		t.Fatalf("seal: %v", err)
	}
	if _, err := r.Seal(nil, pt); !errors.Is(err, errReservationUsed) {
		t.Fatalf("second seal of one reservation: %v", err)
	}
	got, err := b.Open(pkt[1:], t0)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open: %v", err)
	}
	// In place, as a burst.
	buf := make([]byte, HeaderSize+len(pt)+TagSize)
	copy(buf[HeaderSize:], pt)
	r, err = a.Reserve(true, t0)
	if err != nil {
		t.Fatal(err)
	}
	burst, err := r.Seal(buf[:0], buf[HeaderSize:HeaderSize+len(pt)])
	if err != nil || burst[0] != TypeBurst {
		t.Fatalf("burst: %v", err)
	}
	if got, err := b.OpenBurst(burst, t0); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open burst: %v", err)
	}
	if _, err := (&Reservation{}).Seal(nil, pt); err == nil {
		t.Fatal("the zero reservation sealed")
	}
	// A reservation whose keypair was wiped meanwhile does not seal.
	r, err = a.Reserve(false, t0)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := r.Seal(nil, pt); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("seal after close: %v", err)
	}
}

// TestTwoStepOpen: Decrypt changes nothing until Accept; Accept refuses a replay; a forged packet
// does not decrypt; transit packets decrypt as OpenTransit opens them.
func TestTwoStepOpen(t *testing.T) {
	a, b := newPair(t, t0)
	pt := payload(nil, 9, 600)
	pkt, err := a.Seal(nil, pt, t0)
	if err != nil {
		t.Fatal(err)
	}
	copy1, copy2 := bytes.Clone(pkt), bytes.Clone(pkt)
	got, d, err := b.Decrypt(copy1, t0)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("decrypt: %v", err)
	}
	got2, d2, err := b.Decrypt(copy2, t0) // not yet accepted: decrypts again
	if err != nil || !bytes.Equal(got2, pt) {
		t.Fatalf("second decrypt: %v", err)
	}
	if err := b.Accept(d, t0); err != nil {
		t.Fatal(err)
	}
	if err := b.Accept(d2, t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("accepting a replay: %v", err)
	}
	if _, err := b.Open(bytes.Clone(pkt), t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("open after accept: %v", err)
	}
	if err := a.Accept(d, t0); err == nil {
		t.Fatal("another session accepted b's packet")
	}
	forged, _ := a.Seal(nil, pt, t0)
	forged[HeaderSize+3] ^= 1
	if _, _, err := b.Decrypt(forged, t0); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged: %v", err)
	}

	f := newTransitFixture(t)
	tp := f.seal(t)
	head, inner, d, err := f.linkB.DecryptTransit(bytes.Clone(tp), len(f.head), t0)
	if err != nil || !bytes.Equal(head, f.head) || !bytes.Equal(inner, f.inner) {
		t.Fatalf("decrypt transit: %v", err)
	}
	if err := f.linkB.Accept(d, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.linkB.OpenTransit(bytes.Clone(tp), len(f.head), t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("transit opened after accept: %v", err)
	}
}

// TestTwoStepParallel: counters reserved on one goroutine and sealed on several open once each;
// packets decrypted on several goroutines and accepted on one are all taken in.
func TestTwoStepParallel(t *testing.T) {
	a, b := newPair(t, t0)
	const k = 256
	rs := make([]Reservation, k)
	pkts := make([][]byte, k)
	for i := range rs {
		var err error
		if rs[i], err = a.Reserve(false, t0); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < k; i += 4 {
				pkts[i], _ = rs[i].Seal(nil, payload(nil, uint64(i), 200))
			}
		}()
	}
	wg.Wait()
	ds := make([]Decrypted, k)
	pts := make([][]byte, k)
	errs := make([]error, k)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < k; i += 4 {
				pts[i], ds[i], errs[i] = b.Decrypt(pkts[i], t0)
			}
		}()
	}
	wg.Wait()
	for i := range k {
		if errs[i] != nil || !bytes.Equal(pts[i], payload(nil, uint64(i), 200)) {
			t.Fatalf("packet %d: %v", i, errs[i])
		}
		if err := b.Accept(ds[i], t0); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
}

// TestTwoStepAllocs: neither half allocates.
func TestTwoStepAllocs(t *testing.T) {
	a, b := newPair(t, t0)
	pt := payload(nil, 1, 1372)
	buf := make([]byte, 0, len(pt)+MinPacketSize)
	if n := testing.AllocsPerRun(100, func() {
		r, err := a.Reserve(false, t0)
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := r.Seal(buf[:0], pt)
		if err != nil {
			t.Fatal(err)
		}
		_, d, err := b.Decrypt(pkt, t0)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Accept(d, t0); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}
