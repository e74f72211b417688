package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Invoice statuses.
const (
	InvoiceOpen    = "open"
	InvoicePaid    = "paid"
	InvoiceExpired = "expired"
)

// ErrInvoiceNotOpen is returned when crediting an invoice that another transfer (or another
// control-plane instance) has already paid, or that has expired.
var ErrInvoiceNotOpen = errors.New("invoice is not open")

// Plan is something an account can buy: a node quota for a duration.
type Plan struct {
	ID        int64
	Name      string
	PriceUSDT int64 // micro-USDT, for tron-usdt and ton-usdt
	PriceTON  int64 // nanotons; 0 means the plan is not sold for Toncoin
	NodeQuota int
	Duration  time.Duration
	CreatedAt time.Time
	UpdatedAt time.Time
}

const planCols = "id, name, price_usdt, price_ton, node_quota, duration_ms, created_at, updated_at"

func scanPlan(sc interface{ Scan(...any) error }) (*Plan, error) {
	var p Plan
	var dur, c, u int64
	if err := sc.Scan(&p.ID, &p.Name, &p.PriceUSDT, &p.PriceTON, &p.NodeQuota, &dur, &c, &u); err != nil {
		return nil, err
	}
	p.Duration, p.CreatedAt, p.UpdatedAt = time.Duration(dur)*time.Millisecond, fromMS(c), fromMS(u)
	return &p, nil
}

// CreatePlan stores a new plan; a taken name is ErrConflict.
func (o Ops) CreatePlan(ctx context.Context, p *Plan) error {
	err := o.queryRow(ctx, "INSERT INTO billing_plans (name, price_usdt, price_ton, node_quota, duration_ms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
		p.Name, p.PriceUSDT, p.PriceTON, p.NodeQuota, p.Duration.Milliseconds(), ms(p.CreatedAt), ms(p.CreatedAt)).Scan(&p.ID)
	if err != nil {
		return fmt.Errorf("store: create plan %q: %w", p.Name, mapErr(err))
	}
	p.UpdatedAt = p.CreatedAt
	return nil
}

// SetPlanPrice changes a plan's prices. Invoices already issued keep the amount they ask.
func (o Ops) SetPlanPrice(ctx context.Context, id, priceUSDT, priceTON int64, now time.Time) error {
	if priceUSDT <= 0 || priceTON < 0 {
		return fmt.Errorf("store: set plan %d price: the USDT price must be positive and the TON price not negative", id)
	}
	res, err := o.exec(ctx, "UPDATE billing_plans SET price_usdt = ?, price_ton = ?, updated_at = ? WHERE id = ?", priceUSDT, priceTON, ms(now), id)
	if err != nil {
		return fmt.Errorf("store: set plan %d price: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: set plan %d price: %w", id, ErrNotFound)
	}
	return nil
}

// PlanByID returns a plan.
func (o Ops) PlanByID(ctx context.Context, id int64) (*Plan, error) {
	p, err := scanPlan(o.queryRow(ctx, "SELECT "+planCols+" FROM billing_plans WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("store: plan %d: %w", id, mapErr(err))
	}
	return p, nil
}

// ListPlans returns every plan by ID.
func (o Ops) ListPlans(ctx context.Context) ([]Plan, error) {
	rows, err := o.query(ctx, "SELECT "+planCols+" FROM billing_plans ORDER BY id LIMIT ?", MaxList)
	if err != nil {
		return nil, fmt.Errorf("store: list plans: %w", err)
	}
	defer rows.Close()
	var out []Plan
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list plans: %w", err)
		}
		out = append(out, *p)
	}
	return out, rows.Err()
}

// Invoice asks an account to pay for a plan on one network.
type Invoice struct {
	ID         int64
	Account    string
	PlanID     int64
	Network    string
	Amount     int64 // smallest unit of the network
	Receiver   string
	Reference  string
	Status     string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	PaidAt     time.Time
	PaidAmount int64
}

