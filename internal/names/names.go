// Package names answers DNS queries for the mesh's nodes: `<name>.<domain>` is the overlay address of
// the node whose certificate carries that name, and the overlay prefix's reverse zone maps addresses
// back to names. It is the responder a node serves on its overlay address (docs/connectivity.md,
// "Names"), on UDP and TCP, with github.com/miekg/dns parsing and packing every message.
//
// Names come only from certificates the node holds and has verified (a Source), and each answer is
// checked again against the node's Verifier at the time of the query, so a revoked or expired node's
// name is gone at once. It must never answer outside its two zones (it is not a recursive resolver),
// never trust a name from anywhere else, and never let a stranger make it hold or do more than its
// bounds allow: queries are rate limited per source, TCP connections are few and time out.
package names

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Defaults.
const (
	DefaultDomain = "mesh"
	DefaultTTL    = 10 * time.Second
)

// The index of names is rebuilt from the Source when it is older than refreshAfter, or older than
// refreshOnMiss when a name is not in it, so that a node is resolvable soon after it becomes
// reachable without a rebuild for every query.
const (
	refreshAfter  = time.Second
	refreshOnMiss = 100 * time.Millisecond
)

// Source gives the node certificates the node holds and verified when it took them: its own, its
// neighbours' and those of the nodes it can route to.
type Source interface {
	Certificates() []*meshca.Certificate
}

// Verifier checks a certificate at the time of a query (meshca.Verifier: signature, validity window,
// revocation).
type Verifier interface {
	Verify(c *meshca.Certificate, now time.Time) error
}

// Config configures a Responder. The zero value takes the defaults.
type Config struct {
	Domain string        // the zone of node names, "mesh" by default
	TTL    time.Duration // of every answer, 10 s by default; whole seconds
}

// Responder answers queries. It is safe for concurrent use.
type Responder struct {
	domain  string // lower case, fully qualified: "mesh."
	reverse string // the overlay prefix's reverse zone: "4.7.d.f.ip6.arpa."
	ttl     uint32
	src     Source
	verify  Verifier

	mu     sync.Mutex
	built  time.Time
	byName map[string][]*meshca.Certificate // newest first
	byAddr map[netip.Addr][]*meshca.Certificate
}

// NewResponder returns a responder for cfg's domain over the certificates src gives.
func NewResponder(cfg Config, src Source, v Verifier) (*Responder, error) {
	if src == nil || v == nil {
		return nil, errors.New("names: a source and a verifier are required")
	}
	domain, err := CheckDomain(cfg.Domain)
	if err != nil {
		return nil, err
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > time.Hour {
		return nil, fmt.Errorf("names: TTL %s: want 1 s to 1 h", ttl)
	}
	return &Responder{domain: domain, reverse: reverseZone(identity.OverlayPrefix), ttl: uint32(ttl / time.Second),
		src: src, verify: v}, nil
}

// maxDomain leaves room in a 253-byte name for a 63-byte node name and its dot.
const maxDomain = 253 - 64

// CheckDomain validates a domain for node names and returns it fully qualified in lower case; ""
// means DefaultDomain.
func CheckDomain(domain string) (string, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	if d == "" || len(d) > maxDomain {
		return "", fmt.Errorf("names: domain %q: want 1 to %d bytes", domain, maxDomain)
	}
	for l := range strings.SplitSeq(d, ".") {
		if !ValidLabel(l) {
			return "", fmt.Errorf("names: domain %q: label %q is not a host name label (a-z, 0-9, '-', 1 to 63 bytes, no '-' at either end)", domain, l)
		}
	}
	if d == "arpa" || strings.HasSuffix(d, ".arpa") {
		return "", fmt.Errorf("names: domain %q: the arpa zone is for reverse names", domain)
	}
	return d + ".", nil
}

// ValidLabel reports whether s can be one label of a host name (RFC 1123): 1 to 63 bytes of a-z,
// 0-9 and '-', not starting or ending with '-'. Lookups are lower case, so upper-case letters are
// refused here rather than folded: a certificate name is served exactly as it is written.
func ValidLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// reverseZone is the ip6.arpa name of p, whose length must be a multiple of 4 bits.
func reverseZone(p netip.Prefix) string {
	a := p.Addr().As16()
	var b strings.Builder
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		b.WriteByte(hexNibble(a, i))
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

func hexNibble(a [16]byte, i int) byte {
	v := a[i/2]
	if i%2 == 0 {
		v >>= 4
	}
	return "0123456789abcdef"[v&0xf]
}

// Domain is the zone of node names, fully qualified in lower case.
func (r *Responder) Domain() string { return r.domain }

// ReverseZone is the reverse zone of the overlay prefix, fully qualified.
func (r *Responder) ReverseZone() string { return r.reverse }

// ednsSize is the UDP payload size we advertise: the DNS flag day 2020 value, which fits any path's
// MTU without IP fragmentation.
const ednsSize = 1232

// maxAnswer bounds every answer: header 12, question ≤ 259 (a name of at most 255 bytes), one AAAA
// record whose owner is compressed to the question's name (28) or one PTR record of a reverse question
// (its question is 77 bytes; the record ≤ 12 + 255), and our OPT (11). So no answer is ever
// truncated, with or without EDNS.
const maxAnswer = 512

// Answer returns the response to req at time now, or nil when nothing should be sent (req is itself
// a response).
func (r *Responder) Answer(now time.Time, req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Compress = true // the answer's owner name points at the question's (maxAnswer)
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(ednsSize, false)
		if opt.Version() != 0 {
			resp.Rcode = dns.RcodeBadVers
			return resp
		}
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		resp.Rcode = dns.RcodeNotImplemented
		return resp
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	zone := ""
	switch {
	case inZone(name, r.domain):
		zone = r.domain
	case inZone(name, r.reverse):
		zone = r.reverse
	default:
		resp.Rcode = dns.RcodeRefused // not ours: we are not a recursive resolver
		return resp
	}
	if q.Qclass != dns.ClassINET || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		resp.Rcode = dns.RcodeRefused // no other class, and no zone transfers
		return resp
	}
	resp.Authoritative = true
	if name == zone {
		return resp // the apex exists and holds nothing we serve
	}
	if zone == r.domain {
		r.answerName(now, resp, q, strings.TrimSuffix(name, "."+zone))
	} else {
		r.answerReverse(now, resp, q, strings.TrimSuffix(name, "."+zone))
	}
	return resp
}

// inZone reports whether name (lower case, fully qualified) is zone or below it.
func inZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func (r *Responder) answerName(now time.Time, resp *dns.Msg, q dns.Question, label string) {
	c := r.lookup(now, func() []*meshca.Certificate { return r.byName[label] })
	if c == nil {
		resp.Rcode = dns.RcodeNameError // also for deeper names: nothing lives below a node's name
		return
	}
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY {
		resp.Answer = append(resp.Answer, &dns.AAAA{
			Hdr:  dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: r.ttl},
			AAAA: c.Overlay.AsSlice()})
	}
}

