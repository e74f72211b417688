package routingsim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"x0tta6bl4/internal/routing"
)

// A 4×4 grid split into two areas by columns, and an adversary wired to two nodes of area 1: it
// first claims area 2 (lying about its area), then signs area 1 records offering cost-1 links to
// every node of both areas and floods them. Routes inside each area stay the shortest paths of the
// honest topology throughout, nobody routes through the adversary, and nothing of it crosses into
// area 2.
func TestAreasWithAdversary(t *testing.T) {
	n := newNet(t, Config{Seed: 22, DetectDelay: 100 * time.Millisecond, UpDelay: 10 * time.Millisecond})
	ids := make([]NodeID, 16)
	for i := range ids {
		id, err := n.AddNodeInArea(fmt.Sprintf("g-%d", i), uint32(1+i%4/2)) // columns 0–1: area 1
		must(t, err)
		ids[i] = id
	}
	must(t, n.Grid(ids, 4, clean))
	adv, err := n.AddNodeInArea("adversary", 2)
	must(t, err)
	slow := LinkParams{Delay: 30 * time.Millisecond} // never on a shortest path between honest nodes
	must(t, n.Connect(adv, ids[0], slow))
	must(t, n.Connect(adv, ids[12], slow))
	converge(t, n, 10*time.Second)
	through := func() {
		t.Helper()
		for _, s := range ids {
			for _, d := range ids {
				if rt, ok := n.Router(s).NextHop(d); ok && rt.NextHop == adv {
					t.Fatalf("%s routes to %s through the adversary", n.Node(s).Name, n.Node(d).Name)
				}
			}
		}
	}
	through()
	routes := map[[2]NodeID]routing.Route{}
	for _, s := range ids {
		for _, d := range ids {
			if rt, ok := n.Router(s).NextHop(d); ok {
				routes[[2]NodeID{s, d}] = rt
			}
		}
	}
	for i, id := range ids {
		for j, other := range ids {
			if held := n.Router(id).Record(other) != nil; held != (i%4/2 == j%4/2) {
				t.Fatalf("%s holds %s's record: %v", n.Node(id).Name, n.Node(other).Name, held)
			}
		}
		if n.Router(id).Record(adv) != nil {
			t.Fatalf("%s holds the adversary's area 2 record", n.Node(id).Name)
		}
	}

	// Now it signs area 1 records with cost-1 links to every grid node, and floods them with area
	// summaries claiming area 1, many times over.
	node := n.Node(adv)
	var links []routing.LinkInfo
	for _, id := range ids {
		links = append(links, routing.LinkInfo{Neighbour: id, Cost: 1})
	}
	slices.SortFunc(links, func(x, y routing.LinkInfo) int { return cmpID(x.Neighbour, y.Neighbour) })
	seq := n.Router(adv).Seq()
	for range 20 {
		seq++
		raw, err := routing.SignRecord(node.Key.Sign, &routing.Record{Origin: adv, Seq: seq, Expires: n.Now().Add(time.Minute),
			CertFingerprint: node.Cert.Fingerprint(), Area: 1, Links: links})
		must(t, err)
		cb := node.Cert.Bytes()
		msg := append([]byte{routing.MsgRecord, 1, byte(len(cb) >> 8), byte(len(cb))}, cb...)
		for _, to := range []NodeID{ids[0], ids[12]} {
			_ = n.Inject(adv, to, append(msg, raw...))
		}
		n.RunFor(10 * time.Millisecond)
	}
	n.RunFor(time.Second)
	// By its own signature it is now a member of area 1, which any node may become; its links
	// count at the costs their honest ends advertise (the larger of both ends' reports), so none
	// of its cost-1 claims changes a route between honest nodes.
	if n.Router(ids[1]).Record(adv) == nil {
		t.Fatal("the adversary's area 1 record was not installed: the test no longer tests anything")
	}
	through()
	for k, want := range routes {
		if got, ok := n.Router(k[0]).NextHop(k[1]); !ok || got != want {
			t.Fatalf("%s→%s: route %+v, was %+v before the adversary", n.Node(k[0]).Name, n.Node(k[1]).Name, got, want)
		}
	}
	// Area 2 never saw any of it.
	for i, id := range ids {
		if i%4/2 == 1 && n.Router(id).Record(adv) != nil {
			t.Fatalf("%s (area 2) holds the adversary's area 1 record", n.Node(id).Name)
		}
	}
}

