package node

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Traffic for TestNetnsChaos (netns_chaos_test.go), made and checked by this test binary re-executed
// inside the lab's namespaces, so that CI needs nothing but the binary, iproute2 and nftables:
//
//   - a UDP sender sends one datagram every chaosSendInterval to a destination's overlay address; each
//     carries the stream, the intended destination, a sequence number, the send time and a checksum;
//   - a UDP receiver runs in every namespace and reports every datagram to the test, marked by whether
//     it is intact and meant for this node (the lab makes a namespace accept any overlay address that
//     comes out of its TUN device, so a datagram delivered to the wrong node reaches a receiver);
//   - a TCP source writes a paced pseudo-random byte stream, and a TCP sink checks every byte and
//     reports when it read how much.
//
// Every helper prints one line per event as it happens and exits when its stdin closes (the test
// process ended, whatever the way) or after chaosHelperLifetime.

const (
	envChaosRecv      = "X0TTA6BL4_TEST_CHAOS_RECV"       // own overlay address
	envChaosSend      = "X0TTA6BL4_TEST_CHAOS_SEND"       // stream,destination overlay address
	envChaosTCPSink   = "X0TTA6BL4_TEST_CHAOS_TCP_SINK"   // [address]:port to listen on
	envChaosTCPSource = "X0TTA6BL4_TEST_CHAOS_TCP_SOURCE" // [address]:port to connect to

	chaosUDPPort        = 5003
	chaosTCPPort        = 5004
	chaosSendInterval   = 10 * time.Millisecond // per UDP stream; also the TCP source's pace
	chaosTCPChunk       = 1024                  // bytes the TCP source writes every chaosSendInterval
	chaosHelperLifetime = 10 * time.Minute      // the longest any helper runs
	chaosDatagramLen    = 200
)

func init() {
	for _, h := range []struct {
		env string
		run func(string) int
	}{
		{envChaosRecv, helperChaosRecv},
		{envChaosSend, helperChaosSend},
		{envChaosTCPSink, helperChaosTCPSink},
		{envChaosTCPSource, helperChaosTCPSource},
	} {
		if v := os.Getenv(h.env); v != "" {
			go func() {
				io.Copy(io.Discard, os.Stdin)
				os.Exit(0)
			}()
			time.AfterFunc(chaosHelperLifetime, func() { os.Exit(0) })
			os.Exit(h.run(v))
		}
	}
}

// chaosDatagram is one datagram of a UDP stream.
type chaosDatagram struct {
	stream byte
	dst    netip.Addr // the node it is meant for
	seq    uint64
	sent   time.Time
}

var (
	chaosMagic       = []byte("x6ch")
	errChaosDatagram = errors.New("not an intact chaos datagram")
)

// appendChaosDatagram appends d's wire form: magic, stream, destination (16 bytes), sequence number,
// send time (Unix ns), filler derived from the sequence number, and the first 8 bytes of the SHA-256
// of all that.
func appendChaosDatagram(b []byte, d chaosDatagram) []byte {
	start := len(b)
	b = append(b, chaosMagic...)
	b = append(b, d.stream)
	dst := d.dst.As16()
	b = append(b, dst[:]...)
	b = binary.BigEndian.AppendUint64(b, d.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(d.sent.UnixNano()))
	for i := len(b) - start; i < chaosDatagramLen-8; i++ {
		b = append(b, byte(uint64(i)*0x9d+d.seq*0x3b)^d.stream)
	}
	sum := sha256.Sum256(b[start:])
	return append(b, sum[:8]...)
}

func parseChaosDatagram(b []byte) (chaosDatagram, error) {
	if len(b) != chaosDatagramLen || !bytes.HasPrefix(b, chaosMagic) {
		return chaosDatagram{}, errChaosDatagram
	}
	if sum := sha256.Sum256(b[:len(b)-8]); !bytes.Equal(sum[:8], b[len(b)-8:]) {
		return chaosDatagram{}, errChaosDatagram
	}
	return chaosDatagram{
		stream: b[4],
		dst:    netip.AddrFrom16([16]byte(b[5:21])),
		seq:    binary.BigEndian.Uint64(b[21:29]),
		sent:   time.Unix(0, int64(binary.BigEndian.Uint64(b[29:37]))),
	}, nil
}

