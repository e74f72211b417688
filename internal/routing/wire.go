package routing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// NodeID names a node in routing: the key ID of its ML-DSA-65 signing key.
type NodeID = identity.KeyID

// SignatureContext is the ML-DSA context string of link-state record signatures.
const SignatureContext = "x0tta6bl4 link-state v1"

// Wire limits.
const (
	// MaxLinks bounds the links of one record.
	MaxLinks = 256
	// MaxLinkCost bounds an advertised link cost.
	MaxLinkCost = 1 << 30
	// MaxEntries bounds the entries of one Ack or Summary message.
	MaxEntries = 1024
	// MaxRecordSize is the size of a record with MaxLinks links.
	MaxRecordSize = recordHeaderSize + areaSize + MaxEndpoints*endpointSize + MaxLinks*linkSize + 2 + identity.SignatureSize
	// MaxEndpoints bounds the endpoints a record publishes.
	MaxEndpoints = 8

	recordMagic = "X6LS"
	// recordVersion is what routers of area 0 (a mesh that is one area) sign; recordVersionArea,
	// which adds the area, is what routers of any other area sign. Version 1 records (no
	// incarnation) from nodes of an earlier release are still read, with incarnation 0.
	recordVersion      = 2
	recordVersion1     = 1
	recordVersionArea  = 3
	recordHeaderSize   = recordHeaderSizeV1 + 8 + 1 + 1 // through the link count, with no endpoint
	areaSize           = 4
	areaOffset         = recordHeaderSizeV1 - 2 + 8 + 1 // the area of a version 3 record
	recordHeaderSizeV1 = 4 + 1 + 32 + 8 + 8 + 32 + 2    // without incarnation, flags and endpoints
	linkSize           = 32 + 4 + 4 + 2
	endpointSize       = 16 + 2 + 1
	flagNoTransit      = 1 << 0
	flagLevel2         = 1 << 1 // version 3 only: a level-2 record (docs/routing.md, Level 2)
	flagGateway        = 1 << 2 // version 3 only: the originator is a gateway of its area
	entrySize          = 32 + 8
	maxLossBP          = 10000
	minRecordSize      = recordHeaderSizeV1 + 2 + identity.SignatureSize
)

// Message types: the first byte of every routing message. Their high nibble is zero, so a routing
// message can never be taken for an IPv4 or IPv6 packet sharing the same session.
const (
	MsgRecord     = 1
	MsgAck        = 2
	MsgSummary    = 3
	MsgSummaryAck = 4
	// MsgAreaSummary is a Summary that also says the sender's routing area; routers of area 0 send
	// plain Summaries, which say area 0.
	MsgAreaSummary = 5
	// MsgCertRequest asks a neighbour for the certificate of a record it sent without one (level 2
	// only: docs/routing.md, Level 2, "Certificates on request").
	MsgCertRequest = 6
	// MsgOffer lists records a level-2 router installed, by (origin, sequence), for a neighbour to
	// ask for those it lacks; MsgRequest asks for them (level 2 only: docs/routing.md, Level 2,
	// "Offers"). MsgRequestCert asks for them with their certificates, for originators the router
	// holds no record of. All three are shaped as an Ack.
	MsgOffer       = 7
	MsgRequest     = 8
	MsgRequestCert = 9
	// MsgBusy answers requested records a router that pulls (level 2, level 1 of an area other
	// than 0) will not send now, because it already sent that version to as many neighbours as it
	// answers for (docs/routing.md, Level 2, "Answers shared"): the requester asks another
	// neighbour that offered it. Shaped as an Ack.
	MsgBusy = 10
)

