package mapek

import (
	"fmt"
	"io"
	"math"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
	"x0tta6bl4/internal/sim"
)

// SimConfig is a self-healing experiment: one relay fault, a detector, the loop.
type SimConfig struct {
	Sim    sim.Config // Faults should hold one blackhole or grey hole
	Detect func(g *detector.Graph) [][]float64
	Rules  Rules
}

// SimResult reports detection and recovery.
type SimResult struct {
	Fault        sim.Fault
	Affected     int           // flows relayed by the faulty node when it failed
	MTTD         time.Duration // fault start → first penalise decision for the faulty node (-1: never)
	MTTR         time.Duration // fault start → affected flows' delivery back to ≥ Target for 1 s (-1: never)
	MTTRRel      time.Duration // same, to ≥ 99 % of their delivery before the fault (background loss)
	Target       float64
	Before       float64 // affected flows' delivery in the second before the fault
	After        float64 // while the faulty node is routed around
	FalseActions int     // penalties against healthy nodes
	Log          []Decision
}

type simActuator struct {
	s *sim.Sim
}

func (a simActuator) Penalise(v int) {
	for _, u := range a.s.Adj[v] {
		a.s.SetCost(u, v, true)
	}
}

func (a simActuator) Restore(v int) {
	for _, u := range a.s.Adj[v] {
		a.s.SetCost(u, v, false)
	}
}

// RunSim runs the experiment.
func RunSim(cfg SimConfig) (*SimResult, error) {
	loop := New(cfg.Rules)
	res := &SimResult{MTTD: -1, MTTR: -1, Target: 0.99}
	var fault *sim.Fault
	var affected []int
	var sentBefore, recvBefore, sentAfter, recvAfter int
	good, goodRel := 0, 0 // consecutive steps at target
	res.MTTRRel = -1
	c := cfg.Sim
	c.OnInterval = func(s *sim.Sim, iv *sim.Interval) {
		raw := experiment.FromInterval(s.Adj, iv)
		g := detector.Robust(&raw)
		probs := cfg.Detect(&g)
		// Evidence: what the neighbours' link counters say v was handed to relay and relayed.
		relayIn, relayOut := make([]float64, len(iv.X)), make([]float64, len(iv.X))
		for u, links := range iv.E {
			for i, v := range s.Adj[u] {
				relayIn[v] += float64(links[i][sim.ETxTransit])
				relayOut[v] += float64(links[i][sim.ERxTransit])
			}
		}
		js := make([]Judgement, len(probs))
		for v, p := range probs {
			best := 0
			for k := range p {
				if p[k] > p[best] {
					best = k
				}
			}
			js[v] = Judgement{Node: v, Class: sim.Kind(best).String(), Confidence: p[best],
				Evidence: map[string]float64{"nbrs_handed": math.Round(relayIn[v]), "nbrs_got_relayed": math.Round(relayOut[v]),
					"delivery": float64(iv.X[v][sim.FDelivery])}}
		}
		for _, d := range loop.Step(s.Elapsed(), js, simActuator{s}) {
			if d.Action != Penalise {
				continue
			}
			if fault != nil && d.Node == fault.Node {
				if res.MTTD < 0 {
					res.MTTD = s.Elapsed() - fault.Start
				}
			} else {
				res.FalseActions++
			}
		}
	}
	c.Control = func(s *sim.Sim) {
		if fault == nil {
			// The fault starts at the beginning of an interval; find the flows it will hit an
			// interval before.
			for _, f := range s.Faults {
				if s.Elapsed()+s.Config().Interval == f.Start {
					ff := f
					fault = &ff
					affected = s.FlowsThrough(f.Node)
				}
			}
			return
		}
		if affected == nil {
			return
		}
		var sent, recv int
		for _, fi := range affected {
			sent, recv = sent+s.FlowSent[fi], recv+s.FlowRecv[fi]
		}
		t := s.Elapsed() - fault.Start
		if t <= 0 {
			sentBefore, recvBefore = sentBefore+sent, recvBefore+recv
			return
		}
		if loop.Penalised(fault.Node) {
			sentAfter, recvAfter = sentAfter+sent, recvAfter+recv
		}
		streak := func(ok bool, n *int, out *time.Duration) {
			if *out >= 0 {
				return
			}
			if sent > 0 && ok {
				*n++
				if *n == 4 {
					*out = t - s.Config().Interval // the four steps' start
				}
			} else {
				*n = 0
			}
		}
		streak(float64(recv) >= res.Target*float64(sent), &good, &res.MTTR)
		streak(float64(recv) >= res.Target*frac(recvBefore, sentBefore)*float64(sent), &goodRel, &res.MTTRRel)
	}
	s, err := sim.New(c)
	if err != nil {
		return nil, err
	}
	if _, err := s.Converge(); err != nil {
		return nil, err
	}
	if err := s.PlanFaults(); err != nil {
		return nil, err
	}
	n := int(s.Config().Duration / s.Config().Interval)
	for range n {
		s.RunInterval()
	}
	if fault == nil {
		return nil, fmt.Errorf("mapek: the fault never started")
	}
	res.Fault, res.Affected, res.Log = *fault, len(affected), loop.Log
	res.Before = frac(recvBefore, sentBefore)
	res.After = frac(recvAfter, sentAfter)
	return res, nil
}

func frac(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Print writes the result.
func (r *SimResult) Print(w io.Writer) {
	fmt.Fprintf(w, "fault %s at node %d from %s; %d flows relayed through it\n", r.Fault.Kind, r.Fault.Node, r.Fault.Start, r.Affected)
	fmt.Fprintf(w, "MTTD %s, MTTR %s (affected flows' delivery ≥ %.0f%% for 1 s), %s (≥ %.0f%% of their delivery before the fault)\n",
		dur(r.MTTD), dur(r.MTTR), 100*r.Target, dur(r.MTTRRel), 100*r.Target)
	fmt.Fprintf(w, "affected flows' delivery: before the fault %.4f, while routed around %.4f; actions against healthy nodes %d\n",
		r.Before, r.After, r.FalseActions)
	for _, d := range r.Log {
		fmt.Fprintf(w, "  %s\n", d)
	}
}

func dur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.String()
}
