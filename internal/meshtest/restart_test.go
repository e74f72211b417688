package meshtest

import (
	"encoding/binary"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
)

// flowResult is what a constant-rate UDP flow saw around a restart.
type flowResult struct {
	resume    time.Duration // restart → first datagram sent after it that arrived
	lostAfter int           // datagrams sent more than resumeBound after the restart that never arrived
}

// restartFlow runs a 100 datagram/s flow a → d across relays b and c on a line, and restarts victim
// 3 s in. The line is long enough that no self-healing probe travels between a and d: only the flow
// needs their end-to-end session.
// bootClockBehind makes the restarted process read a clock behind its previous start at boot, so its
// records carry a smaller incarnation and only unknown-session notices can tell a of the restart.
func restartFlow(t *testing.T, seed uint64, victim string, bootClockBehind bool) (flowResult, *Mesh) {
	t.Helper()
	return flowAcrossRestart(t, restartCase{seed: seed, src: "a", dst: "d", victim: victim, bootClockBehind: bootClockBehind})
}

// restartCase is a flow src → dst on the line a – b – c – d and the node restarted 3 s in.
// openedByDst has dst ping src before the flow, so that dst opens the end-to-end session and src
// only ever responds to it.
type restartCase struct {
	seed             uint64
	src, dst, victim string
	bootClockBehind  bool
	openedByDst      bool
}

// flowAcrossRestart runs c's flow at 100 datagrams/s and reports what it saw around the restart.
func flowAcrossRestart(t *testing.T, c restartCase) (flowResult, *Mesh) {
	t.Helper()
	seed, victim, bootClockBehind := c.seed, c.victim, c.bootClockBehind
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
	src, dst := m.Node(c.src), m.Node(c.dst)
	if _, ok := m.RunUntil(hasRoute(src, c.dst, 3, ""), 5*time.Second); !ok {
		t.Fatalf("no route %s -> %s\n%s", c.src, c.dst, dump(m))
	}
	if c.openedByDst && !ping(m, dst, src, 1, time.Second) {
		t.Fatalf("%s's ping to %s got no reply\n%s", c.dst, c.src, dump(m))
	}

	const interval = 10 * time.Millisecond
	sentAt := map[uint32]time.Time{}
	var seq uint32
	sendFor := func(span time.Duration) {
		for end := m.Now().Add(span); m.Now().Before(end); {
			seq++
			sentAt[seq] = m.Now()
			src.Inject(UDPPacket(src.Addr(), dst.Addr(), 4000, 4001, binary.BigEndian.AppendUint32([]byte("flow"), seq)))
			m.Run(interval)
		}
	}
	sendFor(3 * time.Second)
	restartAt := m.Now()
	restarting = true
	if err := m.Restart(victim); err != nil {
		t.Fatal(err)
	}
	sendFor(4 * time.Second)
	m.Run(time.Second) // let the last datagrams arrive

	got := map[uint32]bool{}
	for _, p := range dst.Delivered() {
		if len(p.Data) == 48+8 && string(p.Data[48:52]) == "flow" {
			got[binary.BigEndian.Uint32(p.Data[52:])] = true
		}
	}
	res := flowResult{resume: -1}
	for s := uint32(1); s <= seq; s++ {
		at := sentAt[s]
		if at.Before(restartAt) {
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
		t.Fatalf("nothing arrived after the restart of %s\n%s", victim, dump(m))
	}
	return res, m
}

// resumeBound is the goal: traffic to a restarted node resumes within a second of its start.
const resumeBound = time.Second

// TestDestinationRestartResumes: the destination of a flow restarts (a new process, same identity).
// The sender learns it from the restarted node's first record, handshakes again at once, and the flow
// resumes within a second instead of waiting for the session's 15 s timeout.
func TestDestinationRestartResumes(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		res, m := restartFlow(t, seed, "d", false)
		t.Logf("seed %d: resumed %s after the restart; %d lost after %s", seed, res.resume, res.lostAfter, resumeBound)
		if res.resume > resumeBound || res.lostAfter > 0 {
			t.Errorf("seed %d: resumed after %s, %d datagrams lost later\n%s", seed, res.resume, res.lostAfter, dump(m))
		}
		if s := m.Node("a").Status().Stats; s.PeerRestarts == 0 {
			t.Errorf("seed %d: a never saw d's new incarnation: %+v", seed, s)
		}
	}
}

// TestRestartNoticeAlone: the restarted destination booted with its clock behind, so its records'
// incarnation is smaller and says nothing. Its unknown-session notices make the sender handshake
// again, and the flow still resumes within a second.
func TestRestartNoticeAlone(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		res, m := restartFlow(t, seed, "d", true)
		a, d := m.Node("a").Status().Stats, m.Node("d").Status().Stats
		t.Logf("seed %d: resumed %s after the restart; notices sent %d, accepted %d", seed, res.resume, d.NoticesSent, a.NoticesAccepted)
		if a.PeerRestarts != 0 {
			t.Fatalf("seed %d: the records signalled the restart; the test does not test notices", seed)
		}
		if a.NoticesAccepted == 0 || d.NoticesSent == 0 {
			t.Errorf("seed %d: notices sent %d, accepted %d", seed, d.NoticesSent, a.NoticesAccepted)
		}
		if res.resume > resumeBound || res.lostAfter > 0 {
			t.Errorf("seed %d: resumed after %s, %d datagrams lost later\n%s", seed, res.resume, res.lostAfter, dump(m))
		}
	}
}

// TestRelayRestartResumes: restarting the relay costs less than a second too (its links come back
// and routing resumes; no end-to-end session depends on it).
func TestRelayRestartResumes(t *testing.T) {
	res, m := restartFlow(t, 1, "c", false)
	t.Logf("resumed %s after the relay's restart", res.resume)
	if res.resume > resumeBound || res.lostAfter > 0 {
		t.Errorf("resumed after %s, %d datagrams lost later\n%s", res.resume, res.lostAfter, dump(m))
	}
}