const (
	flagCertificate = 1 << 0
	summaryHeader   = 1 + 4 + 2 + 32 + 32 + 2
	summaryAckSize  = 1 + 4 + 2
	certRequestSize = 1 + 32 + 32
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("routing: malformed message")

// Metrics are a link's measurements, as smoothed by the link layer.
type Metrics struct {
	RTT  time.Duration // round-trip time
	Loss float64       // one-way loss fraction, 0 to 1
	// Cost, when not 0, is the link's cost as is, instead of one computed from RTT and Loss: a
	// level-2 link between two gateways of one area costs their level-1 distance.
	Cost uint32
	// NoFlood (level 2 only) keeps records from being flooded over the link, which still counts
	// for routes: a virtual link off the area's flooding topology (Router.VirtualLinks).
	NoFlood bool
}

// EndpointKind says how a node knows one of its endpoints.
type EndpointKind uint8

// The kinds of endpoint.
const (
	EndpointLocal    EndpointKind = 1 // an address of one of its interfaces
	EndpointObserved EndpointKind = 2 // the address a neighbour sees its packets come from (behind a NAT)
)

func (k EndpointKind) String() string {
	switch k {
	case EndpointLocal:
		return "local"
	case EndpointObserved:
		return "observed"
	}
	return fmt.Sprintf("kind %d", k)
}

// Endpoint is a UDP address at which a node may be dialled. It is only ever "try this address": the
// link handshake authenticates whoever answers.
type Endpoint struct {
	Addr netip.AddrPort // IPv4 addresses are kept unmapped
	Kind EndpointKind
}

// LinkInfo is one link as its originator reports it.
type LinkInfo struct {
	Neighbour NodeID
	Cost      uint32        // 1 to MaxLinkCost
	RTT       time.Duration // microsecond precision on the wire
	Loss      float64       // basis-point precision on the wire
}

// Record is a link-state record. Records held by a router or a Cache are shared and must not be
// modified.
type Record struct {
	Origin          NodeID
	Seq             uint64
	Expires         time.Time // millisecond precision
	CertFingerprint meshca.Fingerprint
	// Incarnation is the originator's boot epoch, chosen when it started (Unix nanoseconds): a
	// larger one than held before says the node restarted and lost its sessions. 0 means unknown
	// (a version 1 record).
	Incarnation uint64
	// NoTransit says the originator does not relay: routes may end at it but never pass through it.
	NoTransit bool
	// Level2 marks a level-2 record (docs/routing.md, Level 2): its links are the originator's
	// links between areas and its level-1 distances to gateways of its own area. Only a record of
	// an area other than 0 can be one.
	Level2 bool
	// Gateway says the originator is a gateway of its area: it also runs a level-2 router, and
	// nodes of its area send traffic for other areas towards it. Only a level-1 record of an area
	// other than 0 can say so.
	Gateway bool
	// Area is the originator's routing area (docs/routing.md, Areas): records are flooded, and
	// accepted, only inside their area. 0 is the area of a mesh that is a single area.
	Area uint32
	// Endpoints are the UDP addresses at which the originator can be dialled (docs/connectivity.md).
	Endpoints []Endpoint
	Links     []LinkInfo // sorted by neighbour, unique, never the origin
	Signature []byte

	version byte // the encoding's version; 0 for a record not yet signed (signed as recordVersion)

	raw  []byte   // full encoding
	hash [32]byte // SHA-256 of raw, set once verified or signed
	cert *meshca.Certificate
	// cache is the Cache that verified the record (nil for one signed here or not verified): its
	// messages are registered there when built.
	cache *Cache

	msg [2]atomic.Pointer[[]byte] // Record messages without / with the certificate, built once
}

// Bytes returns the record's encoding (nil for a record that was never signed or parsed).
func (r *Record) Bytes() []byte { return r.raw }

// message returns the Record message carrying r, with or without its certificate. The bytes are built
// once and shared (and never modified: see Outgoing).
func (r *Record) message(withCert bool) []byte {
	i := 0
	if withCert && r.cert != nil {
		i = 1
	}
	if p := r.msg[i].Load(); p != nil {
		return *p
	}
	var cert []byte
	if i == 1 {
		cert = r.cert.Bytes()
	}
	b := appendRecordMessage(nil, cert, r.raw)
	if r.msg[i].CompareAndSwap(nil, &b) && r.cache != nil {
		r.cache.register(b[len(b)-len(r.raw):], r)
	}
	return *r.msg[i].Load()
}

// newRecordBuffer returns a copy of raw preceded by the header of a Record message without a
// certificate: parse the record from the copy and pass the whole buffer to setMessage, so that the
// record's encoding and its message share memory.
func newRecordBuffer(raw []byte) []byte {
	return appendRecordMessage(make([]byte, 0, 2+len(raw)), nil, raw)
}

// setMessage records msg, built by newRecordBuffer around r's encoding, as r's message without a
// certificate.
func (r *Record) setMessage(msg []byte) { r.msg[0].Store(&msg) }

// holdsBytes reports whether b is r's encoding by identity: the same memory as r's encoding or as
// the record part of one of r's messages, which are never modified. A simulator delivers these
// buffers to many routers, which then recognise a duplicate without comparing its bytes.
func (r *Record) holdsBytes(b []byte) bool {
	if len(b) == 0 || len(b) != len(r.raw) {
		return false
	}
	if &b[0] == &r.raw[0] {
		return true
	}
	for i := range r.msg {
		if p := r.msg[i].Load(); p != nil && len(*p) >= len(b) && &b[0] == &(*p)[len(*p)-len(b)] {
			return true
		}
	}
	return false
}

func cmpID(a, b NodeID) int { return bytes.Compare(a[:], b[:]) }

func rttMicros(d time.Duration) uint32 {
	us := d / time.Microsecond
	switch {
	case us < 0:
		return 0
	case us > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(us)
}

func lossBP(l float64) uint16 {
	switch {
	case !(l > 0): // also NaN
		return 0
	case l >= 1:
		return maxLossBP
	}
	return uint16(math.Round(l * maxLossBP))
}

// appendTBS appends the signed part of the record.
func (r *Record) appendTBS(b []byte) []byte {
	if r.version == 0 {
		r.version = signingVersion(r.Area)
	}
	b = append(b, recordMagic...)
	b = append(b, r.version)
	b = append(b, r.Origin[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires.UnixMilli()))
	b = append(b, r.CertFingerprint[:]...)
	if r.version != recordVersion1 {
		b = binary.BigEndian.AppendUint64(b, r.Incarnation)
		var flags byte
		if r.NoTransit {
			flags |= flagNoTransit
		}
		if r.Level2 {
			flags |= flagLevel2
		}
		if r.Gateway {
			flags |= flagGateway
		}
		b = append(b, flags)
		if r.version == recordVersionArea {
			b = binary.BigEndian.AppendUint32(b, r.Area)
		}
		b = append(b, byte(len(r.Endpoints)))
		for _, e := range r.Endpoints {
			a := e.Addr.Addr().As16()
			b = append(b, a[:]...)
			b = binary.BigEndian.AppendUint16(b, e.Addr.Port())
			b = append(b, byte(e.Kind))
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Links)))
	for _, l := range r.Links {
		b = append(b, l.Neighbour[:]...)
		b = binary.BigEndian.AppendUint32(b, l.Cost)
		b = binary.BigEndian.AppendUint32(b, rttMicros(l.RTT))
		b = binary.BigEndian.AppendUint16(b, lossBP(l.Loss))
	}
	return b
}

// signingVersion is the version a record of area is signed as: area 0 keeps version 2, which every
// release reads, so that a mesh that is one area never needs the new encoding.
func signingVersion(area uint32) byte {
	if area == 0 {
		return recordVersion
	}
	return recordVersionArea
}

// encode returns the full encoding of a record whose Signature is set.
func (r *Record) encode() []byte {
	b := r.appendTBS(make([]byte, 0, recordHeaderSize+len(r.Links)*linkSize+2+len(r.Signature)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Signature)))
	return append(b, r.Signature...)
}

