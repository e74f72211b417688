package node

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"x0tta6bl4/internal/netnstest"
)

// TestNetnsFragmentsDropped: on a path that drops IP fragments (many NATs, firewalls and cloud
// networks do), a chain n1 – n2 – n3 still converges and carries traffic. Link handshakes cut their
// messages themselves; link-state messages with a certificate (~10 KB) are larger than one 1500-byte
// packet and reach the neighbour only because the link session cuts them into pieces (linkfrag.go).
func TestNetnsFragmentsDropped(t *testing.T) {
	netnstest.Require(t, "netns test", "/dev/net/tun", "nft")
	l := newLab(t, 3, [][2]int{{0, 1}, {1, 2}})
	// The nodes start inside newLab; stop them, make every namespace drop IP fragments, and start
	// them again, so that not one message of theirs crosses a link whole in fragments.
	for i := range l.nodes {
		l.kill(i)
	}
	for _, n := range l.nodes {
		for _, rule := range [][]string{
			{"add", "table", "ip", "x6frag"},
			// Before conntrack's defragmentation (priority -400) sees them: every fragment, first or
			// not (more-fragments flag or a non-zero offset).
			{"add", "chain", "ip", "x6frag", "pre", "{ type filter hook prerouting priority -450; }"},
			{"add", "rule", "ip", "x6frag", "pre", "ip", "frag-off", "&", "0x3fff", "!=", "0", "counter", "drop"},
		} {
			if out, err := exec.Command("ip", append([]string{"netns", "exec", n.ns, "nft"}, rule...)...).CombinedOutput(); err != nil {
				t.Fatalf("nft %v in %s: %v: %s", rule, n.ns, err, out)
			}
		}
	}
	for i := range l.nodes {
		l.startNode(i)
	}
	l.waitLinks(30 * time.Second)
	took := l.waitRoute(0, 2, 20*time.Second, func(r RouteStatus) bool { return r.Hops == 2 })
	t.Logf("n1 has a 2-hop route to n3 %s after the links came up", took)
	if _, err := l.pingUntil(0, 2, 15*time.Second); err != nil {
		t.Fatalf("ping n1 -> n3: %v", err)
	}
	t.Logf("TCP n1 -> n3 with IP fragments dropped: %s", l.transfer(0, 2, 1<<20))
	// The path really dropped fragments: the first large frames to a neighbour not yet known to
	// reassemble pieces also go whole, and those died in the filter.
	var dropped int
	for _, n := range l.nodes {
		out, err := exec.Command("ip", "netns", "exec", n.ns, "nft", "list", "chain", "ip", "x6frag", "pre").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list in %s: %v: %s", n.ns, err, out)
		}
		m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in %s's filter: %s", n.name, out)
		}
		k, _ := strconv.Atoi(string(m[1]))
		dropped += k
	}
	t.Logf("IP fragments dropped: %d", dropped)
	if dropped == 0 {
		t.Error("no IP fragment was dropped: the test did not exercise a fragment-dropping path")
	}
	for i, n := range l.nodes {
		s := l.status(i).Stats
		t.Logf("%s: frames cut %d (%d pieces), reassembled %d, pieces dropped %d, abandoned %d",
			n.name, s.FramesCut, s.PiecesSent, s.FramesReassembled, s.PiecesDropped, s.ReassembliesAbandoned)
		if s.FramesReassembled == 0 {
			t.Errorf("%s reassembled no frame", n.name)
		}
	}
}
