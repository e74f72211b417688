// Package mapek is the monitor–analyse–plan–execute loop over shared knowledge that routes around
// misbehaving relays. Monitor: per-interval judgements of each node by the anomaly detector
// (class and probability). Analyse: a node is a suspect when it is judged a blackhole or grey hole
// with at least Confidence for Consecutive intervals. Plan/Execute: its neighbours raise the
// cost of their links to it (the routing core's metrics API), so routes avoid it without removing
// it; after Hold the penalty is lifted to re-probe it, and the hold doubles each time the same node
// is penalised again. Every decision is recorded with its evidence, and every action has an inverse.
//
// It is pure: time is passed in, the effect goes through an Actuator. The loop itself lives in
// internal/mapek/loop (no simulator or detector dependency), which the node daemon uses directly;
// the names below are the same types.
package mapek

import "x0tta6bl4/internal/mapek/loop"

// Judgement is the detector's view of one node in one interval.
type Judgement = loop.Judgement

// Actuator applies and reverses the loop's one action.
type Actuator = loop.Actuator

// Rules are the loop's explicit rules. Zero values take the defaults shown in loop.Rules.
type Rules = loop.Rules

// Action is what a decision did.
type Action = loop.Action

// Actions.
const (
	Penalise = loop.Penalise
	Restore  = loop.Restore
)

// Decision is one recorded decision.
type Decision = loop.Decision

// Loop is the MAPE-K loop; its knowledge is the per-node state and the decision log.
type Loop = loop.Loop

// New returns a loop with the rules.
func New(r Rules) *Loop { return loop.New(r) }
