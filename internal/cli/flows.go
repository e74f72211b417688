package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/ebpf"
	"x0tta6bl4/internal/node"
)

// runFlows shows what the kernel sees of the node's traffic (docs/ebpf.md): the top overlay flows
// with their rates, the rest, the underlay as the kernel and as the daemon count it, drops by
// reason and TCP health. It refreshes like top until interrupted, or prints once.
func runFlows(e *env, args []string) error {
	fs := newFlags(e, "flows", "[--socket PATH] [--json] [--top N] [--once] [--interval D]")
	socket := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON once")
	top := fs.Int("top", 10, "flows to list")
	once := fs.Bool("once", false, "print once instead of refreshing")
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		return fmt.Errorf("--interval %s: at least 100ms", *interval)
	}
	query := func() (node.FlowsView, error) {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		var v node.FlowsView
		err := node.AdminCall(ctx, *socket, node.AdminRequest{Op: "flows", Count: *top}, &v)
		return v, err
	}
	v, err := query()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(e, v)
	}
	if !v.On {
		fmt.Fprintf(e.stdout, "eBPF observation is off: %s\n", v.Off)
		return nil
	}
	if *once {
		return printFlows(e.stdout, v, nil, 0)
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	prev, prevAt := v, time.Now()
	for {
		select {
		case <-e.ctx.Done():
			return nil
		case <-t.C:
		}
		if v, err = query(); err != nil {
			return err
		}
		now := time.Now()
		fmt.Fprint(e.stdout, "\x1b[H\x1b[2J") // home and clear, as top does
		if err := printFlows(e.stdout, v, &prev, now.Sub(prevAt)); err != nil {
			return err
		}
		prev, prevAt = v, now
	}
}

// printFlows writes one view; with a previous view it adds rates over elapsed.
func printFlows(w io.Writer, v node.FlowsView, prev *node.FlowsView, elapsed time.Duration) error {
	rate := func(now, before uint64) string {
		if prev == nil || elapsed <= 0 || now < before {
			return ""
		}
		return humanBits(float64(now-before) * 8 / elapsed.Seconds())
	}
	before := map[ebpf.FlowKey]uint64{}
	if prev != nil {
		for _, f := range prev.Top {
			before[f.FlowKey] = f.Bytes
		}
	}
	t := v.Totals
	fmt.Fprintf(w, "kernel view: %d flows held of %d, %d created\n", v.Flows, v.Capacity, t.FlowsCreated)
	fmt.Fprintf(w, "underlay:    rx %d datagrams (daemon read %d), tx %d (daemon sent %d)\n",
		t.UnderlayRx.Packets, v.DaemonRx, t.UnderlayTx.Packets, v.DaemonTx)
	fmt.Fprintf(w, "overlay:     out %d packets %d bytes, in %d packets %d bytes; tcp retransmits %d\n\n",
		t.OverlayTx.Packets, t.OverlayTx.Bytes, t.OverlayRx.Packets, t.OverlayRx.Bytes, t.TCPRetransmits)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tPROTO\tSOURCE\tDESTINATION\tPACKETS\tBYTES\tRATE")
	for _, f := range v.Top {
		b, seen := before[f.FlowKey]
		r := ""
		if seen {
			r = rate(f.Bytes, b)
		}
		src, dst := f.Ends()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", f.Dir, protoName(f.Proto), src, dst, f.Packets, f.Bytes, r)
	}
	var oo, oi string
	if prev != nil {
		oo, oi = rate(v.OtherOut.Bytes, prev.OtherOut.Bytes), rate(v.OtherIn.Bytes, prev.OtherIn.Bytes)
	}
	fmt.Fprintf(tw, "out\t\tother flows\t\t%d\t%d\t%s\n", v.OtherOut.Packets, v.OtherOut.Bytes, oo)
	fmt.Fprintf(tw, "in\t\tother flows\t\t%d\t%d\t%s\n", v.OtherIn.Packets, v.OtherIn.Bytes, oi)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Drops) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DROPPED AT\tREASON\tPACKETS")
		for _, d := range v.Drops {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", d.Where, d.Reason, d.Count)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(v.TCP) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TCP LOCAL\tREMOTE\tRETRANSMITS\tSRTT")
		for _, c := range v.TCP {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.Local, c.Remote, c.Retransmits, time.Duration(c.SRTTMicros)*time.Microsecond)
		}
		return tw.Flush()
	}
	return nil
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	}
	return fmt.Sprint(p)
}

func humanBits(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}
