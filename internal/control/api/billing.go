package api

import "time"

// Amounts in the billing API are strings of decimal digits in the network's smallest unit
// (micro-USDT, nanotons), so that no JSON reader turns them into a float and loses units above 2^53.

// BillingPlan is something an account can buy.
type BillingPlan struct {
	ID              int64     `json:"id"`
	Name            string    `json:"name"`
	PriceUSDT       string    `json:"price_usdt"` // micro-USDT, for tron-usdt and ton-usdt
	PriceTON        string    `json:"price_ton"`  // nanotons; "0": not sold for Toncoin
	NodeQuota       int       `json:"node_quota"`
	DurationSeconds int64     `json:"duration_seconds"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// BillingPlanList lists plans.
type BillingPlanList struct {
	Plans []BillingPlan `json:"plans"`
}

// CreatePlanRequest creates a plan.
type CreatePlanRequest struct {
	Name            string `json:"name"`
	PriceUSDT       string `json:"price_usdt"`
	PriceTON        string `json:"price_ton,omitempty"`
	NodeQuota       int    `json:"node_quota"`
	DurationSeconds int64  `json:"duration_seconds"`
}

// SetPlanPriceRequest changes a plan's prices; invoices already issued keep theirs.
type SetPlanPriceRequest struct {
	PriceUSDT string `json:"price_usdt"`
	PriceTON  string `json:"price_ton,omitempty"`
}

// CreateInvoiceRequest asks an account to pay for a plan on a network (tron-usdt, ton-usdt, ton).
type CreateInvoiceRequest struct {
	Account string `json:"account"`
	PlanID  int64  `json:"plan_id"`
	Network string `json:"network"`
}

// Invoice is a request for payment and what became of it.
type Invoice struct {
	ID         int64      `json:"id"`
	Account    string     `json:"account"`
	PlanID     int64      `json:"plan_id"`
	Network    string     `json:"network"`
	Amount     string     `json:"amount"`      // smallest unit; pay exactly this
	AmountText string     `json:"amount_text"` // the same in whole units, for people
	Receiver   string     `json:"receiver"`
	Reference  string     `json:"reference"` // the comment a TON payment must carry; unused on TRON
	Status     string     `json:"status"`    // open, paid, expired
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	PaidAt     *time.Time `json:"paid_at,omitempty"`
	PaidAmount string     `json:"paid_amount"`
	// Instructions tell the payer what to send, and how the payment is recognised.
	Instructions string    `json:"instructions"`
	Payments     []Payment `json:"payments"`
}

// Payment is one on-chain transfer the control plane judged.
type Payment struct {
	Network    string    `json:"network"`
	TxID       string    `json:"tx_id"`
	EventIndex int       `json:"event_index"` // -1: the whole transaction was refused
	InvoiceID  int64     `json:"invoice_id"`  // 0: no invoice identified
	Outcome    string    `json:"outcome"`     // paid, overpaid, underpaid, early, late, unmatched, refused
	Reason     string    `json:"reason"`
	Sender     string    `json:"sender"`
	Amount     string    `json:"amount"`
	BlockTime  time.Time `json:"block_time"`
	RecordedAt time.Time `json:"recorded_at"`
}

// VerifyRequest checks one transaction by hand. With invoice_id the operator attests which invoice
// it pays (a TON payment whose comment was lost); amount and time are still checked.
type VerifyRequest struct {
	Network   string `json:"network"`
	TxID      string `json:"tx_id"`
	InvoiceID int64  `json:"invoice_id,omitempty"`
}

// VerifyResponse says what the check found.
type VerifyResponse struct {
	Status   string    `json:"status"` // recorded, pending (not final yet), refused
	Reason   string    `json:"reason,omitempty"`
	Payments []Payment `json:"payments"`
}

// Subscription is what an account has paid for.
type Subscription struct {
	Account     string    `json:"account"`
	PlanID      int64     `json:"plan_id"`
	NodeQuota   int       `json:"node_quota"`
	NodesUsed   int       `json:"nodes_used"`
	ExpiresAt   time.Time `json:"expires_at"`
	GraceEndsAt time.Time `json:"grace_ends_at"`
	Status      string    `json:"status"` // active, grace (renewals only), expired
}

// InvoiceList is GET /api/v1/billing/invoices: the newest invoices first (at most 200), without
// their payments (GET /api/v1/billing/invoices/{id} has them).
type InvoiceList struct {
	Invoices []Invoice `json:"invoices"`
}

// SubscriptionList is GET /api/v1/billing/subscriptions: by account (at most 200).
type SubscriptionList struct {
	Subscriptions []Subscription `json:"subscriptions"`
}
