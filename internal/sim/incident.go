package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// IncidentKind is the shape of an incident built by RunIncident: one fault, a fault whose reroute
// congests a relay elsewhere, or two independent faults.
type IncidentKind uint8

// Incident kinds.
const (
	// SingleFault is one fault of Config's kinds, nothing else.
	SingleFault IncidentKind = iota
	// RerouteCascade: a link or a node fails for good; the routers move its flows onto other relays,
	// and one of them, with little spare capacity, saturates (queueing delay, drops, CPU). The root
	// cause is the failure, the congested relay a symptom.
	RerouteCascade
	// FlapCascade: one link goes down and up every 1–2 s; each time it is down its flows move onto a
	// relay with little spare capacity, which saturates. The root cause is the flapping link.
	FlapCascade
	// TwoFaults: two independent faults of different kinds start in the same interval.
	TwoFaults
	NumIncidentKinds
)

var incidentNames = [NumIncidentKinds]string{"single", "cascade-reroute", "cascade-flap", "two-fault"}

func (k IncidentKind) String() string {
	if k < NumIncidentKinds {
		return incidentNames[k]
	}
	return fmt.Sprintf("incident(%d)", k)
}

// IncidentConfig describes one incident run. Zero values take the defaults shown.
type IncidentConfig struct {
	Kind     IncidentKind
	Nodes    int    // 60
	Topology string // Geometric
	Seed     uint64
	// History is the telemetry before the root fault (6 s), After the telemetry from it on (6 s).
	History, After time.Duration
	// Fault is SingleFault's kind (default: drawn from the seed).
	Fault Kind

	// withoutRoot builds a cascade (the same relay, the same capacity) but never fails its root:
	// the control of the test that the symptom comes from the reroute.
	withoutRoot bool
}

// Incident is a run with its ground truth: the root causes, and for cascades the relay whose
// congestion the root cause brought about.
type Incident struct {
	Kind   IncidentKind
	Result *Result
	// Start is the telemetry interval in which the root fault(s) begin.
	Start int
	// Roots are the root causes; each is the set of nodes any of which names it (a link: both ends).
	Roots     [][]int
	RootKinds []Kind
	// Symptom is the relay a cascade congests (-1 otherwise); SymptomUtil its utilisation (packets
	// offered over capacity, the largest of the interval's traffic steps) per interval, as measured.
	Symptom     int
	SymptomUtil []float64
	// Rerouted is how many flows the root fault moved onto the symptom relay (its relayed flows after
	// the fault minus before, on the routers' own routes).
	Rerouted int
}

// ErrNoCascade reports that a cascade could not be built on this seed: no link or node whose
// failure moves enough flows onto one relay, or the relay did not saturate after the failure
// (routing spread the load differently than the rehearsal showed).
var ErrNoCascade = errors.New("sim: no cascade on this seed")

// Cascade parameters: a candidate relay's load must at least double when the root fails
// (minLoadRatio, and at least minRerouted more flows); its capacity is set so that the new load is
// overload times it (drawn uniformly), which puts its load before the fault at most
// overload/minLoadRatio of capacity.
const (
	minLoadRatio   = 2.0
	minRerouted    = 2
	cascadeCands   = 6 // root candidates rehearsed, busiest first
	flapMin        = time.Second
	flapSpread     = time.Second
	saturatedAfter = 1.0 // the symptom's utilisation must exceed this in some interval after the fault
)

var cascadeOverload = [2]float64{1.5, 2.5}

func (c *IncidentConfig) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 60
	}
	if c.History <= 0 {
		c.History = 6 * time.Second
	}
	if c.After <= 0 {
		c.After = 6 * time.Second
	}
}

