package sim

import (
	"fmt"
	"io"
	"time"
)

// Summary writes a human-readable report of a run.
func (r *Result) Summary(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "topology %s, %d nodes, %d links, seed %d, %s of telemetry every %s, %d flows × %d packets/interval\n",
		c.Topology, c.Nodes, len(r.Edges), c.Seed, c.Duration, c.Interval, c.Flows, c.Rate)
	fmt.Fprintf(w, "cold start: converged in %s (virtual); %d routing messages, %.1f MB\n",
		r.Convergence.Round(time.Millisecond), r.ColdMessages, float64(r.ColdBytes)/1e6)
	fmt.Fprintf(w, "per node: %.2f MB routing traffic sent at cold start; routing state %.2f MB mean, %.2f MB max; %d area(s)\n",
		float64(r.ColdBytes)/1e6/float64(c.Nodes), float64(r.StateMean)/1e6, float64(r.StateMax)/1e6, r.Areas)
	if l := r.Level2; l != nil {
		fmt.Fprintf(w, "level 2: %d gateways, converged in %s (virtual); %d messages, %.1f MB (%.2f MB per gateway; %.1f MB with level-1 relays, %.2f MB per node); state %.2f MB max per gateway\n",
			l.Gateways, l.Convergence.Round(time.Millisecond), l.Messages, float64(l.Bytes)/1e6, float64(l.Bytes)/1e6/float64(max(l.Gateways, 1)),
			float64(l.RelayedBytes)/1e6, float64(l.RelayedBytes)/1e6/float64(c.Nodes), float64(l.StateMax)/1e6)
		fmt.Fprintf(w, "level 2, per gateway: %.2f MB sent at most; records: %d signed, %d sent again, %d offered, %d asked for; %d certificates on request\n",
			float64(l.BytesMax)/1e6, l.Originated, l.Retransmitted, l.Offered, l.Requested, l.CertAnswers)
		fmt.Fprintf(w, "busiest node at cold start: %s, %.2f MB (level 1 %.2f, level 2 %.2f, level 2 relayed %.2f; %d level-2 neighbours)\n",
			l.Busiest, float64(l.BusiestL1+l.BusiestL2+l.BusiestRelayed)/1e6, float64(l.BusiestL1)/1e6, float64(l.BusiestL2)/1e6, float64(l.BusiestRelayed)/1e6, l.BusiestL2Degree)
		fmt.Fprintf(w, "level 2 relayed on virtual links by one node at most: %s, %.2f MB\n", l.RelayedMaxNode, float64(l.RelayedMax)/1e6)
		fmt.Fprintf(w, "cross-area routes: %d pairs routed end to end and checked; stretch against the flat shortest path %.3f mean, %.3f max\n",
			l.Pairs, l.StretchMean, l.StretchMax)
	}
	if len(r.Restarts) > 0 {
		for _, kept := range []bool{false, true} {
			for _, noticed := range []bool{false, true} {
				st := restartSummary(r.Restarts, c.Nodes, noticed, kept)
				kind := "restarts (back before the neighbours notice)"
				if noticed {
					kind = "crashes (back after the neighbours flooded the loss)"
				}
				db := "empty database"
				if kept {
					db = "records kept"
				}
				fmt.Fprintf(w, "%s, %s: %d, one at a time; %.0f messages, %.3f MB, %.1f nodes sending, each (mean); per degree: %.2f, %.2f × log2(N), %.3f × area size\n",
					kind, db, st.Count, st.Messages, st.Bytes/1e6, st.Senders, st.PerDeg, st.PerDegLogN, st.PerDegArea)
			}
		}
	}
	secs := c.Duration.Seconds()
	fmt.Fprintf(w, "steady state: %d routing messages, %.1f KB/s in total (%.2f KB/s per node), %d records signed\n",
		r.SteadyMessages, float64(r.SteadyBytes)/1e3/secs, float64(r.SteadyBytes)/1e3/secs/float64(c.Nodes), r.RoutingRecords)
	if r.HandleErrorCount > 0 {
		fmt.Fprintf(w, "routing messages refused: %d\n", r.HandleErrorCount)
	}
	for _, f := range r.Faults {
		desc := r.Names[f.Node]
		if f.Peer >= 0 {
			desc += "–" + r.Names[f.Peer]
		}
		extra := ""
		if f.Rate > 0 {
			extra = fmt.Sprintf(" (rate %.2f)", f.Rate)
		}
		if f.Replaced >= 0 {
			extra += fmt.Sprintf(" (planned victim %s relayed nothing by then)", r.Names[f.Replaced])
		}
		fmt.Fprintf(w, "fault %-9s %-12s at %s%s\n", f.Kind, desc, f.Start, extra)
	}
	// Delivery before the first fault and after the last one started.
	first, last := c.Duration, time.Duration(0)
	for _, f := range r.Faults {
		first, last = min(first, f.Start), max(last, f.Start)
	}
	var bs, br, as, ar int
	for i, iv := range r.Intervals {
		t := time.Duration(i) * c.Interval
		if t+c.Interval <= first {
			bs, br = bs+iv.Sent, br+iv.Recv
		} else if t >= last {
			as, ar = as+iv.Sent, ar+iv.Recv
		}
	}
	if bs > 0 {
		fmt.Fprintf(w, "delivery before faults: %.4f (%d/%d packets)\n", float64(br)/float64(bs), br, bs)
	}
	if len(r.Faults) > 0 && as > 0 {
		fmt.Fprintf(w, "delivery with all faults active: %.4f (%d/%d packets)\n", float64(ar)/float64(as), ar, as)
	}
	var counts [NumKinds]int
	for _, iv := range r.Intervals {
		for _, l := range iv.Labels {
			counts[l]++
		}
	}
	fmt.Fprintf(w, "labelled node-intervals:")
	for k, n := range counts {
		if n > 0 {
			fmt.Fprintf(w, " %s %d", Kind(k), n)
		}
	}
	fmt.Fprintln(w)
}
