//go:build linux

package ebpf

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Where a drop was seen, as the programs number it.
const (
	whereUnderlay = 1
	whereOverlay  = 2
	whereSocket   = 3
)

var whereNames = map[uint32]string{whereUnderlay: "underlay", whereOverlay: "overlay", whereSocket: "socket"}

// Indices of the totals map (observe.c's enum).
const (
	totalOverlayTxPackets = iota
	totalOverlayTxBytes
	totalOverlayRxPackets
	totalOverlayRxBytes
	totalUnderlayTxPackets
	totalUnderlayTxBytes
	totalUnderlayRxPackets
	totalUnderlayRxBytes
	totalFlowsCreated
	totalTCPRetransmits
	numTotals
)

// Probe is the loaded, attached programs of one node. Its methods are safe for concurrent use.
type Probe struct {
	objs    observeObjects
	links   []link.Link
	tcpIter *link.Iter // walks the namespace's TCP sockets (x6_tcp_iter)
	netns   *os.File   // the observed namespace, which the iterator must be opened in
	netnsID uint64     // its inode
	reasons map[uint32]string
	progIDs []ebpf.ProgramID
	linkIDs []link.ID
}

// Open loads the programs, attaches them to the configured devices and the kernel's tracepoints,
// and returns the probe. Its error says why eBPF cannot run here (no BTF, no privilege, a kernel
// without tcx or a missing device); nothing is left loaded then.
func Open(cfg Config) (*Probe, error) {
	if cfg.Port == 0 {
		return nil, errors.New("no UDP port to observe")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("kernel has no BTF (/sys/kernel/btf/vmlinux), which the programs need: %w", err)
	}
	spec, err := loadObserve()
	if err != nil {
		return nil, fmt.Errorf("embedded programs: %w", err)
	}
	// The namespace of this thread is the one observed: its inode filters the tracepoints, and
	// the iterator is opened in it.
	netns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	var ns syscall.Stat_t
	if err := syscall.Fstat(int(netns.Fd()), &ns); err != nil {
		netns.Close()
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	consts := map[string]any{"mesh_port": cfg.Port, "netns_ino": uint32(ns.Ino)}
	if cfg.OverlayPrefix.IsValid() && cfg.OverlayPrefix.Addr().Is6() {
		consts["overlay_prefix"] = cfg.OverlayPrefix.Masked().Addr().As16()
		consts["overlay_prefix_len"] = uint32(cfg.OverlayPrefix.Bits())
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			netns.Close()
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	p := &Probe{reasons: dropReasonNames(kernel), netns: netns, netnsID: ns.Ino}
	if err := spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}}); err != nil {
		netns.Close()
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("loading programs needs CAP_BPF and CAP_NET_ADMIN (run the node as root): %w", err)
		}
		return nil, fmt.Errorf("the kernel refused the programs: %w", err)
	}
	if err := p.attach(cfg); err != nil {
		p.Close()
		return nil, err
	}
	for _, prog := range p.programs() {
		if info, err := prog.Info(); err == nil {
			if id, ok := info.ID(); ok {
				p.progIDs = append(p.progIDs, id)
			}
		}
	}
	for _, l := range p.links {
		if info, err := l.Info(); err == nil {
			p.linkIDs = append(p.linkIDs, info.ID)
		}
	}
	return p, nil
}

func (p *Probe) programs() []*ebpf.Program {
	o := &p.objs.observePrograms
	return []*ebpf.Program{o.X6UnderlayIn, o.X6UnderlayOut, o.X6OverlayIn, o.X6OverlayOut, o.X6KfreeSkb,
		o.X6TcpRetransmit, o.X6TcpState, o.X6TcpIter}
}

