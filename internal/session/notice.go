package session

import "fmt"

// TypeUnknownSession is the message type byte of an unknown-session notice: the answer of a node
// that received a data packet naming a receiver index it does not know, typically because it
// restarted and lost its sessions (docs/transport.md, "Unknown-session notice").
const TypeUnknownSession = 8

// NoticeSize is the size of an unknown-session notice: a data header with its own type.
const NoticeSize = HeaderSize

var errNotice = fmt.Errorf("%w: not an unknown-session notice", ErrMalformed)

// AppendUnknownSession appends the notice that a packet with header h named an unknown receiver.
func AppendUnknownSession(b []byte, h DataHeader) []byte {
	var n [NoticeSize]byte
	h.putType(n[:], TypeUnknownSession)
	return append(b, n[:]...)
}

// ParseUnknownSession decodes an unknown-session notice: exactly NoticeSize bytes, its type,
// reserved bytes zero, a counter below the limit.
func ParseUnknownSession(b []byte) (DataHeader, error) {
	if len(b) != NoticeSize || b[0] != TypeUnknownSession {
		return DataHeader{}, errNotice
	}
	return parseHeader(b)
}

// SentUnder reports whether the current keypair sealed a packet with header h: h names the peer's
// index for that keypair and a counter already used. A notice carries no authenticator; this is
// the cheap check that only someone who saw such a packet can pass, so a stranger's notice cannot
// make the owner act (docs/transport.md). Notices about an older keypair are moot and fail it.
func (s *Session) SentUnder(h DataHeader) bool {
	kp := s.current.Load()
	return kp != nil && kp.remoteIndex == h.Receiver && h.Counter < kp.sendCounter.Load()
}
