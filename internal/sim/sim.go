// Package sim is the discrete-event mesh simulator of issue 6. It runs the real routing core (through
// internal/routing/routingsim: virtual clock, virtual links, real ML-DSA-signed link-state records) on
// a generated topology, forwards data traffic hop by hop along the routers' own routes, injects
// faults (link degradation, node crash, overload, blackhole, grey hole, flapping), and emits
// per-node, per-interval telemetry with ground-truth labels for the anomaly detector. RunIncident
// (incident.go) builds incidents with their root causes: cascades whose symptom appears elsewhere,
// and two simultaneous faults.
//
// It must never read the wall clock or use randomness other than PRNGs seeded from Config.Seed: the
// same Config gives the same Result.
package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/routing"
	"x0tta6bl4/internal/routing/routingsim"
	"x0tta6bl4/internal/telemetry"
)

// Kind is a node's ground-truth state; Normal or a fault.
type Kind uint8

// Fault kinds.
const (
	Normal          Kind = iota
	LinkDegradation      // a link's loss and delay rise (both ends labelled)
	Crash                // the node stops
	Overload             // the node drops part of what it forwards, answers slowly, CPU saturated
	Blackhole            // keeps advertising links, drops every forwarded packet, reports it forwarded them
	GreyHole             // drops a fraction of forwarded packets, reports it forwarded them
	Flapping             // all the node's links go down and up every 1–2 s
	NumKinds
)

var kindNames = telemetry.Classes

func (k Kind) String() string {
	if k < NumKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind parses a fault name.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("sim: unknown fault %q (want one of %s)", s, strings.Join(kindNames[1:], ", "))
}

// FaultSpec asks for Count faults of a kind.
type FaultSpec struct {
	Kind  Kind
	Count int
}

// ParseFaults parses "blackhole:3,greyhole:2" (a missing count means 1).
func ParseFaults(s string) ([]FaultSpec, error) {
	var out []FaultSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, cnt, hasCount := strings.Cut(part, ":")
		k, err := ParseKind(name)
		if err != nil || k == Normal {
			return nil, fmt.Errorf("sim: bad fault %q", part)
		}
		c := 1
		if hasCount {
			if c, err = strconv.Atoi(cnt); err != nil || c < 0 || c > 10000 {
				return nil, fmt.Errorf("sim: bad fault count in %q", part)
			}
		}
		out = append(out, FaultSpec{k, c})
	}
	return out, nil
}

// Config configures a run. Zero values take the defaults shown.
type Config struct {
	Nodes         int
	Topology      string        // Geometric (default), Grid or ScaleFree
	Degree        float64       // 6: target mean degree of the geometric topology
	Seed          uint64        // everything derives from it
	Duration      time.Duration // 60 s of telemetry after the cold-start convergence
	Interval      time.Duration // 1 s telemetry interval
	Faults        []FaultSpec
	FaultFrom     float64 // 0.2: faults start at a whole interval uniformly in [FaultFrom, FaultTo) × Duration
	FaultTo       float64 // 0.5
	Flows         int     // 3 × Nodes: random (source, destination) pairs, fixed for the run
	Rate          int     // 20 packets per flow per interval
	DetectDelay   time.Duration
	ConvergeLimit time.Duration // 60 s of virtual time
	// Progress, if set, is called after every interval.
	Progress func(done, total int)
	// Control, if set, is called after every traffic step (Interval/4).
	Control func(s *Sim)
	// OnInterval, if set, is called with every interval's telemetry as soon as it is collected: the
	// MAPE-K hook (internal/mapek).
	OnInterval func(s *Sim, iv *Interval)
	// NoBackgroundLoss makes healthy links lossless (by default each loses 0–1 %).
	NoBackgroundLoss bool
	// Intensity overrides the range a kind's intensity is drawn from: link degradation's loss
	// (default 0.15–0.40), a grey hole's drop fraction (0.3–0.7) and an overload's offered load over
	// its remaining capacity (1.25–2.5).
	Intensity map[Kind][2]float64
	// Transient is the fraction of faults other than crashes that do not last: half of them end
	// after 5–15 s, half go on and off (2–6 s each way). The label follows the fault's activity.
	Transient float64
	// Simultaneous starts every fault at the same interval.
	Simultaneous bool
	// Frame makes lying relays also under-report what their upstream relays hand them, by the
	// fraction they drop, so that their neighbours seem to lose it.
	Frame bool
	// KernelFraction is the fraction of nodes, a fixed set per run, whose kernel counts their
	// traffic (eBPF, docs/ebpf.md): their intervals carry kernel features (kernel.go). 0: none.
	KernelFraction float64

	// hideLabels applies every fault but labels all nodes Normal, and cpu replaces the CPU model:
	// both only for the tests that check no feature is computed from the labels.
	hideLabels bool
	cpu        func(st *nodeState, util float64, rng *rand.Rand) float64
	// AreaSize splits the mesh into connected routing areas of about this many nodes
	// (docs/routing.md, Areas); 0 keeps one area. With areas, the cheapest link between every two
	// adjacent areas makes both its ends gateways, level 2 runs after the level-1 cold start, and
	// CrossPairs pairs of nodes in different areas are routed end to end and checked. The
	// telemetry's flows stay inside their area.
	AreaSize int
	// CrossPairs is how many cross-area pairs are checked (default 200).
	CrossPairs int
	// Restarts nodes that are not gateways are restarted one at a time after the cold start, and what
	// each restart cost is measured (Result.Restarts); 0: none.
	Restarts int
}