// RunIncident runs one incident. A cascade's symptom is not painted on: the run only gives one
// relay little spare capacity; the failure, the routers' reroute and the relay's queue do the rest.
// Which relay is chosen by a rehearsal on the same converged mesh before telemetry starts: the root
// element is cut, the routers reconverge, each relay's flows are counted, the element is restored
// and the mesh reconverges. The incident is checked afterwards (ErrNoCascade if the relay never
// saturated after the fault).
func RunIncident(cfg IncidentConfig) (*Incident, error) {
	cfg.defaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x696e6364))
	sc := Config{Nodes: cfg.Nodes, Topology: cfg.Topology, Seed: cfg.Seed, Duration: cfg.History + cfg.After}
	n := int(sc.Duration / time.Second)
	start := int(cfg.History / time.Second)
	sc.FaultFrom = float64(start) / float64(n)
	sc.FaultTo = sc.FaultFrom + 0.5/float64(n)
	inc := &Incident{Kind: cfg.Kind, Start: start, Symptom: -1}
	switch cfg.Kind {
	case SingleFault, TwoFaults:
		kinds := faultKinds()
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		if cfg.Kind == SingleFault {
			k := cfg.Fault
			if k == Normal {
				k = kinds[0]
			}
			sc.Faults = []FaultSpec{{Kind: k, Count: 1}}
		} else {
			sc.Faults = []FaultSpec{{Kind: kinds[0], Count: 1}, {Kind: kinds[1], Count: 1}}
			sc.Simultaneous = true
		}
		r, err := Run(sc)
		if err != nil {
			return nil, err
		}
		inc.Result = r
		for _, f := range r.Faults {
			root := []int{f.Node}
			if f.Peer >= 0 {
				root = append(root, f.Peer)
			}
			inc.Roots, inc.RootKinds = append(inc.Roots, root), append(inc.RootKinds, f.Kind)
		}
		return inc, nil
	case RerouteCascade, FlapCascade:
		return runCascade(cfg, sc, inc, rng)
	}
	return nil, fmt.Errorf("sim: unknown incident kind %d", cfg.Kind)
}

// faultKinds lists every fault kind.
func faultKinds() []Kind {
	var ks []Kind
	for k := Kind(1); k < NumKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// cascadeRoot is the element whose failure starts a cascade: a link (a, b) or, with b < 0, node a.
type cascadeRoot struct{ a, b int }

func (s *Sim) links(r cascadeRoot) [][2]int {
	if r.b >= 0 {
		return [][2]int{{r.a, r.b}}
	}
	var out [][2]int
	for _, u := range s.Adj[r.a] {
		out = append(out, [2]int{r.a, u})
	}
	return out
}

// setCut takes links down or brings them back, as a cable fault would.
func (s *Sim) setCut(ls [][2]int, down bool) {
	for _, l := range ls {
		e := s.edge(l[0], l[1])
		s.cut[e] = down
		if down {
			s.Net.Cut(s.IDs[l[0]], s.IDs[l[1]])
		} else {
			s.Net.Restore(s.IDs[l[0]], s.IDs[l[1]])
		}
	}
}

// sourced counts the flows each node originates.
func (s *Sim) sourced() []int {
	own := make([]int, s.cfg.Nodes)
	for _, f := range s.flows {
		own[f.src]++
	}
	return own
}

// flowsOver counts the flows whose current path crosses each link (indexed like Edges).
func (s *Sim) flowsOver() []int {
	over := make([]int, len(s.Edges))
	for _, f := range s.flows {
		cur := f.src
		for hops := 0; cur != f.dst && hops < 64; hops++ {
			rt, ok := s.Net.Router(s.IDs[cur]).NextHop(s.IDs[f.dst])
			if !ok {
				break
			}
			next := s.index[rt.NextHop]
			over[s.edge(cur, next)]++
			cur = next
		}
	}
	return over
}

// rehearse fails root on the converged mesh, lets the routers reconverge, counts each node's
// relayed flows, restores root and reconverges.
func (s *Sim) rehearse(root cascadeRoot) ([]int, error) {
	ls := s.links(root)
	s.setCut(ls, true)
	s.Net.RunFor(2 * time.Second)
	after := s.relayLoad()
	s.setCut(ls, false)
	if _, err := s.Net.RunUntilConverged(s.cfg.ConvergeLimit); err != nil {
		return nil, fmt.Errorf("sim: reconverging after a rehearsal: %w", err)
	}
	return after, nil
}

type cascadePlan struct {
	root     cascadeRoot
	relay    int
	rerouted int // flows moved onto relay
	flows    int // flows relay originates or relays after the failure
	ratio    float64
}

// planCascade rehearses the busiest candidate roots (links for a flap; links or, on odd seeds,
// nodes for a reroute) and keeps the one whose failure multiplies one relay's load the most.
func (s *Sim) planCascade(byNode bool) (cascadePlan, error) {
	before := s.relayLoad()
	own := s.sourced()
	var cands []cascadeRoot
	if byNode {
		order := make([]int, s.cfg.Nodes)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return before[b] - before[a] })
		for _, v := range order[:min(cascadeCands, len(order))] {
			cands = append(cands, cascadeRoot{v, -1})
		}
	} else {
		over := s.flowsOver()
		order := make([]int, len(s.Edges))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return over[b] - over[a] })
		for _, e := range order[:min(cascadeCands, len(order))] {
			cands = append(cands, cascadeRoot{s.Edges[e].A, s.Edges[e].B})
		}
	}
	best := cascadePlan{relay: -1}
	for _, c := range cands {
		after, err := s.rehearse(c)
		if err != nil {
			return best, err
		}
		for v := range after {
			if v == c.a || v == c.b {
				continue
			}
			gain := after[v] - before[v]
			ratio := float64(own[v]+after[v]) / float64(max(1, own[v]+before[v]))
			if gain >= minRerouted && ratio >= minLoadRatio && ratio > best.ratio {
				best = cascadePlan{root: c, relay: v, rerouted: gain, flows: own[v] + after[v], ratio: ratio}
			}
		}
	}
	if best.relay < 0 {
		return best, ErrNoCascade
	}
	return best, nil
}

