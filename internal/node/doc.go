// Package node is the mesh node: it runs the link and end-to-end handshakes, keeps one transport
// session per neighbour and per end-to-end peer, floods and reads signed link-state records, forwards
// overlay packets hop by hop, filters them with the identity firewall, heals around bad relays, and
// moves packets to and from a TUN device or a userspace network stack.
//
// The protocol decisions live in the pure packages it wires together (handshake, session, routing,
// linkmon, overlay, firewall, mapek/loop). The node itself is an engine of the same kind: its entry
// points (Start, Tick, Receiver.Receive, DevicePump.Pump) are fed the time of their event and act
// through an underlay.Conn and a Device, so the daemon, the tests and the whole-mesh harness
// (internal/meshtest) run the same code. Only the shell (shell.go: Run's loops, the admin socket, the
// metrics listener, LAN discovery) starts goroutines, waits on sockets or reads the wall clock. The
// shell may also give its loops helper goroutines that seal and open a large batch alongside them;
// the loop still delivers or sends the batch in its original order (workers.go). Without helpers, as
// the tests and the harness call it, the engine runs every batch on the caller's goroutine.
//
// It must never deliver a packet whose source address is not its session's certified identity, never
// forward a packet whose hop limit ran out, and never let a stranger grow a table without bound.
package node
