package control

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/billing"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/governance"
)

// badInput marks an error that is the caller's (400), as opposed to the store's or a provider's.
type badInput struct{ error }

func amountText(v int64) string { return strconv.FormatInt(v, 10) }

func toAPIPlan(p *store.Plan) api.BillingPlan {
	return api.BillingPlan{ID: p.ID, Name: p.Name, PriceUSDT: amountText(p.PriceUSDT), PriceTON: amountText(p.PriceTON), NodeQuota: p.NodeQuota,
		DurationSeconds: int64(p.Duration / time.Second), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

func toAPIPayment(p *store.Payment) api.Payment {
	return api.Payment{Network: p.Network, TxID: p.TxID, EventIndex: p.EventIndex, InvoiceID: p.InvoiceID, Outcome: p.Outcome, Reason: p.Reason,
		Sender: p.Sender, Amount: amountText(p.Amount), BlockTime: p.BlockTime, RecordedAt: p.RecordedAt}
}

func toAPIInvoice(i *store.Invoice, ps []store.Payment) api.Invoice {
	out := api.Invoice{ID: i.ID, Account: i.Account, PlanID: i.PlanID, Network: i.Network, Amount: amountText(i.Amount),
		AmountText: billing.FormatAmount(i.Network, i.Amount), Receiver: i.Receiver, Reference: i.Reference, Status: i.Status,
		CreatedAt: i.CreatedAt, ExpiresAt: i.ExpiresAt, PaidAt: timePtr(i.PaidAt), PaidAmount: amountText(i.PaidAmount), Payments: []api.Payment{}}
	unit := map[string]string{billing.TronUSDT: "USDT (TRC-20)", billing.TonUSDT: "USDT (jetton on TON)", billing.Ton: "TON"}[i.Network]
	if i.Network == billing.TronUSDT {
		out.Instructions = fmt.Sprintf("Send exactly %s %s to %s before %s. The exact amount identifies this invoice: any other amount is not credited automatically.",
			out.AmountText, unit, i.Receiver, i.ExpiresAt.Format(time.RFC3339))
	} else {
		out.Instructions = fmt.Sprintf("Send %s %s to %s before %s with the comment %s (exactly).", out.AmountText, unit, i.Receiver,
			i.ExpiresAt.Format(time.RFC3339), i.Reference)
	}
	for k := range ps {
		out.Payments = append(out.Payments, toAPIPayment(&ps[k]))
	}
	return out
}

func parsePrice(name, s string, emptyOK bool) (int64, error) {
	if s == "" && emptyOK {
		return 0, nil
	}
	v, err := billing.ParseAmount(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

func (s *Server) billingOn(w http.ResponseWriter) bool {
	if s.bill == nil {
		writeError(w, http.StatusNotFound, "billing_disabled", "billing is not enabled on this control plane (billing.enabled in control.yaml)")
		return false
	}
	return true
}

func (s *Server) handleListPlans(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	plans, err := s.st.ListPlans(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.BillingPlanList{Plans: []api.BillingPlan{}}
	for k := range plans {
		out.Plans = append(out.Plans, toAPIPlan(&plans[k]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreatePlan(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.CreatePlanRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if err := validText(req.Name, maxNameLen, false); err != nil {
		badRequest(w, "name: "+err.Error())
		return
	}
	usdt, err := parsePrice("price_usdt", req.PriceUSDT, false)
	if err == nil && usdt == 0 {
		err = errors.New("price_usdt must be positive")
	}
	if err == nil && usdt > 1<<62 {
		err = errors.New("price_usdt too large")
	}
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	ton, err := parsePrice("price_ton", req.PriceTON, true)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if req.NodeQuota < 1 || req.NodeQuota > 1_000_000 {
		badRequest(w, "node_quota: want 1-1000000")
		return
	}
	if req.DurationSeconds < 3600 || req.DurationSeconds > 10*366*24*3600 {
		badRequest(w, "duration_seconds: want one hour to ten years")
		return
	}
	p := &store.Plan{Name: req.Name, PriceUSDT: usdt, PriceTON: ton, NodeQuota: req.NodeQuota, Duration: time.Duration(req.DurationSeconds) * time.Second, CreatedAt: s.now()}
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		if err := tx.CreatePlan(r.Context(), p); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "billing.plan.create", strconv.FormatInt(p.ID, 10),
			fmt.Sprintf("name %q price_usdt %d price_ton %d node_quota %d duration %s", p.Name, usdt, ton, p.NodeQuota, p.Duration))
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("a plan named %q exists", req.Name))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, toAPIPlan(p))
	}
}

// SetPlanPrice changes a plan's prices with an audit entry; invoices already issued keep their
// amounts. It is what a governance decision to change prices executes.
func (s *Server) SetPlanPrice(ctx context.Context, planID, priceUSDT, priceTON int64, actor, remote string) (*store.Plan, error) {
	if priceUSDT <= 0 || priceUSDT > 1<<62 || priceTON < 0 {
		return nil, badInput{errors.New("price_usdt must be 1 to 2^62 micro-USDT and price_ton not negative")}
	}
	var p *store.Plan
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.PlanByID(ctx, planID)
		if err != nil {
			return err
		}
		if err := tx.SetPlanPrice(ctx, planID, priceUSDT, priceTON, s.now()); err != nil {
			return err
		}
		if p, err = tx.PlanByID(ctx, planID); err != nil {
			return err
		}
		return tx.AddAudit(ctx, &store.AuditEntry{At: s.now(), Actor: actor, Action: "billing.plan.price", Target: strconv.FormatInt(planID, 10),
			Detail: fmt.Sprintf("price_usdt %d -> %d, price_ton %d -> %d", old.PriceUSDT, priceUSDT, old.PriceTON, priceTON), Remote: remote})
	})
	return p, err
}

func (s *Server) handleSetPlanPrice(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		badRequest(w, "plan id: want an integer")
		return
	}
	var req api.SetPlanPriceRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	usdt, err := parsePrice("price_usdt", req.PriceUSDT, false)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	ton, err := parsePrice("price_ton", req.PriceTON, true)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	p, err := s.SetPlanPrice(r.Context(), id, usdt, ton, rc.actor(), rc.ip)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no plan %d", id))
	case errors.As(err, new(badInput)):
		badRequest(w, err.Error())
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusOK, toAPIPlan(p))
	}
}

