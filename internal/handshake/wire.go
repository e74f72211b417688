package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Decoding errors. The packet-level ones are returned unwrapped so that rejecting garbage allocates
// nothing; all of them match ErrMalformed or ErrUnsupported with errors.Is.
var (
	errShort        = fmt.Errorf("%w: packet too short", ErrMalformed)
	errLong         = fmt.Errorf("%w: packet too long", ErrMalformed)
	errType         = fmt.Errorf("%w: unexpected message type", ErrMalformed)
	errReserved     = fmt.Errorf("%w: reserved byte is not zero", ErrMalformed)
	errFragCount    = fmt.Errorf("%w: fragment count out of range", ErrMalformed)
	errFragNumber   = fmt.Errorf("%w: fragment number not below count", ErrMalformed)
	errCookieLength = fmt.Errorf("%w: cookie reply has the wrong length", ErrMalformed)
	errVersion      = fmt.Errorf("%w: version", ErrUnsupported)
	errSuite        = fmt.Errorf("%w: suite", ErrUnsupported)
)

// header is the common 8-byte header of every handshake packet.
type header struct {
	typ   byte
	index uint32 // the initiator's index idx_I
}

// parseHeader checks the common header: version, suite and reserved byte.
func parseHeader(pkt []byte) (header, error) {
	if len(pkt) < headerSize {
		return header{}, errShort
	}
	if len(pkt) > MaxPacketSize {
		return header{}, errLong
	}
	if pkt[1] != Version {
		return header{}, errVersion
	}
	if pkt[2] != SuiteXWingAES256GCM {
		return header{}, errSuite
	}
	if pkt[3] != 0 {
		return header{}, errReserved
	}
	return header{typ: pkt[0], index: binary.LittleEndian.Uint32(pkt[4:8])}, nil
}

func appendHeader(b []byte, typ byte, index uint32) []byte {
	b = append(b, typ, Version, SuiteXWingAES256GCM, 0)
	return binary.LittleEndian.AppendUint32(b, index)
}

// fragment is a decoded type-1 or type-2 packet. Its slices alias the packet.
type fragment struct {
	header
	num, count int
	chunk      []byte
	// Initiation fragments only:
	authed []byte // the bytes mac1 covers: everything before mac1
	mac1   []byte
	mac2   []byte
	withM1 []byte // the bytes mac2 covers: everything before mac2
}

// parseFragment decodes an initiation or response fragment without any cryptography.
func parseFragment(pkt []byte) (fragment, error) {
	h, err := parseHeader(pkt)
	if err != nil {
		return fragment{}, err
	}
	var f fragment
	f.header = h
	switch h.typ {
	case TypeInitiation:
		if len(pkt) < minInitiationPacket {
			return fragment{}, errShort
		}
		end := len(pkt) - initTrailerSize
		f.chunk = pkt[fragHeaderSize:end]
		f.authed = pkt[:end]
		f.mac1 = pkt[end : end+macSize]
		f.withM1 = pkt[:end+macSize]
		f.mac2 = pkt[end+macSize:]
	case TypeResponse:
		if len(pkt) < minResponsePacket {
			return fragment{}, errShort
		}
		f.chunk = pkt[fragHeaderSize:]
	default:
		return fragment{}, errType
	}
	f.num, f.count = int(pkt[8]), int(pkt[9])
	if f.count < 1 || f.count > MaxFragments {
		return fragment{}, errFragCount
	}
	if f.num >= f.count {
		return fragment{}, errFragNumber
	}
	return f, nil
}

// splitMessage cuts a logical message into fragment packets of at most chunkMax message bytes each.
// Initiation packets get a zeroed trailer for mac1 and mac2, filled in by the caller.
func splitMessage(typ byte, index uint32, msg []byte, chunkMax int) ([][]byte, error) {
	if chunkMax < 1 || len(msg) == 0 {
		return nil, errors.New("split message: nothing to send")
	}
	count := (len(msg) + chunkMax - 1) / chunkMax
	if count > MaxFragments {
		return nil, fmt.Errorf("split message: %d bytes need %d fragments of %d, at most %d allowed",
			len(msg), count, chunkMax, MaxFragments)
	}
	trailer := 0
	if typ == TypeInitiation {
		trailer = initTrailerSize
	}
	out := make([][]byte, 0, count)
	for i := range count {
		chunk := msg[i*chunkMax : min((i+1)*chunkMax, len(msg))]
		p := make([]byte, 0, fragHeaderSize+len(chunk)+trailer)
		p = appendHeader(p, typ, index)
		p = append(p, byte(i), byte(count))
		p = append(p, chunk...)
		p = append(p, make([]byte, trailer)...)
		out = append(out, p)
	}
	return out, nil
}

// cookieReply is a decoded type-3 packet; its slices alias the packet.
type cookieReply struct {
	header
	nonce  []byte
	sealed []byte
}

