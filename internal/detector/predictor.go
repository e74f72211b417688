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
	// Classify returns per-node decisions of a graph that passes CheckGraph: the class it names,
	// 0 (normal) or a fault. It is the predictor's own rule, not always Predict's argmax.
	Classify(g *Graph) []int
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

// Classify returns the most probable class of each node.
func (m *Model) Classify(g *Graph) []int {
	probs := m.Predict(g)
	out := make([]int, len(probs))
	for v, p := range probs {
		out[v] = mostProbable(p, 0)
	}
	return out
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
func (e *Ensemble) Classify(g *Graph) []int {
	k := e.Shape().K
	sum := make([]float64, len(g.X)*k)
	votes := make([]int, len(g.X))
	for _, mb := range e.Members {
		for v, p := range mb.Predict(g) {
			if mostProbable(p, 0) != 0 {
				votes[v]++
			}
			for c, pc := range p {
				sum[v*k+c] += pc
			}
		}
	}
	out := make([]int, len(g.X))
	for v, n := range votes {
		if 2*n > len(e.Members) {
			out[v] = mostProbable(sum[v*k:(v+1)*k], 1)
		}
	}
	return out
}

// Predict returns the mean of the members' class probabilities.
func (e *Ensemble) Predict(g *Graph) [][]float64 {
	k := e.Shape().K
	out := make([][]float64, len(g.X))
	flat := make([]float64, len(g.X)*k)
	for v := range out {
		out[v] = flat[v*k : (v+1)*k]
	}
	for _, mb := range e.Members {
		for v, p := range mb.Predict(g) {
			for c, pc := range p {
				out[v][c] += pc
			}
		}
	}
	inv := 1 / float64(len(e.Members))
	for i := range flat {
		flat[i] *= inv
	}
	return out
}
