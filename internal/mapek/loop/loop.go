// Package loop is the pure MAPE-K loop of internal/mapek, with no dependency on the simulator or the
// detector, so that the node daemon (internal/node) runs the very same rules as the simulator
// without linking either. internal/mapek re-exports it unchanged; see its documentation.
package loop

import (
	"fmt"
	"time"
)

// Judgement is the detector's view of one node in one interval.
type Judgement struct {
	Node       int
	Class      string  // the detector's most probable class
	Confidence float64 // its probability
	Evidence   map[string]float64
}

// Actuator applies and reverses the loop's one action.
type Actuator interface {
	Penalise(node int) // route around the node
	Restore(node int)  // undo Penalise
}

// Rules are the loop's explicit rules. Zero values take the defaults shown.
type Rules struct {
	Classes     []string      // {"blackhole", "greyhole"}: classes that trigger routing around
	Confidence  float64       // 0.8
	Consecutive int           // 2 intervals
	Hold        time.Duration // 10 s before the first re-probe; doubled on each repeat
	MaxHold     time.Duration // 5 min
}

// Action is what a decision did.
type Action string

// Actions.
const (
	Penalise Action = "penalise"
	Restore  Action = "restore"
)

// Decision is one recorded decision.
type Decision struct {
	At       time.Duration
	Node     int
	Action   Action
	Rule     string
	Evidence Judgement
}

func (d Decision) String() string {
	return fmt.Sprintf("%s %s node %d (%s): %s p=%.3f", d.At, d.Action, d.Node, d.Rule, d.Evidence.Class, d.Evidence.Confidence)
}

type nodeState struct {
	streak     int
	penalised  bool
	until      time.Duration
	hold       time.Duration
	lastReason Judgement
}

// Loop is the MAPE-K loop; its knowledge is the per-node state and the decision log.
type Loop struct {
	rules Rules
	nodes map[int]*nodeState
	Log   []Decision
}

// New returns a loop with the rules.
func New(r Rules) *Loop {
	return &Loop{rules: r.withDefaults(), nodes: map[int]*nodeState{}}
}

// SetRules changes the rules of a running loop. What it knows stays: a penalty in force keeps its
// end, and a streak counts on under the new rules; the hold of the next penalty is at least the new
// Hold and at most the new MaxHold.
func (l *Loop) SetRules(r Rules) {
	l.rules = r.withDefaults()
	for _, s := range l.nodes {
		s.hold = min(max(s.hold, l.rules.Hold), l.rules.MaxHold)
	}
}

func (r Rules) withDefaults() Rules {
	if len(r.Classes) == 0 {
		r.Classes = []string{"blackhole", "greyhole"}
	}
	if r.Confidence <= 0 {
		r.Confidence = 0.8
	}
	if r.Consecutive <= 0 {
		r.Consecutive = 2
	}
	if r.Hold <= 0 {
		r.Hold = 10 * time.Second
	}
	if r.MaxHold <= 0 {
		r.MaxHold = 5 * time.Minute
	}
	return r
}

func (l *Loop) state(n int) *nodeState {
	s := l.nodes[n]
	if s == nil {
		s = &nodeState{hold: l.rules.Hold}
		l.nodes[n] = s
	}
	return s
}

func (l *Loop) triggers(j Judgement) bool {
	if j.Confidence < l.rules.Confidence {
		return false
	}
	for _, c := range l.rules.Classes {
		if c == j.Class {
			return true
		}
	}
	return false
}

// Step runs one iteration at time now over the interval's judgements (one per observed node, in a
// deterministic order) and returns the decisions it made.
func (l *Loop) Step(now time.Duration, js []Judgement, act Actuator) []Decision {
	var out []Decision
	record := func(d Decision) {
		out = append(out, d)
		l.Log = append(l.Log, d)
	}
	// Re-probe: lift penalties whose hold has passed.
	for _, j := range js {
		s := l.nodes[j.Node]
		if s != nil && s.penalised && now >= s.until {
			s.penalised, s.streak = false, 0
			act.Restore(j.Node)
			record(Decision{At: now, Node: j.Node, Action: Restore, Rule: "hold expired: re-probe", Evidence: s.lastReason})
		}
	}
	for _, j := range js {
		s := l.state(j.Node)
		if s.penalised {
			continue
		}
		if !l.triggers(j) {
			s.streak = 0
			continue
		}
		s.streak++
		if s.streak < l.rules.Consecutive {
			continue
		}
		s.penalised, s.until, s.lastReason = true, now+s.hold, j
		rule := fmt.Sprintf("%s with p ≥ %.2f for %d intervals; hold %s", j.Class, l.rules.Confidence, l.rules.Consecutive, s.hold)
		s.hold = min(2*s.hold, l.rules.MaxHold)
		act.Penalise(j.Node)
		record(Decision{At: now, Node: j.Node, Action: Penalise, Rule: rule, Evidence: j})
	}
	return out
}

// Penalised reports whether the loop currently routes around node n.
func (l *Loop) Penalised(n int) bool {
	s := l.nodes[n]
	return s != nil && s.penalised
}
