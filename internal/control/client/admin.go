package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"x0tta6bl4/internal/control/api"
)

// API calls the control plane as an operator, with an API key or session token.
type API struct {
	base  string
	token string
	hc    *http.Client
}

// NewAPI returns an operator client. token is an API key (x6k_…) or session token (x6s_…).
func NewAPI(baseURL, token string, trust Trust) (*API, error) {
	hc, err := trust.httpClient(baseURL, nil, 60*time.Second)
	if err != nil {
		return nil, err
	}
	return &API{base: baseURL, token: token, hc: hc}, nil
}

// Close releases idle connections.
func (a *API) Close() { a.hc.CloseIdleConnections() }

func (a *API) do(ctx context.Context, method, path string, in, out any) error {
	h := http.Header{}
	if a.token != "" {
		h.Set("Authorization", "Bearer "+a.token)
	}
	return call(ctx, a.hc, method, a.base, path, h, in, out)
}

// Revoke revokes a node.
func (a *API) Revoke(ctx context.Context, node string) (*api.RevokeResponse, error) {
	var out api.RevokeResponse
	return &out, a.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+"/revoke", nil, &out)
}

// NodeHealing returns the latest self-healing journal the node reported.
func (a *API) NodeHealing(ctx context.Context, node string) (*api.NodeHealing, error) {
	var out api.NodeHealing
	return &out, a.do(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(node)+"/healing", nil, &out)
}

// CreateJoinToken creates a one-time join token.
func (a *API) CreateJoinToken(ctx context.Context, req api.CreateJoinTokenRequest) (*api.JoinTokenCreated, error) {
	var out api.JoinTokenCreated
	return &out, a.do(ctx, http.MethodPost, "/api/v1/enroll/tokens", req, &out)
}

// JoinTokens lists join tokens.
func (a *API) JoinTokens(ctx context.Context) (*api.JoinTokenList, error) {
	var out api.JoinTokenList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/enroll/tokens", nil, &out)
}

// Nodes lists enrolled nodes.
func (a *API) Nodes(ctx context.Context) (*api.NodeList, error) {
	var out api.NodeList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out)
}

// MeshStatus is GET /api/v1/mesh/status.
func (a *API) MeshStatus(ctx context.Context) (*api.MeshStatus, error) {
	var out api.MeshStatus
	return &out, a.do(ctx, http.MethodGet, "/api/v1/mesh/status", nil, &out)
}

// MeshPeers is GET /api/v1/mesh/peers: every link the nodes reported, with its counters.
func (a *API) MeshPeers(ctx context.Context) (*api.MeshPeers, error) {
	var out api.MeshPeers
	return &out, a.do(ctx, http.MethodGet, "/api/v1/mesh/peers", nil, &out)
}

// Predict asks the control plane's anomaly detector about node name.
func (a *API) Predict(ctx context.Context, name string) (*api.Prediction, error) {
	var out api.Prediction
	return &out, a.do(ctx, http.MethodGet, "/api/v1/ai/predict/"+url.PathEscape(name), nil, &out)
}

// CreateUser creates an account (admin).
func (a *API) CreateUser(ctx context.Context, req api.RegisterRequest) (*api.User, error) {
	var out api.User
	return &out, a.do(ctx, http.MethodPost, "/api/v1/users/register", req, &out)
}

// Users lists accounts (admin).
func (a *API) Users(ctx context.Context) (*api.UserList, error) {
	var out api.UserList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/users", nil, &out)
}

// CreateAPIKey creates an API key for the caller.
func (a *API) CreateAPIKey(ctx context.Context, req api.CreateAPIKeyRequest) (*api.APIKeyCreated, error) {
	var out api.APIKeyCreated
	return &out, a.do(ctx, http.MethodPost, "/api/v1/keys", req, &out)
}

// APIKeys lists the caller's API keys (all=true: everyone's, for admins).
func (a *API) APIKeys(ctx context.Context, all bool) (*api.APIKeyList, error) {
	var out api.APIKeyList
	p := "/api/v1/keys"
	if all {
		p += "?all=true"
	}
	return &out, a.do(ctx, http.MethodGet, p, nil, &out)
}

// Audit reads the audit log (admin), newest first.
func (a *API) Audit(ctx context.Context, limit int) (*api.AuditList, error) {
	var out api.AuditList
	return &out, a.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/audit?limit=%d", limit), nil, &out)
}

// maxArchiveReports bounds what ReportArchive collects, so a large recording cannot exhaust memory:
// export a shorter window.
const maxArchiveReports = 2_000_000

// ReportArchive collects the recorded reports received in [from, to] (zero times: unbounded) and
// the incidents overlapping them, page by page (admin).
func (a *API) ReportArchive(ctx context.Context, from, to time.Time) (*api.ReportArchive, error) {
	out := &api.ReportArchive{Format: api.ReportArchiveFormat, Reports: []api.RecordedReport{}, Incidents: []api.Incident{}}
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	for {
		var page api.ReportArchive
		if err := a.do(ctx, http.MethodGet, "/api/v1/ai/reports?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		if page.Format != api.ReportArchiveFormat {
			return nil, fmt.Errorf("control plane answered a report archive of format %q, want %q", page.Format, api.ReportArchiveFormat)
		}
		out.Reports = append(out.Reports, page.Reports...)
		out.Incidents = append(out.Incidents, page.Incidents...)
		if len(out.Reports) > maxArchiveReports {
			return nil, fmt.Errorf("more than %d recorded reports: ask for a shorter window (from, to)", maxArchiveReports)
		}
		if !page.More {
			return out, nil
		}
		if page.NextAfterID <= 0 || len(page.Reports) == 0 {
			return nil, fmt.Errorf("control plane said more reports follow but gave no next page")
		}
		q.Set("after_id", fmt.Sprint(page.NextAfterID))
	}
}

// LabelIncident stores an incident label (operator).
func (a *API) LabelIncident(ctx context.Context, in api.Incident) (*api.Incident, error) {
	var out api.Incident
	return &out, a.do(ctx, http.MethodPost, "/api/v1/ai/incidents", in, &out)
}
