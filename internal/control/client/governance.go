package client

import (
	"context"
	"net/http"
	"strconv"

	"x0tta6bl4/internal/control/api"
)

// Propose puts an action to the members (operator).
func (a *API) Propose(ctx context.Context, req api.ProposalRequest) (*api.Proposal, error) {
	var out api.Proposal
	return &out, a.do(ctx, http.MethodPost, "/api/v1/dao/proposals", req, &out)
}

// Proposals lists proposals, newest first.
func (a *API) Proposals(ctx context.Context) (*api.Proposals, error) {
	var out api.Proposals
	return &out, a.do(ctx, http.MethodGet, "/api/v1/dao/proposals", nil, &out)
}

// Proposal returns one proposal.
func (a *API) Proposal(ctx context.Context, id string) (*api.Proposal, error) {
	var out api.Proposal
	return &out, a.do(ctx, http.MethodGet, "/api/v1/dao/proposals/"+id, nil, &out)
}

// Vote sends a ballot the member signed locally (operator) and returns the receipt.
func (a *API) Vote(ctx context.Context, ballot []byte) (*api.VoteReceipt, error) {
	var out api.VoteReceipt
	return &out, a.do(ctx, http.MethodPost, "/api/v1/dao/vote", api.VoteRequest{Ballot: ballot}, &out)
}

// GovernanceLog returns one page of log entries after sequence after.
func (a *API) GovernanceLog(ctx context.Context, after uint64) (*api.GovernanceLog, error) {
	var out api.GovernanceLog
	return &out, a.do(ctx, http.MethodGet, "/api/v1/dao/log?after="+strconv.FormatUint(after, 10), nil, &out)
}