// MaxNodes is the largest simulation; beyond maxSingleArea nodes the mesh must be split into areas
// (a router holds at most 4096 originators).
const (
	MaxNodes      = 20000
	maxSingleArea = 4096
)

func (c *Config) defaults() error {
	if c.Nodes < 2 || c.Nodes > MaxNodes {
		return fmt.Errorf("sim: nodes must be 2–%d, have %d", MaxNodes, c.Nodes)
	}
	if c.AreaSize < 0 || c.AreaSize > maxSingleArea || (c.AreaSize == 0 && c.Nodes > maxSingleArea) {
		return fmt.Errorf("sim: %d nodes need areas of 1–%d nodes, have area size %d", c.Nodes, maxSingleArea, c.AreaSize)
	}
	if c.Topology == "" {
		c.Topology = Geometric
	}
	if c.Degree <= 0 {
		c.Degree = 6
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.FaultTo <= 0 {
		c.FaultFrom, c.FaultTo = 0.2, 0.5
	}
	if c.CrossPairs <= 0 {
		c.CrossPairs = 200
	}
	if c.Flows <= 0 {
		c.Flows = 3 * c.Nodes
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.DetectDelay <= 0 {
		c.DetectDelay = 300 * time.Millisecond
	}
	if c.ConvergeLimit <= 0 {
		c.ConvergeLimit = 60 * time.Second
	}
	total := 0
	for _, f := range c.Faults {
		total += f.Count
		if f.Kind == LinkDegradation {
			total += f.Count
		}
	}
	if total > c.Nodes/2 {
		return fmt.Errorf("sim: %d faulty nodes requested, at most half of %d", total, c.Nodes)
	}
	return nil
}

// Fault is one injected fault.
type Fault struct {
	Kind  Kind
	Node  int           // the faulty node (link degradation: one end)
	Peer  int           // link degradation: the other end; otherwise -1
	Start time.Duration // since telemetry start
	Rate  float64       // drop fraction (grey hole, overload), loss (link degradation)
	// Replaced is the victim first planned for a relay fault when it relayed nothing an interval
	// before the start (an earlier fault had rerouted its flows) and Node was drawn instead; else -1.
	Replaced int
	// End, when not zero, is when the fault stops (since telemetry start); Period, when not zero,
	// makes it go on and off, Period each way, from Start.
	End, Period time.Duration
}

// activeAt reports whether the fault acts at time t.
func (f *Fault) activeAt(t time.Duration) bool {
	if t < f.Start || (f.End > 0 && t >= f.End) {
		return false
	}
	return f.Period == 0 || ((t-f.Start)/f.Period)%2 == 0
}

// Feature indices and names: the simulator emits exactly the vectors real nodes export, defined
// once in internal/telemetry. Faulty relays (blackhole, grey hole) lie in Forwarded and Dropped,
// and in their own links' ETxTransit.
const (
	FDegree     = telemetry.FDegree
	FRTT        = telemetry.FRTT
	FLossMean   = telemetry.FLossMean
	FLossMax    = telemetry.FLossMax
	FSent       = telemetry.FSent
	FDelivery   = telemetry.FDelivery
	FWorstHop   = telemetry.FWorstHop
	FTransitIn  = telemetry.FTransitIn
	FForwarded  = telemetry.FForwarded
	FDropped    = telemetry.FDropped
	FRouteChg   = telemetry.FRouteChg
	FCPU        = telemetry.FCPU
	FMissing    = telemetry.FMissing
	NumFeatures = telemetry.NumNode

	ETxTransit      = telemetry.ETxTransit
	ERxTransit      = telemetry.ERxTransit
	ETxTransitW     = telemetry.ETxTransitW
	ERxTransitW     = telemetry.ERxTransitW
	EProbeLoss      = telemetry.EProbeLoss
	EProbeRTT       = telemetry.EProbeRTT
	EUp             = telemetry.EUp
	NumEdgeFeatures = telemetry.NumEdge

	// Window is the number of intervals the windowed edge counters cover.
	Window = telemetry.Window
)

// FeatureNames and EdgeFeatureNames name the features in order.
var (
	FeatureNames     = telemetry.NodeNames
	EdgeFeatureNames = telemetry.EdgeNames
)

// Interval is one telemetry interval.
type Interval struct {
	X      [][NumFeatures]float32       // per node
	E      [][][NumEdgeFeatures]float32 // E[v][i]: node v's counters on its link to Adj[v][i] (zero when v is dead)
	Labels []Kind                       // ground truth per node
	Sent   int                          // data packets sent by all sources in the interval
	Recv   int                          // delivered end to end
	// Kernel holds each node's kernel features (telemetry.KernelFeatures), nil for a node without
	// eBPF or without a report; Kernel itself is nil when no node has eBPF.
	Kernel []map[string]float64
}

// Result is what a run produced.
type Result struct {
	Config    Config
	Names     []string
	Edges     []Edge
	Adj       [][]int // neighbour indices, ascending
	Faults    []Fault
	Intervals []Interval

	Convergence      time.Duration // cold start to correct routes everywhere (virtual)
	ColdMessages     uint64        // routing messages until then
	ColdBytes        uint64
	SteadyMessages   uint64 // routing messages during the telemetry period
	SteadyBytes      uint64
	RoutingRecords   uint64 // records signed by all routers during the telemetry period
	HandleErrorCount int
	Areas            int // routing areas (1: the mesh is one area)
	// StateMax and StateMean are the bytes of records and certificates a router holds after the
	// cold start: the largest and the mean over nodes.
	StateMax, StateMean int
	// Level2 is the level-2 cold start and the cross-area checks (nil with one area).
	Level2 *Level2
	// Restarts is what each restart of Config.Restarts cost.
	Restarts []Restart
}

type flow struct{ src, dst int }

type nodeState struct {
	label Kind // ground truth: what the node's interval is labelled; no feature may read it
	fault Kind // the fault acting on the node now
	drop  float64
	// capacity is what the node can process per interval (packets); an overload takes most of it.
	// stepLoad counts the packets it processed in the current traffic step; util is the last
	// step's load over the step's capacity, which sets queueing drops and delay.
	capacity  float64
	hog       float64 // capacity taken by something else (an overload)
	stepLoad  int
	util      float64
	qdelay    time.Duration
	load      int // packets processed in the last interval
	lies      bool
	flapNext  time.Duration
	flapDown  bool
	prevNH    []int32
	prevGen   uint64
	own       int
	ownRecv   int
	transitIn int
	forwarded int
	dropped   int
	// Per link, indexed like Adj[v]: data frames sent to the neighbour for it to relay (true count,
	// and what a lying relay adds to its report), and frames received from it that it relayed; the
	// rings hold the last Window intervals' counts.
	txTransit, txLie, rxTransit []int
	txRing, rxRing              [][Window]int
	hopSent                     map[int]int
	hopRecv                     map[int]int
	costHigh                    map[int]bool // neighbours whose cost the MAPE-K loop raised
}

// Sim is a running simulation. Its fields are for the Control hook.
type Sim struct {
	cfg     Config
	Net     *routingsim.Network
	IDs     []routingsim.NodeID
	Area    []uint32 // routing area of each node
	index   map[routingsim.NodeID]int
	Edges   []Edge
	Adj     [][]int
	edgeOf  map[[2]int]int
	cur     []routingsim.LinkParams // current parameters per edge
	base    []routingsim.LinkParams // per edge, without the ends' queueing delay
	active  []bool                  // per fault: acting now
	cut     []bool                  // link cut by flapping
	Faults  []Fault
	rng     *rand.Rand
	used    []bool // fault victims
	checked []bool // per fault: relay victim confirmed
	flows   []flow
	st      []nodeState
	kern    *kernels      // nil when no node has eBPF
	elapsed time.Duration // since telemetry start
	// intervals counts collected intervals (the windowed counters' ring position).
	intervals int
	// Last is the most recent completed telemetry interval (nil before the first).
	Last *Interval
	// StepSent and StepRecv count the last traffic step (all flows); FlowSent and FlowRecv per flow.
	StepSent, StepRecv int
	FlowSent, FlowRecv []int
}

// New builds the network, the topology and the flows, and runs the cold start to convergence.
func New(cfg Config) (*Sim, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Sim{cfg: cfg, rng: newRand(cfg.Seed)}
	edges, err := generate(cfg.Topology, cfg.Nodes, cfg.Degree, s.rng)
	if err != nil {
		return nil, err
	}
	if cfg.NoBackgroundLoss {
		for i := range edges {
			edges[i].P.Loss = 0
		}
	}
	s.Edges = edges
	s.Adj = make([][]int, cfg.Nodes)
	s.edgeOf = make(map[[2]int]int, len(edges))
	for i, e := range edges {
		s.Adj[e.A] = append(s.Adj[e.A], e.B)
		s.Adj[e.B] = append(s.Adj[e.B], e.A)
		s.edgeOf[[2]int{e.A, e.B}] = i
		s.cur = append(s.cur, e.P)
		s.base = append(s.base, e.P)
	}
	for i := range s.Adj {
		sortInts(s.Adj[i])
	}
	s.cut = make([]bool, len(edges))
	net, err := routingsim.New(routingsim.Config{
		Seed:        cfg.Seed,
		DetectDelay: cfg.DetectDelay,
		UpDelay:     10 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	s.Net = net
	s.Area = partitionAreas(s.Adj, cfg.AreaSize)
	gateway := designateGateways(edges, s.Area)
	s.IDs = make([]routingsim.NodeID, cfg.Nodes)
	for i := range s.IDs {
		add := net.AddNodeInArea
		if gateway[i] {
			add = net.AddGateway
		}
		if s.IDs[i], err = add(fmt.Sprintf("n-%d", i), s.Area[i]); err != nil {
			return nil, err
		}
	}
	s.index = make(map[routingsim.NodeID]int, cfg.Nodes)
	for i, id := range s.IDs {
		s.index[id] = i
	}
	for _, e := range edges {
		if err := net.Connect(s.IDs[e.A], s.IDs[e.B], e.P); err != nil {
			return nil, err
		}
	}
	s.st = make([]nodeState, cfg.Nodes)
	for i := range s.st {
		s.st[i].hopSent, s.st[i].hopRecv = map[int]int{}, map[int]int{}
		s.st[i].costHigh = map[int]bool{}
		s.st[i].capacity = NodeCapacity
		d := len(s.Adj[i])
		s.st[i].txTransit, s.st[i].txLie, s.st[i].rxTransit = make([]int, d), make([]int, d), make([]int, d)
		s.st[i].txRing, s.st[i].rxRing = make([][Window]int, d), make([][Window]int, d)
	}
	s.kern = newKernels(cfg)
	members := map[uint32][]int{}
	for v, a := range s.Area {
		members[a] = append(members[a], v)
	}
	for range cfg.Flows {
		a := s.rng.IntN(cfg.Nodes)
		peers := members[s.Area[a]]
		if len(peers) < 2 {
			continue
		}
		// One area: the same draws as a uniform pair of distinct nodes.
		j := s.rng.IntN(len(peers) - 1)
		if j >= slices.Index(peers, a) {
			j++
		}
		s.flows = append(s.flows, flow{a, peers[j]})
	}
	return s, nil
}

// Converge runs the cold start until every node's routes are correct (up to 300 nodes: checked
// against shortest paths on the true topology) or every LSDB is complete (larger meshes, where the
// all-pairs check costs more than the run). It returns the virtual time taken.
func (s *Sim) Converge() (time.Duration, error) {
	if s.cfg.Nodes <= 300 {
		return s.Net.RunUntilConverged(s.cfg.ConvergeLimit)
	}
	d, ok := s.Net.RunUntil(func() bool { return s.Net.CheckSynchronised() == nil }, 5*time.Millisecond, s.cfg.ConvergeLimit)
	if !ok {
		return d, fmt.Errorf("not synchronised after %s: %w", d, s.Net.CheckSynchronised())
	}
	return d, nil
}

// Run runs a whole simulation: cold start, faults, telemetry.
func Run(cfg Config) (*Result, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	conv, err := s.Converge()
	if err != nil {
		return nil, err
	}
	res := &Result{Config: s.cfg, Edges: s.Edges, Adj: s.Adj, Convergence: conv,
		ColdMessages: s.Net.Counters.Sent, ColdBytes: s.Net.Counters.Bytes}
	areas := map[uint32]bool{}
	total := 0
	for i, id := range s.IDs {
		areas[s.Area[i]] = true
		b := s.Net.Router(id).DatabaseBytes()
		res.StateMax = max(res.StateMax, b)
		total += b
	}
	res.Areas, res.StateMean = len(areas), total/len(s.IDs)
	if len(areas) > 1 {
		if res.Level2, err = s.RunLevel2(s.cfg.CrossPairs); err != nil {
			return nil, err
		}
	}
	if s.cfg.Restarts > 0 {
		if res.Restarts, err = s.MeasureRestarts(s.cfg.Restarts); err != nil {
			return nil, err
		}
	}
	for _, id := range s.IDs {
		res.Names = append(res.Names, s.Net.Node(id).Name)
	}
	origBefore, steadyFrom := s.originated(), s.Net.Counters // what the restarts cost is not steady state
	if err := s.PlanFaults(); err != nil {
		return nil, err
	}
	res.Faults = s.Faults
	n := int(s.cfg.Duration / s.cfg.Interval)
	for t := range n {
		iv := s.RunInterval()
		res.Intervals = append(res.Intervals, iv)
		if s.cfg.Progress != nil {
			s.cfg.Progress(t+1, n)
		}
	}
	res.SteadyMessages = s.Net.Counters.Sent - steadyFrom.Sent
	res.SteadyBytes = s.Net.Counters.Bytes - steadyFrom.Bytes
	res.RoutingRecords = s.originated() - origBefore
	for _, c := range s.Net.HandleErrors {
		res.HandleErrorCount += c
	}
	return res, nil
}

func (s *Sim) originated() uint64 {
	var t uint64
	for _, id := range s.IDs {
		if nd := s.Net.Node(id); nd.Alive {
			t += nd.Router.Stats().Originated
		}
	}
	return t
}

// Config returns the configuration with defaults applied.
func (s *Sim) Config() Config { return s.cfg }

// PlanFaults picks distinct victims and start times for the configured faults (Run calls it after
// Converge).
func (s *Sim) PlanFaults() error {
	used := make([]bool, s.cfg.Nodes)
	s.used = used
	n := int(s.cfg.Duration / s.cfg.Interval)
	lo, hi := int(float64(n)*s.cfg.FaultFrom), int(float64(n)*s.cfg.FaultTo)
	if hi <= lo {
		hi = lo + 1
	}
	load := s.relayLoad()
	pick := func(relay bool) (int, bool) {
		for range 10000 {
			v := s.rng.IntN(s.cfg.Nodes)
			if !used[v] && (!relay || load[v] > 0) {
				return v, true
			}
		}
		return 0, false
	}
	for _, fs := range s.cfg.Faults {
		for range fs.Count {
			f := Fault{Kind: fs.Kind, Peer: -1, Replaced: -1, Start: time.Duration(lo+s.rng.IntN(hi-lo)) * s.cfg.Interval}
			if s.cfg.Simultaneous {
				f.Start = time.Duration(lo) * s.cfg.Interval
			}
			if fs.Kind != Crash && s.cfg.Transient > 0 && s.rng.Float64() < s.cfg.Transient {
				if s.rng.IntN(2) == 0 {
					f.End = f.Start + time.Duration(5+s.rng.IntN(11))*s.cfg.Interval
				} else {
					f.Period = time.Duration(2+s.rng.IntN(5)) * s.cfg.Interval
				}
			}
			// Faults of relays hit nodes that relay at least one flow; a degraded link needs a
			// victim with a neighbour no other fault has taken.
			v, ok := pick(fs.Kind == Blackhole || fs.Kind == GreyHole || fs.Kind == Overload)
			for tries := 0; ok && fs.Kind == LinkDegradation && !s.hasFree(v, used) && tries < 1000; tries++ {
				v, ok = pick(false)
			}
			if !ok {
				return errors.New("sim: not enough eligible nodes for the faults")
			}
			f.Node = v
			switch fs.Kind {
			case LinkDegradation:
				var free []int
				for _, u := range s.Adj[v] {
					if !used[u] {
						free = append(free, u)
					}
				}
				if len(free) == 0 {
					return errors.New("sim: no free neighbour for a link degradation")
				}
				f.Peer = free[s.rng.IntN(len(free))]
				used[f.Peer] = true
				f.Rate = s.intensity(LinkDegradation, 0.15, 0.40)
			case GreyHole:
				f.Rate = s.intensity(GreyHole, 0.3, 0.7)
			case Overload:
				f.Rate = s.intensity(Overload, 1.25, 2.5)
			}
			used[v] = true
			s.Faults = append(s.Faults, f)
		}
	}
	s.checked = make([]bool, len(s.Faults))
	s.active = make([]bool, len(s.Faults))
	return nil
}

// hasFree reports whether v has a neighbour no fault has taken.
func (s *Sim) hasFree(v int, used []bool) bool {
	for _, u := range s.Adj[v] {
		if !used[u] {
			return true
		}
	}
	return false
}

// intensity draws a fault's intensity uniformly from Config.Intensity's range for k, or [lo, hi).
func (s *Sim) intensity(k Kind, lo, hi float64) float64 {
	if r, ok := s.cfg.Intensity[k]; ok {
		lo, hi = r[0], r[1]
	}
	return lo + (hi-lo)*s.rng.Float64()
}

// NodeCapacity is what a healthy node can process per interval, in packets: a hub of the default
// traffic uses a few per cent of it, ten times that traffic under half.
const NodeCapacity = 20000

// maxQueueDelay is the delay a full queue adds to everything a saturated node handles.
const maxQueueDelay = 50 * time.Millisecond

func relayFault(k Kind) bool { return k == Blackhole || k == GreyHole || k == Overload }

// confirmVictims runs at the start of every interval: a relay fault starting within one interval
// must hit a node that relays traffic now. Victims are planned before the telemetry starts, and an
// earlier fault can reroute every flow away from one (seed 201: a planned blackhole lost its two
// flows to an overload's reroute 4 s before it began and never relayed a packet — a label no
// detector could see); such a victim is replaced by an unused node relaying at least one flow.
func (s *Sim) confirmVictims() {
	var load []int
	for i := range s.Faults {
		f := &s.Faults[i]
		if s.checked[i] || !relayFault(f.Kind) || f.Start-s.elapsed > s.cfg.Interval {
			continue
		}
		s.checked[i] = true
		if load == nil {
			load = s.relayLoad()
		}
		if load[f.Node] > 0 {
			continue
		}
		var cand []int
		for v, l := range load {
			if l > 0 && !s.used[v] && s.alive(v) {
				cand = append(cand, v)
			}
		}
		if len(cand) == 0 {
			continue
		}
		f.Replaced, f.Node = f.Node, cand[s.rng.IntN(len(cand))]
		s.used[f.Node] = true
	}
}

// relayLoad counts, per node, the flows it relays on the current routes.
func (s *Sim) relayLoad() []int {
	load := make([]int, s.cfg.Nodes)
	for _, f := range s.flows {
		cur := f.src
		for hops := 0; cur != f.dst && hops < 64; hops++ {
			if cur != f.src {
				load[cur]++
			}
			rt, ok := s.Net.Router(s.IDs[cur]).NextHop(s.IDs[f.dst])
			if !ok {
				break
			}
			cur = s.index[rt.NextHop]
		}
	}
	return load
}

func (s *Sim) edge(a, b int) int {
	if a > b {
		a, b = b, a
	}
	i, ok := s.edgeOf[[2]int{a, b}]
	if !ok {
		return -1
	}
	return i
}

// adjIndex returns u's position in Adj[v] (-1 if not a neighbour).
func (s *Sim) adjIndex(v, u int) int {
	a := s.Adj[v]
	lo, hi := 0, len(a)
	for lo < hi {
		m := (lo + hi) / 2
		if a[m] < u {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(a) && a[lo] == u {
		return lo
	}
	return -1
}

// setParams sets an edge's parameters without queueing; the ends' queueing delay is added.
func (s *Sim) setParams(e int, p routingsim.LinkParams) {
	s.base[e] = p
	s.applyParams(e)
}

func (s *Sim) applyParams(e int) {
	p := s.base[e]
	q := s.st[s.Edges[e].A].qdelay + s.st[s.Edges[e].B].qdelay
	p.Delay += q
	p.Jitter += q / 4
	s.cur[e] = p
	s.Net.SetLinkParams(s.IDs[s.Edges[e].A], s.IDs[s.Edges[e].B], p)
}

// queue updates node v's utilisation from the traffic step just run and, when its queueing delay
// moved by more than a millisecond, its links' delay: an M/M/1 wait below saturation, a full
// buffer above; above saturation the node drops the excess (1 − 1/ρ) of what it relays.
func (s *Sim) queue(v int, stepCap float64) {
	st := &s.st[v]
	st.util = float64(st.stepLoad) / stepCap
	st.stepLoad = 0
	var q time.Duration
	switch service := float64(s.cfg.Interval/4) / stepCap; {
	case st.util >= 1:
		q = maxQueueDelay
	default:
		q = min(maxQueueDelay, time.Duration(service*st.util/(1-st.util)))
	}
	if st.fault != Blackhole && st.fault != GreyHole {
		st.drop = 0
		if st.util > 1 {
			st.drop = 1 - 1/st.util
		}
	}
	if d := q - st.qdelay; d > time.Millisecond || d < -time.Millisecond {
		st.qdelay = q
		for _, u := range s.Adj[v] {
			s.applyParams(s.edge(v, u))
		}
	}
}

// activate starts fault f, or stops it (on = false): a transient or on-off fault.
func (s *Sim) activate(f Fault, on bool) {
	st := &s.st[f.Node]
	kind := Normal
	if on {
		kind = f.Kind
	}
	st.fault = kind
	if !s.cfg.hideLabels {
		st.label = kind
	}
	switch f.Kind {
	case LinkDegradation:
		s.st[f.Peer].fault = kind
		if !s.cfg.hideLabels {
			s.st[f.Peer].label = kind
		}
		e := s.edge(f.Node, f.Peer)
		p := s.Edges[e].P
		if s.cfg.NoBackgroundLoss {
			p.Loss = 0
		}
		if on {
			p.Loss, p.Delay, p.Jitter = f.Rate, 4*p.Delay+10*time.Millisecond, 5*time.Millisecond
		}
		s.setParams(e, p)
	case Crash:
		if on {
			s.Net.Kill(s.IDs[f.Node])
		}
	case Overload:
		// Something else takes the node's processor: what is left serves 1/Rate of its last
		// interval's load; queueing, drops, delay and CPU follow from the traffic (queue).
		st.capacity = NodeCapacity
		if on {
			st.capacity = max(4, float64(st.load)/f.Rate)
		}
		st.hog = NodeCapacity - st.capacity
	case Blackhole:
		st.drop, st.lies = 0, on
		if on {
			st.drop = 1
		}
	case GreyHole:
		st.drop, st.lies = 0, on
		if on {
			st.drop = f.Rate
		}
	case Flapping:
		st.flapNext = s.elapsed
		if !on && st.flapDown {
			st.fault = Flapping // one last toggle brings the links back up
			s.flap(f.Node)
			st.fault = Normal
		}
	}
}

// flap toggles a flapping node's links when due.
func (s *Sim) flap(v int) {
	st := &s.st[v]
	if st.fault != Flapping || s.elapsed < st.flapNext {
		return
	}
	st.flapDown = !st.flapDown
	for _, u := range s.Adj[v] {
		e := s.edge(v, u)
		s.cut[e] = st.flapDown
		if st.flapDown {
			s.Net.Cut(s.IDs[v], s.IDs[u])
		} else {
			s.Net.Restore(s.IDs[v], s.IDs[u])
		}
	}
	st.flapNext = s.elapsed + time.Second + time.Duration(s.rng.Int64N(int64(time.Second)))
}

func (s *Sim) alive(v int) bool { return s.Net.Node(s.IDs[v]).Alive }

// linkUsable reports whether a packet can cross from a to b now.
func (s *Sim) linkUsable(e, b int) bool { return e >= 0 && !s.cut[e] && s.alive(b) }

func (s *Sim) binomialLoss(k int, p float64) int {
	if p <= 0 || k == 0 {
		return 0
	}
	if p >= 1 {
		return k
	}
	lost := 0
	for range k {
		if s.rng.Float64() < p {
			lost++
		}
	}
	return lost
}

// step forwards one traffic step: every flow sends its packets hop by hop along the routers' routes.
func (s *Sim) step(pkts int) {
	s.StepSent, s.StepRecv = 0, 0
	if s.FlowSent == nil {
		s.FlowSent, s.FlowRecv = make([]int, len(s.flows)), make([]int, len(s.flows))
	}
	clear(s.FlowSent)
	clear(s.FlowRecv)
	for fi, f := range s.flows {
		if !s.alive(f.src) {
			continue
		}
		s.FlowSent[fi] = pkts
		src := &s.st[f.src]
		src.own += pkts
		src.stepLoad += pkts
		s.StepSent += pkts
		alive, cur, first := pkts, f.src, -1
		dstID := s.IDs[f.dst]
		for hops := 0; alive > 0 && cur != f.dst; hops++ {
			cs := &s.st[cur]
			if hops > 64 {
				s.kern.arrive(cur, alive)
				cs.dropped += alive // hop limit
				alive = 0
				break
			}
			lied := 0 // dropped by a lying relay, which reports handing them on
			if cur != f.src {
				s.kern.arrive(cur, alive)
				cs.transitIn += alive
				cs.stepLoad += alive
				d := s.binomialLoss(alive, cs.drop)
				cs.dropped += d
				alive -= d
				cs.forwarded += alive
				if cs.lies {
					lied = d
				} else {
					s.kern.socketDrop(cur, d)
				}
			}
			if alive == 0 && lied == 0 {
				break
			}
			rt, ok := s.Net.Router(s.IDs[cur]).NextHop(dstID)
			if !ok {
				cs.dropped += alive
				alive = 0
				break
			}
			next := s.index[rt.NextHop]
			if cur == f.src {
				first = next
			}
			e := s.edge(cur, next)
			if next != f.dst {
				ni := s.adjIndex(cur, next)
				cs.txTransit[ni] += alive
				cs.txLie[ni] += lied
			}
			s.kern.send(cur, alive, lied)
			if alive == 0 || !s.linkUsable(e, next) {
				alive = 0
				break
			}
			alive -= s.binomialLoss(alive, s.cur[e].Loss)
			if cur != f.src && alive > 0 {
				s.st[next].rxTransit[s.adjIndex(next, cur)] += alive
			}
			cur = next
		}
		if cur != f.dst {
			alive = 0
		}
		s.kern.arrive(f.dst, alive)
		src.ownRecv += alive
		s.StepRecv += alive
		s.FlowRecv[fi] = alive
		if first >= 0 {
			src.hopSent[first] += pkts
			src.hopRecv[first] += alive
		}
	}
}

// RunInterval runs one telemetry interval (four traffic steps) and returns its telemetry.
func (s *Sim) RunInterval() Interval {
	const steps = 4
	stepDur := s.cfg.Interval / steps
	if s.checked != nil {
		s.confirmVictims()
	}
	for i := range steps {
		if len(s.active) != len(s.Faults) {
			s.active = make([]bool, len(s.Faults))
		}
		for fi := range s.Faults {
			if on := s.Faults[fi].activeAt(s.elapsed); on != s.active[fi] {
				s.active[fi] = on
				s.activate(s.Faults[fi], on)
			}
		}
		for v := range s.st {
			s.flap(v)
		}
		s.Net.RunFor(stepDur)
		s.elapsed += stepDur
		pk := s.cfg.Rate / steps
		if i < s.cfg.Rate%steps {
			pk++
		}
		s.step(pk)
		for v := range s.st {
			s.queue(v, s.st[v].capacity/steps)
		}
		if s.cfg.Control != nil {
			s.cfg.Control(s)
		}
	}
	iv := s.collect()
	s.Last = &iv
	if s.cfg.OnInterval != nil {
		s.cfg.OnInterval(s, &iv)
	}
	return iv
}

// collect builds the interval's telemetry and resets the counters.
func (s *Sim) collect() Interval {
	n := s.cfg.Nodes
	iv := Interval{X: make([][NumFeatures]float32, n), E: make([][][NumEdgeFeatures]float32, n), Labels: make([]Kind, n)}
	if s.kern != nil {
		iv.Kernel = make([]map[string]float64, n)
	}
	pos := s.intervals % Window
	s.intervals++
	for v := range n {
		st := &s.st[v]
		iv.Labels[v] = st.label
		iv.Sent += st.own
		iv.Recv += st.ownRecv
		x := &iv.X[v]
		ev := make([][NumEdgeFeatures]float32, len(s.Adj[v]))
		iv.E[v] = ev
		if !s.alive(v) {
			x[FMissing] = 1
			for i := range ev {
				st.txRing[i][pos], st.rxRing[i][pos] = 0, 0
			}
			s.resetCounters(st)
			continue
		}
		r := s.Net.Router(s.IDs[v])
		nbrs := r.Neighbours()
		x[FDegree] = float32(len(nbrs))
		for _, id := range nbrs {
			if i := s.adjIndex(v, s.index[id]); i >= 0 {
				ev[i][EUp] = 1
			}
		}
		// Probes: 10 per neighbour per interval, round trip.
		var rttSum, lossSum, lossMax float64
		rttN := 0
		for i, u := range s.Adj[v] {
			e := s.edge(v, u)
			loss := 1.0
			if s.linkUsable(e, u) {
				p := s.cur[e]
				// A probe crosses the link both ways and is answered by u; saturated ends drop it too.
				rt := 1 - (1-p.Loss)*(1-p.Loss)*(1-s.queueDrop(u))*(1-s.queueDrop(v))
				lost := s.binomialLoss(10, rt)
				loss = float64(lost) / 10
				var linkRTT float64
				for range 10 - lost {
					rtt := float64(2*p.Delay+time.Duration(s.rng.Int64N(int64(2*p.Jitter)+1))) / 1e6
					rttSum += rtt
					linkRTT += rtt
					rttN++
				}
				if lost < 10 {
					ev[i][EProbeRTT] = float32(linkRTT / float64(10-lost))
				}
			}
			ev[i][EProbeLoss] = float32(loss)
			lossSum += loss
			lossMax = max(lossMax, loss)
			tx := st.txTransit[i]
			if st.lies {
				tx += st.txLie[i]
			}
			rx := st.rxTransit[i]
			if st.lies && s.cfg.Frame {
				rx = int(float64(rx) * (1 - st.drop))
				s.kern.underRead(v, st.rxTransit[i]-rx)
			}
			st.txRing[i][pos], st.rxRing[i][pos] = tx, rx
			var txW, rxW int
			for k := range Window {
				txW += st.txRing[i][k]
				rxW += st.rxRing[i][k]
			}
			ev[i][ETxTransit] = float32(tx)
			ev[i][ERxTransit] = float32(rx)
			ev[i][ETxTransitW] = float32(txW) / Window
			ev[i][ERxTransitW] = float32(rxW) / Window
		}
		if rttN > 0 {
			x[FRTT] = float32(rttSum / float64(rttN))
		}
		if len(s.Adj[v]) > 0 {
			x[FLossMean] = float32(lossSum / float64(len(s.Adj[v])))
		}
		x[FLossMax] = float32(lossMax)
		x[FSent] = log1p(st.own)
		x[FDelivery] = ratio(st.ownRecv, st.own)
		worst := float32(1)
		for h, sent := range st.hopSent {
			if sent >= 5 {
				worst = min(worst, ratio(st.hopRecv[h], sent))
			}
		}
		x[FWorstHop] = worst
		x[FTransitIn] = log1p(st.transitIn)
		fwd, drp := st.forwarded, st.dropped
		if st.lies {
			fwd, drp = st.transitIn, 0
		}
		x[FForwarded] = log1p(fwd)
		x[FDropped] = log1p(drp)
		x[FRouteChg] = log1p(s.routeChanges(v, r))
		st.load = st.transitIn + st.own
		cpuModel := s.cfg.cpu
		if cpuModel == nil {
			cpuModel = cpuFromLoad
		}
		// The processor is what the node's packets can use plus what something else took: a
		// node with less capacity (a weak relay) is busier for the same load.
		busy := (st.hog + math.Min(float64(st.load), st.capacity)) / (st.hog + st.capacity)
		x[FCPU] = float32(math.Max(0, math.Min(1, cpuModel(st, busy, s.rng))))
		if iv.Kernel != nil {
			iv.Kernel[v] = s.kern.sample(v, s.cfg.Interval)
		}
		s.resetCounters(st)
	}
	return iv
}

// cpuFromLoad is the CPU a node reports: a small base plus the share of its processor busy in the
// interval (its packets and whatever else runs), with measurement noise.
func cpuFromLoad(_ *nodeState, util float64, rng *rand.Rand) float64 {
	return 0.04 + 0.92*math.Min(1, util) + 0.02*rng.NormFloat64()
}

// queueDrop is the fraction of what node v handles that it drops for lack of capacity.
func (s *Sim) queueDrop(v int) float64 {
	if st := &s.st[v]; st.util > 1 {
		return 1 - 1/st.util
	}
	return 0
}

func (s *Sim) resetCounters(st *nodeState) {
	st.own, st.ownRecv, st.transitIn, st.forwarded, st.dropped = 0, 0, 0, 0, 0
	clear(st.txTransit)
	clear(st.txLie)
	clear(st.rxTransit)
	clear(st.hopSent)
	clear(st.hopRecv)
}

// routeChanges counts destinations whose next hop changed since the previous interval.
func (s *Sim) routeChanges(v int, r *routing.Router) int {
	st := &s.st[v]
	if st.prevNH != nil && r.Generation() == st.prevGen {
		return 0
	}
	nh := make([]int32, len(s.IDs))
	changes := 0
	for d, id := range s.IDs {
		nh[d] = -1
		if rt, ok := r.NextHop(id); ok {
			nh[d] = int32(s.index[rt.NextHop])
		}
		if st.prevNH != nil && nh[d] != st.prevNH[d] {
			changes++
		}
	}
	st.prevNH, st.prevGen = nh, r.Generation()
	return changes
}

func log1p(n int) float32 { return float32(math.Log1p(float64(n))) }

func ratio(a, b int) float32 {
	if b == 0 {
		return 1
	}
	return float32(a) / float32(b)
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// FlowsThrough returns the flows whose current path relays through node v.
func (s *Sim) FlowsThrough(v int) []int {
	var out []int
	for fi, f := range s.flows {
		cur := f.src
		for hops := 0; cur != f.dst && hops < 64; hops++ {
			if cur == v && cur != f.src {
				out = append(out, fi)
				break
			}
			rt, ok := s.Net.Router(s.IDs[cur]).NextHop(s.IDs[f.dst])
			if !ok {
				break
			}
			cur = s.index[rt.NextHop]
		}
	}
	return out
}

// SetCost makes node u advertise its link to neighbour v at a high cost (penalise) or at the cost
// of the link's real measurements (restore): the MAPE-K loop's actuator, through the routing core's
// metrics API. Only u's router changes; a link's cost is the larger of its ends' costs, so every
// node's routes avoid the link.
func (s *Sim) SetCost(u, v int, penalise bool) {
	if !s.alive(u) {
		return
	}
	e := s.edge(u, v)
	if e < 0 {
		return
	}
	m := s.cur[e].Metrics()
	if penalise {
		m.Loss = 0.95
	}
	st := &s.st[u]
	if penalise {
		st.costHigh[v] = true
	} else {
		delete(st.costHigh, v)
	}
	s.Net.Router(s.IDs[u]).UpdateMetrics(s.Net.Now(), s.IDs[v], m)
	// Let the harness send what the router produced and reschedule its timer: deliver it a harmless
	// message (an acknowledgement of nothing) from v.
	_ = s.Net.Inject(s.IDs[v], s.IDs[u], noopAck)
}

// noopAck is a routing Ack message for one (origin, sequence) that no router holds: type 2, count 1,
// a zero origin, sequence 0. Routers ignore it.
var noopAck = append([]byte{2, 0, 1}, make([]byte, 40)...)

// Elapsed returns the virtual time since telemetry started.
func (s *Sim) Elapsed() time.Duration { return s.elapsed }

// Index returns a node's index.
func (s *Sim) Index(id routingsim.NodeID) int { return s.index[id] }
