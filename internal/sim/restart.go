package sim

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Restart is what restarting one node cost its area's routing (docs/performance.md, "Restarts").
type Restart struct {
	Node      string
	Degree    int // the node's links
	AreaNodes int // nodes of its area
	// Noticed: the node was down longer than the link layer's dead interval, so its neighbours
	// flooded records without its links (a crash and return); otherwise it came back before they
	// noticed (a restart: an upgrade, a process restarted by its supervisor).
	Noticed bool
	// KeptRecords: the node came back with the records it held when it stopped (a node that saves
	// them at shutdown, docs/node.md); otherwise with an empty database.
	KeptRecords bool
	Messages    uint64
	Bytes       uint64
	// Senders is how many nodes sent a routing message in the window: the restarted node and its
	// neighbours for a restart that floods nothing, the whole area for one that floods.
	Senders int
}

// restartWindow is how long the routing messages after a restart are counted: the restarted node's
// adjacencies come up, databases are exchanged and the records it and its neighbours sign are
// flooded and acknowledged (well inside it in every run measured). A window in which any other
// node signed a record (the periodic refresh, every 60 s, floods every record of the area) is
// measured again, so that nothing else is counted.
const restartWindow = 3 * time.Second

// maxRestartTries bounds how often one measurement is repeated because a refresh fell in its window.
const maxRestartTries = 3

// MeasureRestarts restarts k nodes that are not gateways, one at a time, and counts the level-1
// routing messages and bytes from each one's return until the window ends; the mesh must be
// synchronised again by then. Each node is restarted four times: back before its neighbours notice
// (down a third of the dead interval), then back after they noticed and flooded the loss (down
// 2 s), each first with an empty database and then with the records it held when it stopped given
// back (routingsim.Network.ReviveKeepingRecords), so that both are measured on the same nodes in
// the same run.
func (s *Sim) MeasureRestarts(k int) ([]Restart, error) {
	rng := newRand(s.cfg.Seed ^ 0x72657374) // its own draws: faults and flows draw as without it
	areaNodes := map[uint32]int{}
	for _, a := range s.Area {
		areaNodes[a]++
	}
	var out []Restart
	for tries, done := 0, 0; done < k && tries < 100*k; tries++ {
		i := rng.IntN(s.cfg.Nodes)
		id := s.IDs[i]
		nd := s.Net.Node(id)
		if nd.Gateway || !nd.Alive {
			continue
		}
		done++
		bystanders := map[int]bool{} // the nodes that have nothing to sign because of this restart
		for j := range s.IDs {
			bystanders[j] = j != i && !slices.Contains(s.Adj[i], j)
		}
		type kind struct {
			down time.Duration
			keep bool
		}
		quick, noticed := s.cfg.DetectDelay/3, 2*time.Second
		for try, kinds := 0, []kind{{quick, false}, {quick, true}, {noticed, false}, {noticed, true}}; len(kinds) > 0; {
			down, keep := kinds[0].down, kinds[0].keep
			signed := s.originatedBy(bystanders)
			s.Net.Kill(id)
			s.Net.RunFor(down)
			before := s.Net.Counters
			sent := make([]uint64, len(s.IDs))
			for j, x := range s.IDs {
				sent[j] = s.Net.Node(x).SentBytes
			}
			var err error
			if keep {
				_, err = s.Net.ReviveKeepingRecords(id)
			} else {
				err = s.Net.Revive(id)
			}
			if err != nil {
				return nil, err
			}
			s.Net.RunFor(restartWindow)
			if s.originatedBy(bystanders) != signed && try < maxRestartTries {
				// A refresh fell in the window (maybe at its very end, still flooding): measure
				// this kind again.
				try++
				continue
			}
			if err := s.Net.CheckSynchronised(); err != nil {
				return nil, fmt.Errorf("sim: not synchronised %s after restarting %s: %w", restartWindow, nd.Name, err)
			}
			kinds, try = kinds[1:], 0
			senders := 0
			for j, x := range s.IDs {
				if s.Net.Node(x).SentBytes != sent[j] {
					senders++
				}
			}
			out = append(out, Restart{Node: nd.Name, Degree: len(s.Adj[i]), AreaNodes: areaNodes[s.Area[i]],
				Noticed: down >= s.cfg.DetectDelay, KeptRecords: keep, Messages: s.Net.Counters.Sent - before.Sent,
				Bytes: s.Net.Counters.Bytes - before.Bytes, Senders: senders})
		}
	}
	return out, nil
}

// originatedBy sums the records the alive nodes whose index is in which have signed.
func (s *Sim) originatedBy(which map[int]bool) uint64 {
	var t uint64
	for j, id := range s.IDs {
		if nd := s.Net.Node(id); which[j] && nd.Alive {
			t += nd.Router.Stats().Originated
		}
	}
	return t
}

// restartStats is the mean over restarts of one kind.
type restartStats struct {
	Count                    int
	Messages, Bytes, Senders float64
	// Messages over degree, over degree × log2(N), over degree × area size.
	PerDeg, PerDegLogN, PerDegArea float64
}

// restartSummary is the mean of the restarts that were (noticed) or were not noticed, with or
// without their records kept.
func restartSummary(rs []Restart, nodes int, noticed, kept bool) restartStats {
	var st restartStats
	for _, r := range rs {
		if r.Noticed != noticed || r.KeptRecords != kept {
			continue
		}
		st.Count++
		st.Messages += float64(r.Messages)
		st.Bytes += float64(r.Bytes)
		st.Senders += float64(r.Senders)
		d := float64(max(r.Degree, 1))
		st.PerDeg += float64(r.Messages) / d
		st.PerDegLogN += float64(r.Messages) / (d * math.Log2(float64(nodes)))
		st.PerDegArea += float64(r.Messages) / (d * float64(r.AreaNodes))
	}
	k := float64(max(st.Count, 1))
	st.Messages, st.Bytes, st.Senders = st.Messages/k, st.Bytes/k, st.Senders/k
	st.PerDeg, st.PerDegLogN, st.PerDegArea = st.PerDeg/k, st.PerDegLogN/k, st.PerDegArea/k
	return st
}
