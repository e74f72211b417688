package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/policy"
)

// FetchPolicy fetches the mesh access policy; nil (and no error) when none has been set. With
// wait > 0 it long-polls: the control plane answers as soon as a policy with a version above after
// exists, or when wait has passed. The signature is checked against the bundle's CA; the caller
// installs the policy in its node, which refuses one that is not newer than its own.
func (n *Node) FetchPolicy(ctx context.Context, after uint64, wait time.Duration) (*meshca.Policy, error) {
	hc, b := n.client()
	path := "/api/v1/policy"
	if wait > 0 {
		path += "?after=" + strconv.FormatUint(after, 10) + "&wait=" + strconv.Itoa(int(wait/time.Second))
		ctx2, cancel := context.WithTimeout(ctx, wait+n.timeout)
		defer cancel()
		ctx = ctx2
	}
	var doc api.Policy
	if err := call(ctx, hc, http.MethodGet, n.base, path, nil, nil, &doc); err != nil {
		return nil, fmt.Errorf("fetch policy: %w", err)
	}
	if doc.Version == 0 {
		return nil, nil
	}
	p, err := meshca.ParsePolicy(doc.Signed)
	if err != nil {
		return nil, fmt.Errorf("fetch policy: %w", err)
	}
	if p.Version != doc.Version {
		return nil, fmt.Errorf("fetch policy: signed version %d, answer says %d", p.Version, doc.Version)
	}
	if err := p.CheckSignature(b.CA.SignPublicKey); err != nil {
		return nil, fmt.Errorf("fetch policy: %w", err)
	}
	return p, nil
}

// Policy returns the current mesh access policy (Version 0: none set).
func (a *API) Policy(ctx context.Context) (*api.Policy, error) {
	var out api.Policy
	return &out, a.do(ctx, http.MethodGet, "/api/v1/policy", nil, &out)
}

// SetPolicy sets the mesh access policy (admin). The answer is the signed policy with its version.
func (a *API) SetPolicy(ctx context.Context, src *policy.Source) (*api.Policy, error) {
	var out api.Policy
	return &out, a.do(ctx, http.MethodPut, "/api/v1/policy", src, &out)
}

// FetchDecisions returns the quorum certificates of the proposals enacted after log entry after,
// in order (mutual TLS). The node verifies each itself; nothing here is trusted.
func (n *Node) FetchDecisions(ctx context.Context, after uint64) ([]api.Decision, error) {
	hc, _ := n.client()
	var doc api.Decisions
	if err := call(ctx, hc, http.MethodGet, n.base, "/api/v1/dao/decisions?after="+strconv.FormatUint(after, 10), nil, nil, &doc); err != nil {
		return nil, fmt.Errorf("fetch decisions: %w", err)
	}
	return doc.Decisions, nil
}