// answerReverse answers below the reverse zone; rest is the nibble labels in front of the zone, the
// address's last nibble first.
func (r *Responder) answerReverse(now time.Time, resp *dns.Msg, q dns.Question, rest string) {
	a := identity.OverlayPrefix.Addr().As16()
	free := 32 - identity.OverlayPrefix.Bits()/4 // nibbles an address has below the zone
	labels := strings.Split(rest, ".")
	if len(labels) > free {
		resp.Rcode = dns.RcodeNameError
		return
	}
	for i, l := range labels {
		if len(l) != 1 || !isHex(l[0]) {
			resp.Rcode = dns.RcodeNameError
			return
		}
		setNibble(&a, 31-i, hexValue(l[0]))
	}
	if len(labels) < free {
		return // an empty non-terminal on the way to addresses: it exists and holds nothing
	}
	addr := netip.AddrFrom16(a)
	c := r.lookup(now, func() []*meshca.Certificate { return r.byAddr[addr] })
	if c == nil {
		resp.Rcode = dns.RcodeNameError
		return
	}
	if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
		resp.Answer = append(resp.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: r.ttl},
			Ptr: c.Name + "." + r.domain})
	}
}

// setNibble sets nibble i of a (0 is the high nibble of the first byte) to v.
func setNibble(a *[16]byte, i int, v byte) {
	if i%2 == 0 {
		a[i/2] = a[i/2]&0x0f | v<<4
	} else {
		a[i/2] = a[i/2]&0xf0 | v
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// lookup returns the newest certificate among those candidates gives that verifies now, refreshing
// the index first when it is stale, or again when it found none and the index is not fresh.
func (r *Responder) lookup(now time.Time, candidates func() []*meshca.Certificate) *meshca.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName == nil || now.Sub(r.built) >= refreshAfter || now.Before(r.built) {
		r.rebuild(now)
	}
	c := r.firstValid(now, candidates())
	if c == nil && now.Sub(r.built) >= refreshOnMiss {
		r.rebuild(now)
		c = r.firstValid(now, candidates())
	}
	return c
}

func (r *Responder) firstValid(now time.Time, cs []*meshca.Certificate) *meshca.Certificate {
	for _, c := range cs {
		if r.verify.Verify(c, now) == nil {
			return c
		}
	}
	return nil
}

// rebuild indexes the Source's certificates by name and address. A certificate whose name is not a
// host name label is skipped (meshca already refuses such names; this does not rely on it), as is
// one whose address is outside the overlay prefix. Two certificates with one name (a node
// re-enrolled with new keys while its old certificate still verifies) are both kept, newest first:
// the answer is the newest one that verifies.
func (r *Responder) rebuild(now time.Time) {
	certs := r.src.Certificates()
	r.built = now
	r.byName = make(map[string][]*meshca.Certificate, len(certs))
	r.byAddr = make(map[netip.Addr][]*meshca.Certificate, len(certs))
	for _, c := range certs {
		if c == nil || c.Kind != meshca.KindNode || !ValidLabel(c.Name) || !identity.OverlayPrefix.Contains(c.Overlay) {
			continue
		}
		if !slices.Contains(r.byName[c.Name], c) {
			r.byName[c.Name] = append(r.byName[c.Name], c)
		}
		if !slices.Contains(r.byAddr[c.Overlay], c) {
			r.byAddr[c.Overlay] = append(r.byAddr[c.Overlay], c)
		}
	}
	newestFirst := func(a, b *meshca.Certificate) int { return cmp.Compare(b.NotBefore.UnixNano(), a.NotBefore.UnixNano()) }
	for _, cs := range r.byName {
		slices.SortStableFunc(cs, newestFirst)
	}
	for _, cs := range r.byAddr {
		slices.SortStableFunc(cs, newestFirst)
	}
}
