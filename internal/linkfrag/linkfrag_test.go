package linkfrag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"x0tta6bl4/internal/overlay"
)

// testFrame returns a frame of n bytes that starts with the link-state frame type.
func testFrame(n int, seed uint64) []byte {
	b := make([]byte, n)
	var key [32]byte
	key[0] = byte(seed)
	rand.NewChaCha8(key).Read(b)
	b[0] = byte(overlay.TypeLinkState)
	return b
}

const pieceLen = 1336 // PieceLen(1380): the default MTU's datagram

var t0 = time.Unix(1_800_000_000, 0)

func cut(t *testing.T, frame []byte, id uint32) [][]byte {
	t.Helper()
	pieces, err := Cut(frame, id, pieceLen)
	if err != nil {
		t.Fatal(err)
	}
	return pieces
}

// feed adds pieces in order and returns what completed.
func feed(t *testing.T, r *Reassembler[int], now time.Time, link int, pieces [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range pieces {
		whole, err := r.Add(now, link, p)
		if err != nil {
			t.Fatal(err)
		}
		if whole != nil {
			out = append(out, whole)
		}
	}
	return out
}

func TestPieceLenMatchesDatagram(t *testing.T) {
	if got := PieceLen(1380); got != pieceLen {
		t.Fatalf("PieceLen(1380) = %d, want %d", got, pieceLen)
	}
	frame := testFrame(10_000, 1)
	for _, p := range cut(t, frame, 1) {
		if !Fits(p, 1380) {
			t.Fatalf("a piece frame of %d bytes does not fit a 1380-byte datagram", len(p))
		}
	}
	if Fits(frame, 1380) || !Fits(frame[:1348], 1380) || Fits(frame[:1349], 1380) {
		t.Fatal("Fits disagrees with the 32-byte data packet overhead")
	}
}

func TestRoundTripInAnyOrder(t *testing.T) {
	for _, n := range []int{pieceLen + 1, 2 * pieceLen, 10_000, MaxMessage} {
		frame := testFrame(n, uint64(n))
		pieces := cut(t, frame, 7)
		rand.New(rand.NewPCG(uint64(n), 2)).Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		var r Reassembler[int]
		out := feed(t, &r, t0, 1, pieces)
		if len(out) != 1 || !bytes.Equal(out[0], frame) {
			t.Fatalf("%d bytes: got %d messages back, want the frame once", n, len(out))
		}
		if m, b := r.Pending(); m != 0 || b != 0 {
			t.Fatalf("%d messages (%d bytes) left after completion", m, b)
		}
	}
}

func TestDuplicatePieceIgnored(t *testing.T) {
	frame := testFrame(5000, 3)
	pieces := cut(t, frame, 1)
	var r Reassembler[int]
	dup := append([][]byte{pieces[0], pieces[0], pieces[1], pieces[1]}, pieces[2:]...)
	out := feed(t, &r, t0, 1, dup)
	if len(out) != 1 || !bytes.Equal(out[0], frame) {
		t.Fatalf("got %d messages, want the frame once", len(out))
	}
}

func TestLostPieceExpires(t *testing.T) {
	frame := testFrame(5000, 4)
	pieces := cut(t, frame, 1)
	var r Reassembler[int]
	if out := feed(t, &r, t0, 1, pieces[1:]); len(out) != 0 {
		t.Fatal("a message with a piece missing was delivered")
	}
	if m, b := r.Pending(); m != 1 || b != len(frame) {
		t.Fatalf("pending %d messages, %d bytes; want 1, %d", m, b, len(frame))
	}
	r.Expire(t0.Add(Timeout - time.Nanosecond))
	if m, _ := r.Pending(); m != 1 {
		t.Fatal("expired before the timeout")
	}
	// The missing piece after the timeout starts a new message: the old pieces are gone.
	if whole, err := r.Add(t0.Add(Timeout), 1, pieces[0]); whole != nil || err != nil {
		t.Fatalf("late piece: %v, %v", whole, err)
	}
	if r.Expired != 1 {
		t.Fatalf("Expired = %d, want 1", r.Expired)
	}
	// The routing layer resends the whole message, under a new id: it goes through.
	if out := feed(t, &r, t0.Add(Timeout+time.Second), 1, cut(t, frame, 2)); len(out) != 1 || !bytes.Equal(out[0], frame) {
		t.Fatal("the resent message was not delivered")
	}
}

func TestSameIDOnTwoLinksKeptApart(t *testing.T) {
	a, b := testFrame(4000, 5), testFrame(4000, 6)
	pa, pb := cut(t, a, 9), cut(t, b, 9)
	var r Reassembler[int]
	var out [][]byte
	for i := range pa {
		out = append(out, feed(t, &r, t0, 1, pa[i:i+1])...)
		out = append(out, feed(t, &r, t0, 2, pb[i:i+1])...)
	}
	if len(out) != 2 || !bytes.Equal(out[0], a) || !bytes.Equal(out[1], b) {
		t.Fatal("messages with one id on two links were mixed")
	}
}

func TestInconsistentPieceRefused(t *testing.T) {
	var r Reassembler[int]
	first := cut(t, testFrame(5000, 7), 1)
	other := cut(t, testFrame(6000, 8), 1) // same id, another length
	if _, err := r.Add(t0, 1, first[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(t0, 1, other[1]); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("err = %v, want ErrInconsistent", err)
	}
}

func TestPerLinkBoundEvictsOldest(t *testing.T) {
	var r Reassembler[int]
	frames := make([][]byte, PerLink+1)
	for i := range frames {
		frames[i] = testFrame(3000, uint64(10+i))
		// Every message but its last piece, one millisecond apart.
		p := cut(t, frames[i], uint32(i))
		feed(t, &r, t0.Add(time.Duration(i)*time.Millisecond), 1, p[:len(p)-1])
	}
	if m, _ := r.Pending(); m != PerLink || r.Evicted != 1 {
		t.Fatalf("pending %d, evicted %d; want %d, 1", m, r.Evicted, PerLink)
	}
	// The oldest (id 0) went: its last piece starts a new, incomplete message; the newest completes.
	last := func(i int) []byte { p := cut(t, frames[i], uint32(i)); return p[len(p)-1] }
	if whole, _ := r.Add(t0, 1, last(PerLink)); !bytes.Equal(whole, frames[PerLink]) {
		t.Fatal("the newest message did not complete")
	}
	if whole, _ := r.Add(t0, 1, last(0)); whole != nil {
		t.Fatal("the evicted message completed")
	}
}

func TestTotalBound(t *testing.T) {
	var r Reassembler[int]
	frame := testFrame(MaxMessage, 20)
	p := cut(t, frame, 1)
	for link := range Total {
		if _, err := r.Add(t0, link, p[0]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Add(t0, Total, p[0]); !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	if m, b := r.Pending(); m != Total || b != Total*MaxMessage {
		t.Fatalf("pending %d messages, %d bytes; want %d, %d", m, b, Total, Total*MaxMessage)
	}
	r.Forget(3)
	if _, err := r.Add(t0, Total, p[0]); err != nil {
		t.Fatalf("after a link was forgotten: %v", err)
	}
}

func TestNestedRefused(t *testing.T) {
	frame := testFrame(3000, 21)
	pieces := cut(t, frame, 1)
	if _, err := Cut(pieces[0], 2, MinPieceLen); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Cut of a piece frame: %v, want ErrTooLarge", err)
	}
	// Built by hand: a message whose first byte is the piece type.
	frame[0] = byte(overlay.TypePiece)
	pieces = cut2(frame, 1, pieceLen)
	var r Reassembler[int]
	var err error
	for _, p := range pieces {
		_, err = r.Add(t0, 1, p)
	}
	if !errors.Is(err, ErrNested) {
		t.Fatalf("err = %v, want ErrNested", err)
	}
}

// cut2 is Cut without its checks, to build what an honest sender never sends.
func cut2(frame []byte, id uint32, pieceLen int) [][]byte {
	var out [][]byte
	n := count(len(frame), pieceLen)
	for i := range n {
		b := []byte{byte(overlay.TypePiece), byte(i), byte(n), 0}
		b = binary.LittleEndian.AppendUint32(b, id)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(frame)))
		b = binary.LittleEndian.AppendUint16(b, uint16(pieceLen))
		out = append(out, append(b, frame[i*pieceLen:min((i+1)*pieceLen, len(frame))]...))
	}
	return out
}

func TestParsePieceRefuses(t *testing.T) {
	good := cut(t, testFrame(3000, 22), 5)
	if _, _, err := ParsePiece(good[1]); err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good[1]...)) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"header only":    good[1][:HeaderSize],
		"wrong type":     mutate(func(b []byte) []byte { b[0] = byte(overlay.TypeLinkState); return b }),
		"reserved":       mutate(func(b []byte) []byte { b[3] = 1; return b }),
		"index ≥ count":  mutate(func(b []byte) []byte { b[1] = 3; return b }),
		"count 1":        mutate(func(b []byte) []byte { b[2] = 1; return b }),
		"count 65":       mutate(func(b []byte) []byte { b[2] = 65; return b }),
		"count mismatch": mutate(func(b []byte) []byte { b[2] = 4; return b }),
		"short piece":    good[1][:len(good[1])-1],
		"long piece":     append(append([]byte(nil), good[1]...), 0),
		"short last":     good[2][:len(good[2])-1],
		"tiny pieces":    mutate(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[10:], MinPieceLen-1); return b }),
		"over max":       mutate(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], MaxMessage+1); return b }),
	} {
		if _, _, err := ParsePiece(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestCutRefuses(t *testing.T) {
	if _, err := Cut(testFrame(MaxMessage+1, 1), 1, pieceLen); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxMessage: %v", err)
	}
	if _, err := Cut(testFrame(MaxMessage, 1), 1, 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("more than MaxPieces pieces: %v", err)
	}
	if _, err := Cut(testFrame(pieceLen, 1), 1, pieceLen); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one piece: %v", err)
	}
}
