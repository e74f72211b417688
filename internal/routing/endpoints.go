package routing

import (
	"fmt"
	"slices"
	"time"
)

// SetEndpoints replaces the endpoints the router publishes in its records (at most MaxEndpoints,
// in order of preference). A change triggers a new record: at once when none was published before
// (a node that just learnt how to be reached should say so), otherwise throttled like a metric
// change, so a node whose address flaps cannot flood the mesh.
func (r *Router) SetEndpoints(now time.Time, eps []Endpoint) error {
	r.setNow(now)
	if len(eps) > MaxEndpoints {
		return fmt.Errorf("routing: %d endpoints, at most %d", len(eps), MaxEndpoints)
	}
	for i, e := range eps {
		if err := checkEndpoint(e); err != nil {
			return fmt.Errorf("routing: %w", err)
		}
		if slices.ContainsFunc(eps[:i], func(f Endpoint) bool { return f.Addr == e.Addr }) {
			return fmt.Errorf("routing: endpoint %s twice", e.Addr)
		}
	}
	if slices.Equal(eps, r.endpoints) {
		return nil
	}
	first := len(r.endpoints) == 0
	r.endpoints = slices.Clone(eps)
	if first {
		r.pendingTopo = true
	} else {
		r.pendingMetric = true
	}
	return nil
}

// Endpoints returns the endpoints the router publishes.
func (r *Router) Endpoints() []Endpoint { return slices.Clone(r.endpoints) }
