package sim

import (
	"fmt"
	"math"
	"time"
)

// Restart is what restarting one node cost its area's routing (docs/performance.md, "Restarts").
type Restart struct {
	Node      string
	Degree    int // the node's links
	AreaNodes int // nodes of its area
	Messages  uint64
	Bytes     uint64
}

// restartWindow is how long the routing messages after a restart are counted: the restarted node's
// adjacencies come up, databases are exchanged and the records it and its neighbours sign are
// flooded and acknowledged (well inside it in every run measured); refreshes are 60 s apart, so
// nothing else is counted.
const restartWindow = 3 * time.Second

// MeasureRestarts restarts k nodes that are not gateways, one at a time, each after its neighbours
// have seen it die, and counts the level-1 routing messages and bytes from its return until the
// window ends; the mesh must be synchronised again by then.
func (s *Sim) MeasureRestarts(k int) ([]Restart, error) {
	rng := newRand(s.cfg.Seed ^ 0x72657374) // its own draws: faults and flows draw as without it
	areaNodes := map[uint32]int{}
	for _, a := range s.Area {
		areaNodes[a]++
	}
	var out []Restart
	for tries := 0; len(out) < k && tries < 100*k; tries++ {
		i := rng.IntN(s.cfg.Nodes)
		id := s.IDs[i]
		nd := s.Net.Node(id)
		if nd.Gateway || !nd.Alive {
			continue
		}
		s.Net.Kill(id)
		s.Net.RunFor(2 * time.Second) // its neighbours detect the silence and flood the loss
		before := s.Net.Counters
		if err := s.Net.Revive(id); err != nil {
			return nil, err
		}
		s.Net.RunFor(restartWindow)
		if err := s.Net.CheckSynchronised(); err != nil {
			return nil, fmt.Errorf("sim: not synchronised %s after restarting %s: %w", restartWindow, nd.Name, err)
		}
		out = append(out, Restart{Node: nd.Name, Degree: len(s.Adj[i]), AreaNodes: areaNodes[s.Area[i]],
			Messages: s.Net.Counters.Sent - before.Sent, Bytes: s.Net.Counters.Bytes - before.Bytes})
	}
	return out, nil
}

// restartSummary is the mean of restarts, and the mean of messages over degree × log2(N) and over
// degree × area size.
func restartSummary(rs []Restart, nodes int) (msgs, bytes, perDegLogN, perDegArea float64) {
	for _, r := range rs {
		msgs += float64(r.Messages)
		bytes += float64(r.Bytes)
		d := float64(max(r.Degree, 1))
		perDegLogN += float64(r.Messages) / (d * math.Log2(float64(nodes)))
		perDegArea += float64(r.Messages) / (d * float64(r.AreaNodes))
	}
	k := float64(max(len(rs), 1))
	return msgs / k, bytes / k, perDegLogN / k, perDegArea / k
}
