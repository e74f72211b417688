package meshtest

import "testing"

// TestResponderRestoresSession: d opens the end-to-end session with a (a ping), then a sends a flow
// to d and d restarts, losing the session. a only ever responded to that session and has data to
// send; d has nothing to send. a must handshake itself, by d's new incarnation or, with d's clock
// behind at boot, by d's unknown-session notices alone, and the flow resumes within a second.
func TestResponderRestoresSession(t *testing.T) {
	for _, behind := range []bool{false, true} {
		for seed := uint64(1); seed <= 3; seed++ {
			res, m := flowAcrossRestart(t, restartCase{seed: seed, src: "a", dst: "d", victim: "d",
				bootClockBehind: behind, openedByDst: true})
			s := m.Node("a").Status().Stats
			t.Logf("clock behind %v, seed %d: resumed %s after d's restart; a saw %d restarts, accepted %d notices",
				behind, seed, res.resume, s.PeerRestarts, s.NoticesAccepted)
			if behind && s.PeerRestarts != 0 {
				t.Fatalf("seed %d: the records signalled the restart; the case does not test notices", seed)
			}
			if !behind && s.PeerRestarts == 0 {
				t.Errorf("seed %d: a never saw d's new incarnation", seed)
			}
			if res.resume > resumeBound || res.lostAfter > 0 {
				t.Errorf("clock behind %v, seed %d: resumed after %s, %d datagrams lost later\n%s",
					behind, seed, res.resume, res.lostAfter, dump(m))
			}
		}
	}
}
