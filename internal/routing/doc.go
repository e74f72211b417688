// Package routing is the mesh's signed link-state routing core.
//
// Every node floods a link-state record — its neighbours, a cost per link built from RTT and loss, a
// sequence number and an absolute expiry — signed with its ML-DSA-65 key and bound to its mesh
// certificate. Every router keeps all records, counts a link only when both of its ends report it,
// and computes shortest paths with Dijkstra (ties broken by the lowest next-hop ID), so every node
// knows the whole graph (Graph) as well as its own routes (Routes). Flooding is reliable (hop-by-hop
// acknowledgements and retransmission), new adjacencies synchronise with database summaries, and
// origination is triggered by link changes and rate-limited with an exponential hold-down.
// Formats, timers and the reasoning behind them are in docs/routing.md.
//
// It is a pure protocol core: the owner feeds it link events, messages and the current time, calls
// Tick when NextDeadline is reached, and sends what Drain returns. It must never open a socket, start
// a goroutine, read a clock or keep global state; never count a link that only one end reports; never
// install a record whose signature or originator certificate does not verify; never forward a record
// that is not newer than the one it holds; and never let a peer make it hold more than a bounded
// amount of state.
package routing
