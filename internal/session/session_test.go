package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	a, b := newPair(t, t0)
	for _, size := range []int{0, 1, 15, 16, 17, 1420, MaxPlaintextSize} {
		pt := payload(nil, uint64(size), max(size, 8))[:size]
		pkt, err := a.Seal(nil, pt, t0)
		if err != nil {
			t.Fatalf("seal %d: %v", size, err)
		}
		if len(pkt) != size+MinPacketSize || len(pkt) > MaxPacketSize {
			t.Fatalf("packet length %d for plaintext %d", len(pkt), size)
		}
		got, err := b.Open(pkt, t0)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open %d: %v", size, err)
		}
		// and the other direction
		pkt, _ = b.Seal(pkt[:0], pt, t0)
		if got, err := a.Open(pkt, t0); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("open b→a %d: %v", size, err)
		}
	}
	if _, err := a.Seal(nil, make([]byte, MaxPlaintextSize+1), t0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized seal: %v", err)
	}
}

func TestSealAppendsAndInPlace(t *testing.T) {
	a, b := newPair(t, t0)
	prefix := []byte("prefix")
	pkt, err := a.Seal(bytes.Clone(prefix), []byte("hello"), t0)
	if err != nil || !bytes.HasPrefix(pkt, prefix) {
		t.Fatalf("append: %v", err)
	}
	if got, err := b.Open(pkt[len(prefix):], t0); err != nil || string(got) != "hello" {
		t.Fatalf("open appended: %q %v", got, err)
	}
	// In place: plaintext sits at buf[HeaderSize:], output overwrites it.
	buf := make([]byte, HeaderSize+5, HeaderSize+5+TagSize)
	copy(buf[HeaderSize:], "world")
	pkt, err = a.Seal(buf[:0], buf[HeaderSize:], t0)
	if err != nil || &pkt[0] != &buf[0] {
		t.Fatalf("in-place seal: %v (reallocated %v)", err, err == nil)
	}
	if got, err := b.Open(pkt, t0); err != nil || string(got) != "world" {
		t.Fatalf("open in-place: %q %v", got, err)
	}
}

