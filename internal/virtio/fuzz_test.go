package virtio

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func frameOf(h Header, pkt []byte) []byte {
	frame := make([]byte, HeaderLen+len(pkt))
	h.Put(frame)
	copy(frame[HeaderLen:], pkt)
	return frame
}

// FuzzVirtioHeader feeds arbitrary [virtio-net header ‖ packet] frames to ParseHeader, Check and
// Split. Whatever Check accepts, Split must split into exactly sized buffers without panicking, leave
// the headroom alone, and produce valid IPv6 packets whose checksums verify and whose payloads
// concatenate to the input's (verifySplit); one buffer fewer, or one byte less, must be refused.
func FuzzVirtioHeader(f *testing.F) {
	ackPsh := header.TCPFlagAck | header.TCPFlagPsh
	all := ackPsh | header.TCPFlagFin | header.TCPFlagCwr
	burst := tcpPacket(32, 1200, all, 0xfffffff0)
	f.Add(frameOf(tcpGSOHeader(burst, 500), burst), uint8(16))
	small := tcpPacket(20, 7, ackPsh, 1)
	f.Add(frameOf(tcpGSOHeader(small, 2), small), uint8(0))
	f.Add(frameOf(udpGSOHeader(100), udpPacket(250)), uint8(3))
	f.Add(frameOf(udpGSOHeader(1), udpPacket(9)), uint8(0))
	f.Add(frameOf(udpGSOHeader(1), udpPacket(1)), uint8(0))
	single := tcpPacket(20, 33, ackPsh, 1)
	f.Add(frameOf(Header{}, single), uint8(16))
	f.Add(frameOf(Header{Flags: flagDataValid}, single), uint8(16))
	f.Add(frameOf(Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}, single), uint8(16))
	f.Add(frameOf(Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 6}, udpPacket(20)), uint8(1))
	f.Add(frameOf(Header{Flags: FlagNeedsCsum, CsumStart: 48, CsumOffset: 6}, withDestOptions(udpPacket(20))), uint8(1))
	f.Add(frameOf(Header{GSOType: GSOTCPv4, Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: 16}, burst), uint8(0))
	f.Add([]byte{}, uint8(0))

	f.Fuzz(func(t *testing.T, frame []byte, offset8 uint8) {
		offset := int(offset8 % 32)
		h, err := ParseHeader(frame)
		if err != nil {
			if len(frame) >= HeaderLen {
				t.Fatalf("ParseHeader(%d bytes): %v", len(frame), err)
			}
			return
		}
		var back [HeaderLen]byte
		h.Put(back[:])
		if string(back[:]) != string(frame[:HeaderLen]) {
			t.Fatalf("Put does not round-trip ParseHeader")
		}
		pkt := frame[HeaderLen:]
		orig := string(pkt)
		n := Segments(h, pkt)
		if err := h.Check(pkt); err != nil {
			if n != 0 {
				t.Fatalf("Segments = %d for a frame Check rejects (%v)", n, err)
			}
			out, sizes := outBuffers(2, offset, len(pkt))
			if k, serr := Split(h, pkt, out, sizes, offset); k != 0 || serr != err {
				t.Fatalf("Split = %d, %v; Check said %v", k, serr, err)
			}
			return
		}
		if n < 1 {
			t.Fatalf("Segments = %d for an accepted frame", n)
		}
		// Exactly sized buffers: each segment is at most headers + gso_size, the last one the rest.
		sizesWant := make([]int, n)
		if h.GSOType == GSONone {
			sizesWant[0] = len(pkt)
		} else {
			headerLen := 48
			if h.GSOType == GSOTCPv6 {
				headerLen = 40 + int(pkt[52]>>4)*4
			}
			for i := range n {
				sizesWant[i] = headerLen + min(int(h.GSOSize), len(pkt)-headerLen-i*int(h.GSOSize))
			}
		}
		out := make([][]byte, n)
		for i := range out {
			out[i] = make([]byte, offset+sizesWant[i])
			for j := range out[i] {
				out[i][j] = 0xa5
			}
		}
		sizes := make([]int, n)
		if n > 1 {
			if k, err := Split(h, pkt, out[:n-1], sizes, offset); k != 0 || err != ErrTooFewBuffers {
				t.Fatalf("Split into %d of %d buffers = %d, %v", n-1, n, k, err)
			}
		}
		last := out[n-1]
		out[n-1] = last[:len(last)-1]
		if k, err := Split(h, pkt, out, sizes, offset); k != 0 || err != ErrBufferTooSmall {
			t.Fatalf("Split with the last buffer a byte short = %d, %v", k, err)
		}
		out[n-1] = last
		k, err := Split(h, pkt, out, sizes, offset)
		if err != nil || k != n {
			t.Fatalf("Split = %d, %v; want %d segments", k, err, n)
		}
		for i := range n {
			if sizes[i] != sizesWant[i] {
				t.Fatalf("segment %d: size %d, want %d", i, sizes[i], sizesWant[i])
			}
		}
		if string(pkt) != orig {
			t.Fatalf("Split modified its input")
		}
		verifySplit(t, h, pkt, out, sizes, n, offset)
	})
}