// SignRecord signs rec with key (its Expires is truncated to the millisecond) and returns its
// encoding; rec's Signature is set. Routers sign their own records; this is for tools and tests.
func SignRecord(key Signer, rec *Record) ([]byte, error) {
	if err := rec.checkFields(); err != nil {
		return nil, fmt.Errorf("routing: sign record: %w", err)
	}
	rec.version = signingVersion(rec.Area)
	rec.Expires = time.UnixMilli(rec.Expires.UnixMilli())
	sig, err := key.Sign(SignatureContext, rec.appendTBS(nil))
	if err != nil {
		return nil, fmt.Errorf("routing: sign record: %w", err)
	}
	rec.Signature = sig
	rec.raw = rec.encode()
	return rec.raw, nil
}

// checkFields enforces the rules every record obeys.
func (r *Record) checkFields() error {
	if len(r.Links) > MaxLinks {
		return fmt.Errorf("%d links, at most %d", len(r.Links), MaxLinks)
	}
	if r.version == recordVersion1 && (r.Incarnation != 0 || r.NoTransit || len(r.Endpoints) > 0 || r.Area != 0) {
		return errors.New("a version 1 record has no incarnation, flags, area or endpoints")
	}
	if r.version != 0 && (r.version == recordVersionArea) != (r.Area != 0) {
		return errors.New("area 0 is signed as version 2, any other area as version 3")
	}
	if r.Level2 && r.Area == 0 {
		return errors.New("a level-2 record needs an area other than 0")
	}
	if r.Gateway && (r.Area == 0 || r.Level2) {
		return errors.New("only a level-1 record of an area other than 0 names a gateway")
	}
	if len(r.Endpoints) > MaxEndpoints {
		return fmt.Errorf("%d endpoints, at most %d", len(r.Endpoints), MaxEndpoints)
	}
	for i, e := range r.Endpoints {
		if err := checkEndpoint(e); err != nil {
			return err
		}
		for _, f := range r.Endpoints[:i] {
			if f.Addr == e.Addr {
				return fmt.Errorf("endpoint %s twice", e.Addr)
			}
		}
	}
	for i, l := range r.Links {
		if l.Neighbour == r.Origin {
			return errors.New("record lists a link to its own origin")
		}
		if i > 0 && cmpID(r.Links[i-1].Neighbour, l.Neighbour) >= 0 {
			return errors.New("links not sorted by neighbour or not unique")
		}
		if l.Cost == 0 || l.Cost > MaxLinkCost {
			return fmt.Errorf("link cost %d outside 1..%d", l.Cost, MaxLinkCost)
		}
	}
	return nil
}

