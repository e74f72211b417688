// Package linkfrag cuts a link frame that is larger than one datagram of the path into piece frames
// (overlay frame type 12), each of which the caller seals as an ordinary link data packet, and
// reassembles them at the neighbour (docs/transport.md, "Piece frames"). The underlay's IP
// fragmentation is never needed: many paths drop IP fragments.
//
// It is a pure core: fed frames and the time by its caller, it opens no sockets, starts no
// goroutines and reads no clock. It must never allocate for a piece it has not fully checked, never
// hold more than its bounds (MaxMessage bytes per message, PerLink messages per link, Total
// messages), and never deliver a frame that is not exactly the sender's bytes in order.
package linkfrag

import (
	"encoding/binary"
	"errors"

	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/session"
)

// Wire format and bounds (docs/transport.md, "Piece frames").
const (
	// HeaderSize is the size of a piece frame's header: type, index, count, reserved, message id
	// (4), message length (2), piece length (2).
	HeaderSize = 12
	// MaxMessage is the largest frame cut into pieces: the largest one link packet could carry.
	MaxMessage = session.MaxPlaintextSize
	// MaxPieces is the most pieces of one message.
	MaxPieces = 64
	// MinPieceLen is the smallest piece length (of every piece but the last).
	MinPieceLen = 64
)

// Errors. Fixed values, so refusing a piece never allocates.
var (
	ErrMalformed = errors.New("linkfrag: malformed piece frame")
	// ErrTooLarge: Cut was asked for a frame it cannot cut (longer than MaxMessage, or more than
	// MaxPieces pieces of the given length).
	ErrTooLarge = errors.New("linkfrag: frame too large to cut")
)

// Piece is the decoded header of a piece frame.
type Piece struct {
	ID       uint32 // the message's id on its link
	Index    int    // this piece's position, 0 … Count−1
	Count    int    // pieces in the message
	Total    int    // the message's length in bytes
	PieceLen int    // the length of every piece but the last
}

// Offset is where the piece goes in its message.
func (p Piece) Offset() int { return p.Index * p.PieceLen }

// size is the exact length of the piece's bytes.
func (p Piece) size() int {
	if p.Index == p.Count-1 {
		return p.Total - (p.Count-1)*p.PieceLen
	}
	return p.PieceLen
}

// ParsePiece checks a piece frame and returns its header and its bytes (a sub-slice of frame). Every
// field is checked against the others: the pieces of a valid message tile it exactly.
func ParsePiece(frame []byte) (Piece, []byte, error) {
	if len(frame) < HeaderSize+1 || frame[0] != byte(overlay.TypePiece) || frame[3] != 0 {
		return Piece{}, nil, ErrMalformed
	}
	p := Piece{
		Index:    int(frame[1]),
		Count:    int(frame[2]),
		ID:       binary.LittleEndian.Uint32(frame[4:8]),
		Total:    int(binary.LittleEndian.Uint16(frame[8:10])),
		PieceLen: int(binary.LittleEndian.Uint16(frame[10:12])),
	}
	if p.Count < 2 || p.Count > MaxPieces || p.Index >= p.Count || p.Total > MaxMessage ||
		p.PieceLen < MinPieceLen || p.Count != count(p.Total, p.PieceLen) {
		return Piece{}, nil, ErrMalformed
	}
	data := frame[HeaderSize:]
	if len(data) != p.size() {
		return Piece{}, nil, ErrMalformed
	}
	return p, data, nil
}

// count is how many pieces of pieceLen bytes a message of total bytes is cut into.
func count(total, pieceLen int) int { return (total + pieceLen - 1) / pieceLen }

// PieceLen returns the piece length that keeps each piece's link data packet within datagram bytes.
func PieceLen(datagram int) int { return datagram - session.MinPacketSize - HeaderSize }

// Fits reports whether frame goes whole in one link data packet of at most datagram bytes.
func Fits(frame []byte, datagram int) bool { return len(frame)+session.MinPacketSize <= datagram }

// Cut returns the piece frames of frame, cut into pieces of pieceLen bytes under message id, each
// ready to be sealed as a link data packet. The pieces share one allocation.
func Cut(frame []byte, id uint32, pieceLen int) ([][]byte, error) {
	if pieceLen < MinPieceLen || len(frame) > MaxMessage {
		return nil, ErrTooLarge
	}
	n := count(len(frame), pieceLen)
	if n < 2 || n > MaxPieces || frame[0] == byte(overlay.TypePiece) {
		return nil, ErrTooLarge
	}
	buf := make([]byte, 0, n*HeaderSize+len(frame))
	pieces := make([][]byte, n)
	for i := range n {
		start := len(buf)
		buf = append(buf, byte(overlay.TypePiece), byte(i), byte(n), 0)
		buf = binary.LittleEndian.AppendUint32(buf, id)
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(frame)))
		buf = binary.LittleEndian.AppendUint16(buf, uint16(pieceLen))
		buf = append(buf, frame[i*pieceLen:min((i+1)*pieceLen, len(frame))]...)
		pieces[i] = buf[start:len(buf):len(buf)]
	}
	return pieces, nil
}
