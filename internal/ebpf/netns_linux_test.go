//go:build linux

package ebpf

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"x0tta6bl4/internal/netnstest"
)

// These tests load the programs into the running kernel and drive real traffic through network
// namespaces, veths and a TUN device they create; names carry the test's pid so parallel runs
// never collide.

// pair is two namespaces joined by a veth: a (10.98.0.1, fd98::1) and b (10.98.0.2, fd98::2).
type pair struct {
	a, b         string // namespace names
	vethA, vethB string
}

func newPair(t *testing.T) pair {
	t.Helper()
	netnstest.Require(t, "eBPF test", "/sys/kernel/btf/vmlinux")
	tag := netnstest.Tag("x6e")
	p := pair{a: tag + "a", b: tag + "b", vethA: "va", vethB: "vb"}
	netnstest.Namespace(t, p.a)
	netnstest.Namespace(t, p.b)
	netnstest.Veth(t, p.a, p.vethA, p.b, p.vethB)
	for _, e := range []struct{ ns, dev, v4, v6 string }{{p.a, p.vethA, "10.98.0.1/30", "fd98::1/64"}, {p.b, p.vethB, "10.98.0.2/30", "fd98::2/64"}} {
		netnstest.IP(t, "-n", e.ns, "addr", "add", e.v4, "dev", e.dev)
		netnstest.IP(t, "-n", e.ns, "addr", "add", e.v6, "dev", e.dev, "nodad")
		netnstest.IP(t, "-n", e.ns, "link", "set", e.dev, "up")
	}
	return p
}

func openProbe(t *testing.T, ns string, cfg Config) *Probe {
	t.Helper()
	var p *Probe
	var err error
	netnstest.In(t, ns, func() { p, err = Open(cfg) })
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
	netnstest.In(t, ns, func() { c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))) })
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

// openTUN makes a TUN device named dev in ns with fd74::1/64 and returns its file, whose reads
// are what the host sends into it and whose writes the host receives.
func openTUN(t *testing.T, ns, dev string) *os.File {
	t.Helper()
	var f *os.File
	var err error
	netnstest.In(t, ns, func() {
		var fd int
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return
		}
		var ifr *unix.Ifreq
		if ifr, err = unix.NewIfreq(dev); err != nil {
			unix.Close(fd)
			return
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return
		}
		unix.SetNonblock(fd, true)
		f = os.NewFile(uintptr(fd), dev)
	})
	if err != nil {
		t.Fatalf("tun: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	netnstest.IP(t, "-n", ns, "addr", "add", "fd74::1/64", "dev", dev, "nodad")
	netnstest.IP(t, "-n", ns, "link", "set", dev, "up")
	return f
}

// udp6 builds an IPv6 UDP packet with a correct checksum.
func udp6(src, dst netip.AddrPort, payload []byte) []byte {
	pkt := make([]byte, 48+len(payload))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(8+len(payload)))
	pkt[6], pkt[7] = 17, 64
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(pkt[8:], s[:])
	copy(pkt[24:], d[:])
	u := pkt[40:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(pkt[8:40])
	sum += uint32(8+len(payload)) + 17
	add(u)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(u[6:], ^uint16(sum))
	return pkt
}

func findFlow(s Snapshot, k FlowKey) (Flow, bool) {
	for _, f := range s.Flows {
		if f.FlowKey == k {
			return f, true
		}
	}
	return Flow{}, false
}

// Exactly N datagrams each way through the TUN give exactly N packets and the IPv6 bytes in the
// flow of each direction.
func TestFlowCountsExact(t *testing.T) {
	pr := newPair(t)
	tun := openTUN(t, pr.a, "x6t")
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}, Overlay: "x6t", OverlayPrefix: netip.MustParsePrefix("fd74::/16")})
	app := listenUDP(t, pr.a, "[fd74::1]:4000")
	remote := netip.MustParseAddrPort("[fd74::2]:9000")
	local := netip.MustParseAddrPort("[fd74::1]:4000")
	const n = 40
	var outBytes, inBytes uint64
	buf := make([]byte, 2000)
	tun.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		size := 3 + 31*i
		if _, err := app.WriteToUDPAddrPort(make([]byte, size), remote); err != nil {
			t.Fatal(err)
		}
		outBytes += uint64(48 + size)
		// The host may send router solicitations and the like into the TUN too: skip them.
		for {
			k, err := tun.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if k == 48+size && buf[6] == 17 {
				break
			}
		}
		in := udp6(remote, local, make([]byte, size+5))
		if _, err := tun.Write(in); err != nil {
			t.Fatal(err)
		}
		inBytes += uint64(len(in))
	}
	readN(t, app, n)
	s, err := probe.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	out, ok := findFlow(s, FlowKey{Src: local.Addr(), Dst: remote.Addr(), SrcPort: 4000, DstPort: 9000, Proto: 17, Dir: Outbound})
	if !ok || out.Packets != n || out.Bytes != outBytes {
		t.Errorf("outbound flow: got %+v (found %v), want %d packets, %d bytes", out, ok, n, outBytes)
	}
	in, ok := findFlow(s, FlowKey{Src: remote.Addr(), Dst: local.Addr(), SrcPort: 9000, DstPort: 4000, Proto: 17, Dir: Inbound})
	if !ok || in.Packets != n || in.Bytes != inBytes {
		t.Errorf("inbound flow: got %+v (found %v), want %d packets, %d bytes", in, ok, n, inBytes)
	}
	if s.Totals.OverlayRx.Packets != n || s.Totals.OverlayRx.Bytes != inBytes {
		t.Errorf("inbound totals %+v, want %d packets, %d bytes", s.Totals.OverlayRx, n, inBytes)
	}
}