func parseCookieReply(pkt []byte) (cookieReply, error) {
	h, err := parseHeader(pkt)
	if err != nil {
		return cookieReply{}, err
	}
	if h.typ != TypeCookieReply {
		return cookieReply{}, errType
	}
	if len(pkt) != CookieReplySize {
		return cookieReply{}, errCookieLength
	}
	return cookieReply{
		header: h,
		nonce:  pkt[headerSize : headerSize+cookieNonceSize],
		sealed: pkt[headerSize+cookieNonceSize:],
	}, nil
}

// initiationBody is a decoded logical initiation: ct1 ‖ epk ‖ c_s.
type initiationBody struct {
	ct1, epk, sealed []byte
}

func parseInitiation(msg []byte) (initiationBody, error) {
	if len(msg) < MinInitiationSize || len(msg) > MaxInitiationSize {
		return initiationBody{}, fmt.Errorf("%w: initiation of %d bytes, want %d to %d",
			ErrMalformed, len(msg), MinInitiationSize, MaxInitiationSize)
	}
	return initiationBody{
		ct1:    msg[:kemCTSize],
		epk:    msg[kemCTSize : kemCTSize+kemPKSize],
		sealed: msg[kemCTSize+kemPKSize:],
	}, nil
}

// responseBody is a decoded logical response: idx_R ‖ ct2 ‖ ct3 ‖ tag.
type responseBody struct {
	indexR        uint32
	ct2, ct3, tag []byte
}

func parseResponse(msg []byte) (responseBody, error) {
	if len(msg) != ResponseSize {
		return responseBody{}, fmt.Errorf("%w: response of %d bytes, want %d", ErrMalformed, len(msg), ResponseSize)
	}
	r := responseBody{
		indexR: binary.LittleEndian.Uint32(msg[:4]),
		ct2:    msg[4 : 4+kemCTSize],
		ct3:    msg[4+kemCTSize : 4+2*kemCTSize],
		tag:    msg[4+2*kemCTSize:],
	}
	if r.indexR == 0 {
		return responseBody{}, fmt.Errorf("%w: responder index is zero", ErrMalformed)
	}
	return r, nil
}

// initiatorPayload is the decrypted content of c_s.
type initiatorPayload struct {
	kind byte
	data []byte // certificate encoding or 32-byte fingerprint; aliases the plaintext
}

// encodePayload returns kind ‖ len ‖ data padded with zeros to the next multiple of payloadBlock.
func encodePayload(kind byte, data []byte) []byte {
	n := payloadHeader + len(data)
	padded := (n + payloadBlock - 1) / payloadBlock * payloadBlock
	b := make([]byte, padded)
	b[0] = kind
	binary.LittleEndian.PutUint16(b[1:3], uint16(len(data)))
	copy(b[payloadHeader:], data)
	return b
}

func parsePayload(p []byte) (initiatorPayload, error) {
	if len(p) == 0 || len(p)%payloadBlock != 0 || len(p) > maxPayloadSize {
		return initiatorPayload{}, fmt.Errorf("%w: payload of %d bytes is not a multiple of %d up to %d",
			ErrMalformed, len(p), payloadBlock, maxPayloadSize)
	}
	kind := p[0]
	n := int(binary.LittleEndian.Uint16(p[1:3]))
	if n > len(p)-payloadHeader {
		return initiatorPayload{}, fmt.Errorf("%w: payload length %d exceeds the padded payload", ErrMalformed, n)
	}
	switch kind {
	case payloadKindCertificate:
		if n == 0 || n > maxCertificateSize {
			return initiatorPayload{}, fmt.Errorf("%w: certificate of %d bytes", ErrMalformed, n)
		}
	case payloadKindFingerprint:
		if n != 32 {
			return initiatorPayload{}, fmt.Errorf("%w: fingerprint of %d bytes", ErrMalformed, n)
		}
	default:
		return initiatorPayload{}, fmt.Errorf("%w: unknown payload kind %d", ErrMalformed, kind)
	}
	for _, c := range p[payloadHeader+n:] {
		if c != 0 {
			return initiatorPayload{}, fmt.Errorf("%w: non-zero padding", ErrMalformed)
		}
	}
	return initiatorPayload{kind: kind, data: p[payloadHeader : payloadHeader+n]}, nil
}

// hdr1 and hdr2 are the header bytes hashed into the transcript (docs/protocol.md §4.1).
func hdr1(indexI uint32) []byte {
	return appendHeader(make([]byte, 0, headerSize), TypeInitiation, indexI)
}

func hdr2(indexI, indexR uint32) []byte {
	b := appendHeader(make([]byte, 0, headerSize+4), TypeResponse, indexI)
	return binary.LittleEndian.AppendUint32(b, indexR)
}
