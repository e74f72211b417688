package routing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func testLinks(f *fixture, n int) []LinkInfo {
	var ls []LinkInfo
	for i := 1; i <= n; i++ {
		ls = append(ls, LinkInfo{Neighbour: f.ids[i], Cost: uint32(100 * i), RTT: time.Duration(i) * time.Millisecond, Loss: float64(125*i) / 10000})
	}
	return ls
}

func TestRecordRoundTrip(t *testing.T) {
	f := getFixture(t)
	rec := signRecord(t, f.keys[0].Sign, f.certs[0], f.ids[0], 42, f.now.Add(time.Minute), testLinks(f, 3))
	if got, want := len(rec.raw), recordHeaderSize+3*linkSize+2+identity.SignatureSize; got != want {
		t.Fatalf("record is %d bytes, want %d", got, want)
	}
	p, err := ParseRecord(rec.raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin != rec.Origin || p.Seq != 42 || !p.Expires.Equal(rec.Expires) || p.CertFingerprint != rec.CertFingerprint || len(p.Links) != 3 {
		t.Fatalf("fields differ: %+v", p)
	}
	for i, l := range p.Links {
		if l != rec.Links[i] {
			t.Fatalf("link %d: %+v, want %+v", i, l, rec.Links[i])
		}
	}
	if !bytes.Equal(p.encode(), rec.raw) {
		t.Fatal("re-encoding differs")
	}
	if err := f.certs[0].SignPublicKey.Verify(SignatureContext, p.tbs(), p.Signature); err != nil {
		t.Fatal(err)
	}
	h, ok := peekRecord(rec.raw)
	if !ok || h.origin != rec.Origin || h.seq != 42 || h.expires != rec.Expires.UnixMilli() || h.certFP != rec.CertFingerprint {
		t.Fatalf("peek: %+v %v", h, ok)
	}
}

func TestParseRecordRejects(t *testing.T) {
	f := getFixture(t)
	good := signRecord(t, f.keys[0].Sign, f.certs[0], f.ids[0], 1, f.now, testLinks(f, 2)).raw
	linkAt := func(i int) int { return recordHeaderSize + i*linkSize }
	cases := map[string]func(b []byte) []byte{
		"truncated":      func(b []byte) []byte { return b[:len(b)-1] },
		"trailing":       func(b []byte) []byte { return append(b, 0) },
		"magic":          func(b []byte) []byte { b[0] = 'Y'; return b },
		"version":        func(b []byte) []byte { b[4] = 3; return b },
		"version 1 size": func(b []byte) []byte { b[4] = 1; return b },
		"count too high": func(b []byte) []byte { binary.BigEndian.PutUint16(b[recordHeaderSize-2:], 3); return b },
		"count too low":  func(b []byte) []byte { binary.BigEndian.PutUint16(b[recordHeaderSize-2:], 1); return b },
		"unsorted": func(b []byte) []byte {
			tmp := make([]byte, linkSize)
			copy(tmp, b[linkAt(0):linkAt(1)])
			copy(b[linkAt(0):], b[linkAt(1):linkAt(2)])
			copy(b[linkAt(1):], tmp)
			return b
		},
		"duplicate": func(b []byte) []byte { copy(b[linkAt(1):linkAt(1)+32], b[linkAt(0):linkAt(0)+32]); return b },
		"self link": func(b []byte) []byte { copy(b[linkAt(0):linkAt(0)+32], b[5:37]); return b },
		"zero cost": func(b []byte) []byte { binary.BigEndian.PutUint32(b[linkAt(0)+32:], 0); return b },
		"huge cost": func(b []byte) []byte { binary.BigEndian.PutUint32(b[linkAt(0)+32:], MaxLinkCost+1); return b },
		"loss":      func(b []byte) []byte { binary.BigEndian.PutUint16(b[linkAt(0)+40:], 10001); return b },
		"sig len":   func(b []byte) []byte { binary.BigEndian.PutUint16(b[linkAt(2):], 3308); return b },
		"too many links": func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[recordHeaderSize-2:], MaxLinks+1)
			return b
		},
	}
	for name, mut := range cases {
		b := mut(bytes.Clone(good))
		if _, err := ParseRecord(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestMessageRoundTrip(t *testing.T) {
	f := getFixture(t)
	rec := signRecord(t, f.keys[0].Sign, f.certs[0], f.ids[0], 7, f.now, nil)
	for _, withCert := range []bool{false, true} {
		b := rec.message(withCert)
		m, err := parseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if m.typ != MsgRecord || !bytes.Equal(m.record, rec.raw) || (m.cert != nil) != withCert {
			t.Fatalf("record message (cert %v) decoded wrongly", withCert)
		}
		if withCert && !bytes.Equal(m.cert, f.certs[0].Bytes()) {
			t.Fatal("certificate differs")
		}
	}
	es := []entry{{f.ids[1], 5}, {f.ids[2], 9}}
	m, err := parseMessage(encodeAck(es))
	if err != nil || m.typ != MsgAck || len(m.entries) != 2 || m.entries[1] != es[1] {
		t.Fatalf("ack: %+v %v", m, err)
	}
	lo, hi := f.ids[1], f.ids[3]
	m, err = parseMessage(encodeSummary(0, 77, 3, lo, hi, es))
	if err != nil || m.typ != MsgSummary || m.adj != 77 || m.part != 3 || m.lo != lo || m.hi != hi || len(m.entries) != 2 {
		t.Fatalf("summary: %+v %v", m, err)
	}
	m, err = parseMessage(encodeSummaryAck(77, 3))
	if err != nil || m.typ != MsgSummaryAck || m.adj != 77 || m.part != 3 {
		t.Fatalf("summary ack: %+v %v", m, err)
	}

	bad := map[string][]byte{
		"empty":             nil,
		"type":              {9},
		"flags":             append([]byte{MsgRecord, 2}, rec.raw...),
		"short record":      append([]byte{MsgRecord, 0}, rec.raw[:100]...),
		"cert length":       {MsgRecord, 1, 0xff, 0xff},
		"ack empty":         encodeAck(nil),
		"ack trailing":      append(encodeAck(es), 0),
		"summary unsorted":  encodeSummary(0, 1, 0, lo, hi, []entry{es[1], es[0]}),
		"summary range":     encodeSummary(0, 1, 0, f.ids[2], f.ids[3], es),
		"summary empty rng": encodeSummary(0, 1, 0, hi, lo, nil),
		"summary ack long":  append(encodeSummaryAck(1, 1), 0),
	}
	for name, b := range bad {
		if _, err := parseMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestLinkCost(t *testing.T) {
	for _, c := range []struct {
		m    Metrics
		want uint32
	}{
		{Metrics{RTT: 10 * time.Millisecond}, 110},
		{Metrics{RTT: 10 * time.Millisecond, Loss: 0.1}, 136},
		{Metrics{RTT: 50 * time.Millisecond}, 510},
		{Metrics{}, 10},
		{Metrics{RTT: -time.Second, Loss: -1}, 10},
		{Metrics{RTT: time.Hour, Loss: 1}, 240004000}, // RTT capped at 60 s, loss at 95 %
	} {
		if got := LinkCost(c.m); got != c.want {
			t.Errorf("LinkCost(%+v) = %d, want %d", c.m, got, c.want)
		}
	}
	prev := uint32(0)
	for loss := 0.0; loss <= 1; loss += 0.05 {
		c := LinkCost(Metrics{RTT: 5 * time.Millisecond, Loss: loss})
		if c < prev {
			t.Fatalf("cost not monotonic in loss at %v", loss)
		}
		prev = c
	}
}

// fakeRecord encodes a record with a placeholder signature: decoders never check signatures, and
// fuzz targets must not spend their time in ML-DSA.
func fakeRecord(origin byte, seq uint64, links int) *Record {
	rec := &Record{Origin: NodeID{origin}, Seq: seq, Expires: time.UnixMilli(1_900_000_000_000), Signature: make([]byte, identity.SignatureSize)}
	rec.CertFingerprint[0] = 0xfe
	for i := range links {
		rec.Links = append(rec.Links, LinkInfo{Neighbour: NodeID{origin + 1 + byte(i)}, Cost: uint32(10 * (i + 1)), RTT: time.Duration(i) * time.Millisecond, Loss: float64(i) / 100})
	}
	rec.raw = rec.encode()
	return rec
}

// Fuzz inputs stay small: a record's 3309-byte signature is opaque to the decoders (only its length
// matters), so the targets take the bytes before it and append the signature length field and the
// signature's bytes themselves (pad zero bytes, at most 16 KiB) — the fuzzer still reaches every
// length, but it need not drag kilobytes of signature through mutation and minimisation.
const maxPad = 16 << 10

func withPad(b []byte, pad uint16) []byte {
	return append(bytes.Clone(b), make([]byte, min(int(pad), maxPad))...)
}

// addSplit adds an encoding to the corpus as (prefix, pad), pad covering the signature bytes.
func addSplit(f *testing.F, b []byte) {
	f.Add(b[:len(b)-identity.SignatureSize], uint16(identity.SignatureSize))
}

// FuzzDecodeRecord: the record decoder never panics, accepts only canonical encodings (decode then
// encode gives the input back) and the header peek agrees with the full decoder.
func FuzzDecodeRecord(f *testing.F) {
	addSplit(f, fakeRecord(1, 1, 3).raw)
	addSplit(f, fakeRecord(7, 1<<62, 0).raw)
	// A version 1 record: no incarnation between the fingerprint and the link count.
	v2 := fakeRecord(2, 5, 2).raw
	v1 := append(bytes.Clone(v2[:recordHeaderSizeV1-2]), v2[recordHeaderSize-2:]...)
	v1[4] = recordVersion1
	addSplit(f, v1)
	// A version 3 record: an area after the flags.
	v3 := fakeRecord(3, 9, 1)
	v3.Area, v3.version = 0x01020304, 0
	v3.raw = v3.encode()
	addSplit(f, v3.raw)
	// Level-2 and gateway flags (version 3 only).
	for _, l2 := range []bool{true, false} {
		r := fakeRecord(4, 9, 2)
		r.Area, r.Level2, r.Gateway, r.version = 7, l2, !l2, 0
		r.raw = r.encode()
		addSplit(f, r.raw)
	}
	f.Fuzz(func(t *testing.T, prefix []byte, pad uint16) {
		b := withPad(prefix, pad)
		rec, err := ParseRecord(b)
		h, peeked := peekRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(rec.encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if err := rec.checkFields(); err != nil {
			t.Fatal(err)
		}
		if !peeked || h.origin != rec.Origin || h.seq != rec.Seq || h.expires != rec.Expires.UnixMilli() || h.certFP != rec.CertFingerprint || h.area != rec.Area || h.level2 != rec.Level2 {
			t.Fatal("peek disagrees with the decoder")
		}
	})
}

// FuzzDecodeMessage: the message decoder never panics, bounds everything, and what it accepts
// re-encodes to the same bytes. (Inputs are padded as for FuzzDecodeRecord.)
func FuzzDecodeMessage(f *testing.F) {
	rec := fakeRecord(1, 3, 2)
	addSplit(f, appendRecordMessage(nil, nil, rec.raw))
	addSplit(f, appendRecordMessage(nil, []byte("not a certificate"), rec.raw))
	f.Add(encodeAck([]entry{{NodeID{2}, 5}}), uint16(0))
	f.Add(encodeSummary(0, 1, 0, NodeID{1}, NodeID{3}, []entry{{NodeID{2}, 5}}), uint16(0))
	f.Add(encodeSummaryAck(1, 0), uint16(0))
	f.Add(encodeSummary(9, 1, 0, NodeID{1}, NodeID{3}, []entry{{NodeID{2}, 5}}), uint16(0))
	f.Add(encodeCertRequest(NodeID{2}, meshca.Fingerprint{7}), uint16(0))
	f.Add(encodeEntries(MsgOffer, []entry{{NodeID{2}, 5}, {NodeID{3}, 6}}), uint16(0))
	f.Add(encodeEntries(MsgRequest, []entry{{NodeID{2}, 5}}), uint16(0))
	f.Add(encodeEntries(MsgRequestCert, []entry{{NodeID{2}, 5}}), uint16(0))
	f.Add(encodeEntries(MsgBusy, []entry{{NodeID{2}, 5}, {NodeID{4}, 1}}), uint16(0))
	f.Fuzz(func(t *testing.T, prefix []byte, pad uint16) {
		b := withPad(prefix, pad)
		m, err := parseMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		var re []byte
		switch m.typ {
		case MsgRecord:
			re = appendRecordMessage(nil, m.cert, m.record)
			if len(m.record) > MaxRecordSize {
				t.Fatal("unbounded record")
			}
		case MsgAck, MsgOffer, MsgRequest, MsgRequestCert, MsgBusy:
			re = encodeEntries(m.typ, m.entries)
		case MsgSummary:
			if m.area != 0 {
				t.Fatal("plain summary with an area")
			}
			re = encodeSummary(0, m.adj, m.part, m.lo, m.hi, m.entries)
		case MsgAreaSummary:
			if m.area == 0 {
				t.Fatal("area summary for area 0")
			}
			re = encodeSummary(m.area, m.adj, m.part, m.lo, m.hi, m.entries)
		case MsgSummaryAck:
			re = encodeSummaryAck(m.adj, m.part)
		case MsgCertRequest:
			re = encodeCertRequest(m.lo, m.certFP)
		default:
			t.Fatalf("accepted type %d", m.typ)
		}
		if !bytes.Equal(re, b) {
			t.Fatal("re-encoding differs")
		}
		if len(m.entries) > MaxEntries {
			t.Fatal("too many entries")
		}
	})
}

// parseMessage decodes a routing message into fresh memory.
func parseMessage(b []byte) (message, error) { return parseMessageInto(b, nil) }
