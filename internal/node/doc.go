// Package node is the mesh node daemon: it binds a UDP socket, runs the link and end-to-end
// handshakes, keeps one transport session per neighbour and per end-to-end peer, floods and reads
// signed link-state records, forwards overlay packets hop by hop, filters them with the identity
// firewall, and moves them to and from a TUN device or a userspace network stack.
//
// The protocol decisions live in the pure packages it wires together (handshake, session, routing,
// linkmon, overlay, firewall); this package owns the sockets, goroutines and the clock. It must never
// deliver a packet whose source address is not its session's certified identity, never forward a packet
// whose hop limit ran out, and never let a stranger grow a table without bound.
package node
