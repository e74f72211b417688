package memnet

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/underlay"
)

type arrival struct {
	at   time.Duration
	from netip.AddrPort
	data string
}

type recorder struct {
	w   *Network
	got []arrival
}

func (r *recorder) Receive(now time.Time, ds []underlay.Datagram) {
	for _, d := range ds {
		r.got = append(r.got, arrival{now.Sub(Epoch), d.From, string(d.Data)})
	}
}

var (
	addrA = netip.MustParseAddrPort("127.77.0.1:1")
	addrB = netip.MustParseAddrPort("127.77.0.2:1")
	addrC = netip.MustParseAddrPort("127.77.0.3:1")
)

// TestDelivery: datagrams arrive after their link's delay, in send order, cut into the runs' datagrams;
// a missing or cut link, a Drop verdict and a closed conn lose them; RunUntil gives up at its limit
// with the clock there.
func TestDelivery(t *testing.T) {
	w := New(1)
	a, b, c := w.Conn(addrA), w.Conn(addrB), w.Conn(addrC)
	rb := &recorder{w: w}
	b.Attach(rb)
	c.Attach(&recorder{w: w})
	w.Link(addrA, addrB, LinkParams{Delay: 5 * time.Millisecond})
	if n, err := a.Send([]byte("xxyyz"), 2, addrB); n != 3 || err != nil {
		t.Fatalf("Send: %d, %v", n, err)
	}
	a.Send([]byte("to c"), 4, addrC) // no link
	w.Run(4 * time.Millisecond)
	if len(rb.got) != 0 {
		t.Fatalf("arrived before the delay: %v", rb.got)
	}
	w.Run(time.Millisecond)
	want := []arrival{{5 * time.Millisecond, addrA, "xx"}, {5 * time.Millisecond, addrA, "yy"}, {5 * time.Millisecond, addrA, "z"}}
	if !slices.Equal(rb.got, want) {
		t.Fatalf("got %v, want %v", rb.got, want)
	}
	if w.Dropped != 1 {
		t.Fatalf("dropped %d, want the datagram without a link", w.Dropped)
	}

	w.Link(addrA, addrB, LinkParams{Down: true})
	a.Send([]byte("cut"), 3, addrB)
	w.Link(addrA, addrB, LinkParams{})
	w.Drop = func(from, to netip.AddrPort, d []byte) bool { return string(d) == "drop me" }
	a.Send([]byte("drop me"), 7, addrB)
	w.Drop = nil
	a.Send([]byte("late"), 4, addrB)
	b.Close()
	took, ok := w.RunUntil(func() bool { return len(rb.got) > 3 }, 50*time.Millisecond)
	if ok || took != 50*time.Millisecond || w.Now().Sub(Epoch) != 55*time.Millisecond {
		t.Fatalf("RunUntil: %s %v at %s; got %v", took, ok, w.Now().Sub(Epoch), rb.got)
	}
	if w.Dropped != 4 {
		t.Fatalf("dropped %d, want 4 (cut, Drop, closed conn)", w.Dropped)
	}
	if _, err := b.Send([]byte("x"), 1, addrA); err == nil {
		t.Fatal("a closed conn sent")
	}
}

// TestTicksAndSeed: ticks come every Tick in time order with the datagrams; the same seed loses the
// same datagrams.
func TestTicksAndSeed(t *testing.T) {
	lossy := func(seed uint64) []arrival {
		w := New(seed)
		a, b := w.Conn(addrA), w.Conn(addrB)
		rb := &recorder{w: w}
		b.Attach(rb)
		w.Link(addrA, addrB, LinkParams{Delay: 30 * time.Millisecond, Loss: 0.5})
		var ticks []time.Duration
		w.OnTick = func(now time.Time) {
			ticks = append(ticks, now.Sub(Epoch))
			a.Send([]byte{byte(len(ticks))}, 1, addrB)
		}
		w.Run(time.Second)
		if len(ticks) != 50 || ticks[0] != 20*time.Millisecond || ticks[49] != time.Second {
			t.Fatalf("ticks %v", ticks)
		}
		return rb.got
	}
	one, again, other := lossy(1), lossy(1), lossy(2)
	if !slices.Equal(one, again) {
		t.Fatal("the same seed lost different datagrams")
	}
	if slices.Equal(one, other) || len(one) < 10 || len(one) > 40 {
		t.Fatalf("seed 1 kept %d of 49, seed 2 %d: loss is not drawn from the seed", len(one), len(other))
	}
}