// newReference is an invoice reference: what a TON payment's comment must say. 50 random bits,
// so guessing an open invoice's reference is hopeless, in letters a person can copy.
func newReference() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "X6-" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:10], nil
}

func (s *Server) handleCreateInvoice(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.CreateInvoiceRequest
	if !decodeJSON(w, r, &req) || !s.billingOn(w) {
		return
	}
	if err := validUsername(req.Account); err != nil {
		badRequest(w, "account: "+strings.TrimPrefix(err.Error(), "username: "))
		return
	}
	if !billing.ValidNetwork(req.Network) {
		badRequest(w, fmt.Sprintf("network %q: want %s, %s or %s", req.Network, billing.TronUSDT, billing.TonUSDT, billing.Ton))
		return
	}
	recv := s.bill.receiver(req.Network)
	if recv == "" {
		badRequest(w, fmt.Sprintf("network %s is not configured on this control plane", req.Network))
		return
	}
	plan, err := s.st.PlanByID(r.Context(), req.PlanID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no plan %d", req.PlanID))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	price := plan.PriceUSDT
	if req.Network == billing.Ton {
		if price = plan.PriceTON; price == 0 {
			badRequest(w, fmt.Sprintf("plan %q is not sold for Toncoin", plan.Name))
			return
		}
	}
	now := s.now()
	var inv *store.Invoice
	for attempt := 0; attempt < 3; attempt++ {
		ref, err := newReference()
		if err != nil {
			s.internal(w, r, err)
			return
		}
		inv = &store.Invoice{Account: req.Account, PlanID: plan.ID, Network: req.Network, Amount: price, Receiver: recv, Reference: ref,
			CreatedBy: rc.actor(), CreatedAt: now, ExpiresAt: now.Add(s.cfg.Billing.InvoiceTTL)}
		err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
			n, err := tx.CountOpenInvoices(r.Context(), req.Account)
			if err != nil {
				return err
			}
			if n >= s.cfg.Billing.MaxOpenInvoices {
				return errLimit
			}
			if req.Network == billing.TronUSDT {
				// A TRC-20 transfer has no memo: the amount, unique among open invoices, names
				// the invoice. The unique index refuses a concurrent duplicate.
				used, err := tx.OpenAmounts(r.Context(), req.Network, price+1, price+billing.TronUniqueSpan)
				if err != nil {
					return err
				}
				off := int64(1)
				for ; off <= billing.TronUniqueSpan && used[price+off]; off++ {
				}
				if off > billing.TronUniqueSpan {
					return errLimit
				}
				inv.Amount = price + off
			}
			if err := tx.CreateInvoice(r.Context(), inv); err != nil {
				return err
			}
			return s.audit(r.Context(), tx.Ops, rc, "billing.invoice.create", strconv.FormatInt(inv.ID, 10),
				fmt.Sprintf("account %q plan %q %s %s to %s reference %s expires %s", inv.Account, plan.Name, billing.FormatAmount(inv.Network, inv.Amount),
					inv.Network, inv.Receiver, inv.Reference, inv.ExpiresAt.Format(time.RFC3339)))
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		switch {
		case errors.Is(err, errLimit):
			writeError(w, http.StatusConflict, "limit", fmt.Sprintf("account %q has %d open invoices or every unique amount of this price is taken; pay or wait for one to expire", req.Account, s.cfg.Billing.MaxOpenInvoices))
		case err != nil:
			s.internal(w, r, err)
		default:
			writeJSON(w, http.StatusCreated, toAPIInvoice(inv, nil))
		}
		return
	}
	writeError(w, http.StatusConflict, "conflict", "concurrent invoices took the free amounts; try again")
}

func (s *Server) handleGetInvoice(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		badRequest(w, "invoice id: want an integer")
		return
	}
	inv, err := s.st.InvoiceByID(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no invoice %d", id))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	ps, err := s.st.PaymentsOfInvoice(r.Context(), id)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAPIInvoice(inv, ps))
}

// VerifyTransaction checks one transaction against its chain now and records what it finds, as
// the watcher would: the same rules, the same exactly-once recording.
func (s *Server) VerifyTransaction(ctx context.Context, req api.VerifyRequest, actor, remote string) (api.VerifyResponse, error) {
	out := api.VerifyResponse{Payments: []api.Payment{}}
	if s.bill == nil {
		return out, errors.New("billing is disabled")
	}
	if !billing.ValidNetwork(req.Network) || s.bill.receiver(req.Network) == "" {
		return out, badInput{fmt.Errorf("network %q is not configured", req.Network)}
	}
	txID, err := billing.ParseTxID(req.Network, req.TxID)
	if err != nil {
		return out, badInput{err}
	}
	var ps []store.Payment
	if req.Network == billing.TronUSDT {
		ps, err = s.checkTron(ctx, txID, req.InvoiceID, actor, remote)
	} else {
		var tx *billing.TonTx
		if tx, err = s.bill.ton.Transaction(ctx, txID); err == nil {
			ps, err = s.judgeTon(ctx, *tx, req.InvoiceID, actor, remote)
		}
	}
	switch {
	case errors.Is(err, billing.ErrPending):
		out.Status, out.Reason = "pending", "the transaction is not final yet; ask again later"
		return out, nil
	case err != nil:
		return out, err
	}
	out.Status = "recorded"
	for k := range ps {
		out.Payments = append(out.Payments, toAPIPayment(&ps[k]))
		if ps[k].Outcome == "refused" {
			out.Status, out.Reason = "refused", ps[k].Reason
		}
	}
	if len(ps) == 0 {
		out.Status, out.Reason = "refused", "not an incoming payment to our address"
	}
	return out, nil
}

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.VerifyRequest
	if !decodeJSON(w, r, &req) || !s.billingOn(w) {
		return
	}
	out, err := s.VerifyTransaction(r.Context(), req, rc.actor(), rc.ip)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no invoice %d", req.InvoiceID))
	case errors.Is(err, store.ErrInvoiceNotOpen):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.As(err, new(badInput)):
		badRequest(w, err.Error())
	case err != nil:
		// A provider's failure (or the store's): the check can be repeated.
		s.log.Warn("billing: verify failed", "tx", req.TxID, "err", err)
		writeError(w, http.StatusBadGateway, "verify_failed", err.Error())
	default:
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) handleGetSubscription(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	account := r.PathValue("account")
	if err := validUsername(account); err != nil {
		badRequest(w, "account: "+strings.TrimPrefix(err.Error(), "username: "))
		return
	}
	sub, err := s.st.SubscriptionOf(r.Context(), account)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("account %q has no subscription", account))
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	out, err := s.toAPISubscription(r.Context(), sub)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// toAPISubscription adds the nodes the account uses and where it stands: active, in its grace
// period (renewals only) or expired.
func (s *Server) toAPISubscription(ctx context.Context, sub *store.Subscription) (api.Subscription, error) {
	used, err := s.st.CountAccountNodes(ctx, sub.Account)
	if err != nil {
		return api.Subscription{}, err
	}
	grace := sub.ExpiresAt.Add(s.cfg.Billing.Grace)
	status := "active"
	switch now := s.now(); {
	case !now.Before(grace):
		status = "expired"
	case !now.Before(sub.ExpiresAt):
		status = "grace"
	}
	return api.Subscription{Account: sub.Account, PlanID: sub.PlanID, NodeQuota: sub.NodeQuota, NodesUsed: used,
		ExpiresAt: sub.ExpiresAt, GraceEndsAt: grace, Status: status}, nil
}