// lineWriter prints event lines for the test, one write per line, from several goroutines.
type lineWriter struct {
	mu  sync.Mutex
	out *bufio.Writer
}

func newLineWriter() *lineWriter { return &lineWriter{out: bufio.NewWriter(os.Stdout)} }

func (w *lineWriter) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
	w.out.Flush()
}

// helperChaosRecv reports every datagram to chaosUDPPort: "R stream seq sent recv" for one meant for
// self, "W stream seq sent recv" for one meant for another node, "C recv length" for one that is not
// intact (times in Unix ns).
func helperChaosRecv(self string) int {
	me, err := netip.ParseAddr(self)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := net.ListenUDP("udp6", &net.UDPAddr{Port: chaosUDPPort})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := newLineWriter()
	buf := make([]byte, 2048)
	for {
		k, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		at := time.Now().UnixNano()
		d, err := parseChaosDatagram(buf[:k])
		switch {
		case err != nil:
			w.printf("C %d %d", at, k)
		case d.dst != me:
			w.printf("W %d %d %d %d", d.stream, d.seq, d.sent.UnixNano(), at)
		default:
			w.printf("R %d %d %d %d", d.stream, d.seq, d.sent.UnixNano(), at)
		}
	}
}

// helperChaosSend sends stream spec ("stream,destination") and prints "S seq sent" for each datagram
// it hands to the kernel, whether or not the kernel takes it (no route while the TUN device is being
// recreated counts as sent and lost).
func helperChaosSend(spec string) int {
	streamText, dstText, ok := strings.Cut(spec, ",")
	stream, err1 := strconv.ParseUint(streamText, 10, 8)
	dst, err2 := netip.ParseAddr(dstText)
	if !ok || err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "bad", envChaosSend, spec)
		return 2
	}
	c, err := net.ListenUDP("udp6", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	to := netip.AddrPortFrom(dst, chaosUDPPort)
	w := newLineWriter()
	tick := time.NewTicker(chaosSendInterval)
	defer tick.Stop()
	var msg []byte
	for seq := uint64(1); ; seq++ {
		<-tick.C
		now := time.Now()
		msg = appendChaosDatagram(msg[:0], chaosDatagram{stream: byte(stream), dst: dst, seq: seq, sent: now})
		c.WriteToUDPAddrPort(msg, to)
		w.printf("S %d %d", seq, now.UnixNano())
	}
}

// chaosTCPStream is the byte stream every TCP connection of the test carries.
func chaosTCPStream() *rand.ChaCha8 { return rand.NewChaCha8([32]byte{'x', '6', 'c', 'h'}) }

// helperChaosTCPSink accepts connections and checks each one's bytes against chaosTCPStream. It prints
// "T conn total recv" after every read, "X conn offset recv" at the first wrong byte (and closes that
// connection) and "E conn recv error" when a connection ends.
func helperChaosTCPSink(addr string) int {
	ln, err := net.Listen("tcp6", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w := newLineWriter()
	for conn := 1; ; conn++ {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			defer c.Close()
			want := chaosTCPStream()
			buf, expect := make([]byte, 64<<10), make([]byte, 64<<10)
			var total int
			for {
				k, err := c.Read(buf)
				at := time.Now().UnixNano()
				if k > 0 {
					want.Read(expect[:k])
					if i := firstDifference(buf[:k], expect[:k]); i >= 0 {
						w.printf("X %d %d %d", conn, total+i, at)
						return
					}
					total += k
					w.printf("T %d %d %d", conn, total, at)
				}
				if err != nil {
					w.printf("E %d %d %s", conn, at, strings.ReplaceAll(err.Error(), "\n", " "))
					return
				}
			}
		}()
	}
}