// ParseRecord decodes a record. It accepts only the canonical encoding (every length exact, every
// field in range, links sorted and unique, no trailing bytes) and does not check the signature. The
// returned record keeps a reference to b (its encoding and signature are b's memory, not copies), so
// a caller that keeps the record longer than b, as anything parsed from a receive buffer the next
// datagram overwrites, parses a copy: bytes.Clone, or as Cache.verify does, a buffer the record's
// message then shares. It does not copy itself because that caller would then copy twice.
func ParseRecord(b []byte) (*Record, error) {
	r, err := parseRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w: record: %w", ErrMalformed, err)
	}
	return r, nil
}

func parseRecord(b []byte) (*Record, error) {
	if len(b) < minRecordSize || len(b) > MaxRecordSize {
		return nil, fmt.Errorf("%d bytes, want %d to %d", len(b), minRecordSize, MaxRecordSize)
	}
	if string(b[:4]) != recordMagic {
		return nil, errors.New("bad magic")
	}
	header := recordHeaderSize
	switch b[4] {
	case recordVersion:
	case recordVersionArea:
		header += areaSize
	case recordVersion1:
		header = recordHeaderSizeV1
	default:
		return nil, fmt.Errorf("version %d, this build reads %d to %d", b[4], recordVersion1, recordVersionArea)
	}
	r := &Record{raw: b, version: b[4]}
	p := 5
	copy(r.Origin[:], b[p:])
	p += 32
	r.Seq = binary.BigEndian.Uint64(b[p:])
	p += 8
	r.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[p:])))
	p += 8
	copy(r.CertFingerprint[:], b[p:])
	p += 32
	endpoints := 0
	if r.version != recordVersion1 {
		r.Incarnation = binary.BigEndian.Uint64(b[p:])
		p += 8
		flags := b[p]
		known := byte(flagNoTransit)
		if r.version == recordVersionArea {
			known |= flagLevel2 | flagGateway
		}
		if flags&^known != 0 {
			return nil, fmt.Errorf("unknown flags %#x", flags)
		}
		r.NoTransit = flags&flagNoTransit != 0
		r.Level2 = flags&flagLevel2 != 0
		r.Gateway = flags&flagGateway != 0
		p++
		if r.version == recordVersionArea {
			if len(b) < p+areaSize+1 {
				return nil, errors.New("too short for an area")
			}
			r.Area = binary.BigEndian.Uint32(b[p:])
			p += areaSize
		}
		endpoints = int(b[p])
		p++
		if endpoints > MaxEndpoints {
			return nil, fmt.Errorf("%d endpoints, at most %d", endpoints, MaxEndpoints)
		}
		if len(b) < p+endpoints*endpointSize+2 {
			return nil, fmt.Errorf("%d bytes, too short for %d endpoints", len(b), endpoints)
		}
		if endpoints > 0 {
			r.Endpoints = make([]Endpoint, endpoints)
		}
		for i := range r.Endpoints {
			r.Endpoints[i] = Endpoint{
				Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[p:p+16])), binary.BigEndian.Uint16(b[p+16:])),
				Kind: EndpointKind(b[p+18]),
			}
			if a := r.Endpoints[i].Addr.Addr(); a.Is4In6() {
				r.Endpoints[i].Addr = netip.AddrPortFrom(a.Unmap(), r.Endpoints[i].Addr.Port())
			}
			p += endpointSize
		}
	}
	n := int(binary.BigEndian.Uint16(b[p:]))
	p += 2
	if n > MaxLinks {
		return nil, fmt.Errorf("%d links, at most %d", n, MaxLinks)
	}
	if want := header + endpoints*endpointSize + n*linkSize + 2 + identity.SignatureSize; len(b) != want {
		return nil, fmt.Errorf("%d bytes for %d links, want %d", len(b), n, want)
	}
	if n > 0 {
		r.Links = make([]LinkInfo, n)
	}
	for i := range r.Links {
		l := &r.Links[i]
		copy(l.Neighbour[:], b[p:])
		l.Cost = binary.BigEndian.Uint32(b[p+32:])
		l.RTT = time.Duration(binary.BigEndian.Uint32(b[p+36:])) * time.Microsecond
		bp := binary.BigEndian.Uint16(b[p+40:])
		if bp > maxLossBP {
			return nil, fmt.Errorf("loss %d basis points, at most %d", bp, maxLossBP)
		}
		l.Loss = float64(bp) / maxLossBP
		p += linkSize
	}
	if err := r.checkFields(); err != nil {
		return nil, err
	}
	if sl := int(binary.BigEndian.Uint16(b[p:])); sl != identity.SignatureSize {
		return nil, fmt.Errorf("signature length %d, want %d", sl, identity.SignatureSize)
	}
	p += 2
	r.Signature = b[p:]
	return r, nil
}

