package underlay

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// TestReader: datagrams queued in the socket come back whole, in order, with their sender, both on
// an IPv4 socket and on a dual-stack one (IPv4-mapped senders are unmapped); nothing allocates.
func TestReader(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::]:0"} {
		t.Run(addr, func(t *testing.T) {
			c, err := ListenUDP(netip.MustParseAddrPort(addr), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Skip("no socket here:", err)
			}
			defer c.Close()
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.LocalAddr().Port())
			sender, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer sender.Close()
			from := sender.LocalAddr().(*net.UDPAddr).AddrPort()
			r, err := c.NewReader()
			if err != nil {
				t.Fatal(err)
			}
			const count = 20
			for i := range count {
				if _, err := sender.WriteToUDPAddrPort([]byte{byte(i), byte(i), byte(i)}[:1+i%3], to); err != nil {
					t.Fatal(err)
				}
			}
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < count {
				ds, err := r.Read()
				if err != nil {
					t.Fatalf("after %d datagrams: %v", got, err)
				}
				for _, d := range ds {
					if len(d.Data) != 1+got%3 || d.Data[0] != byte(got) {
						t.Fatalf("datagram %d: % x", got, d.Data)
					}
					if d.From != from {
						t.Fatalf("datagram %d from %v, want %v", got, d.From, from)
					}
					got++
				}
			}
			if allocs := testing.AllocsPerRun(10, func() {
				sender.WriteToUDPAddrPort([]byte{1}, to)
				if _, err := r.Read(); err != nil {
					t.Fatal(err)
				}
			}); allocs > 0 {
				t.Errorf("Read allocates %.1f times", allocs)
			}
		})
	}
}

// TestSendRun: a run of equal-sized datagrams with a shorter last one, sent in one Send, arrives as
// the same datagrams, whether or not the kernel coalesces them on the way in.
func TestSendRun(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	rx, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const seg, count = 1200, 30
	buf := make([]byte, seg*(count-1)+77)
	for i := range buf {
		buf[i] = byte(i / seg)
	}
	sent, err := tx.Send(buf, seg, rx.LocalAddr())
	if err != nil || sent != count {
		t.Fatalf("Send: %d datagrams, %v", sent, err)
	}
	r, err := rx.NewReader()
	if err != nil {
		t.Fatal(err)
	}
	rx.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got [][]byte
	for len(got) < count {
		ds, err := r.Read()
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		for _, d := range ds {
			if d.From != tx.LocalAddr() {
				t.Fatalf("from %v, want %v", d.From, tx.LocalAddr())
			}
			got = append(got, bytes.Clone(d.Data))
		}
	}
	for i, d := range got {
		want := buf[i*seg : min((i+1)*seg, len(buf))]
		if !bytes.Equal(d, want) {
			t.Fatalf("datagram %d: %d bytes, want %d", i, len(d), len(want))
		}
	}
	if allocs := testing.AllocsPerRun(20, func() { tx.Send(buf[:4*seg], seg, rx.LocalAddr()) }); allocs > 0 {
		t.Errorf("Send allocates %.1f times", allocs)
	}
	if _, err := tx.Send(nil, seg, rx.LocalAddr()); err == nil {
		t.Error("an empty send was accepted")
	}
}

// SendHopLimited sets the IP TTL of the one datagram, from an IPv4 socket and from a dual-stack
// one, and leaves the socket's other datagrams alone.
func TestSendHopLimited(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("hop limits are set on Linux only")
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := ipv4.NewPacketConn(rc)
	if err := p.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		t.Fatal(err)
	}
	to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, bind := range []string{"127.0.0.1:0", "[::]:0"} {
		u, err := ListenUDP(netip.MustParseAddrPort(bind), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.SendHopLimited([]byte("low"), to, 3); err != nil {
			t.Fatalf("%s: %v", bind, err)
		}
		if _, err := u.Send([]byte("normal"), 6, to); err != nil {
			t.Fatal(err)
		}
		u.Close()
		buf := make([]byte, 64)
		for _, want := range []string{"low", "normal"} {
			rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, cm, _, err := p.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: %v", bind, err)
			}
			if string(buf[:n]) != want {
				t.Fatalf("%s: got %q, want %q", bind, buf[:n], want)
			}
			if want == "low" && cm.TTL != 3 || want == "normal" && cm.TTL <= 3 {
				t.Fatalf("%s: %q arrived with TTL %d", bind, want, cm.TTL)
			}
		}
	}
}