const invoiceCols = "id, account, plan_id, network, amount, receiver, reference, status, created_by, created_at, expires_at, paid_at, paid_amount"

func scanInvoice(sc interface{ Scan(...any) error }) (*Invoice, error) {
	var i Invoice
	var c, e, p int64
	if err := sc.Scan(&i.ID, &i.Account, &i.PlanID, &i.Network, &i.Amount, &i.Receiver, &i.Reference, &i.Status, &i.CreatedBy, &c, &e, &p, &i.PaidAmount); err != nil {
		return nil, err
	}
	i.CreatedAt, i.ExpiresAt, i.PaidAt = fromMS(c), fromMS(e), fromMS(p)
	return &i, nil
}

// CreateInvoice stores an open invoice. An open TRON invoice asking the same amount as another
// open one, or a reused reference, is ErrConflict.
func (o Ops) CreateInvoice(ctx context.Context, i *Invoice) error {
	i.Status = InvoiceOpen
	err := o.queryRow(ctx, "INSERT INTO billing_invoices (account, plan_id, network, amount, receiver, reference, status, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
		i.Account, i.PlanID, i.Network, i.Amount, i.Receiver, i.Reference, i.Status, i.CreatedBy, ms(i.CreatedAt), ms(i.ExpiresAt)).Scan(&i.ID)
	if err != nil {
		return fmt.Errorf("store: create invoice: %w", mapErr(err))
	}
	return nil
}

// OpenAmounts returns the amounts open invoices of a network ask within [lo, hi].
func (o Ops) OpenAmounts(ctx context.Context, network string, lo, hi int64) (map[int64]bool, error) {
	rows, err := o.query(ctx, "SELECT amount FROM billing_invoices WHERE status = ? AND network = ? AND amount BETWEEN ? AND ?", InvoiceOpen, network, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("store: open amounts: %w", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var a int64
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("store: open amounts: %w", err)
		}
		out[a] = true
	}
	return out, rows.Err()
}

// InvoiceByID returns an invoice.
func (o Ops) InvoiceByID(ctx context.Context, id int64) (*Invoice, error) {
	i, err := scanInvoice(o.queryRow(ctx, "SELECT "+invoiceCols+" FROM billing_invoices WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("store: invoice %d: %w", id, mapErr(err))
	}
	return i, nil
}

// ListInvoices returns the newest invoices first, at most limit (clamped to MaxList).
func (o Ops) ListInvoices(ctx context.Context, limit int) ([]Invoice, error) {
	rows, err := o.query(ctx, "SELECT "+invoiceCols+" FROM billing_invoices ORDER BY id DESC LIMIT ?", clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list invoices: %w", err)
	}
	defer rows.Close()
	var out []Invoice
	for rows.Next() {
		i, err := scanInvoice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list invoices: %w", err)
		}
		out = append(out, *i)
	}
	return out, rows.Err()
}

// MaxOpenInvoices bounds how many open invoices a payment is matched against.
const MaxOpenInvoices = 10000

// OpenInvoices returns the open invoices of a network, oldest first.
func (o Ops) OpenInvoices(ctx context.Context, network string) ([]Invoice, error) {
	rows, err := o.query(ctx, "SELECT "+invoiceCols+" FROM billing_invoices WHERE status = ? AND network = ? ORDER BY id LIMIT ?", InvoiceOpen, network, MaxOpenInvoices)
	if err != nil {
		return nil, fmt.Errorf("store: open invoices: %w", err)
	}
	defer rows.Close()
	var out []Invoice
	for rows.Next() {
		i, err := scanInvoice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: open invoices: %w", err)
		}
		out = append(out, *i)
	}
	return out, rows.Err()
}

// CountOpenInvoices counts an account's open invoices.
func (o Ops) CountOpenInvoices(ctx context.Context, account string) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM billing_invoices WHERE status = ? AND account = ?", InvoiceOpen, account).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count open invoices: %w", err)
	}
	return n, nil
}

