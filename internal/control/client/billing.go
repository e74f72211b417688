package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"x0tta6bl4/internal/control/api"
)

// Plans lists the billing plans.
func (a *API) Plans(ctx context.Context) (*api.BillingPlanList, error) {
	var out api.BillingPlanList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/billing/plans", nil, &out)
}

// CreatePlan creates a billing plan.
func (a *API) CreatePlan(ctx context.Context, req api.CreatePlanRequest) (*api.BillingPlan, error) {
	var out api.BillingPlan
	return &out, a.do(ctx, http.MethodPost, "/api/v1/billing/plans", req, &out)
}

// CreateInvoice asks an account to pay for a plan.
func (a *API) CreateInvoice(ctx context.Context, req api.CreateInvoiceRequest) (*api.Invoice, error) {
	var out api.Invoice
	return &out, a.do(ctx, http.MethodPost, "/api/v1/billing/invoices", req, &out)
}

// Invoice returns an invoice with its payments.
func (a *API) Invoice(ctx context.Context, id int64) (*api.Invoice, error) {
	var out api.Invoice
	return &out, a.do(ctx, http.MethodGet, "/api/v1/billing/invoices/"+strconv.FormatInt(id, 10), nil, &out)
}

// VerifyPayment checks one transaction against its chain and records the result.
func (a *API) VerifyPayment(ctx context.Context, req api.VerifyRequest) (*api.VerifyResponse, error) {
	var out api.VerifyResponse
	return &out, a.do(ctx, http.MethodPost, "/api/v1/billing/verify", req, &out)
}

// Subscription returns an account's subscription.
func (a *API) Subscription(ctx context.Context, account string) (*api.Subscription, error) {
	var out api.Subscription
	return &out, a.do(ctx, http.MethodGet, "/api/v1/billing/subscriptions/"+url.PathEscape(account), nil, &out)
}

// Invoices lists the newest invoices (without their payments).
func (a *API) Invoices(ctx context.Context) (*api.InvoiceList, error) {
	var out api.InvoiceList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/billing/invoices", nil, &out)
}

// Subscriptions lists subscriptions by account.
func (a *API) Subscriptions(ctx context.Context) (*api.SubscriptionList, error) {
	var out api.SubscriptionList
	return &out, a.do(ctx, http.MethodGet, "/api/v1/billing/subscriptions", nil, &out)
}
