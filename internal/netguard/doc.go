// Package netguard wraps a stream listener (TCP, TLS over TCP, Unix) so that strangers cannot
// exhaust the server behind it: it caps open connections in total and per source (an IPv4 address
// or an IPv6 /64), closes connections that sit idle or never start a request, tightens those
// timeouts as slots run out, makes room for a newcomer by closing the oldest idle connection, and
// keeps accepting through temporary errors such as running out of file descriptors (EMFILE),
// backing off instead of returning.
//
// It must never close a connection that is serving a request (state Active), never block Accept
// while slots are full (a full server refuses or evicts at once, so the kernel's backlog never
// holds clients hostage), and never hold more than MaxConns connections whatever arrives.
package netguard
