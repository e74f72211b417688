//go:build linux

package node

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	ebpfobs "x0tta6bl4/internal/ebpf"
	"x0tta6bl4/internal/netnstest"
)

func (l *lab) flows(i int) FlowsView {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var v FlowsView
	if err := AdminCall(ctx, l.nodes[i].socket, AdminRequest{Op: "flows", Count: 100}, &v); err != nil {
		l.t.Fatalf("flows of %s: %v", l.nodes[i].name, err)
	}
	return v
}

// TestNetnsEBPF: exactly N datagrams of known sizes from n1's host to n2's through the mesh show up
// as exactly N packets and their IPv6 bytes in the kernel's flow counters of both nodes, the
// underlay counters see n1's endpoint carry them, and after n2 stops none of its programs remain.
func TestNetnsEBPF(t *testing.T) {
	l := newLab(t, 2, [][2]int{{0, 1}})
	l.kill(0)
	l.kill(1)
	l.extra = "ebpf: {enabled: true}\n"
	l.startNode(0)
	l.startNode(1)
	l.waitLinks(20 * time.Second)
	if _, err := l.pingUntil(0, 1, 15*time.Second); err != nil {
		t.Fatalf("ping n1 -> n2: %v", err)
	}
	for i := range l.nodes {
		if v := l.flows(i); !v.On {
			t.Fatalf("%s: eBPF observation is off: %s", l.nodes[i].name, v.Off)
		}
	}
	src := netip.AddrPortFrom(l.nodes[0].cert.Overlay, 9001)
	dst := netip.AddrPortFrom(l.nodes[1].cert.Overlay, 9000)
	var rx, tx *net.UDPConn
	var err error
	netnstest.In(t, l.nodes[1].ns, func() { rx, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(dst)) })
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	netnstest.In(t, l.nodes[0].ns, func() { tx, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(src)) })
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const n = 30
	var bytes uint64
	buf := make([]byte, 2000)
	rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		size := 10 + 37*i
		if _, err := tx.WriteToUDPAddrPort(make([]byte, size), dst); err != nil {
			t.Fatal(err)
		}
		bytes += uint64(48 + size) // IPv6 and UDP headers
		if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("datagram %d: %v", i+1, err)
		}
	}
	key := ebpfobs.FlowKey{Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(), Proto: 17}
	for i, dir := range []ebpfobs.Direction{ebpfobs.Outbound, ebpfobs.Inbound} {
		key.Dir = dir
		v := l.flows(i)
		var got *ebpfobs.Flow
		for k := range v.Top {
			if v.Top[k].FlowKey == key {
				got = &v.Top[k]
			}
		}
		if got == nil || got.Packets != n || got.Bytes != bytes {
			t.Errorf("%s: flow %+v: got %+v, want %d packets, %d bytes", l.nodes[i].name, key, got, n, bytes)
		}
	}
	v := l.flows(1)
	var peer *ebpfobs.Endpoint
	for k := range v.Endpoints {
		if v.Endpoints[k].Addr == netip.MustParseAddrPort("10.99.0.1:7946") {
			peer = &v.Endpoints[k]
		}
	}
	if peer == nil || peer.RxPackets < n {
		t.Errorf("n2's kernel saw %+v from n1's endpoint, want at least the %d datagrams", peer, n)
	}
	t.Logf("n2 underlay: kernel rx %d, daemon read %d; tx %d, daemon sent %d; drops %+v", v.Totals.UnderlayRx.Packets,
		v.DaemonRx, v.Totals.UnderlayTx.Packets, v.DaemonTx, v.Drops)

	// Stop n2: its programs go with it.
	l.nodes[1].cmd.Process.Signal(os.Interrupt)
	<-l.nodes[1].exited
	l.nodes[1].cmd = nil
	if len(v.ProgramIDs) == 0 {
		t.Fatal("n2 reported no programs")
	}
	gone := func() bool {
		for _, id := range v.ProgramIDs {
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				p.Close()
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(10 * time.Second); !gone() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !gone() {
		t.Errorf("programs %v of n2 remain after it stopped", v.ProgramIDs)
	}
}

// TestNetnsEBPFUnavailable: a node asked for eBPF but without the capabilities to load programs
// runs as before, says once why observation is off, and answers flows with the reason.
func TestNetnsEBPFUnavailable(t *testing.T) {
	l := newLab(t, 2, [][2]int{{0, 1}})
	l.kill(1)
	l.extra = "ebpf: {enabled: true}\n"
	l.wrap = []string{"setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon", "--"}
	l.startNode(1)
	l.waitLinks(20 * time.Second)
	if _, err := l.pingUntil(1, 0, 15*time.Second); err != nil {
		t.Fatalf("ping n2 -> n1: %v", err)
	}
	v := l.flows(1)
	if v.On || !strings.Contains(v.Off, "CAP_BPF") {
		t.Errorf("flows: on %v, off %q; want off because of missing privilege", v.On, v.Off)
	}
	log, err := os.ReadFile(filepath.Join(l.dir, "n2.log"))
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(log), "eBPF observation is off"); c != 1 {
		t.Errorf("%d log lines say eBPF is off, want 1:\n%s", c, log)
	}
}
