package client

import (
	"context"
	"net/http"
	"net/url"

	"x0tta6bl4/internal/control/api"
)

// Advisories returns the cost advisories in force.
func (a *API) Advisories(ctx context.Context) (*api.AdvisoryList, error) {
	var out api.AdvisoryList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/advisories", nil, &out)
}

// SetAdvisory names a relay by hand.
func (a *API) SetAdvisory(ctx context.Context, node string, req api.SetAdvisoryRequest) (*api.AdvisoryList, error) {
	var out api.AdvisoryList
	return &out, a.do(ctx, http.MethodPut, "/api/v1/advisories/"+url.PathEscape(node), req, &out)
}

// ClearAdvisory withdraws what names a node: an operator advisory, and the detector's with its hold.
func (a *API) ClearAdvisory(ctx context.Context, node string) (*api.AdvisoryList, error) {
	var out api.AdvisoryList
	return &out, a.do(ctx, http.MethodDelete, "/api/v1/advisories/"+url.PathEscape(node), nil, &out)
}