func (p *Probe) attach(cfg Config) error {
	underlay := cfg.Underlay
	if len(underlay) == 0 {
		ifs, err := net.Interfaces()
		if err != nil {
			return fmt.Errorf("list interfaces: %w", err)
		}
		for _, i := range ifs {
			if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 && i.Name != cfg.Overlay {
				underlay = append(underlay, i.Name)
			}
		}
	}
	tcx := func(dev string, where uint32, in, out *ebpf.Program) error {
		i, err := net.InterfaceByName(dev)
		if err != nil {
			return fmt.Errorf("device %s: %w", dev, err)
		}
		for _, a := range []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
		}{{in, ebpf.AttachTCXIngress}, {out, ebpf.AttachTCXEgress}} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: i.Index, Program: a.prog, Attach: a.typ})
			if err != nil {
				return fmt.Errorf("attach to %s with tcx (needs Linux 6.6 or later): %w", dev, err)
			}
			p.links = append(p.links, l)
		}
		return p.objs.Watched.Put(uint32(i.Index), where)
	}
	for _, dev := range underlay {
		if err := tcx(dev, whereUnderlay, p.objs.X6UnderlayIn, p.objs.X6UnderlayOut); err != nil {
			return err
		}
	}
	if cfg.Overlay != "" {
		if err := tcx(cfg.Overlay, whereOverlay, p.objs.X6OverlayIn, p.objs.X6OverlayOut); err != nil {
			return err
		}
	}
	for _, prog := range []*ebpf.Program{p.objs.X6KfreeSkb, p.objs.X6TcpRetransmit, p.objs.X6TcpState} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attach to the kernel's tracepoints: %w", err)
		}
		p.links = append(p.links, l)
	}
	it, err := link.AttachIter(link.IterOptions{Program: p.objs.X6TcpIter})
	if err != nil {
		return fmt.Errorf("attach the TCP socket iterator (needs Linux 5.9 or later): %w", err)
	}
	p.tcpIter = it
	p.links = append(p.links, it)
	return nil
}

// refreshTCP runs the TCP socket iterator, which copies every overlay connection's retransmits and
// smoothed RTT into tcp_flows. An iterator walks the namespace of the thread that opens it. A node
// runs wholly in the observed namespace, so it opens it on its own thread; a caller on a thread of
// another namespace (a test) opens it from a new thread moved into the observed one, which is
// discarded afterwards, never returned to the runtime in the wrong namespace.
func (p *Probe) refreshTCP() error {
	runtime.LockOSThread()
	if ino, err := threadNetns(); err != nil {
		runtime.UnlockOSThread()
		return err
	} else if ino == p.netnsID {
		err := p.walkTCP()
		runtime.UnlockOSThread()
		return err
	}
	runtime.UnlockOSThread()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := unix.Setns(int(p.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter the observed namespace: %w", err)
			return
		}
		errc <- p.walkTCP()
	}()
	return <-errc
}

// threadNetns is the inode of the calling thread's network namespace.
func threadNetns() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("network namespace: %w", err)
	}
	return st.Ino, nil
}

func (p *Probe) walkTCP() error {
	r, err := p.tcpIter.Open()
	if err != nil {
		return fmt.Errorf("tcp sockets: %w", err)
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("tcp sockets: %w", err)
	}
	return nil
}

// ProgramIDs are the kernel's ids of the loaded programs, so a test can check they are gone.
func (p *Probe) ProgramIDs() []uint32 {
	ids := make([]uint32, len(p.progIDs))
	for i, id := range p.progIDs {
		ids[i] = uint32(id)
	}
	return ids
}

// LinkIDs are the kernel's ids of the attachments.
func (p *Probe) LinkIDs() []uint32 {
	ids := make([]uint32, len(p.linkIDs))
	for i, id := range p.linkIDs {
		ids[i] = uint32(id)
	}
	return ids
}

// Close detaches and unloads everything. Nothing is pinned, so nothing outlives it.
func (p *Probe) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	if p.netns != nil {
		errs = append(errs, p.netns.Close())
	}
	return errors.Join(errs...)
}

// FlowCapacity is the bound of the flow map.
func (p *Probe) FlowCapacity() int { return int(p.objs.Flows.MaxEntries()) }

// Totals reads the counters no eviction loses, after copying the overlay TCP connections' current
// counters: cheap enough to call every second.
func (p *Probe) Totals() (Totals, error) {
	var t Totals
	if err := p.refreshTCP(); err != nil {
		return t, err
	}
	sum := make([]uint64, numTotals)
	for i := range uint32(numTotals) {
		var perCPU []uint64
		if err := p.objs.Totals.Lookup(i, &perCPU); err != nil {
			return t, fmt.Errorf("totals: %w", err)
		}
		for _, v := range perCPU {
			sum[i] += v
		}
	}
	t.OverlayTx = PacketsBytes{sum[totalOverlayTxPackets], sum[totalOverlayTxBytes]}
	t.OverlayRx = PacketsBytes{sum[totalOverlayRxPackets], sum[totalOverlayRxBytes]}
	t.UnderlayTx = PacketsBytes{sum[totalUnderlayTxPackets], sum[totalUnderlayTxBytes]}
	t.UnderlayRx = PacketsBytes{sum[totalUnderlayRxPackets], sum[totalUnderlayRxBytes]}
	t.FlowsCreated, t.TCPRetransmits = sum[totalFlowsCreated], sum[totalTCPRetransmits]
	return t, nil
}

