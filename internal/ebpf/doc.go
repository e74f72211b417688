// Package ebpf observes a mesh node from inside the kernel: packets and bytes per peer endpoint on
// the node's UDP port, per IPv6 5-tuple on its TUN device, packets the kernel dropped on those
// devices or for that port (by drop reason), and the retransmissions and smoothed RTT of TCP
// connections over the overlay (docs/ebpf.md).
//
// The programs are C in bpf/, compiled by bpf2go into the committed observe_bpf{el,eb}.{go,o}
// (little- and big-endian), so a plain go build needs no clang. They read kernel structures
// through CO-RE against the running kernel's BTF, attach with tcx (Linux ≥ 6.6) and BTF
// tracepoints, and pin nothing: closing the Probe, or the process dying, removes every program,
// link and map.
//
// It must never change, delay or drop a packet (every program returns "next"), never let a map
// grow past its fixed bound, and never make the node fail to start: Open returns an error that says
// why eBPF is unavailable, and the caller runs without it.
package ebpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -cc clang -target bpfel,bpfeb -type endpoint_key -type endpoint_value -type flow_key -type flow_value -type drop_key -type tcp_key -type tcp_value observe bpf/observe.c -- -O2 -g -Wall -Werror