// A restart costs the restarted node's area, not the mesh: the same restart in a chain of 2 and of 6
// areas (5×5 grids joined by one link each) moves the same routing traffic.
func TestRestartCostStaysInArea(t *testing.T) {
	restart := func(areas int) (msgs, bytes uint64) {
		n := newNet(t, Config{Seed: 5, DetectDelay: 100 * time.Millisecond, UpDelay: 10 * time.Millisecond})
		var prev []NodeID
		for a := range areas {
			ids := make([]NodeID, 25)
			for i := range ids {
				id, err := n.AddNodeInArea(fmt.Sprintf("a%d-%d", a, i), uint32(a+1))
				must(t, err)
				ids[i] = id
			}
			must(t, n.Grid(ids, 5, clean))
			if prev != nil {
				must(t, n.Connect(prev[24], ids[0], clean))
			}
			prev = ids
		}
		converge(t, n, 10*time.Second)
		n.RunFor(time.Second)
		victim := n.Nodes()[12] // the centre of the first area
		n.Kill(victim)
		n.RunFor(time.Second)
		before := n.Counters
		must(t, n.Revive(victim))
		n.RunFor(2 * time.Second)
		must(t, n.CheckRoutes())
		return n.Counters.Sent - before.Sent, n.Counters.Bytes - before.Bytes
	}
	m2, b2 := restart(2)
	m6, b6 := restart(6)
	t.Logf("restart in a chain of 2 areas: %d messages, %d bytes; of 6 areas: %d messages, %d bytes", m2, b2, m6, b6)
	if m2 == 0 || m6 > m2*5/4 || b6 > b2*5/4 {
		t.Fatalf("a restart costs %d messages (%d bytes) with 6 areas, %d (%d) with 2", m6, b6, m2, b2)
	}
}

// quickRestart is what restartQuickly saw.
type quickRestart struct {
	senders   map[NodeID]bool // the nodes that sent routing messages after the return
	victim    NodeID
	seqBefore uint64 // its sequence number before the restart
	records   int    // Record messages delivered after the return
	byType    map[byte]int
	messages  uint64 // routing messages sent after the return
	n         *Network
}

// restartQuickly restarts the centre of a 5×5 grid of the given area, back before its neighbours
// notice. cut, if set, is cut while it is down; keep gives the restarted router the records it held
// (ReviveKeepingRecords).
func restartQuickly(t *testing.T, area uint32, cut, keep bool) quickRestart {
	t.Helper()
	n := newNet(t, Config{Seed: 9, DetectDelay: 300 * time.Millisecond, UpDelay: 10 * time.Millisecond})
	ids := make([]NodeID, 25)
	for i := range ids {
		id, err := n.AddNodeInArea(fmt.Sprintf("n%d", i), area)
		must(t, err)
		ids[i] = id
	}
	must(t, n.Grid(ids, 5, clean))
	converge(t, n, 10*time.Second)
	n.RunFor(time.Second)
	q := quickRestart{victim: ids[12], n: n}
	q.seqBefore = n.Router(q.victim).Seq()
	n.Kill(q.victim)
	if cut {
		n.Cut(q.victim, ids[13])
	}
	n.RunFor(100 * time.Millisecond) // a third of the dead interval
	sent := map[NodeID]uint64{}
	for _, id := range ids {
		sent[id] = n.Node(id).SentBytes
	}
	q.byType = map[byte]int{}
	n.OnDeliver = func(_, _ NodeID, msg []byte) {
		if len(msg) > 0 && msg[0] == routing.MsgRecord {
			q.records++
		}
		if len(msg) > 0 {
			q.byType[msg[0]]++
		}
	}
	before := n.Counters.Sent
	if keep {
		refused, err := n.ReviveKeepingRecords(q.victim)
		must(t, err)
		if refused != 0 {
			t.Fatalf("%d kept records refused", refused)
		}
	} else {
		must(t, n.Revive(q.victim))
	}
	n.RunFor(3 * time.Second)
	must(t, n.CheckSynchronised())
	must(t, n.CheckRoutes())
	q.messages = n.Counters.Sent - before
	q.senders = map[NodeID]bool{}
	for _, id := range ids {
		if n.Node(id).SentBytes != sent[id] {
			q.senders[id] = true
		}
	}
	return q
}

