package detector

import "fmt"

// Predictor is a trained detector as inference reads it: a single *Model or an *Ensemble, as
// UnmarshalModel and Load return them. Code that only predicts takes a Predictor; code that
// trains takes a *Model, so it can never be handed an ensemble.
type Predictor interface {
	// Shape is the node and edge features it reads and the classes it outputs.
	Shape() Shape
	// CheckGraph reports whether g has the shape Predict needs.
	CheckGraph(g *Graph) error
	// Predict returns per-node class probabilities (n×K) of a graph that passes CheckGraph.
	Predict(g *Graph) [][]float64
	// Classify returns, for a graph that passes CheckGraph, the probabilities Predict returns and
	// the predictor's decision per node: the class it names, 0 (normal) or a fault. The decision is
	// the predictor's own rule, not always the probabilities' argmax.
	Classify(g *Graph) (probs [][]float64, classes []int)
	// DetectionThreshold is the threshold on 1 − p(normal) above which a node is anomalous.
	DetectionThreshold() float64
	// Version is the first 8 bytes of the SHA-256 of its model file, in hex.
	Version() string
}

// Shape is what a predictor reads and outputs: F node features, E edge features (0: none) and K
// classes.
type Shape struct{ F, E, K int }

// Scores returns each node's anomaly score, 1 − p(normal).
func Scores(p Predictor, g *Graph) []float64 {
	probs := p.Predict(g)
	s := make([]float64, len(probs))
	for v := range probs {
		s[v] = 1 - probs[v][0]
	}
	return s
}

// Classify returns the probabilities and the most probable class of each node.
func (m *Model) Classify(g *Graph) ([][]float64, []int) {
	probs := m.Predict(g)
	classes := make([]int, len(probs))
	for v, p := range probs {
		classes[v] = mostProbable(p, 0)
	}
	return probs, classes
}

// mostProbable returns the index of the largest p[k] for k ≥ from (the first on a tie).
func mostProbable(p []float64, from int) int {
	best := from
	for k := from + 1; k < len(p); k++ {
		if p[k] > p[best] {
			best = k
		}
	}
	return best
}

// Ensemble is a deep ensemble: its class probabilities are the mean of its members' (2–MaxMembers
// single models of the same Shape), and its threshold is its own, calibrated on those means. It
// is for inference only; its members are trained one by one as single models.
type Ensemble struct {
	Members   []*Model
	Threshold float64 // detection threshold on 1 − mean p(normal)
}

// MaxMembers bounds an ensemble's size.
const MaxMembers = 16

// NewEnsemble returns the deep ensemble of members (each kept, not copied), with the threshold of
// the first member until the caller calibrates it (FitThreshold).
func NewEnsemble(members []*Model) (*Ensemble, error) {
	if len(members) < 2 || len(members) > MaxMembers {
		return nil, fmt.Errorf("detector: an ensemble needs 2–%d members, not %d", MaxMembers, len(members))
	}
	e := &Ensemble{Members: members, Threshold: members[0].Threshold}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}

// Shape returns the members' common shape.
func (e *Ensemble) Shape() Shape { return e.Members[0].Shape() }

// CheckGraph checks g against the members' common shape.
func (e *Ensemble) CheckGraph(g *Graph) error { return e.Members[0].CheckGraph(g) }

// DetectionThreshold returns Threshold.
func (e *Ensemble) DetectionThreshold() float64 { return e.Threshold }

// Classify names a fault at a node only when a strict majority of the members, each by its own
// most probable class, name a fault there; the fault named is then the one of highest mean
// probability. A mean of probabilities lets one confident member outvote the others, and outside
// the training distribution that member is as likely to be the one extrapolating wrongly
// (docs/intelligence.md, "The ensemble's decision: a majority of its members").
// One pass over the members gives both the mean probabilities and the votes.
func (e *Ensemble) Classify(g *Graph) ([][]float64, []int) {
	k := e.Shape().K
	probs := make([][]float64, len(g.X))
	flat := make([]float64, len(g.X)*k)
	for v := range probs {
		probs[v] = flat[v*k : (v+1)*k]
	}
	votes := make([]int, len(g.X))
	for _, mb := range e.Members {
		for v, p := range mb.Predict(g) {
			if mostProbable(p, 0) != 0 {
				votes[v]++
			}
			for c, pc := range p {
				probs[v][c] += pc
			}
		}
	}
	inv := 1 / float64(len(e.Members))
	for i := range flat {
		flat[i] *= inv
	}
	classes := make([]int, len(g.X))
	for v, n := range votes {
		if 2*n > len(e.Members) {
			classes[v] = mostProbable(probs[v], 1)
		}
	}
	return probs, classes
}

// Predict returns the mean of the members' class probabilities.
func (e *Ensemble) Predict(g *Graph) [][]float64 {
	probs, _ := e.Classify(g)
	return probs
}
