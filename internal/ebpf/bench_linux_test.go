//go:build linux

package ebpf

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"x0tta6bl4/internal/netnstest"
)

// BenchmarkPrograms is the per-packet cost of each tc program, measured by the kernel itself
// (BPF_PROG_TEST_RUN with repeat: the program runs b.N times on one packet, preemption off, and the
// kernel reports the mean time per run), so it does not depend on iperf3 or the machine's load the
// way a throughput run does. "empty" is a program that only returns: the test harness's own cost
// per run, to subtract. The packet is counted in an existing map entry, as every packet after a
// flow's first is. The tracing programs cannot be run this way (the kernel has no test run for
// tp_btf); docs/ebpf.md gives their cost per event from kernel.bpf_stats_enabled.
//
//	go test -run '^$' -bench Programs -benchtime 2000000x ./internal/ebpf
func BenchmarkPrograms(b *testing.B) {
	netnstest.Require(b, "eBPF benchmark", "/sys/kernel/btf/vmlinux")
	spec, err := loadObserve()
	if err != nil {
		b.Fatal(err)
	}
	for name, v := range map[string]any{"mesh_port": uint16(7946), "netns_ino": uint32(1)} {
		if err := spec.Variables[name].Set(v); err != nil {
			b.Fatal(err)
		}
	}
	var objs observeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()

	underlayIn, underlayOut := udp4Frame(7947, 7946, 1372), udp4Frame(7946, 7947, 1372)
	overlay := tcp6Packet(1300)
	for _, c := range []struct {
		name   string
		prog   *ebpf.Program
		packet []byte
	}{
		{"empty", empty, underlayIn},
		{"underlay_in", objs.X6UnderlayIn, underlayIn},
		{"underlay_out", objs.X6UnderlayOut, underlayOut},
		{"overlay_in", objs.X6OverlayIn, overlay},
		{"overlay_out", objs.X6OverlayOut, overlay},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, _, err := c.prog.Benchmark(c.packet, 1, nil); err != nil { // the flow's first packet makes its entry
				b.Fatal(err)
			}
			b.ResetTimer()
			ret, per, err := c.prog.Benchmark(c.packet, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if int32(ret) != -1 {
				b.Fatalf("%s returned %d, want -1 (next): the programs never decide a packet's fate", c.name, int32(ret))
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
		})
	}
	// The programs really counted: one entry each way in each map.
	if keys, _, err := readMap[observeEndpointKey, observeEndpointValue](objs.Endpoints); err != nil || len(keys) != 2 {
		b.Errorf("endpoints: %d entries (%v), want 2", len(keys), err)
	}
	if keys, _, err := readMap[observeFlowKey, observeFlowValue](objs.Flows); err != nil || len(keys) != 2 {
		b.Errorf("flows: %d entries (%v), want 2", len(keys), err)
	}
}

// udp4Frame is an Ethernet frame with an IPv4 UDP datagram of payload bytes between 10.0.0.2:src
// and 10.0.0.1:dst (checksums are not read by the programs).
func udp4Frame(src, dst uint16, payload int) []byte {
	f := make([]byte, 14+20+8+payload)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payload))
	copy(ip[12:], []byte{10, 0, 0, 2, 10, 0, 0, 1})
	binary.BigEndian.PutUint16(ip[20:], src)
	binary.BigEndian.PutUint16(ip[22:], dst)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+payload))
	return f
}

// tcp6Packet is a bare IPv6 TCP segment as the TUN carries it. A test run hands a tc program the
// buffer as an Ethernet frame, so bytes 12–13 (source address bytes 4–5) are 0x86dd, which makes the
// kernel mark it IPv6: the source fd74:0:86dd::2 is still an overlay address.
func tcp6Packet(payload int) []byte {
	p := make([]byte, 40+20+payload)
	p[0], p[6], p[7] = 0x60, 6, 64
	binary.BigEndian.PutUint16(p[4:], uint16(20+payload))
	src := [16]byte{0xfd, 0x74, 0, 0, 0x86, 0xdd, 15: 2}
	dst := [16]byte{0xfd, 0x74, 15: 1}
	copy(p[8:], src[:])
	copy(p[24:], dst[:])
	binary.BigEndian.PutUint16(p[40:], 40000)
	binary.BigEndian.PutUint16(p[42:], 5201)
	p[52] = 5 << 4
	return p
}

// BenchmarkRead is the cost of the node's reads: Totals, which the telemetry takes every second
// (the per-CPU totals, after the TCP socket iterator), and Snapshot, which `x0tta6bl4 flows` and a
// metrics scrape take (every map, in batches), on a probe in an idle namespace.
func BenchmarkRead(b *testing.B) {
	netnstest.Require(b, "eBPF benchmark", "/sys/kernel/btf/vmlinux")
	ns := netnstest.Tag("x6r")
	netnstest.Namespace(b, ns)
	var p *Probe
	var err error
	netnstest.In(b, ns, func() { p, err = Open(Config{Port: 7946, Underlay: []string{"lo"}}) })
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	// From a thread of the observed namespace, as a node reads.
	b.Run("totals", func(b *testing.B) {
		netnstest.In(b, ns, func() {
			for b.Loop() {
				if _, err := p.Totals(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("snapshot", func(b *testing.B) {
		netnstest.In(b, ns, func() {
			for b.Loop() {
				if _, err := p.Snapshot(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