// listPageSize is how many invoices or subscriptions a list answers.
const listPageSize = 200

func (s *Server) handleListInvoices(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	invs, err := s.st.ListInvoices(r.Context(), listPageSize)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.InvoiceList{Invoices: make([]api.Invoice, 0, len(invs))}
	for i := range invs {
		out.Invoices = append(out.Invoices, toAPIInvoice(&invs[i], nil))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleListSubscriptions(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	subs, err := s.st.ListSubscriptions(r.Context(), listPageSize)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.SubscriptionList{Subscriptions: make([]api.Subscription, 0, len(subs))}
	for i := range subs {
		sub, err := s.toAPISubscription(r.Context(), &subs[i])
		if err != nil {
			s.internal(w, r, err)
			return
		}
		out.Subscriptions = append(out.Subscriptions, sub)
	}
	writeJSON(w, http.StatusOK, out)
}

// checkPlanPrices refuses a plan-prices action that names a plan that does not exist, or gives a
// period other than the plan's duration: a price is per plan period, so a vote must not silently
// change what a customer gets for it.
func checkPlanPrices(ctx context.Context, o store.Ops, pp governance.PlanPrices) error {
	plans, err := o.ListPlans(ctx)
	if err != nil {
		return err
	}
	for _, want := range pp.Plans {
		if _, err := matchPlan(plans, want); err != nil {
			return err
		}
	}
	return nil
}

func matchPlan(plans []store.Plan, want governance.PlanPrice) (*store.Plan, error) {
	for i := range plans {
		p := &plans[i]
		if p.Name != want.Plan {
			continue
		}
		if p.Duration != time.Duration(want.PeriodDays)*24*time.Hour {
			return nil, fmt.Errorf("prices: plan %q lasts %s, not %d days", p.Name, p.Duration, want.PeriodDays)
		}
		if want.MicroUSDT == 0 || want.MicroUSDT > 1<<62 {
			return nil, fmt.Errorf("prices: plan %q: price must be 1 to 2^62 micro-USDT", p.Name)
		}
		return p, nil
	}
	return nil, fmt.Errorf("prices: no plan named %q", want.Plan)
}

// applyPlanPrices carries out an enacted plan-prices decision: each named plan takes its new
// USDT price (its Toncoin price is not governed and stays). Plans are checked again here, since
// one may have changed between the proposal and its enactment; a plan that no longer matches is
// skipped with an error, the others still change.
func (s *Server) applyPlanPrices(a governance.Action) error {
	pp, ok := a.(governance.PlanPrices)
	if !ok {
		return fmt.Errorf("prices applier given a %s action", a.Type())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plans, err := s.st.ListPlans(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, want := range pp.Plans {
		p, err := matchPlan(plans, want)
		if err == nil {
			_, err = s.SetPlanPrice(ctx, p.ID, int64(want.MicroUSDT), p.PriceTON, "governance", "")
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
