package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// listenLoopbackPair opens two UDP sockets on 127.0.0.1 with large buffers.
func listenLoopbackPair(t *testing.T) (ca, cb *net.UDPConn) {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		_ = c.SetReadBuffer(4 << 20) // best effort; flow control below copes with drops anyway
		_ = c.SetWriteBuffer(4 << 20)
		t.Cleanup(func() { c.Close() })
		return c
	}
	return listen(), listen()
}

// setupDirectKeys stands in for the handshake: it installs mirrored keys on both sessions
// (a initiator, b responder). When internal/handshake is wired, a test running the handshake
// over the same sockets replaces this call and then uses runUDPTransfer unchanged.
func setupDirectKeys(t *testing.T, now time.Time) (a, b *Session) {
	t.Helper()
	a, b = New(Config{}, now), New(Config{}, now)
	installDirect(t, a, b, 42, 0xa1a2a3a4, 0xb1b2b3b4, now)
	return a, b
}

// TestUDPLoopback100kDirectKeys: two real UDP sockets on 127.0.0.1 exchange 100,000 data
// packets of varied size (8–1420 bytes) sealed by Session, with keys installed directly (no
// handshake yet). Every packet's content is checked; an ack window with go-back-N
// retransmission makes delivery of all packets a hard assertion even if the kernel drops some.
func TestUDPLoopback100kDirectKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ca, cb := listenLoopbackPair(t)
	a, b := setupDirectKeys(t, time.Now())
	runUDPTransfer(t, ctx, ca, cb, a, b, 100_000, 0)
}

// TestUDPLoopbackLossRecovery checks the test's own flow control: with 1% of packets dropped
// on purpose, go-back-N still delivers everything exactly once to the checker.
func TestUDPLoopbackLossRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ca, cb := listenLoopbackPair(t)
	a, b := setupDirectKeys(t, time.Now())
	runUDPTransfer(t, ctx, ca, cb, a, b, 5_000, 100)
}

func udpSize(seq uint64) int { return 8 + int(seq*7919%1413) } // 8..1420 bytes

// udpStats are the transfer's counters.
type udpStats struct {
	retransmitRounds, dataSent, dupReceived, acksSent atomic.Int64
}