// tbs returns the signed part of a parsed or signed record.
func (r *Record) tbs() []byte { return r.raw[:len(r.raw)-2-len(r.Signature)] }

// recordHead is what flooding decisions need, read from fixed offsets without a full parse.
type recordHead struct {
	origin  NodeID
	seq     uint64
	expires int64 // Unix milliseconds
	certFP  meshca.Fingerprint
	area    uint32
	level2  bool
}

func peekRecord(b []byte) (recordHead, bool) {
	var h recordHead
	if len(b) < minRecordSize || len(b) > MaxRecordSize || string(b[:4]) != recordMagic ||
		(b[4] != recordVersion && b[4] != recordVersion1 && b[4] != recordVersionArea) {
		return h, false
	}
	copy(h.origin[:], b[5:])
	h.seq = binary.BigEndian.Uint64(b[37:])
	h.expires = int64(binary.BigEndian.Uint64(b[45:]))
	copy(h.certFP[:], b[53:])
	if b[4] == recordVersionArea {
		h.area = binary.BigEndian.Uint32(b[areaOffset:])
		h.level2 = b[areaOffset-1]&flagLevel2 != 0
	}
	return h, true
}

// entry is an (origin, sequence) pair of an Ack or a Summary.
type entry struct {
	origin NodeID
	seq    uint64
}

// message is a decoded routing message.
type message struct {
	typ     byte
	cert    []byte // MsgRecord: the attached certificate, or nil
	record  []byte // MsgRecord: the record, not yet parsed
	entries []entry
	adj     uint32 // MsgSummary, MsgSummaryAck
	part    uint16
	lo, hi  NodeID // MsgSummary
	area    uint32 // MsgSummary: the sender's area (0 for a plain Summary)
	// MsgCertRequest: the certificate of origin lo's record with this fingerprint
	certFP meshca.Fingerprint
}

