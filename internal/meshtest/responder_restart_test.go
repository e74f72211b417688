package meshtest

import (
	"encoding/binary"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
)

// responderFlowAcrossRestart: a opens the end-to-end session with d (a ping, so a is the initiator
// and d only ever responded), then d sends a 100 datagram/s flow back to a across relays b and c,
// and a restarts 3 s in, losing the session. d has data to send and a session its peer no longer
// has: it must handshake itself rather than wait for a, which has nothing to send. bootClockBehind
// makes a's new process sign smaller incarnations, so only unknown-session notices can tell d.
func responderFlowAcrossRestart(t *testing.T, seed uint64, bootClockBehind bool) (flowResult, *Mesh) {
	t.Helper()
	var m *Mesh
	restarting := false
	cfg := Config{Seed: seed, Options: func(name string, o *node.Options) {
		if restarting && bootClockBehind {
			first := true
			o.Now = func() time.Time {
				if first {
					first = false
					return Epoch.Add(-time.Second)
				}
				return m.Now()
			}
		}
	}}
	var err error
	if m, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := m.AddNodes("a", "b", "c", "d"); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}, {"c", "d"}} {
		if err := m.Link(l[0], l[1], LinkParams{Delay: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	a, d := m.Node("a"), m.Node("d")
	if _, ok := m.RunUntil(hasRoute(d, "a", 3, "c"), 5*time.Second); !ok {
		t.Fatalf("no route d -> a\n%s", dump(m))
	}
	if !ping(m, a, d, 1, time.Second) {
		t.Fatalf("a's ping to d got no reply\n%s", dump(m))
	}
	const interval = 10 * time.Millisecond
	sentAt := map[uint32]time.Time{}
	var seq uint32
	sendFor := func(span time.Duration) {
		for end := m.Now().Add(span); m.Now().Before(end); {
			seq++
			sentAt[seq] = m.Now()
			d.Inject(UDPPacket(d.Addr(), a.Addr(), 4001, 4000, binary.BigEndian.AppendUint32([]byte("back"), seq)))
			m.Run(interval)
		}
	}
	sendFor(3 * time.Second)
	restartAt := m.Now()
	restarting = true
	if err := m.Restart("a"); err != nil {
		t.Fatal(err)
	}
	sendFor(4 * time.Second)
	m.Run(time.Second)

	got := map[uint32]bool{}
	for _, p := range a.Delivered() {
		if len(p.Data) == 48+8 && string(p.Data[48:52]) == "back" {
			got[binary.BigEndian.Uint32(p.Data[52:])] = true
		}
	}
	res := flowResult{resume: -1}
	for s := uint32(1); s <= seq; s++ {
		at := sentAt[s]
		if at.Before(restartAt) {
			if !got[s] && restartAt.Sub(at) > 100*time.Millisecond {
				t.Fatalf("datagram %d of the flow before the restart never arrived\n%s", s, dump(m))
			}
			continue
		}
		if got[s] && res.resume < 0 {
			res.resume = at.Sub(restartAt)
		}
		if !got[s] && at.Sub(restartAt) > resumeBound {
			res.lostAfter++
		}
	}
	if res.resume < 0 {
		t.Fatalf("nothing arrived after a's restart\n%s", dump(m))
	}
	return res, m
}

// TestResponderRestoresSession: the node that only ever responded re-establishes the session itself
// when its peer restarts, by the peer's new incarnation or by its unknown-session notices alone, and
// its flow resumes within a second instead of waiting for the peer to have something to send.
func TestResponderRestoresSession(t *testing.T) {
	for _, behind := range []bool{false, true} {
		for seed := uint64(1); seed <= 3; seed++ {
			res, m := responderFlowAcrossRestart(t, seed, behind)
			dStats := m.Node("d").Status().Stats
			t.Logf("clock behind %v, seed %d: resumed %s after a's restart; d saw %d restarts, accepted %d notices",
				behind, seed, res.resume, dStats.PeerRestarts, dStats.NoticesAccepted)
			if behind && dStats.PeerRestarts != 0 {
				t.Fatalf("seed %d: the records signalled the restart; the case does not test notices", seed)
			}
			if res.resume > resumeBound || res.lostAfter > 0 {
				t.Errorf("clock behind %v, seed %d: resumed after %s, %d datagrams lost later\n%s",
					behind, seed, res.resume, res.lostAfter, dump(m))
			}
		}
	}
}