// MarkInvoicePaid moves an open invoice to paid; an invoice that is no longer open is
// ErrInvoiceNotOpen. The conditional update takes the row's lock, so of two concurrent credits
// one waits for the other and then finds the invoice paid.
func (o Ops) MarkInvoicePaid(ctx context.Context, id, amount int64, at time.Time) error {
	res, err := o.exec(ctx, "UPDATE billing_invoices SET status = ?, paid_at = ?, paid_amount = ? WHERE id = ? AND status = ?", InvoicePaid, ms(at), amount, id, InvoiceOpen)
	if err != nil {
		return fmt.Errorf("store: mark invoice %d paid: %w", id, mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: mark invoice %d paid: %w", id, ErrInvoiceNotOpen)
	}
	return nil
}

// ExpireInvoices closes open invoices whose expiry is before cutoff and returns how many.
func (o Ops) ExpireInvoices(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := o.exec(ctx, "UPDATE billing_invoices SET status = ? WHERE status = ? AND expires_at < ?", InvoiceExpired, InvoiceOpen, ms(cutoff))
	if err != nil {
		return 0, fmt.Errorf("store: expire invoices: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// Payment is one on-chain transfer the control plane has judged: credited to an invoice or not,
// with the reason. It is recorded once per (Network, TxID, EventIndex), ever.
type Payment struct {
	ID         int64
	Network    string
	TxID       string
	EventIndex int
	InvoiceID  int64 // 0 when no invoice was identified
	Outcome    string
	Reason     string
	Sender     string
	Amount     int64
	BlockTime  time.Time
	RecordedAt time.Time
	RecordedBy string
}

const paymentCols = "id, network, tx_id, event_index, invoice_id, outcome, reason, sender, amount, block_time, recorded_at, recorded_by"

func scanPayment(sc interface{ Scan(...any) error }) (*Payment, error) {
	var p Payment
	var b, r int64
	if err := sc.Scan(&p.ID, &p.Network, &p.TxID, &p.EventIndex, &p.InvoiceID, &p.Outcome, &p.Reason, &p.Sender, &p.Amount, &b, &r, &p.RecordedBy); err != nil {
		return nil, err
	}
	p.BlockTime, p.RecordedAt = fromMS(b), fromMS(r)
	return &p, nil
}

// RecordPayment stores a judged transfer. A transfer already recorded is ErrConflict: the
// UNIQUE (network, tx_id, event_index) constraint, not this code, decides.
func (o Ops) RecordPayment(ctx context.Context, p *Payment) error {
	err := o.queryRow(ctx, "INSERT INTO billing_payments (network, tx_id, event_index, invoice_id, outcome, reason, sender, amount, block_time, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
		p.Network, p.TxID, p.EventIndex, p.InvoiceID, p.Outcome, p.Reason, p.Sender, p.Amount, ms(p.BlockTime), ms(p.RecordedAt), p.RecordedBy).Scan(&p.ID)
	if err != nil {
		return fmt.Errorf("store: record payment %s/%s/%d: %w", p.Network, p.TxID, p.EventIndex, mapErr(err))
	}
	return nil
}

// PaymentByTransfer returns the record of one transfer, or ErrNotFound.
func (o Ops) PaymentByTransfer(ctx context.Context, network, txID string, index int) (*Payment, error) {
	p, err := scanPayment(o.queryRow(ctx, "SELECT "+paymentCols+" FROM billing_payments WHERE network = ? AND tx_id = ? AND event_index = ?", network, txID, index))
	if err != nil {
		return nil, fmt.Errorf("store: payment %s/%s/%d: %w", network, txID, index, mapErr(err))
	}
	return p, nil
}

// TransferRecorded reports whether anything of a transaction is recorded on one of the networks.
func (o Ops) TransferRecorded(ctx context.Context, txID string, networks ...string) (bool, error) {
	for _, n := range networks {
		var c int
		if err := o.queryRow(ctx, "SELECT COUNT(*) FROM billing_payments WHERE network = ? AND tx_id = ?", n, txID).Scan(&c); err != nil {
			return false, fmt.Errorf("store: transfer %s recorded: %w", txID, err)
		}
		if c > 0 {
			return true, nil
		}
	}
	return false, nil
}

// PaymentsOfTx returns what is recorded of one transaction on a network.
func (o Ops) PaymentsOfTx(ctx context.Context, network, txID string) ([]Payment, error) {
	return o.payments(ctx, "SELECT "+paymentCols+" FROM billing_payments WHERE network = ? AND tx_id = ? ORDER BY event_index LIMIT ?", network, txID, MaxList)
}

// PaymentsOfInvoice returns the transfers recorded against an invoice.
func (o Ops) PaymentsOfInvoice(ctx context.Context, invoiceID int64) ([]Payment, error) {
	return o.payments(ctx, "SELECT "+paymentCols+" FROM billing_payments WHERE invoice_id = ? ORDER BY id LIMIT ?", invoiceID, MaxList)
}

func (o Ops) payments(ctx context.Context, q string, args ...any) ([]Payment, error) {
	rows, err := o.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: payments: %w", err)
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, fmt.Errorf("store: payments: %w", err)
		}
		out = append(out, *p)
	}
	return out, rows.Err()
}

// Subscription is what an account has paid for: a node quota until an expiry.
type Subscription struct {
	Account   string
	PlanID    int64
	NodeQuota int
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// SubscriptionOf returns an account's subscription, or ErrNotFound.
func (o Ops) SubscriptionOf(ctx context.Context, account string) (*Subscription, error) {
	var s Subscription
	var e, u int64
	err := o.queryRow(ctx, "SELECT account, plan_id, node_quota, expires_at, updated_at FROM billing_subscriptions WHERE account = ?", account).
		Scan(&s.Account, &s.PlanID, &s.NodeQuota, &e, &u)
	if err != nil {
		return nil, fmt.Errorf("store: subscription of %q: %w", account, mapErr(err))
	}
	s.ExpiresAt, s.UpdatedAt = fromMS(e), fromMS(u)
	return &s, nil
}

// ListSubscriptions returns subscriptions by account name, at most limit (clamped to MaxList).
func (o Ops) ListSubscriptions(ctx context.Context, limit int) ([]Subscription, error) {
	rows, err := o.query(ctx, "SELECT account, plan_id, node_quota, expires_at, updated_at FROM billing_subscriptions ORDER BY account LIMIT ?", clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var s Subscription
		var e, u int64
		if err := rows.Scan(&s.Account, &s.PlanID, &s.NodeQuota, &e, &u); err != nil {
			return nil, fmt.Errorf("store: list subscriptions: %w", err)
		}
		s.ExpiresAt, s.UpdatedAt = fromMS(e), fromMS(u)
		out = append(out, s)
	}
	return out, rows.Err()
}

// ExtendSubscription adds a paid plan to an account: the subscription runs the plan's duration
// from its current expiry (or from now, if it has lapsed) and takes the plan's quota.
func (o Ops) ExtendSubscription(ctx context.Context, account string, p *Plan, now time.Time) (*Subscription, error) {
	cur, err := o.SubscriptionOf(ctx, account)
	switch {
	case errors.Is(err, ErrNotFound):
		s := &Subscription{Account: account, PlanID: p.ID, NodeQuota: p.NodeQuota, ExpiresAt: now.Add(p.Duration), UpdatedAt: now}
		if _, err := o.exec(ctx, "INSERT INTO billing_subscriptions (account, plan_id, node_quota, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)",
			account, p.ID, p.NodeQuota, ms(s.ExpiresAt), ms(now)); err != nil {
			return nil, fmt.Errorf("store: create subscription of %q: %w", account, mapErr(err))
		}
		return s, nil
	case err != nil:
		return nil, err
	}
	from := cur.ExpiresAt
	if from.Before(now) {
		from = now
	}
	s := &Subscription{Account: account, PlanID: p.ID, NodeQuota: p.NodeQuota, ExpiresAt: from.Add(p.Duration), UpdatedAt: now}
	if _, err := o.exec(ctx, "UPDATE billing_subscriptions SET plan_id = ?, node_quota = ?, expires_at = ?, updated_at = ? WHERE account = ?",
		p.ID, p.NodeQuota, ms(s.ExpiresAt), ms(now), account); err != nil {
		return nil, fmt.Errorf("store: extend subscription of %q: %w", account, err)
	}
	return s, nil
}

// BillingCursor returns where the payment watcher of a network resumes; 0 when it never ran.
func (o Ops) BillingCursor(ctx context.Context, network string) (int64, error) {
	var v int64
	err := o.queryRow(ctx, "SELECT position FROM billing_cursors WHERE network = ?", network).Scan(&v)
	if err = mapErr(err); err != nil && !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("store: billing cursor %s: %w", network, err)
	}
	return v, nil
}

// SetBillingCursor records where the watcher of a network resumes. It never moves backwards.
func (o Ops) SetBillingCursor(ctx context.Context, network string, pos int64, now time.Time) error {
	res, err := o.exec(ctx, "UPDATE billing_cursors SET position = ?, updated_at = ? WHERE network = ? AND position <= ?", pos, ms(now), network, pos)
	if err != nil {
		return fmt.Errorf("store: set billing cursor %s: %w", network, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	// ON CONFLICT: a further position stored meanwhile stays (inside a PostgreSQL transaction a
	// failed insert would abort it).
	if _, err := o.exec(ctx, "INSERT INTO billing_cursors (network, position, updated_at) VALUES (?, ?, ?) ON CONFLICT (network) DO NOTHING", network, pos, ms(now)); err != nil {
		return fmt.Errorf("store: set billing cursor %s: %w", network, err)
	}
	return nil
}

// SetJoinTokenAccount charges the nodes a join token enrols to an account.
func (o Ops) SetJoinTokenAccount(ctx context.Context, tokenID int64, account string) error {
	if _, err := o.exec(ctx, "INSERT INTO billing_join_tokens (join_token_id, account) VALUES (?, ?)", tokenID, account); err != nil {
		return fmt.Errorf("store: join token %d account: %w", tokenID, mapErr(err))
	}
	return nil
}

// JoinTokenAccount returns the account a join token charges, or "" when none.
func (o Ops) JoinTokenAccount(ctx context.Context, tokenID int64) (string, error) {
	return o.accountOf(ctx, "SELECT account FROM billing_join_tokens WHERE join_token_id = ?", tokenID)
}

// SetNodeAccount records the account a node counts against.
func (o Ops) SetNodeAccount(ctx context.Context, nodeID int64, account string) error {
	if _, err := o.exec(ctx, "INSERT INTO billing_nodes (node_id, account) VALUES (?, ?)", nodeID, account); err != nil {
		return fmt.Errorf("store: node %d account: %w", nodeID, mapErr(err))
	}
	return nil
}

// NodeAccount returns the account a node counts against, or "" when none.
func (o Ops) NodeAccount(ctx context.Context, nodeID int64) (string, error) {
	return o.accountOf(ctx, "SELECT account FROM billing_nodes WHERE node_id = ?", nodeID)
}

func (o Ops) accountOf(ctx context.Context, q string, id int64) (string, error) {
	var a string
	err := mapErr(o.queryRow(ctx, q, id).Scan(&a))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: account lookup: %w", err)
	}
	return a, nil
}

// CountAccountNodes counts an account's enrolled, unrevoked nodes: what its quota limits.
func (o Ops) CountAccountNodes(ctx context.Context, account string) (int, error) {
	var n int
	if err := o.queryRow(ctx, "SELECT COUNT(*) FROM billing_nodes b JOIN nodes n ON n.id = b.node_id WHERE b.account = ? AND n.revoked_at = 0", account).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count nodes of %q: %w", account, err)
	}
	return n, nil
}