// parseMessageInto decodes a routing message strictly, with the entries of an Ack or Summary
// decoded into scratch's memory (when it is large enough). A Record message's record is only
// located, not parsed (ParseRecord does that); its certificate is not parsed either.
func parseMessageInto(b []byte, scratch []entry) (message, error) {
	m, err := parseMessageInner(b, scratch)
	if err != nil {
		return message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

func parseMessageInner(b []byte, scratch []entry) (message, error) {
	if len(b) == 0 {
		return message{}, errors.New("empty message")
	}
	m := message{typ: b[0]}
	switch m.typ {
	case MsgCertRequest:
		if len(b) != certRequestSize {
			return m, fmt.Errorf("certificate request of %d bytes", len(b))
		}
		copy(m.lo[:], b[1:])
		copy(m.certFP[:], b[33:])
	case MsgRecord:
		if len(b) < 2 {
			return m, errors.New("truncated record message")
		}
		flags, p := b[1], 2
		if flags&^flagCertificate != 0 {
			return m, fmt.Errorf("unknown flags %#x", flags)
		}
		if flags&flagCertificate != 0 {
			if len(b) < p+2 {
				return m, errors.New("truncated certificate length")
			}
			n := int(binary.BigEndian.Uint16(b[p:]))
			p += 2
			if n == 0 || n > meshca.MaxCertificateSize || len(b) < p+n {
				return m, fmt.Errorf("certificate of %d bytes", n)
			}
			m.cert = b[p : p+n]
			p += n
		}
		if len(b)-p < minRecordSize || len(b)-p > MaxRecordSize {
			return m, fmt.Errorf("record of %d bytes", len(b)-p)
		}
		m.record = b[p:]
	case MsgAck, MsgOffer, MsgRequest, MsgRequestCert, MsgBusy:
		if len(b) < 3 {
			return m, fmt.Errorf("truncated message of type %d", m.typ)
		}
		n := int(binary.BigEndian.Uint16(b[1:]))
		if n == 0 || n > MaxEntries || len(b) != 3+n*entrySize {
			return m, fmt.Errorf("message of type %d: %d bytes with %d entries", m.typ, len(b), n)
		}
		m.entries = parseEntries(b[3:], n, scratch)
	case MsgAreaSummary:
		if len(b) < 1+areaSize+summaryHeader {
			return m, errors.New("truncated area summary")
		}
		m.area = binary.BigEndian.Uint32(b[1:])
		if m.area == 0 {
			return m, errors.New("area summary for area 0 (a plain summary says that)")
		}
		// The rest is a plain Summary: parse it as one and keep the area.
		if b[1+areaSize] != MsgSummary {
			return m, errors.New("area summary without a summary")
		}
		inner, err := parseMessageInner(b[1+areaSize:], scratch)
		if err != nil {
			return m, err
		}
		inner.typ, inner.area = MsgAreaSummary, m.area
		return inner, nil
	case MsgSummary:
		if len(b) < summaryHeader {
			return m, errors.New("truncated summary")
		}
		m.adj = binary.BigEndian.Uint32(b[1:])
		m.part = binary.BigEndian.Uint16(b[5:])
		copy(m.lo[:], b[7:])
		copy(m.hi[:], b[39:])
		n := int(binary.BigEndian.Uint16(b[71:]))
		if n > MaxEntries || len(b) != summaryHeader+n*entrySize {
			return m, fmt.Errorf("summary of %d bytes with %d entries", len(b), n)
		}
		if cmpID(m.lo, m.hi) > 0 {
			return m, errors.New("summary range is empty")
		}
		m.entries = parseEntries(b[summaryHeader:], n, scratch)
		for i, e := range m.entries {
			if cmpID(e.origin, m.lo) < 0 || cmpID(e.origin, m.hi) > 0 {
				return m, errors.New("summary entry outside its range")
			}
			if i > 0 && cmpID(m.entries[i-1].origin, e.origin) >= 0 {
				return m, errors.New("summary entries not strictly increasing")
			}
		}
	case MsgSummaryAck:
		if len(b) != summaryAckSize {
			return m, fmt.Errorf("summary ack of %d bytes", len(b))
		}
		m.adj = binary.BigEndian.Uint32(b[1:])
		m.part = binary.BigEndian.Uint16(b[5:])
	default:
		return m, fmt.Errorf("unknown message type %d", m.typ)
	}
	return m, nil
}

func parseEntries(b []byte, n int, scratch []entry) []entry {
	if n == 0 {
		return nil
	}
	es := scratch[:0]
	if cap(es) < n {
		es = make([]entry, n)
	}
	es = es[:n]
	for i := range es {
		copy(es[i].origin[:], b[i*entrySize:])
		es[i].seq = binary.BigEndian.Uint64(b[i*entrySize+32:])
	}
	return es
}

func appendRecordMessage(b, cert, record []byte) []byte {
	if cert == nil {
		b = append(b, MsgRecord, 0)
	} else {
		b = append(b, MsgRecord, flagCertificate)
		b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
		b = append(b, cert...)
	}
	return append(b, record...)
}

func appendEntries(b []byte, es []entry) []byte {
	for _, e := range es {
		b = append(b, e.origin[:]...)
		b = binary.BigEndian.AppendUint64(b, e.seq)
	}
	return b
}

// encodeAck encodes 1 to MaxEntries acknowledgements.
func encodeAck(es []entry) []byte { return encodeEntries(MsgAck, es) }

// encodeEntries encodes an Ack, Offer or Request of 1 to MaxEntries entries.
func encodeEntries(typ byte, es []entry) []byte {
	b := make([]byte, 0, 3+len(es)*entrySize)
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(es)))
	return appendEntries(b, es)
}