// A flood of 100k distinct 5-tuples stays within the flow map's bound, the totals stay exact, and
// heavy flows mixed into the flood keep exact counts and are the top flows.
func TestFlowFloodBounded(t *testing.T) {
	pr := newPair(t)
	tun := openTUN(t, pr.a, "x6t")
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}, Overlay: "x6t"})
	memlock := func() uint64 {
		info, err := probe.objs.Flows.Info()
		if err != nil {
			t.Fatal(err)
		}
		m, ok := info.Memlock()
		if !ok {
			t.Fatal("kernel does not report the map's memory")
		}
		return m
	}
	before := memlock()
	const flood, heavyEvery = 100_000, 100
	dst := netip.MustParseAddrPort("[fd74::1]:9") // no socket: the kernel drops them after counting
	heavy := []netip.AddrPort{netip.MustParseAddrPort("[fd74::aa]:1000"), netip.MustParseAddrPort("[fd74::bb]:2000"),
		netip.MustParseAddrPort("[fd74::cc]:3000")}
	heavyPackets := make([]uint64, len(heavy))
	var total uint64
	for i := range flood {
		a := netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x74, 2: 0x10, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		pkts := [][]byte{udp6(netip.AddrPortFrom(a, uint16(i)), dst, nil)}
		if i%heavyEvery == 0 {
			for h, src := range heavy {
				pkts = append(pkts, udp6(src, dst, make([]byte, 100*(h+1))))
				heavyPackets[h]++
			}
		}
		for _, pkt := range pkts {
			if _, err := tun.Write(pkt); err != nil {
				t.Fatal(err)
			}
			total++
		}
	}
	s, err := probe.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Flows) > s.FlowCapacity {
		t.Errorf("%d flows in a map bounded to %d", len(s.Flows), s.FlowCapacity)
	}
	if after := memlock(); after != before {
		t.Errorf("flow map memory went from %d to %d bytes", before, after)
	}
	if s.Totals.OverlayRx.Packets != total {
		t.Errorf("inbound total %d packets, want %d", s.Totals.OverlayRx.Packets, total)
	}
	if s.Totals.FlowsCreated < flood {
		t.Errorf("%d flows created, want at least %d", s.Totals.FlowsCreated, flood)
	}
	top, _, otherIn := TopFlows(s, len(heavy))
	for i, f := range top {
		h := len(heavy) - 1 - i // the largest packets first
		want := FlowKey{Src: heavy[h].Addr(), Dst: dst.Addr(), SrcPort: heavy[h].Port(), DstPort: dst.Port(), Proto: 17, Dir: Inbound}
		if f.FlowKey != want || f.Packets != heavyPackets[h] || f.Bytes != heavyPackets[h]*uint64(48+100*(h+1)) {
			t.Errorf("top flow %d: got %+v, want %+v with %d packets", i, f, want, heavyPackets[h])
		}
	}
	if otherIn.Packets != total-3*heavyPackets[0] {
		t.Errorf("other bucket %d packets, want %d", otherIn.Packets, total-3*heavyPackets[0])
	}
}

func dropCount(t *testing.T, p *Probe, reason string) uint64 {
	t.Helper()
	ds, err := p.Drops()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, d := range ds {
		if d.Reason == reason {
			n += d.Count
		}
	}
	return n
}