func runCascade(cfg IncidentConfig, sc Config, inc *Incident, rng *rand.Rand) (*Incident, error) {
	s, err := New(sc)
	if err != nil {
		return nil, err
	}
	conv, err := s.Converge()
	if err != nil {
		return nil, err
	}
	byNode := cfg.Kind == RerouteCascade && cfg.Seed%2 == 1
	plan, err := s.planCascade(byNode)
	if err != nil {
		return nil, err
	}
	afterLoad := float64(s.cfg.Rate * plan.flows)
	over := cascadeOverload[0] + (cascadeOverload[1]-cascadeOverload[0])*rng.Float64()
	s.st[plan.relay].capacity = afterLoad / over
	inc.Symptom, inc.Rerouted = plan.relay, plan.rerouted
	if err := s.PlanFaults(); err != nil {
		return nil, err
	}
	// The routing-message counters stay zero: the rehearsal's reconvergence would blur them.
	res := &Result{Config: s.cfg, Edges: s.Edges, Adj: s.Adj, Convergence: conv, Areas: 1}
	for _, id := range s.IDs {
		res.Names = append(res.Names, s.Net.Node(id).Name)
	}
	ls := s.links(plan.root)
	rootNodes := []int{plan.root.a}
	label := Crash
	switch {
	case cfg.Kind == FlapCascade:
		rootNodes, label = []int{plan.root.a, plan.root.b}, Flapping
	case plan.root.b >= 0:
		rootNodes, label = []int{plan.root.a, plan.root.b}, LinkDegradation
	}
	inc.Roots, inc.RootKinds = [][]int{rootNodes}, []Kind{label}
	down, flapping := false, false
	var flapNext time.Duration
	var utilMax float64
	s.cfg.Control = func(s *Sim) {
		utilMax = max(utilMax, s.st[plan.relay].util)
		if flapping && s.elapsed >= flapNext {
			down = !down
			s.setCut(ls, down)
			flapNext = s.elapsed + flapMin + time.Duration(rng.Int64N(int64(flapSpread)))
		}
	}
	total := int(sc.Duration / time.Second)
	for t := range total {
		if t == inc.Start && !cfg.withoutRoot {
			// Only the label: the fault itself is the cut or the crash below (a node whose
			// fault is Flapping would flap all its links).
			for _, v := range rootNodes {
				s.st[v].label = label
			}
			switch {
			case cfg.Kind == FlapCascade:
				down, flapping, flapNext = true, true, s.elapsed+flapMin+time.Duration(rng.Int64N(int64(flapSpread)))
				s.setCut(ls, true)
			case plan.root.b < 0:
				s.Net.Kill(s.IDs[plan.root.a])
			default:
				s.setCut(ls, true)
			}
		}
		utilMax = 0
		res.Intervals = append(res.Intervals, s.RunInterval())
		inc.SymptomUtil = append(inc.SymptomUtil, utilMax)
	}
	inc.Result = res
	saturated := false
	for _, u := range inc.SymptomUtil[inc.Start:] {
		saturated = saturated || u > saturatedAfter
	}
	if !saturated || slices.Max(inc.SymptomUtil[:inc.Start]) >= 1 {
		return inc, ErrNoCascade
	}
	return inc, nil
}