func TestHeaderIsAuthenticated(t *testing.T) {
	a, b := newPair(t, t0)
	pkt, _ := a.Seal(nil, []byte("data"), t0)
	for i := range len(pkt) {
		for _, bit := range []byte{1, 0x80} {
			p := bytes.Clone(pkt)
			p[i] ^= bit
			if _, err := b.Open(p, t0); err == nil {
				t.Fatalf("flipping bit %#x of byte %d was accepted", bit, i)
			}
		}
	}
	if _, err := b.Open(pkt, t0); err != nil {
		t.Fatalf("original rejected after forgeries: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	a, b := newPair(t, t0)
	pkt, _ := a.Seal(nil, []byte("x"), t0)
	unknown := bytes.Clone(pkt)
	binary.LittleEndian.PutUint32(unknown[4:], 12345)
	if _, err := b.Open(unknown, t0); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("unknown index: %v", err)
	}
	forged := bytes.Clone(pkt)
	forged[len(forged)-1] ^= 1
	if _, err := b.Open(forged, t0); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged: %v", err)
	}
	if _, err := b.Open(bytes.Clone(pkt), t0); err != nil {
		t.Fatalf("genuine after forgery: %v", err)
	}
	if _, err := b.Open(bytes.Clone(pkt), t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	if _, err := b.Open(pkt[:10], t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
	fresh := New(Config{}, t0)
	if _, err := fresh.Seal(nil, nil, t0); !errors.Is(err, ErrNoKey) {
		t.Fatalf("seal without keys: %v", err)
	}
}

// TestReorderAndDuplicate delivers a long stream heavily reordered (within the replay window)
// and with many duplicates: every packet is accepted exactly once, every duplicate rejected.
func TestReorderAndDuplicate(t *testing.T) {
	a, b := newPair(t, t0)
	const n = 30000
	pkts := make([][]byte, n)
	for i := range pkts {
		p, err := a.Seal(nil, payload(nil, uint64(i), 8+i%64), t0)
		if err != nil {
			t.Fatal(err)
		}
		pkts[i] = p
	}
	// Shuffle within blocks of 4096 (< ReplayWindow) and insert duplicates.
	rng := rand.New(rand.NewPCG(3, 4))
	order := make([]int, 0, n*6/5)
	for start := 0; start < n; start += 4096 {
		blk := rng.Perm(min(4096, n-start))
		for _, j := range blk {
			order = append(order, start+j)
			if rng.IntN(5) == 0 && len(order) > 1 {
				order = append(order, order[rng.IntN(len(order))]) // duplicate of something seen
			}
		}
	}
	got := make([]int, n)
	dups := 0
	for _, i := range order {
		pt, err := b.Open(bytes.Clone(pkts[i]), t0)
		switch {
		case err == nil:
			if seq := binary.LittleEndian.Uint64(pt); seq != uint64(i) || !bytes.Equal(pt, payload(nil, seq, 8+i%64)) {
				t.Fatalf("packet %d: wrong content", i)
			}
			got[i]++
		case errors.Is(err, ErrReplay):
			dups++
		default:
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	for i, c := range got {
		if c != 1 {
			t.Fatalf("packet %d accepted %d times", i, c)
		}
	}
	if dups != len(order)-n {
		t.Fatalf("rejected %d duplicates, sent %d", dups, len(order)-n)
	}
}

func TestTooOldRejected(t *testing.T) {
	a, b := newPair(t, t0) // counter 0 used by confirm
	var pkts [][]byte
	for i := range ReplayWindow + 10 {
		p, _ := a.Seal(nil, []byte{byte(i)}, t0)
		pkts = append(pkts, p)
	}
	last := len(pkts) - 1
	if _, err := b.Open(pkts[last], t0); err != nil {
		t.Fatal(err)
	}
	// pkts[i] carries counter i+1; the newest carries counter last+1.
	oldestOK := last - ReplayWindow
	if _, err := b.Open(pkts[oldestOK-1], t0); !errors.Is(err, ErrReplay) {
		t.Fatalf("counter window+1 behind: %v", err)
	}
	if _, err := b.Open(pkts[oldestOK], t0); err != nil {
		t.Fatalf("counter exactly window behind: %v", err)
	}
}

// TestCounterExhaustion moves the send counter next to RejectAfterMessages.
func TestCounterExhaustion(t *testing.T) {
	a, b := newPair(t, t0)
	if got := a.Tick(t0); got&ActionRekey != 0 {
		t.Fatalf("fresh keypair wants rekey: %v", got)
	}
	a.current.Load().sendCounter.Store(RekeyAfterMessages)
	b.current.Load().sendCounter.Store(RekeyAfterMessages)
	if got := a.Tick(t0); got&ActionRekey == 0 {
		t.Fatal("initiator: no rekey after RekeyAfterMessages")
	}
	if got := b.Tick(t0); got&ActionRekey == 0 {
		t.Fatal("responder: no rekey after RekeyAfterMessages")
	}

	a.current.Load().sendCounter.Store(RejectAfterMessages - 2)
	for i := range 2 {
		p, err := a.Seal(nil, []byte("last"), t0)
		if err != nil {
			t.Fatalf("seal %d before limit: %v", i, err)
		}
		h, _ := ParseDataHeader(p)
		if h.Counter != RejectAfterMessages-2+uint64(i) {
			t.Fatalf("counter %d", h.Counter)
		}
		if _, err := b.Open(p, t0); err != nil {
			t.Fatalf("open near limit: %v", err)
		}
	}
	for range 100 {
		if _, err := a.Seal(nil, []byte("over"), t0); !errors.Is(err, ErrCounterExhausted) {
			t.Fatalf("seal past limit: %v", err)
		}
	}
	if c := a.current.Load().sendCounter.Load(); c < RejectAfterMessages {
		t.Fatalf("counter wrapped to %d", c)
	}
	// A packet claiming counter = limit is rejected by the decoder.
	forged := DataHeader{Receiver: 0x0b0b0b0b, Counter: RejectAfterMessages}.AppendHeader(nil)
	forged = append(forged, make([]byte, TagSize)...)
	if _, err := b.Open(forged, t0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("counter at limit: %v", err)
	}
	// Concurrent sealers at the limit never hand out a counter twice or past the limit.
	a2, _ := newPair(t, t0)
	a2.current.Load().sendCounter.Store(RejectAfterMessages - 1000)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 500 {
				p, err := a2.Seal(nil, nil, t0)
				if err != nil {
					continue
				}
				h, _ := ParseDataHeader(p)
				mu.Lock()
				if seen[h.Counter] || h.Counter >= RejectAfterMessages {
					t.Errorf("counter %d reused or beyond limit", h.Counter)
				}
				seen[h.Counter] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 1000 {
		t.Fatalf("sealed %d packets, want exactly 1000", len(seen))
	}
}

func TestExpiryWipesAndRejects(t *testing.T) {
	var released []uint32
	cfg := Config{Release: func(i uint32) { released = append(released, i) }}
	a, b := New(cfg, t0), New(Config{}, t0)
	installDirect(t, a, b, 0, 1, 2, t0)
	confirm(t, a, b, t0)
	late := t0.Add(RejectAfterTime - time.Nanosecond)
	pkt, err := a.Seal(nil, []byte("late"), late)
	if err != nil {
		t.Fatalf("seal just before expiry: %v", err)
	}
	expired := t0.Add(RejectAfterTime)
	if _, err := b.Open(bytes.Clone(pkt), expired); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("open after expiry: %v", err)
	}
	if _, err := a.Seal(nil, []byte("x"), expired); !errors.Is(err, ErrKeyExpired) {
		t.Fatalf("seal after expiry: %v", err)
	}
	kp := a.current.Load()
	if act := a.Tick(expired); act&ActionRekey == 0 {
		t.Fatalf("no rekey requested with no keys: %v", act)
	}
	if a.current.Load() != nil || kp.ciphers.Load() != nil {
		t.Fatal("expired keypair not wiped")
	}
	if !slices.Equal(released, []uint32{1}) {
		t.Fatalf("released %v", released)
	}
	if _, err := a.Seal(nil, nil, expired); !errors.Is(err, ErrNoKey) {
		t.Fatalf("seal after wipe: %v", err)
	}
	// A wiped keypair that a concurrent operation still holds fails closed.
	b.Tick(expired)
	if _, err := b.Open(pkt, late); !errors.Is(err, ErrUnknownIndex) {
		t.Fatalf("open on wiped session: %v", err)
	}
}

func TestKeysWipedOnInstall(t *testing.T) {
	ka, _ := mirrorKeys(0, 1, 2)
	s := New(Config{}, t0)
	if err := s.Install(&ka, t0); err != nil {
		t.Fatal(err)
	}
	if ka.SendKey != [32]byte{} || ka.RecvKey != [32]byte{} {
		t.Fatal("Install did not wipe the caller's keys")
	}
}

func TestInstallErrors(t *testing.T) {
	var released []uint32
	s := New(Config{Release: func(i uint32) { released = append(released, i) }}, t0)
	ka, _ := mirrorKeys(0, 1, 2)
	if err := s.Install(&ka, t0); err != nil {
		t.Fatal(err)
	}
	ka, _ = mirrorKeys(1, 1, 3)
	if err := s.Install(&ka, t0); !errors.Is(err, ErrIndexInUse) {
		t.Fatalf("duplicate index: %v", err)
	}
	s.Close()
	if !slices.Equal(released, []uint32{1}) {
		t.Fatalf("released %v", released)
	}
	ka, _ = mirrorKeys(2, 5, 6)
	if err := s.Install(&ka, t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("install after close: %v", err)
	}
	if _, err := s.Seal(nil, nil, t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("seal after close: %v", err)
	}
	if a := s.Tick(t0); a != 0 {
		t.Fatalf("closed session asks for %v", a)
	}
}

func TestKeepalive(t *testing.T) {
	a, b := New(Config{}, t0), New(Config{}, t0)
	installDirect(t, a, b, 0, 1, 2, t0)
	if act := a.Tick(t0); act != ActionKeepalive {
		t.Fatalf("fresh initiator keys: %v, want keepalive", act)
	}
	if act := b.Tick(t0); act != 0 {
		t.Fatalf("responder with next only: %v", act)
	}
	confirm(t, a, b, t0)
	if act := a.Tick(t0); act != 0 {
		t.Fatalf("after confirmation: %v", act)
	}
	// A keepalive does not arm the receiver's keepalive timer.
	if act := b.Tick(t0.Add(time.Minute)); act != 0 {
		t.Fatalf("keepalive armed the timer: %v", act)
	}
	t1 := t0.Add(time.Minute)
	p, _ := a.Seal(nil, []byte("data"), t1)
	if _, err := b.Open(p, t1); err != nil {
		t.Fatal(err)
	}
	p, _ = a.Seal(nil, []byte("more"), t1.Add(5*time.Second)) // later data does not restart it
	if _, err := b.Open(p, t1.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if act := b.Tick(t1.Add(KeepaliveTimeout - time.Millisecond)); act != 0 {
		t.Fatalf("before timeout: %v", act)
	}
	if act := b.Tick(t1.Add(KeepaliveTimeout)); act != ActionKeepalive {
		t.Fatalf("at timeout: %v", act)
	}
	if _, err := b.Seal(nil, nil, t1.Add(KeepaliveTimeout)); err != nil {
		t.Fatal(err)
	}
	if act := b.Tick(t1.Add(2 * KeepaliveTimeout)); act != 0 {
		t.Fatalf("after sending: %v", act)
	}
	// Only the initiator rekeys by time.
	at := t0.Add(RekeyAfterTime)
	if act := a.Tick(at); act&ActionRekey == 0 {
		t.Fatalf("initiator at RekeyAfterTime: %v", act)
	}
	if act := b.Tick(at); act&ActionRekey != 0 {
		t.Fatalf("responder at RekeyAfterTime: %v", act)
	}
	if act := a.Tick(at.Add(-time.Nanosecond)); act&ActionRekey != 0 {
		t.Fatalf("initiator before RekeyAfterTime: %v", act)
	}
}

// TestRekeySwitchDeterministic walks through one rekey with packets in flight under the old
// keys in both directions, delivered after the switch and reordered around it.
func TestRekeySwitchDeterministic(t *testing.T) {
	var relA, relB []uint32
	a := New(Config{Release: func(i uint32) { relA = append(relA, i) }}, t0)
	b := New(Config{Release: func(i uint32) { relB = append(relB, i) }}, t0)
	installDirect(t, a, b, 0, 10, 20, t0)
	confirm(t, a, b, t0)

	now := t0.Add(RekeyAfterTime)
	seal := func(s *Session, msg string) []byte {
		t.Helper()
		p, err := s.Seal(nil, []byte(msg), now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := func(s *Session, p []byte, want string) {
		t.Helper()
		got, err := s.Open(bytes.Clone(p), now)
		if err != nil || string(got) != want {
			t.Fatalf("open %q: %q, %v", want, got, err)
		}
	}
	p1, p2, p3 := seal(a, "p1"), seal(a, "p2"), seal(a, "p3")
	// Handshake: responder installs first and keeps sending under the old keys.
	_, kb := mirrorKeys(1, 11, 21)
	if err := b.Install(&kb, now); err != nil {
		t.Fatal(err)
	}
	q1 := seal(b, "q1")
	ka, _ := mirrorKeys(1, 11, 21)
	if err := a.Install(&ka, now); err != nil {
		t.Fatal(err)
	}
	p4 := seal(a, "p4") // first packet under the new keys
	if h, _ := ParseDataHeader(p4); h.Receiver != 21 {
		t.Fatalf("p4 not under new keys: %+v", h)
	}
	open(b, p4, "p4")
	if b.current.Load().localIndex != 21 {
		t.Fatal("responder did not promote on first packet under next")
	}
	open(b, p2, "p2")
	open(b, p1, "p1")
	q2 := seal(b, "q2")
	if h, _ := ParseDataHeader(q2); h.Receiver != 11 {
		t.Fatalf("q2 not under new keys: %+v", h)
	}
	open(a, q2, "q2")
	open(a, q1, "q1")
	open(b, p3, "p3")
	for _, p := range [][]byte{p1, p2, p3, p4} {
		if _, err := b.Open(bytes.Clone(p), now); !errors.Is(err, ErrReplay) {
			t.Fatalf("duplicate accepted or wrong error: %v", err)
		}
	}
	// Old keys are rejected once 180 s old.
	exp := t0.Add(RejectAfterTime)
	if _, err := b.Open(bytes.Clone(p1), exp); err == nil {
		t.Fatal("old keypair accepted after expiry")
	}
	a.Tick(exp)
	b.Tick(exp)
	if !slices.Equal(relA, []uint32{10}) || !slices.Equal(relB, []uint32{20}) {
		t.Fatalf("released a=%v b=%v", relA, relB)
	}
}

// TestSimultaneousInitiation: both sides completed a handshake as initiator and as responder;
// the one that installs as initiator while holding an unconfirmed next keeps next for receiving.
func TestSimultaneousInitiation(t *testing.T) {
	a, b := newPair(t, t0)
	now := t0.Add(time.Second)
	// b initiated handshake 1 (a is responder), a initiated handshake 2 (b is responder).
	k1b, k1a := mirrorKeys(1, 30, 31) // b initiator with local 30, a local 31
	if err := a.Install(&k1a, now); err != nil {
		t.Fatal(err)
	}
	if err := b.Install(&k1b, now); err != nil {
		t.Fatal(err)
	}
	pFromB, _ := b.Seal(nil, []byte("b under k1"), now)
	k2a, k2b := mirrorKeys(2, 40, 41)
	if err := b.Install(&k2b, now); err != nil {
		t.Fatal(err)
	}
	if err := a.Install(&k2a, now); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Open(pFromB, now); err != nil || string(got) != "b under k1" {
		t.Fatalf("packet under the displaced next lost: %v", err)
	}
	p, _ := a.Seal(nil, []byte("a under k2"), now)
	if got, err := b.Open(p, now); err != nil || string(got) != "a under k2" {
		t.Fatalf("k2: %v", err)
	}
}

// netPacket is a packet in the simulated network.
type netPacket struct {
	at       time.Time
	data     []byte
	dup      bool
	accepted *bool // shared by a packet and its duplicate copy
}

// simPeer is one side of the in-memory rekey simulation.
type simPeer struct {
	s        *Session
	table    *IndexTable[*Session]
	sent     uint64 // next application sequence number
	received []int  // acceptance count per sequence number
	inbox    []netPacket
	late     int // packets accepted under the previous keypair
	dupsSeen int // second copies rejected as replays
}

// TestRekeyContinuousTraffic: two sessions exchange packets continuously for 13 virtual minutes
// through a network that delays each packet by 0–1.5 s (so packets reorder heavily around every
// key switch) and duplicates 3% of them; a handshake runs whenever the initiator asks. Every
// packet must be accepted exactly once, every duplicate rejected, and several rekeys must happen.
func TestRekeyContinuousTraffic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	mk := func() *simPeer {
		p := &simPeer{table: NewIndexTable[*Session](16, nil)}
		p.s = New(Config{Release: func(i uint32) { p.table.Release(i, p.s) }}, t0)
		return p
	}
	A, B := mk(), mk()
	gen := 0
	type pending struct {
		respAt, initAt time.Time
		ka, kb         Keys
	}
	var hs *pending
	startHandshake := func(now time.Time) {
		ia, err := A.table.Allocate(A.s)
		if err != nil {
			t.Fatal(err)
		}
		ib, err := B.table.Allocate(B.s)
		if err != nil {
			t.Fatal(err)
		}
		ka, kb := mirrorKeys(gen, ia, ib)
		gen++
		// initiation reaches B after 150 ms, the response reaches A 150 ms later.
		hs = &pending{respAt: now.Add(150 * time.Millisecond), initAt: now.Add(300 * time.Millisecond), ka: ka, kb: kb}
	}
	send := func(from, to *simPeer, now time.Time, empty bool) {
		var pt []byte
		if !empty {
			pt = payload(nil, from.sent, 8+int(from.sent%40))
		}
		p, err := from.s.Seal(nil, pt, now)
		if errors.Is(err, ErrNoKey) && from.s.next.Load() != nil {
			return // responder before its first keypair is confirmed: the data waits
		}
		if err != nil {
			t.Fatalf("seal at %v: %v", now.Sub(t0), err)
		}
		if !empty {
			from.sent++
		}
		acc := new(bool)
		to.inbox = append(to.inbox, netPacket{at: now.Add(time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))), data: p, accepted: acc})
		if rng.IntN(100) < 3 {
			to.inbox = append(to.inbox, netPacket{at: now.Add(time.Duration(rng.Int64N(int64(3 * time.Second)))), data: bytes.Clone(p), dup: true, accepted: acc})
		}
	}
	deliver := func(p *simPeer, now time.Time, all bool) {
		var due []netPacket
		keep := p.inbox[:0]
		for _, np := range p.inbox {
			if all || !np.at.After(now) {
				due = append(due, np)
			} else {
				keep = append(keep, np)
			}
		}
		p.inbox = keep
		rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		for _, np := range due {
			h, _ := ParseDataHeader(np.data)
			prev := p.s.previous.Load()
			isLate := prev != nil && prev.localIndex == h.Receiver
			pt, err := p.s.Open(np.data, now)
			if err == nil {
				*np.accepted = true
			}
			switch {
			case err == nil && len(pt) == 0:
			case err == nil:
				seq := binary.LittleEndian.Uint64(pt)
				if !bytes.Equal(pt, payload(nil, seq, 8+int(seq%40))) {
					t.Fatalf("corrupt payload %d", seq)
				}
				for uint64(len(p.received)) <= seq {
					p.received = append(p.received, 0)
				}
				p.received[seq]++
				if p.received[seq] > 1 {
					t.Fatalf("seq %d accepted twice (dup copy: %v)", seq, np.dup)
				}
				if isLate {
					p.late++
				}
			case *np.accepted && errors.Is(err, ErrReplay): // the other copy came first
				p.dupsSeen++
			default:
				t.Fatalf("at %v: open (dup=%v): %v", now.Sub(t0), np.dup, err)
			}
		}
	}

	startHandshake(t0)
	hs.respAt, hs.initAt = t0, t0
	const step = 50 * time.Millisecond
	end := t0.Add(13 * time.Minute)
	rekeys := -1
	now := t0
	for ; now.Before(end); now = now.Add(step) {
		if hs != nil && !now.Before(hs.respAt) && hs.kb != (Keys{}) {
			if err := B.s.Install(&hs.kb, now); err != nil {
				t.Fatal(err)
			}
			hs.kb = Keys{}
		}
		if hs != nil && !now.Before(hs.initAt) {
			if err := A.s.Install(&hs.ka, now); err != nil {
				t.Fatal(err)
			}
			hs = nil
			rekeys++
		}
		for _, p := range []struct{ from, to *simPeer }{{A, B}, {B, A}} {
			act := p.from.s.Tick(now)
			if act&ActionRekey != 0 {
				if p.from == B {
					t.Fatalf("responder asked for rekey at %v", now.Sub(t0))
				}
				if hs == nil {
					startHandshake(now)
				}
			}
			if act&ActionKeepalive != 0 {
				send(p.from, p.to, now, true)
			}
			for range 1 + rng.IntN(4) {
				send(p.from, p.to, now, false)
			}
		}
		deliver(A, now, false)
		deliver(B, now, false)
	}
	deliver(A, now, true)
	deliver(B, now, true)
	for _, p := range []*simPeer{A, B} {
		other := B
		if p == B {
			other = A
		}
		for seq, c := range p.received {
			if c != 1 {
				t.Fatalf("seq %d received %d times", seq, c)
			}
		}
		if uint64(len(p.received)) != other.sent {
			t.Fatalf("received %d of %d", len(p.received), other.sent)
		}
		if p.late == 0 {
			t.Fatal("no packet was accepted under a previous keypair: the switch was not exercised")
		}
		if p.dupsSeen == 0 {
			t.Fatal("no duplicate was exercised")
		}
		if n := p.table.Len(); n > 3 {
			t.Fatalf("index table holds %d indices: released keypairs leak", n)
		}
	}
	if rekeys < 5 {
		t.Fatalf("only %d rekeys", rekeys)
	}
	t.Logf("%d rekeys; A→B %d packets (%d late, %d dups rejected), B→A %d packets (%d late, %d dups rejected)",
		rekeys, A.sent, B.late, B.dupsSeen, B.sent, A.late, A.dupsSeen)
}

// TestConcurrentSealOpen runs sealers and openers on several goroutines (meaningful with -race):
// every packet accepted exactly once, duplicates rejected.
func TestConcurrentSealOpen(t *testing.T) {
	a, b := newPair(t, t0)
	// No more packets than the replay window holds: an opener can be descheduled between taking a
	// packet and opening it for as long as the scheduler likes, and a packet that falls more than
	// ReplayWindow behind is rightly refused. With fewer, every packet must be accepted exactly once.
	const workers, per = 4, ReplayWindow / 4
	ch := make(chan []byte, 256)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 0, 128)
			for i := range per {
				seq := uint64(w*per + i)
				p, err := a.Seal(nil, payload(buf, seq, 8+int(seq%50)), t0)
				if err != nil {
					t.Error(err)
					return
				}
				ch <- p
				if i%10 == 0 {
					ch <- bytes.Clone(p) // duplicate, possibly opened concurrently with the original
				}
			}
		})
	}
	go func() { wg.Wait(); close(ch) }()
	var mu sync.Mutex
	got := make([]int, workers*per)
	var owg sync.WaitGroup
	for range workers {
		owg.Go(func() {
			for p := range ch {
				pt, err := b.Open(p, t0)
				if errors.Is(err, ErrReplay) {
					continue
				}
				if err != nil {
					t.Error(err)
					continue
				}
				seq := binary.LittleEndian.Uint64(pt)
				if !bytes.Equal(pt, payload(nil, seq, 8+int(seq%50))) {
					t.Errorf("corrupt %d", seq)
				}
				mu.Lock()
				got[seq]++
				mu.Unlock()
			}
		})
	}
	// Rekey concurrently with the traffic: a installs as initiator, b as responder.
	now := t0.Add(time.Second)
	installDirect(t, a, b, 1, 0x1a, 0x1b, now)
	owg.Wait()
	for i, c := range got {
		if c != 1 {
			t.Fatalf("seq %d accepted %d times", i, c)
		}
	}
}

