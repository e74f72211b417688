//go:build linux

package ebpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests load the programs into the running kernel and drive real traffic through network
// namespaces, veths and a TUN device they create; names carry the test's pid so parallel runs
// never collide.

// requireRoot skips without root, except under CI, where a skip would hide that nothing ran.
func requireRoot(t *testing.T) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2 (ip)"
	} else if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		why = "needs a kernel with BTF"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("eBPF test %s, and CI must run it", why)
	}
	t.Skip("eBPF test " + why)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// pair is two namespaces joined by a veth: a (10.98.0.1, fd98::1) and b (10.98.0.2, fd98::2).
type pair struct {
	a, b         string // namespace names
	vethA, vethB string
}

func newPair(t *testing.T) pair {
	t.Helper()
	requireRoot(t)
	tag := fmt.Sprintf("x6e%d", os.Getpid()%100000)
	p := pair{a: tag + "a", b: tag + "b", vethA: "va", vethB: "vb"}
	for _, ns := range []string{p.a, p.b} {
		exec.Command("ip", "netns", "del", ns).Run() // left by a killed run
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	run(t, "ip", "link", "add", tag+"va", "type", "veth", "peer", "name", tag+"vb")
	run(t, "ip", "link", "set", tag+"va", "netns", p.a, "name", p.vethA)
	run(t, "ip", "link", "set", tag+"vb", "netns", p.b, "name", p.vethB)
	for _, e := range []struct{ ns, dev, v4, v6 string }{{p.a, p.vethA, "10.98.0.1/30", "fd98::1/64"}, {p.b, p.vethB, "10.98.0.2/30", "fd98::2/64"}} {
		run(t, "ip", "-n", e.ns, "addr", "add", e.v4, "dev", e.dev)
		run(t, "ip", "-n", e.ns, "addr", "add", e.v6, "dev", e.dev, "nodad")
		run(t, "ip", "-n", e.ns, "link", "set", e.dev, "up")
	}
	return p
}

// inNS runs fn on an OS thread that has entered namespace ns. Sockets and devices fn opens stay in
// ns; programs it attaches by ifindex attach there.
func inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, namespace and all
		target, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		defer func() { done <- nil }()
		fn()
	}()
	if err := <-done; err != nil {
		t.Fatalf("enter namespace %s: %v", ns, err)
	}
}

func openProbe(t *testing.T, ns string, cfg Config) *Probe {
	t.Helper()
	var p *Probe
	var err error
	inNS(t, ns, func() { p, err = Open(cfg) })
	if err != nil {
		t.Fatalf("open probe: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func listenUDP(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	inNS(t, ns, func() { c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readN reads exactly n datagrams, failing after a generous deadline.
func readN(t *testing.T, c *net.UDPConn, n int) {
	t.Helper()
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("datagram %d of %d: %v", i+1, n, err)
		}
	}
}

func endpoint(t *testing.T, p *Probe, addr string) Counts {
	t.Helper()
	s, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort(addr)
	for _, e := range s.Endpoints {
		if e.Addr == want {
			return e.Counts
		}
	}
	t.Fatalf("no endpoint %s in %v", addr, s.Endpoints)
	return Counts{}
}

// Exactly N datagrams of known sizes to and from a peer endpoint, over IPv4 and IPv6, give
// exactly N packets and the sum of the payload sizes each way.
func TestEndpointCountsExact(t *testing.T) {
	pr := newPair(t)
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}})
	node := listenUDP(t, pr.a, "[::]:7946")
	for _, peer := range []struct{ local, remote string }{{"10.98.0.2:5000", "10.98.0.1:7946"}, {"[fd98::2]:5001", "[fd98::1]:7946"}} {
		const n = 50
		c := listenUDP(t, pr.b, peer.local)
		remote := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(peer.remote))
		var want Counts
		for i := range n {
			size := 1 + 29*i
			if _, err := c.WriteToUDP(make([]byte, size), remote); err != nil {
				t.Fatal(err)
			}
			want.RxPackets++
			want.RxBytes += uint64(size)
		}
		buf := make([]byte, 2000)
		node.SetReadDeadline(time.Now().Add(10 * time.Second))
		for range n {
			k, from, err := node.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			reply := k + 3
			if _, err := node.WriteToUDPAddrPort(buf[:reply], from); err != nil {
				t.Fatal(err)
			}
			want.TxPackets++
			want.TxBytes += uint64(reply)
		}
		readN(t, c, n)
		// The node's view of the peer: a v4-mapped source shows as plain IPv4.
		if got := endpoint(t, probe, peer.local); got != want {
			t.Errorf("endpoint %s: got %+v, want %+v", peer.local, got, want)
		}
	}
}