// Datagrams to the node's port that an nftables rule refuses are counted as netfilter drops on
// the underlay, exactly.
func TestDropReasonFirewall(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs nft, and CI must run it")
		}
		t.Skip("needs nft")
	}
	pr := newPair(t)
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}})
	node := listenUDP(t, pr.a, "0.0.0.0:7946")
	netnstest.IP(t, "netns", "exec", pr.a, "nft", "add table inet x6; add chain inet x6 in { type filter hook input priority 0; }; add rule inet x6 in udp sport 5002 drop")
	refused := listenUDP(t, pr.b, "10.98.0.2:5002")
	allowed := listenUDP(t, pr.b, "10.98.0.2:5003")
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.98.0.1:7946"))
	const n = 25
	for range n {
		if _, err := refused.WriteToUDP([]byte("refused"), to); err != nil {
			t.Fatal(err)
		}
	}
	// A datagram the rule lets through, sent after them on the same path, arrives after the
	// kernel has dealt with all of them.
	if _, err := allowed.WriteToUDP([]byte("allowed"), to); err != nil {
		t.Fatal(err)
	}
	readN(t, node, 1)
	// Backlogs of other CPUs may still hold some of the refused ones.
	eventually(t, func() bool { return dropCount(t, probe, "netfilter_drop") >= n })
	if got := dropCount(t, probe, "netfilter_drop"); got != n {
		ds, _ := probe.Drops()
		t.Errorf("netfilter_drop: %d, want %d (all drops: %+v)", got, n, ds)
	}
	if got := endpoint(t, probe, "10.98.0.2:5002"); got.RxPackets != n {
		t.Errorf("the refused endpoint's packets were seen %d times at ingress, want %d", got.RxPackets, n)
	}
}

// Datagrams that overflow a socket's receive buffer are counted under socket_rcvbuff: every
// datagram sent is either delivered or counted.
func TestDropReasonReceiveBuffer(t *testing.T) {
	pr := newPair(t)
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}})
	node := listenUDP(t, pr.a, "0.0.0.0:7946")
	if err := node.SetReadBuffer(1); err != nil { // the kernel's minimum
		t.Fatal(err)
	}
	c := listenUDP(t, pr.b, "10.98.0.2:5004")
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.98.0.1:7946"))
	const n = 200
	for range n {
		if _, err := c.WriteToUDP(make([]byte, 1000), to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2000)
	var delivered, dropped uint64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		node.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := node.ReadFromUDPAddrPort(buf); err == nil {
			delivered++
			continue
		}
		if dropped = dropCount(t, probe, "socket_rcvbuff"); delivered+dropped == n {
			break
		}
	}
	if dropped == 0 || delivered+dropped != n {
		ds, _ := probe.Drops()
		t.Fatalf("%d delivered + %d socket_rcvbuff drops, want %d in all with some dropped (drops: %+v)", delivered, dropped, n, ds)
	}
}