func firstDifference(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// helperChaosTCPSource writes chaosTCPStream to addr, chaosTCPChunk bytes every chaosSendInterval, as
// an application with a steady stream would, and connects again when a connection fails. It prints
// "O recv" for each connection made and "E recv error" for each failure.
func helperChaosTCPSource(addr string) int {
	w := newLineWriter()
	for {
		c, err := net.DialTimeout("tcp6", addr, 2*time.Second)
		if err != nil {
			w.printf("E %d %s", time.Now().UnixNano(), err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		w.printf("O %d", time.Now().UnixNano())
		stream := chaosTCPStream()
		chunk := make([]byte, chaosTCPChunk)
		tick := time.NewTicker(chaosSendInterval)
		for {
			<-tick.C
			stream.Read(chunk)
			if _, err := c.Write(chunk); err != nil {
				w.printf("E %d %s", time.Now().UnixNano(), err)
				break
			}
		}
		tick.Stop()
		c.Close()
	}
}

// FuzzChaosDatagram: the receiver's parser takes any bytes without panicking, accepts only what
// appendChaosDatagram made, and reads back what was written.
func FuzzChaosDatagram(f *testing.F) {
	good := appendChaosDatagram(nil, chaosDatagram{stream: 1, dst: netip.MustParseAddr("fd74::1"), seq: 7, sent: time.Unix(0, 42)})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("x6ch"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseChaosDatagram(b)
		if err != nil {
			return
		}
		if again := appendChaosDatagram(nil, d); !bytes.Equal(again, b) {
			t.Fatalf("parsed %+v from bytes it does not write back", d)
		}
	})
}

// chaosTraffic collects what the traffic helpers report.
type chaosTraffic struct {
	mu           sync.Mutex
	streams      []*chaosStream
	misdelivered []chaosEvent // stream datagrams that reached a node they were not meant for
	corrupt      []chaosEvent // datagrams to the stream port that were not intact
	badLines     int          // helper output the test could not read

	tcpReads    []time.Time // when the sink read bytes, in order
	tcpCorrupt  []time.Time // when the sink found a wrong byte
	tcpEnds     []time.Time // when a connection ended at the sink
	tcpConnects []time.Time // when the source connected
}

type chaosEvent struct {
	at   time.Time
	node int // where it was seen
	what string
}

// chaosStream is one UDP stream's record.
type chaosStream struct {
	id       byte
	from, to int
	sent     []time.Time // send time of sequence number i+1
	got      map[uint64]bool
	arrivals []time.Time // first arrivals at the destination, in order
	dups     []time.Time // arrivals of a sequence number already delivered
}

func (tr *chaosTraffic) addStream(from, to int) *chaosStream {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := &chaosStream{id: byte(len(tr.streams) + 1), from: from, to: to, got: map[uint64]bool{}}
	tr.streams = append(tr.streams, s)
	return s
}

// fields splits a helper's line into its kind and n integers; ok is false if it has fewer.
func fields(line string, n int) (kind string, v []int64, ok bool) {
	f := strings.Fields(line)
	if len(f) < n+1 {
		return "", nil, false
	}
	v = make([]int64, n)
	for i := range n {
		x, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return "", nil, false
		}
		v[i] = x
	}
	return f[0], v, true
}

func unixNano(ns int64) time.Time { return time.Unix(0, ns) }

// senderLine records a line of stream s's sender.
func (tr *chaosTraffic) senderLine(s *chaosStream, line string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	kind, v, ok := fields(line, 2)
	if !ok || kind != "S" || v[0] != int64(len(s.sent)+1) {
		tr.badLines++
		return
	}
	s.sent = append(s.sent, unixNano(v[1]))
}

// receiverLine records a line of the receiver in node's namespace.
func (tr *chaosTraffic) receiverLine(node int, line string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if kind, v, ok := fields(line, 2); ok && kind == "C" {
		tr.corrupt = append(tr.corrupt, chaosEvent{at: unixNano(v[0]), node: node, what: fmt.Sprintf("%d bytes", v[1])})
		return
	}
	kind, v, ok := fields(line, 4)
	if !ok || (kind != "R" && kind != "W") {
		tr.badLines++
		return
	}
	at := unixNano(v[3])
	var s *chaosStream
	if id := v[0]; id >= 1 && id <= int64(len(tr.streams)) {
		s = tr.streams[id-1]
	}
	switch {
	case s == nil:
		tr.corrupt = append(tr.corrupt, chaosEvent{at: at, node: node, what: fmt.Sprintf("unknown stream %d", v[0])})
	case kind == "W" || node != s.to:
		tr.misdelivered = append(tr.misdelivered, chaosEvent{at: at, node: node, what: fmt.Sprintf("stream %d seq %d", s.id, v[1])})
	case s.got[uint64(v[1])]:
		s.dups = append(s.dups, at)
	default:
		s.got[uint64(v[1])] = true
		s.arrivals = append(s.arrivals, at)
	}
}

func (tr *chaosTraffic) tcpSinkLine(line string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	kind, v, ok := fields(line, 3)
	if !ok {
		if kind, v, ok = fields(line, 2); !ok || kind != "E" {
			tr.badLines++
			return
		}
	}
	switch kind {
	case "T":
		tr.tcpReads = append(tr.tcpReads, unixNano(v[2]))
	case "X":
		tr.tcpCorrupt = append(tr.tcpCorrupt, unixNano(v[2]))
	case "E":
		tr.tcpEnds = append(tr.tcpEnds, unixNano(v[1]))
	default:
		tr.badLines++
	}
}

func (tr *chaosTraffic) tcpSourceLine(line string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	kind, v, ok := fields(line, 1)
	switch {
	case ok && kind == "O":
		tr.tcpConnects = append(tr.tcpConnects, unixNano(v[0]))
	case ok && kind == "E":
		// A failed connection or write; the sink's records show what it cost.
	default:
		tr.badLines++
	}
}

// longestGap returns the longest time in [from, to) without one of times (in order): from the start
// of the window to the first, between two, or from the last to the end of the window; open reports
// that the longest one runs to the end.
func longestGap(times []time.Time, from, to time.Time) (gap time.Duration, open bool) {
	prev := from
	for _, at := range times {
		if !at.After(prev) {
			continue
		}
		if !at.Before(to) {
			break
		}
		if d := at.Sub(prev); d > gap {
			gap = d
		}
		prev = at
	}
	if d := to.Sub(prev); d > gap {
		return d, true
	}
	return gap, false
}

// flowing reports whether every UDP stream has delivered, and the TCP sink read, with no gap longer
// than maxGap over the span before now, all after since.
func (tr *chaosTraffic) flowing(since, now time.Time, span, maxGap time.Duration) bool {
	from := now.Add(-span)
	if from.Before(since) {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range tr.streams {
		if gap, _ := longestGap(s.arrivals, from, now); gap > maxGap {
			return false
		}
	}
	gap, _ := longestGap(tr.tcpReads, from, now)
	return gap <= maxGap
}

// count returns how many of events fall in [from, to).
func countIn(events []time.Time, from, to time.Time) int {
	n := 0
	for _, at := range events {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func eventsIn(events []chaosEvent, from, to time.Time) []chaosEvent {
	var out []chaosEvent
	for _, e := range events {
		if !e.at.Before(from) && e.at.Before(to) {
			out = append(out, e)
		}
	}
	return out
}

// loss returns how many datagrams of s were sent in [from, to) and how many of those never arrived.
func (s *chaosStream) loss(from, to time.Time) (sent, lost int) {
	for i, at := range s.sent {
		if at.Before(from) || !at.Before(to) {
			continue
		}
		sent++
		if !s.got[uint64(i+1)] {
			lost++
		}
	}
	return sent, lost
}