func TestRestartFloodsNothingInArea(t *testing.T) {
	q := restartQuickly(t, 1, false, false)
	st := q.n.Router(q.victim).Stats()
	if st.Adopted != 1 || st.Originated != 0 || q.n.Router(q.victim).Seq() != q.seqBefore {
		t.Fatalf("restarted node: adopted %d, signed %d, sequence %d (was %d); want its old record taken back", st.Adopted, st.Originated, q.n.Router(q.victim).Seq(), q.seqBefore)
	}
	if len(q.senders) != 5 || !q.senders[q.victim] {
		t.Fatalf("%d nodes sent routing messages after the restart, want the node and its 4 neighbours", len(q.senders))
	}
	// The database came once: each record from one neighbour, none flooded back.
	if st.Accepted != 24 || q.records < 24 {
		t.Fatalf("restarted node installed %d records from %d record messages, want its area's 24", st.Accepted, q.records)
	}

	// Area 0 keeps the earlier behaviour: the new record floods the mesh.
	q0 := restartQuickly(t, 0, false, false)
	if q0.n.Router(q0.victim).Seq() <= q0.seqBefore || len(q0.senders) < 20 {
		t.Fatalf("area 0: sequence %d → %d, %d nodes sent; want a new record flooded", q0.seqBefore, q0.n.Router(q0.victim).Seq(), len(q0.senders))
	}
}

// A node that kept its records across a restart pulls none: its neighbours' summaries show it
// holds every record they do, it takes back its own record from the copy it kept, and the restart
// costs summaries and their acknowledgements on its links, O(degree), whatever the area's size.
func TestRestartWithKeptRecordsPullsNothing(t *testing.T) {
	q := restartQuickly(t, 1, false, true)
	st := q.n.Router(q.victim).Stats()
	if q.records != 0 {
		t.Fatalf("%d record messages after a restart with the records kept, want none", q.records)
	}
	if st.Adopted != 1 || st.Originated != 0 || q.n.Router(q.victim).Seq() != q.seqBefore {
		t.Fatalf("restarted node: adopted %d, signed %d, sequence %d (was %d); want its kept record taken back", st.Adopted, st.Originated, q.n.Router(q.victim).Seq(), q.seqBefore)
	}
	if st.Accepted != 24 { // all from Restore
		t.Fatalf("restarted node installed %d records, want its area's 24", st.Accepted)
	}
	if len(q.senders) != 5 || !q.senders[q.victim] {
		t.Fatalf("%d nodes sent routing messages after the restart, want the node and its 4 neighbours", len(q.senders))
	}
	// Per link: a summary each way and its acknowledgement each way, and the neighbour's offer of
	// the node's own record (its summary lists none until it takes the kept one back) with the
	// acknowledgement of that offer.
	if q.messages > 4*6 {
		t.Fatalf("%d routing messages after the restart (%v by type), want at most 6 per link", q.messages, q.byType)
	}
	t.Logf("restart with kept records: %d messages %v", q.messages, q.byType)
}

func TestRestartWithChangedLinksSignsNewRecord(t *testing.T) {
	for _, keep := range []bool{false, true} {
		q := restartQuickly(t, 1, true, keep)
		st := q.n.Router(q.victim).Stats()
		if st.Adopted != 0 || st.Originated == 0 || q.n.Router(q.victim).Seq() <= q.seqBefore {
			t.Fatalf("restarted node with a link less (records kept: %v): adopted %d, signed %d, sequence %d (was %d); want a new record", keep, st.Adopted, st.Originated, q.n.Router(q.victim).Seq(), q.seqBefore)
		}
		if links := q.n.Router(q.victim).Record(q.victim).Links; len(links) != 3 {
			t.Fatalf("its record lists %d links, want 3", len(links))
		}
	}
}