// encodeSummary encodes one part of a Summary; area ≠ 0 makes it an area summary.
func encodeSummary(area uint32, adj uint32, part uint16, lo, hi NodeID, es []entry) []byte {
	b := make([]byte, 0, 1+areaSize+summaryHeader+len(es)*entrySize)
	if area != 0 {
		b = append(b, MsgAreaSummary)
		b = binary.BigEndian.AppendUint32(b, area)
	}
	b = append(b, MsgSummary)
	b = binary.BigEndian.AppendUint32(b, adj)
	b = binary.BigEndian.AppendUint16(b, part)
	b = append(b, lo[:]...)
	b = append(b, hi[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(es)))
	return appendEntries(b, es)
}

// encodeCertRequest asks for the certificate of origin's record, named by its fingerprint.
func encodeCertRequest(origin NodeID, fp meshca.Fingerprint) []byte {
	b := make([]byte, 0, certRequestSize)
	b = append(b, MsgCertRequest)
	b = append(b, origin[:]...)
	return append(b, fp[:]...)
}

func encodeSummaryAck(adj uint32, part uint16) []byte {
	b := make([]byte, 0, summaryAckSize)
	b = append(b, MsgSummaryAck)
	b = binary.BigEndian.AppendUint32(b, adj)
	return binary.BigEndian.AppendUint16(b, part)
}

// checkEndpoint enforces what a published endpoint must be: a unicast address that is not
// unspecified, a non-zero port, a known kind, IPv4 unmapped (so each endpoint has one encoding).
func checkEndpoint(e Endpoint) error {
	a := e.Addr.Addr()
	switch {
	case !e.Addr.IsValid() || a.IsUnspecified() || a.IsMulticast() || e.Addr.Port() == 0:
		return fmt.Errorf("endpoint %s is not a unicast address and port", e.Addr)
	case a.Is4In6() || a.Zone() != "":
		return fmt.Errorf("endpoint %s: IPv4 must be unmapped, and no zone", e.Addr)
	case e.Kind != EndpointLocal && e.Kind != EndpointObserved:
		return fmt.Errorf("endpoint %s: %s", e.Addr, e.Kind)
	}
	return nil
}

// VerifySignature checks that the record's signature verifies with cert's key. Routers verify
// through their Cache; this is for a record checked outside a router (a control plane storing what
// nodes report). It does not check the certificate itself.
func (r *Record) VerifySignature(cert *meshca.Certificate) error {
	if r.raw == nil || cert.SignPublicKey == nil {
		return errors.New("routing: record not parsed, or certificate without a signing key")
	}
	if err := cert.SignPublicKey.Verify(SignatureContext, r.tbs(), r.Signature); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}
