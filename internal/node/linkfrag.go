package node

import (
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/linkfrag"
)

// Large link frames (link-state messages with certificates, level-2 messages, revocation lists,
// policies, quorum certificates) are cut into piece frames no larger than our full-sized data
// packets, so that no link message needs the underlay's IP fragmentation (docs/transport.md, "Piece
// frames").

// linkPieces is the node's side of piece frames: the reassembly of what neighbours cut, and counters.
type linkPieces struct {
	mu    sync.Mutex // guards reasm
	reasm linkfrag.Reassembler[*tunnel]
	// Frames we sent in pieces, pieces sent, frames put back together, pieces dropped (malformed,
	// inconsistent, over the bounds).
	framesCut, piecesSent, framesReassembled, piecesDropped atomic.Uint64
}

// tunnelPieces is a link's state for piece frames.
type tunnelPieces struct {
	// The neighbour sent us a valid piece frame since the link came up: it reassembles them, so our
	// large frames go to it in pieces only (until then, whole as well, for a build without them).
	piecesOK atomic.Bool
	nextID   atomic.Uint32 // message id of our next cut frame
}

// LinkDatagram is the largest link datagram the node sends: the one its full-sized data packets
// need. Larger frames go in piece frames.
func (n *Node) LinkDatagram() int { return n.opts.MTU + e2eOverhead }

// sendFrame seals frame in the link session of t and sends it to the neighbour, in pieces if it is
// larger than LinkDatagram. It reports whether it was sent (every piece, and the whole frame if the
// neighbour may not reassemble).
func (n *Node) sendFrame(now time.Time, t *tunnel, frame []byte) bool {
	if n.opts.NoPieceFrames || linkfrag.Fits(frame, n.LinkDatagram()) {
		return n.sendWholeFrame(now, t, frame)
	}
	pieces, err := linkfrag.Cut(frame, t.pieces.nextID.Add(1), linkfrag.PieceLen(n.LinkDatagram()))
	if err != nil {
		// Not cuttable (larger than any link packet): sealing it whole fails the same way.
		return n.sendWholeFrame(now, t, frame)
	}
	sent := true
	if !t.pieces.piecesOK.Load() {
		sent = n.sendWholeFrame(now, t, frame)
	}
	for _, p := range pieces {
		if !n.sendWholeFrame(now, t, p) {
			sent = false
			break // the rest would make nothing whole at the neighbour
		}
		n.pieces.piecesSent.Add(1)
	}
	n.pieces.framesCut.Add(1)
	return sent
}

// handlePiece adds a piece frame from the link t to its message, and handles the message when it is
// whole.
func (n *Node) handlePiece(now time.Time, t *tunnel, frame []byte, rx *rxBatch) {
	if n.opts.NoPieceFrames {
		n.stats.dropMalformed.Add(1) // what a build without them does with an unknown frame type
		return
	}
	n.pieces.mu.Lock()
	whole, err := n.pieces.reasm.Add(now, t, frame)
	n.pieces.mu.Unlock()
	if err != nil {
		n.pieces.piecesDropped.Add(1)
		return
	}
	t.pieces.piecesOK.Store(true)
	if whole != nil {
		n.pieces.framesReassembled.Add(1)
		n.handleFrame(now, t, whole, rx)
	}
}

// expirePieces drops the messages that stayed incomplete for linkfrag.Timeout (timer; Add also
// expires them, so this only frees the memory of a link that sends nothing more).
func (n *Node) expirePieces(now time.Time) {
	n.pieces.mu.Lock()
	n.pieces.reasm.Expire(now)
	n.pieces.mu.Unlock()
}

// forgetPieces drops what the link t left under reassembly and what we learnt about its neighbour:
// it may come back as a build without piece frames.
func (n *Node) forgetPieces(t *tunnel) {
	t.pieces.piecesOK.Store(false)
	n.pieces.mu.Lock()
	n.pieces.reasm.Forget(t)
	n.pieces.mu.Unlock()
}

// pieceStats fills the piece-frame counters of s.
func (n *Node) pieceStats(s *Stats) {
	n.pieces.mu.Lock()
	r := &n.pieces.reasm
	s.ReassembliesAbandoned = r.Expired + r.Evicted
	n.pieces.mu.Unlock()
	s.FramesCut, s.PiecesSent = n.pieces.framesCut.Load(), n.pieces.piecesSent.Load()
	s.FramesReassembled, s.PiecesDropped = n.pieces.framesReassembled.Load(), n.pieces.piecesDropped.Load()
}