func TestPerPacketPathAllocs(t *testing.T) {
	a, b := newPair(t, t0)
	pt := make([]byte, 1420)
	buf := make([]byte, 0, 1420+MinPacketSize)
	var err error
	if n := testing.AllocsPerRun(1000, func() {
		var p []byte
		p, err = a.Seal(buf[:0], pt, t0)
		if err == nil {
			_, err = b.Open(p, t0)
		}
	}); n != 0 {
		t.Fatalf("seal+open allocates %v times per packet", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 100)
	junk[0] = TypeData
	if n := testing.AllocsPerRun(100, func() { _, _ = b.Open(junk, t0) }); n != 0 {
		t.Fatalf("rejecting junk allocates %v times", n)
	}
}

// FuzzOpen feeds arbitrary packets to a session: Open must never panic and must accept nothing
// but the genuine packets sealed by the peer (each byte-for-byte, with its own plaintext).
func FuzzOpen(f *testing.F) {
	ka, kb := mirrorKeys(7, 0x11, 0x22)
	sender := New(Config{}, t0)
	if err := sender.Install(&ka, t0); err != nil {
		f.Fatal(err)
	}
	genuine := map[string]string{}
	for _, msg := range []string{"", "a", "hello world", string(make([]byte, 300))} {
		p, err := sender.Seal(nil, []byte(msg), t0)
		if err != nil {
			f.Fatal(err)
		}
		genuine[string(p)] = msg
		f.Add(p)
		flipped := bytes.Clone(p)
		flipped[len(p)/2] ^= 4
		f.Add(flipped)
		f.Add(p[:len(p)-1])
	}
	f.Add([]byte{4, 0, 0, 0, 0x22, 0, 0, 0})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		kb := kb // Install wipes its argument
		s := New(Config{}, t0)
		if err := s.Install(&kb, t0); err != nil {
			t.Fatal(err)
		}
		in := bytes.Clone(pkt)
		pt, err := s.Open(in, t0)
		if err != nil {
			return
		}
		msg, ok := genuine[string(pkt)]
		if !ok {
			t.Fatalf("accepted a packet that was never sealed: % x", pkt)
		}
		if string(pt) != msg {
			t.Fatalf("genuine packet decrypted to %q, want %q", pt, msg)
		}
		if _, err := s.Open(bytes.Clone(pkt), t0); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay of genuine packet: %v", err)
		}
	})
}