// eventually waits until cond holds, for at most 10 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			return // the caller's assertion reports what is wrong
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An nftables rule that drops every tenth large segment at the receiver of an overlay TCP
// connection makes the kernel retransmit: the probe's count equals the socket's own, it sees a
// smoothed RTT, and nothing of the peer namespace's sockets.
func TestTCPRetransmits(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs nft, and CI must run it")
		}
		t.Skip("needs nft")
	}
	pr := newPair(t)
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}, OverlayPrefix: netip.MustParsePrefix("fd98::/64")})
	// On the receiving side: a drop in the sender's own output hook would be a local transmit
	// failure, which TCP retries without counting a retransmission.
	netnstest.IP(t, "netns", "exec", pr.b, "nft", "add table inet x6; add chain inet x6 in { type filter hook input priority 0; }; add rule inet x6 in tcp dport 5201 meta length > 1000 numgen inc mod 10 == 0 drop")
	var ln net.Listener
	var err error
	netnstest.In(t, pr.b, func() { ln, err = net.Listen("tcp", "[fd98::2]:5201") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer c.Close()
		var total int64
		buf := make([]byte, 1<<16)
		for {
			k, err := c.Read(buf)
			total += int64(k)
			if err != nil {
				received <- total
				return
			}
		}
	}()
	var c *net.TCPConn
	netnstest.In(t, pr.a, func() {
		var nc net.Conn
		if nc, err = net.Dial("tcp", "[fd98::2]:5201"); err == nil {
			c = nc.(*net.TCPConn)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	if got := <-received; got != size {
		t.Fatalf("server received %d bytes, want %d", got, size)
	}
	// Once everything is acknowledged the connection retransmits no more, and the socket's own
	// count is final.
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	eventually(t, func() bool {
		raw.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		return err == nil && info.Unacked == 0
	})
	if err != nil || info.Unacked != 0 {
		t.Fatalf("tcp info: %v, %+v", err, info)
	}
	defer c.Close()
	s, err := probe.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	var found bool
	for _, f := range s.TCP {
		if f.Local.Addr() == netip.MustParseAddr("fd98::2") {
			t.Errorf("a socket of the other namespace was recorded: %+v", f)
		}
		if f.Local != local {
			continue
		}
		found = true
		if f.Retransmits == 0 || f.Retransmits != uint64(info.Total_retrans) {
			t.Errorf("%d retransmits seen; the socket counted %d segments retransmitted", f.Retransmits, info.Total_retrans)
		}
		if s.Totals.TCPRetransmits != f.Retransmits {
			t.Errorf("total %d retransmits, want the connection's %d", s.Totals.TCPRetransmits, f.Retransmits)
		}
		if f.SRTTMicros == 0 {
			t.Errorf("no smoothed RTT: %+v", f)
		}
		t.Logf("connection %s: %d retransmits (socket: %d), srtt %d µs (socket: %d µs)", local, f.Retransmits, info.Total_retrans, f.SRTTMicros, info.Rtt)
	}
	if !found {
		t.Fatalf("connection %s not seen; tcp flows: %+v", local, s.TCP)
	}
}

// After Close no program or link of the probe remains, nothing is attached to the devices, and
// nothing is pinned.
func TestCloseLeavesNothing(t *testing.T) {
	pr := newPair(t)
	openTUN(t, pr.a, "x6t")
	var probe *Probe
	var err error
	netnstest.In(t, pr.a, func() { probe, err = Open(Config{Port: 7946, Overlay: "x6t"}) })
	if err != nil {
		t.Fatal(err)
	}
	progs, links := probe.ProgramIDs(), probe.LinkIDs()
	if len(progs) != 8 || len(links) != 8 { // 2 devices × 2 directions, 3 tracepoints, the TCP iterator
		t.Fatalf("%d programs, %d links loaded, want 8 and 8", len(progs), len(links))
	}
	attached := func() int {
		var n int
		netnstest.In(t, pr.a, func() {
			for _, dev := range []string{pr.vethA, "x6t"} {
				i, err := net.InterfaceByName(dev)
				if err != nil {
					t.Error(err)
					return
				}
				for _, typ := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
					r, err := link.QueryPrograms(link.QueryOptions{Target: i.Index, Attach: typ})
					if err != nil {
						t.Error(err)
						return
					}
					n += len(r.Programs)
				}
			}
		})
		return n
	}
	if n := attached(); n != 4 {
		t.Fatalf("%d programs attached to the devices, want 4", n)
	}
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	remaining := func() (left []string) {
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				p.Close()
				left = append(left, fmt.Sprintf("program %d", id))
			}
		}
		for _, id := range links {
			if l, err := link.NewFromID(link.ID(id)); err == nil {
				l.Close()
				left = append(left, fmt.Sprintf("link %d", id))
			}
		}
		return left
	}
	// The kernel frees the last references after close returns.
	eventually(t, func() bool { return len(remaining()) == 0 })
	if left := remaining(); len(left) > 0 {
		t.Errorf("left after Close: %v", left)
	}
	if n := attached(); n != 0 {
		t.Errorf("%d programs still attached to the devices", n)
	}
	if entries, err := os.ReadDir("/sys/fs/bpf"); err == nil {
		for _, e := range entries {
			if strings.Contains(e.Name(), "x6") || strings.Contains(e.Name(), "observe") {
				t.Errorf("pinned: /sys/fs/bpf/%s", e.Name())
			}
		}
	}
}

// TestSnapshotDuringFlood: while a flood of distinct 5-tuples keeps the flow map evicting, every
// snapshot succeeds and holds each flow once: an operator reads the map when it is under attack.
// (A snapshot of a map that changes while it is read is not atomic, so it may list a few more flows
// than the bound; the map's own bound is TestFlowFloodBounded's.)
func TestSnapshotDuringFlood(t *testing.T) {
	pr := newPair(t)
	tun := openTUN(t, pr.a, "x6t")
	probe := openProbe(t, pr.a, Config{Port: 7946, Underlay: []string{pr.vethA}, Overlay: "x6t"})
	dst := netip.MustParseAddrPort("[fd74::1]:9")
	stop, flooded := make(chan struct{}), make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				flooded <- nil
				return
			default:
			}
			a := netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x74, 2: 0x20, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
			if _, err := tun.Write(udp6(netip.AddrPortFrom(a, uint16(i)), dst, nil)); err != nil {
				flooded <- err
				return
			}
		}
	}()
	// Let the flood fill the map before reading it.
	eventually(t, func() bool {
		tot, err := probe.Totals()
		return err == nil && tot.FlowsCreated > 2*uint64(probe.FlowCapacity())
	})
	for i := range 20 {
		s, err := probe.Snapshot()
		if err != nil {
			t.Fatalf("snapshot %d during the flood: %v", i, err)
		}
		seen := make(map[FlowKey]bool, len(s.Flows))
		for _, f := range s.Flows {
			if seen[f.FlowKey] {
				t.Fatalf("snapshot %d: flow %+v twice", i, f.FlowKey)
			}
			seen[f.FlowKey] = true
		}
	}
	close(stop)
	if err := <-flooded; err != nil {
		t.Fatal(err)
	}
}
