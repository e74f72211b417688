package handshake

import (
	"time"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// Protocol identifiers. Version and suite are in every packet header and, through ProtocolName, in
// the first transcript hash.
const (
	Version = 1
	// SuiteXWingAES256GCM is pqIK with X-Wing, HKDF-SHA256 and AES-256-GCM: the only suite.
	SuiteXWingAES256GCM = 1
	// ProtocolName initialises the transcript hash of SuiteXWingAES256GCM.
	ProtocolName = "x0tta6bl4-pqIK-XWing-HKDFSHA256-AES256GCM-v1"
)

// Message types: the first byte of every packet, shared with the transport.
const (
	TypeInitiation  = 1
	TypeResponse    = 2
	TypeCookieReply = 3
	TypeTransport   = 4 // owned by package session; Handle refuses it
)

// Prologues bind the purpose of a handshake into its transcript.
const (
	PrologueLink = "x0tta6bl4 link" // a link to a neighbour
	PrologueE2E  = "x0tta6bl4 e2e"  // an end-to-end session routed through relays
)

// Wire sizes, see docs/protocol.md §4.
const (
	headerSize      = 8  // type, version, suite, reserved, index
	fragHeaderSize  = 10 // header + fragment number + fragment count
	macSize         = 16
	initTrailerSize = 2 * macSize
	tagSize         = 16
	payloadBlock    = 1024 // initiator payload padding granularity
	payloadHeader   = 3    // kind + length

	kemPKSize = identity.KEMPublicKeySize
	kemCTSize = identity.KEMCiphertextSize

	// MaxFragments bounds the fragments of one message.
	MaxFragments = 48
	// MinInitiationSize is the smallest logical initiation: ct1, epk, one padded block and a tag.
	MinInitiationSize = kemCTSize + kemPKSize + payloadBlock + tagSize
	// MaxInitiationSize bounds a logical initiation (the largest certificate fits).
	MaxInitiationSize = 20480
	// ResponseSize is the exact size of a logical response: idx_R, ct2, ct3, tag.
	ResponseSize = 4 + 2*kemCTSize + tagSize
	// CookieReplySize is the exact size of a cookie reply packet.
	CookieReplySize = headerSize + cookieNonceSize + cookieSize + tagSize

	minInitiationPacket = fragHeaderSize + 1 + initTrailerSize
	minResponsePacket   = fragHeaderSize + 1
	maxPayloadSize      = MaxInitiationSize - kemCTSize - kemPKSize - tagSize

	// DefaultPacketSize fits a 1280-byte IPv6 path MTU after the IPv6 and UDP headers.
	DefaultPacketSize = 1232
	// MinPacketSize and MaxPacketSize bound Config.MaxPacketSize and the packets Handle accepts.
	MinPacketSize = 576
	MaxPacketSize = 65535

	payloadKindCertificate = 1
	payloadKindFingerprint = 2
)

// Timers and cache sizes, see docs/protocol.md §5, §7, §8 and §12.
const (
	RetryInterval        = 5 * time.Second
	RetryJitter          = 333 * time.Millisecond
	GiveUpAfter          = 90 * time.Second
	CookieLifetime       = 110 * time.Second
	cookieSecretLifetime = 120 * time.Second
	ReassemblyTimeout    = 5 * time.Second
	ReplayCacheLifetime  = 180 * time.Second
	underLoadAfter       = time.Second

	replayCacheSize        = 8192
	answeredCacheSize      = 1024
	rateTableSize          = 4096
	certCacheSize          = 1024
	reassembliesPerSource  = 2
	defaultMaxReassemblies = 256
	defaultMaxPending      = 1024
	defaultLoadThreshold   = 128
	defaultRate            = 10
	defaultBurst           = 20
)

// Retransmission of the current attempt and the responder's answered cache, see docs/protocol.md §12.
const (
	// RetransmitAfter is the delay before the first resend of an attempt's packets; each further
	// resend waits twice as long as the one before, plus a jitter of up to an eighth of the delay.
	RetransmitAfter = 500 * time.Millisecond
	// RetransmitCount is the number of resends per attempt; the last falls 3.5 s after the attempt.
	RetransmitCount = 3
	// RetransmitAttempts is how many attempts of a handshake retransmit; later ones are sent once.
	RetransmitAttempts = 3
	// AnsweredLifetime is how long a responder repeats its answer to a duplicate initiation: no
	// honest initiator's attempt lives longer.
	AnsweredLifetime = RetryInterval + RetryJitter
)

// Labels of the key schedule and of the DoS MACs (docs/protocol.md §3, §7).
const (
	labelCK          = "x0tta6bl4 hs ck"
	labelK           = "x0tta6bl4 hs k"
	labelI2R         = "x0tta6bl4 hs i2r"
	labelR2I         = "x0tta6bl4 hs r2i"
	labelMAC1        = "x0tta6bl4 mac1 v1\x00"
	labelCookieKey   = "x0tta6bl4 cookie key v1\x00"
	labelCookieValue = "x0tta6bl4 cookie v1\x00"
	labelCookieReply = "x0tta6bl4 cookie reply\x00"
)

// maxCertificateSize is the largest certificate an initiator payload may carry.
const maxCertificateSize = meshca.MaxCertificateSize