// Drops reads the drop counts, sorted by count (most first).
func (p *Probe) Drops() ([]Drop, error) {
	keys, counts, err := readMap[observeDropKey, uint64](p.objs.Drops)
	if err != nil {
		return nil, fmt.Errorf("drops: %w", err)
	}
	out := make([]Drop, len(keys))
	for i, k := range keys {
		reason, ok := p.reasons[k.Reason]
		if !ok {
			reason = fmt.Sprintf("reason_%d", k.Reason)
		}
		out[i] = Drop{Reason: reason, Where: whereNames[k.Where], Count: counts[i]}
	}
	slices.SortFunc(out, func(a, b Drop) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Where+a.Reason, b.Where+b.Reason)
	})
	return out, nil
}

// Snapshot reads every map. It is not atomic: while traffic changes a map, the snapshot holds each
// entry once, but an entry evicted after it was read and one added after its place was passed can
// both be in it, so a flood can make it list a few more flows than the map's bound.
func (p *Probe) Snapshot() (Snapshot, error) {
	s := Snapshot{FlowCapacity: p.FlowCapacity()}
	var err error
	if s.Totals, err = p.Totals(); err != nil {
		return s, err
	}
	if s.Drops, err = p.Drops(); err != nil {
		return s, err
	}
	eks, evs, err := readMap[observeEndpointKey, observeEndpointValue](p.objs.Endpoints)
	if err != nil {
		return s, fmt.Errorf("endpoints: %w", err)
	}
	for i, ek := range eks {
		ev := evs[i]
		s.Endpoints = append(s.Endpoints, Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom16(ek.Addr).Unmap(), ek.Port),
			Counts: Counts{RxPackets: ev.RxPackets, RxBytes: ev.RxBytes, TxPackets: ev.TxPackets, TxBytes: ev.TxBytes}})
	}
	slices.SortFunc(s.Endpoints, func(a, b Endpoint) int { return a.Addr.Compare(b.Addr) })
	fks, fvs, err := readMap[observeFlowKey, observeFlowValue](p.objs.Flows)
	if err != nil {
		return s, fmt.Errorf("flows: %w", err)
	}
	for i, fk := range fks {
		s.Flows = append(s.Flows, Flow{FlowKey: FlowKey{Src: netip.AddrFrom16(fk.Saddr), Dst: netip.AddrFrom16(fk.Daddr),
			SrcPort: fk.Sport, DstPort: fk.Dport, Proto: fk.Proto, Dir: Direction(fk.Dir)}, Packets: fvs[i].Packets, Bytes: fvs[i].Bytes})
	}
	tks, tvs, err := readMap[observeTcpKey, observeTcpValue](p.objs.TcpFlows)
	if err != nil {
		return s, fmt.Errorf("tcp flows: %w", err)
	}
	for i, tk := range tks {
		s.TCP = append(s.TCP, TCPFlow{Local: netip.AddrPortFrom(netip.AddrFrom16(tk.Laddr), tk.Lport),
			Remote: netip.AddrPortFrom(netip.AddrFrom16(tk.Raddr), tk.Rport), Retransmits: tvs[i].Retransmits, SRTTMicros: tvs[i].SrttUs})
	}
	slices.SortFunc(s.TCP, func(a, b TCPFlow) int {
		return cmp.Or(a.Local.Compare(b.Local), a.Remote.Compare(b.Remote))
	})
	return s, nil
}

// readBatch is how many entries readMap asks the kernel for at a time.
const readBatch = 256

// readMap reads every entry of a hash map, in batches. A key-by-key iteration starts again from
// the first key whenever the key it stands on is deleted, and gives up after max_entries steps: on
// an LRU map that a flood keeps evicting, it fails ("iteration aborted") or returns a key twice,
// just when an operator wants to see the flood. A batch read walks the hash table bucket by bucket,
// so it ends, with each key once, however fast the map evicts (entries added behind it are missed,
// as in any snapshot of a changing map).
func readMap[K, V any](m *ebpf.Map) ([]K, []V, error) {
	kb, vb := make([]K, readBatch), make([]V, readBatch)
	var keys []K
	var vals []V
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, kb, vb, nil)
		keys, vals = append(keys, kb[:n]...), append(vals, vb[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}

// dropReasonNames reads the kernel's enum skb_drop_reason, whose values change between kernels.
func dropReasonNames(kernel *btf.Spec) map[uint32]string {
	names := make(map[uint32]string)
	var e *btf.Enum
	if err := kernel.TypeByName("skb_drop_reason", &e); err != nil {
		return names
	}
	for _, v := range e.Values {
		names[uint32(v.Value)] = strings.ToLower(strings.TrimPrefix(v.Name, "SKB_DROP_REASON_"))
	}
	return names
}
