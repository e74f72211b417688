package routing

import (
	"fmt"
	"slices"
	"time"
)

// SetEndpoints replaces the endpoints the router publishes in its records (at most MaxEndpoints,
// in order of preference). A change triggers a new record: at once when none was published before,
// or the first observed one appears (a node that just learnt how it can be reached from beyond its
// NAT should say so: peers wait for it to punch), otherwise throttled like a metric change, so a
// node whose address flaps cannot flood the mesh.
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
	observed := func(es []Endpoint) bool {
		return slices.ContainsFunc(es, func(e Endpoint) bool { return e.Kind == EndpointObserved })
	}
	first := len(r.endpoints) == 0 || (!observed(r.endpoints) && observed(eps))
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