// runUDPTransfer sends total application packets a→b over the sockets (b replies with sealed
// cumulative acks) and fails the test unless all arrive intact before ctx ends. If dropEvery > 0,
// the sender deliberately skips writing every dropEvery-th sealed packet (simulated loss).
func runUDPTransfer(t *testing.T, ctx context.Context, ca, cb *net.UDPConn, a, b *Session, total, dropEvery int) {
	t.Helper()
	const (
		window   = 256                    // packets in flight beyond the cumulative ack
		rto      = 100 * time.Millisecond // go back to the ack if no progress for this long
		pollRead = 20 * time.Millisecond
	)
	addrB := cb.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		acked    atomic.Uint64 // every seq < acked was delivered
		progress = make(chan struct{}, 1)
		errMu    sync.Mutex
		firstErr error
		stats    udpStats
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel()
	}
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}

	// Receiver b: open, check content, ack cumulatively.
	wg.Go(func() {
		received := make([]bool, total)
		cum, sinceAck := 0, 0
		buf := make([]byte, MaxPacketSize)
		want := make([]byte, 0, 1420)
		ackBuf := make([]byte, 0, 64)
		for ctx.Err() == nil {
			_ = cb.SetReadDeadline(time.Now().Add(pollRead))
			n, from, err := cb.ReadFromUDPAddrPort(buf)
			if isTimeout(err) {
				continue
			}
			if err != nil {
				fail(fmt.Errorf("b read: %w", err))
				return
			}
			pt, err := b.Open(buf[:n], time.Now())
			if err != nil {
				fail(fmt.Errorf("b open: %w", err))
				return
			}
			if len(pt) == 0 {
				continue
			}
			if len(pt) < 8 {
				fail(fmt.Errorf("b: runt payload of %d bytes", len(pt)))
				return
			}
			seq := binary.LittleEndian.Uint64(pt)
			if seq >= uint64(total) || !bytes.Equal(pt, payload(want, seq, udpSize(seq))) {
				fail(fmt.Errorf("b: payload %d corrupted (%d bytes)", seq, len(pt)))
				return
			}
			ackNow := false
			if received[seq] {
				stats.dupReceived.Add(1)
				ackNow = true
			} else {
				received[seq] = true
				if int(seq) != cum {
					ackNow = true // a gap: tell the sender where we are
				}
				for cum < total && received[cum] {
					cum++
				}
			}
			if sinceAck++; ackNow || sinceAck >= 16 || cum == total {
				sinceAck = 0
				var ack [8]byte
				binary.LittleEndian.PutUint64(ack[:], uint64(cum))
				pkt, err := b.Seal(ackBuf[:0], ack[:], time.Now())
				if err != nil {
					fail(fmt.Errorf("b seal ack: %w", err))
					return
				}
				if _, err := cb.WriteToUDPAddrPort(pkt, from); err != nil {
					fail(fmt.Errorf("b write: %w", err))
					return
				}
				stats.acksSent.Add(1)
			}
		}
	})

	// Ack reader on a.
	wg.Go(func() {
		buf := make([]byte, MaxPacketSize)
		for ctx.Err() == nil {
			_ = ca.SetReadDeadline(time.Now().Add(pollRead))
			n, _, err := ca.ReadFromUDPAddrPort(buf)
			if isTimeout(err) {
				continue
			}
			if err != nil {
				fail(fmt.Errorf("a read: %w", err))
				return
			}
			pt, err := a.Open(buf[:n], time.Now())
			if err != nil {
				fail(fmt.Errorf("a open ack: %w", err))
				return
			}
			if len(pt) != 8 {
				fail(fmt.Errorf("a: ack of %d bytes", len(pt)))
				return
			}
			c := binary.LittleEndian.Uint64(pt)
			for {
				old := acked.Load()
				if c <= old || acked.CompareAndSwap(old, c) {
					break
				}
			}
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	})

	// Sender a (this goroutine).
	start := time.Now()
	pkt := make([]byte, 0, 1420+MinPacketSize)
	pt := make([]byte, 0, 1420)
	next, lastAck := uint64(0), uint64(0)
	lastProgress := time.Now()
	timer := time.NewTimer(rto)
	for ctx.Err() == nil {
		ack := acked.Load()
		if ack >= uint64(total) {
			break
		}
		now := time.Now()
		if ack != lastAck {
			lastAck, lastProgress = ack, now
		}
		next = max(next, ack)
		if now.Sub(lastProgress) >= rto {
			next, lastProgress = ack, now // go back N
			stats.retransmitRounds.Add(1)
		}
		for next < uint64(total) && next < ack+window {
			var err error
			pkt, err = a.Seal(pkt[:0], payload(pt, next, udpSize(next)), now)
			if err != nil {
				fail(fmt.Errorf("a seal: %w", err))
				break
			}
			sent := stats.dataSent.Add(1)
			if dropEvery > 0 && sent%int64(dropEvery) == 0 {
				next++
				continue // lost in the "network"
			}
			if _, err := ca.WriteToUDPAddrPort(pkt, addrB); err != nil {
				fail(fmt.Errorf("a write: %w", err))
				break
			}
			next++
		}
		timer.Reset(rto / 4)
		select {
		case <-progress:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	elapsed := time.Since(start)
	done := acked.Load() >= uint64(total)
	cancel()
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if !done {
		t.Fatalf("only %d of %d packets acknowledged before the deadline", acked.Load(), total)
	}
	t.Logf("%d packets delivered in %v (%.0f pkt/s); %d data packets sent, %d go-back-N rounds, %d duplicates at receiver, %d acks",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), stats.dataSent.Load(),
		stats.retransmitRounds.Load(), stats.dupReceived.Load(), stats.acksSent.Load())
}
