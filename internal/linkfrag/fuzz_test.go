package linkfrag

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParsePiece: no input crashes the parser, and whatever it accepts lies inside its message.
func FuzzParsePiece(f *testing.F) {
	pieces, _ := Cut(testFrame(3000, 1), 1, pieceLen)
	for _, p := range pieces {
		f.Add(p)
	}
	f.Add([]byte{12, 0, 2, 0, 1, 0, 0, 0, 100, 0, 64, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, data, err := ParsePiece(b)
		if err != nil {
			return
		}
		if p.Offset()+len(data) > p.Total || p.Total > MaxMessage || p.Count > MaxPieces || len(data) == 0 {
			t.Fatalf("accepted a piece outside its message: %+v, %d bytes", p, len(data))
		}
	})
}

// FuzzReassemble feeds a stream of pieces (of up to two messages, from two links, interleaved with
// fuzzer bytes taken as frames): nothing crashes, the bounds hold, and every message delivered is
// one that was sent, byte for byte.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, uint16(3000), uint16(200))
	f.Fuzz(func(t *testing.T, script []byte, sizeA, plen uint16) {
		pl := max(int(plen)%2000, MinPieceLen)
		a := testFrame(int(sizeA)%(MaxMessage-1)+2, 1)
		b := testFrame(5000, 2)
		pa, _ := Cut(a, 1, pl)
		pb, _ := Cut(b, 1, pl)
		var r Reassembler[int]
		for i, c := range script {
			now := t0.Add(stepTime(i, c))
			var frame []byte
			link := int(c>>7) & 1
			switch {
			case c&0x40 != 0 && len(pa) > 0:
				frame = pa[int(c&0x3f)%len(pa)]
			case c&0x20 != 0 && len(pb) > 0:
				frame = pb[int(c&0x1f)%len(pb)]
			default:
				frame = script[i:]
			}
			whole, err := r.Add(now, link, frame)
			if err != nil || whole == nil {
				continue
			}
			if !bytes.Equal(whole, a) && !bytes.Equal(whole, b) {
				t.Fatalf("delivered %d bytes that were never sent", len(whole))
			}
			if m, n := r.Pending(); m > Total || n > Total*MaxMessage {
				t.Fatalf("%d messages, %d bytes pending", m, n)
			}
		}
	})
}

// stepTime spreads a script's steps over time so that timeouts happen.
func stepTime(i int, c byte) time.Duration {
	return time.Duration(i) * time.Duration(c&0x0f) * 50_000_000
}
