// Package firewall is the node's identity firewall: deny-by-default rules that allow overlay packets
// by the authenticated peer's node name, SPIFFE ID or certificate groups, by protocol and by port,
// in both directions, with connection tracking so replies to allowed traffic pass (docs/firewall.md).
//
// It is fed the decrypted inner IPv6 packet, the verified certificate of the end-to-end peer and the
// current time. It refuses an inbound packet whose source address is not the peer's certified
// overlay address, and an outbound packet whose destination is not, so every address it keeps in
// its flow table stands for a certified key pair. Rules are swapped atomically by Reload; the flow
// table is bounded in total and per peer.
//
// It must never decide by IP address alone, trust a packet it could not parse, read outside the
// packet, grow a table without bound, allocate on the per-packet path, open a socket, start a
// goroutine or read a clock.
package firewall
