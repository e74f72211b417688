package meshtest

import "testing"

// TestResponderRestoresSession: dst opens the end-to-end session with src (a ping), then src sends a
// flow to dst and dst restarts, losing the session. src only ever responded to that session and has
// data to send; dst has nothing to send. src must handshake itself, by dst's new incarnation or, with
// dst's clock behind at boot, by dst's unknown-session notices alone, and the flow resumes within a
// second. Both ends of the line take each role once: a restarted a dials its neighbour itself, a
// restarted d waits to be dialled.
func TestResponderRestoresSession(t *testing.T) {
	for _, ends := range [][2]string{{"a", "d"}, {"d", "a"}} {
		for _, behind := range []bool{false, true} {
			for seed := uint64(1); seed <= 3; seed++ {
				src, dst := ends[0], ends[1]
				res, m := flowAcrossRestart(t, restartCase{seed: seed, src: src, dst: dst, victim: dst,
					bootClockBehind: behind, openedByDst: true})
				s := m.Node(src).Status().Stats
				t.Logf("%s → %s, clock behind %v, seed %d: resumed %s after %s's restart; %s saw %d restarts, accepted %d notices",
					src, dst, behind, seed, res.resume, dst, src, s.PeerRestarts, s.NoticesAccepted)
				if behind && s.PeerRestarts != 0 {
					t.Fatalf("seed %d: the records signalled the restart; the case does not test notices", seed)
				}
				if !behind && s.PeerRestarts == 0 {
					t.Errorf("seed %d: %s never saw %s's new incarnation", seed, src, dst)
				}
				if res.resume > resumeBound || res.lostAfter > 0 {
					t.Errorf("%s → %s, clock behind %v, seed %d: resumed after %s, %d datagrams lost later\n%s",
						src, dst, behind, seed, res.resume, res.lostAfter, dump(m))
				}
			}
		}
	}
}