// Data sent with nothing coming back for KeepaliveTimeout+RekeyTimeout asks for a new handshake
// (WireGuard's rule: the peer may have restarted and lost its keys), once per such period; any
// packet from the peer clears it, and keepalives alone never start it.
func TestRekeyWhenUnanswered(t *testing.T) {
	a, b := newPair(t, t0)
	quiet := KeepaliveTimeout + RekeyTimeout
	if _, err := a.Seal(nil, nil, t0); err != nil { // a keepalive starts nothing
		t.Fatal(err)
	}
	if a.Tick(t0.Add(quiet))&ActionRekey != 0 {
		t.Fatal("a keepalive without an answer asked for a rekey")
	}
	t1 := t0.Add(time.Minute)
	if _, err := a.Seal(nil, []byte("data"), t1); err != nil {
		t.Fatal(err)
	}
	if a.Tick(t1.Add(quiet-time.Millisecond))&ActionRekey != 0 {
		t.Fatal("rekey asked for too early")
	}
	if a.Tick(t1.Add(quiet))&ActionRekey == 0 {
		t.Fatal("no rekey after data went unanswered")
	}
	if a.Tick(t1.Add(quiet+time.Second))&ActionRekey != 0 {
		t.Fatal("rekey asked for again at once")
	}
	if a.Tick(t1.Add(2*quiet))&ActionRekey == 0 {
		t.Fatal("no second rekey after another silent period")
	}
	// An answer clears it.
	t2 := t1.Add(2*quiet + time.Second)
	if _, err := a.Seal(nil, []byte("more"), t2); err != nil {
		t.Fatal(err)
	}
	reply, err := b.Seal(nil, []byte("reply"), t2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Open(reply, t2); err != nil {
		t.Fatal(err)
	}
	if a.Tick(t2.Add(quiet))&ActionRekey != 0 {
		t.Fatal("rekey asked for although the peer answered")
	}
}
