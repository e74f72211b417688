package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"x0tta6bl4/internal/billing"
	"x0tta6bl4/internal/billing/provider"
	"x0tta6bl4/internal/control/store"
)

// billingState is the control plane's side of billing: the providers, the rules payments must
// satisfy, and the metrics. It is nil when billing is disabled.
type billingState struct {
	cfg       BillingConfig
	tron      *provider.TronGrid
	tronRules billing.TronRules
	ton       *provider.Toncenter
	tonRules  billing.TonRules
	tonUSDT   bool

	payments   *prometheus.CounterVec // by network and outcome
	refusals   *prometheus.CounterVec // enrolment and renewal refusals by reason
	pollErrors *prometheus.CounterVec // by network
	cursor     *prometheus.GaugeVec   // by network
}

// billingActor names the watcher in the audit log.
const billingActor = "billing-watcher"

func newBilling(cfg BillingConfig, reg *prometheus.Registry) (*billingState, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	b := &billingState{cfg: cfg,
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x0tta6bl4_control_billing_payments_total",
			Help: "On-chain transfers judged, by network and outcome (paid, overpaid, underpaid, early, late, unmatched, refused)."}, []string{"network", "outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x0tta6bl4_control_billing_refusals_total",
			Help: "Enrolments and renewals refused for billing, by action and reason (no_account, no_subscription, expired, quota)."}, []string{"action", "reason"}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x0tta6bl4_control_billing_poll_errors_total",
			Help: "Failed payment-watcher polls by network (provider errors, 429 included)."}, []string{"network"}),
		cursor: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x0tta6bl4_control_billing_cursor",
			Help: "Where the payment watcher resumes, by network (TRON: block ms; TON: logical time)."}, []string{"network"}),
	}
	reg.MustRegister(b.payments, b.refusals, b.pollErrors, b.cursor)
	if cfg.Tron.Address != "" {
		key, err := readAPIKey(cfg.Tron.APIKeyFile)
		if err != nil {
			return nil, err
		}
		if b.tron, err = provider.NewTronGrid(provider.Config{BaseURL: cfg.Tron.BaseURL, APIKey: key, Timeout: cfg.Tron.Timeout}); err != nil {
			return nil, fmt.Errorf("billing.tron: %w", err)
		}
		b.tronRules.Receiver, _ = billing.ParseTronAddress(cfg.Tron.Address)
		b.tronRules.USDT, _ = billing.ParseTronAddress(cfg.Tron.USDTContract)
	}
	if cfg.Ton.Address != "" {
		key, err := readAPIKey(cfg.Ton.APIKeyFile)
		if err != nil {
			return nil, err
		}
		if b.ton, err = provider.NewToncenter(provider.Config{BaseURL: cfg.Ton.BaseURL, APIKey: key, Timeout: cfg.Ton.Timeout}); err != nil {
			return nil, fmt.Errorf("billing.ton: %w", err)
		}
		b.tonRules.Receiver, _ = billing.ParseTonAddress(cfg.Ton.Address)
		if cfg.Ton.USDTJettonWallet != "" {
			b.tonRules.USDTWallet, _ = billing.ParseTonAddress(cfg.Ton.USDTJettonWallet)
			b.tonUSDT = true
		}
	}
	return b, nil
}

// receiver is our address on a network, "" when the network is not configured.
func (b *billingState) receiver(network string) string {
	switch {
	case network == billing.TronUSDT && b.tron != nil:
		return b.tronRules.Receiver.String()
	case network == billing.Ton && b.ton != nil:
		return b.tonRules.Receiver.String()
	case network == billing.TonUSDT && b.ton != nil && b.tonUSDT:
		return b.tonRules.Receiver.String()
	}
	return ""
}

// runBilling is the payment watcher: it polls every configured chain, backing off after failures
// (doubling up to max_backoff, or as long as a 429's Retry-After asks) and closing invoices past
// their late window.
func (s *Server) runBilling(ctx context.Context) {
	b := s.bill
	wait := time.Duration(0)
	failures := 0
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := s.PollPayments(ctx)
		if n, eerr := s.st.ExpireInvoices(ctx, s.now().Add(-b.cfg.LateWindow)); eerr != nil {
			s.log.Error("billing: closing expired invoices", "err", eerr)
		} else if n > 0 {
			s.log.Info("billing: closed expired invoices", "count", n)
		}
		if err == nil || ctx.Err() != nil {
			failures, wait = 0, b.cfg.PollInterval
			continue
		}
		failures++
		wait = b.cfg.PollInterval << min(failures, 16)
		wait = min(wait, b.cfg.MaxBackoff)
		if ra, ok := provider.RateLimited(err); ok && ra > wait {
			wait = ra
		}
		s.log.Warn("billing: payment poll failed; backing off", "err", err, "retry_in", wait)
	}
}

// PollPayments runs one pass of the payment watcher over every configured chain: it lists new
// transfers to our addresses from each chain's stored cursor, verifies each against its final
// state, records it (crediting its invoice when it pays one) and advances the cursor past what is
// settled. A transfer that is not final yet holds the cursor back, so a restart re-reads it; one
// already recorded is skipped, and the database refuses to record it twice.
func (s *Server) PollPayments(ctx context.Context) error {
	b := s.bill
	if b == nil {
		return errors.New("billing is disabled")
	}
	var errs []error
	if b.tron != nil {
		if err := s.pollTron(ctx); err != nil {
			b.pollErrors.WithLabelValues(billing.TronUSDT).Inc()
			errs = append(errs, fmt.Errorf("tron: %w", err))
		}
	}
	if b.ton != nil {
		if err := s.pollTon(ctx); err != nil {
			b.pollErrors.WithLabelValues(billing.Ton).Inc()
			errs = append(errs, fmt.Errorf("ton: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) pollTron(ctx context.Context) error {
	b := s.bill
	cur, err := s.st.BillingCursor(ctx, billing.TronUSDT)
	if err != nil {
		return err
	}
	page, err := b.tron.ListTRC20(ctx, b.tronRules.Receiver.String(), b.tronRules.USDT.String(), cur)
	if err != nil {
		return err
	}
	next, err := settle(cur, page.Items, func(it billing.TRC20Item) (int64, string) { return it.BlockTimestamp, it.TxID },
		func(it billing.TRC20Item) (bool, error) { return s.st.TransferRecorded(ctx, it.TxID, billing.TronUSDT) },
		func(it billing.TRC20Item) error { _, err := s.checkTron(ctx, it.TxID, 0, billingActor, ""); return err })
	if err != nil {
		return err
	}
	return s.advanceCursor(ctx, billing.TronUSDT, next)
}

func (s *Server) pollTon(ctx context.Context) error {
	b := s.bill
	cur, err := s.st.BillingCursor(ctx, billing.Ton)
	if err != nil {
		return err
	}
	txs, err := b.ton.Transactions(ctx, b.tonRules.Receiver.String(), cur)
	if err != nil {
		return err
	}
	next, err := settle(cur, txs, func(tx billing.TonTx) (int64, string) { return tx.LT, tx.Hash },
		func(tx billing.TonTx) (bool, error) {
			return s.st.TransferRecorded(ctx, tx.Hash, billing.Ton, billing.TonUSDT)
		},
		func(tx billing.TonTx) error { _, err := s.judgeTon(ctx, tx, 0, billingActor, ""); return err })
	if err != nil {
		return err
	}
	return s.advanceCursor(ctx, billing.Ton, next)
}

// settle judges each listed item not yet recorded and returns where the next poll starts: past
// every settled item, but no further than the first one still pending (not final), so that it is
// read again. A listing that goes back before the cursor contradicts the request and is an error.
func settle[T any](cur int64, items []T, id func(T) (int64, string), recorded func(T) (bool, error), check func(T) error) (int64, error) {
	next, held := cur, int64(-1)
	for _, it := range items {
		pos, tx := id(it)
		if pos < cur {
			return 0, fmt.Errorf("the provider listed %s at position %d, before the requested %d", tx, pos, cur)
		}
		done, err := recorded(it)
		if err != nil {
			return 0, err
		}
		if !done {
			if err := check(it); errors.Is(err, billing.ErrPending) {
				if held < 0 || pos < held {
					held = pos
				}
				continue
			} else if err != nil {
				return 0, err
			}
		}
		next = max(next, pos)
	}
	if held >= 0 {
		next = min(next, held)
	}
	return next, nil
}

func (s *Server) advanceCursor(ctx context.Context, network string, pos int64) error {
	if err := s.st.SetBillingCursor(ctx, network, pos, s.now()); err != nil {
		return err
	}
	s.bill.cursor.WithLabelValues(network).Set(float64(pos))
	return nil
}

// checkTron verifies one TRON transaction from its solidified receipt and records every USDT
// transfer it made to us (or its refusal). ErrPending: not solidified yet, nothing recorded.
func (s *Server) checkTron(ctx context.Context, txID string, invoiceID int64, actor, remote string) ([]store.Payment, error) {
	info, err := s.bill.tron.SolidifiedInfo(ctx, txID)
	if err != nil {
		return nil, err
	}
	transfers, err := s.bill.tronRules.Verify(info)
	var ref *billing.Refused
	if errors.As(err, &ref) {
		p, err := s.recordRefusal(ctx, billing.TronUSDT, txID, ref, actor, remote)
		if err != nil {
			return nil, err
		}
		return []store.Payment{*p}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []store.Payment
	for _, t := range transfers {
		p, err := s.creditTransfer(ctx, t, invoiceID, actor, remote)
		if err != nil {
			return nil, err
		}
		out = append(out, *p)
	}
	return out, nil
}

// judgeTon verifies one transaction of our TON wallet and records it (or its refusal).
func (s *Server) judgeTon(ctx context.Context, tx billing.TonTx, invoiceID int64, actor, remote string) ([]store.Payment, error) {
	t, err := s.bill.tonRules.Verify(tx)
	var ref *billing.Refused
	switch {
	case errors.As(err, &ref):
		network := billing.Ton
		if ref.Code == "fake_jetton" {
			if !s.bill.tonUSDT {
				return nil, nil // USDT on TON is not accepted here: jetton notifications are not payments
			}
			network = billing.TonUSDT
		}
		p, err := s.recordRefusal(ctx, network, tx.Hash, ref, actor, remote)
		if err != nil {
			return nil, err
		}
		return []store.Payment{*p}, nil
	case errors.Is(err, billing.ErrNotPayment):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if t.Network == billing.TonUSDT && !s.bill.tonUSDT {
		return nil, nil
	}
	p, err := s.creditTransfer(ctx, t, invoiceID, actor, remote)
	if err != nil {
		return nil, err
	}
	return []store.Payment{*p}, nil
}

// recordRefusal records a transaction that can never pay, once, with its reason.
func (s *Server) recordRefusal(ctx context.Context, network, txID string, ref *billing.Refused, actor, remote string) (*store.Payment, error) {
	p := &store.Payment{Network: network, TxID: txID, EventIndex: -1, Outcome: "refused", Reason: ref.Code + ": " + ref.Reason,
		RecordedAt: s.now(), RecordedBy: actor}
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.RecordPayment(ctx, p); err != nil {
			return err
		}
		return tx.AddAudit(ctx, &store.AuditEntry{At: s.now(), Actor: actor, Action: "billing.payment.refused", Target: network + "/" + txID, Detail: p.Reason, Remote: remote})
	})
	if errors.Is(err, store.ErrConflict) {
		return s.st.PaymentByTransfer(ctx, network, txID, -1)
	}
	if err != nil {
		return nil, err
	}
	s.bill.payments.WithLabelValues(network, p.Outcome).Inc()
	s.log.Warn("billing: transaction refused", "network", network, "tx", txID, "reason", p.Reason)
	return p, nil
}

// creditTransfer records a verified transfer exactly once: matched to the open invoice it
// identifies (or judged against invoiceID, when an operator names one), crediting the invoice and
// extending its account's subscription when it pays. Called again for the same transfer — by a
// restart, a second instance, or an operator — it returns the first record and changes nothing:
// the payments table's UNIQUE (network, tx_id, event_index) decides, inside the transaction that
// credits.
func (s *Server) creditTransfer(ctx context.Context, t billing.Transfer, invoiceID int64, actor, remote string) (*store.Payment, error) {
	for attempt := 0; ; attempt++ {
		p, err := s.creditOnce(ctx, t, invoiceID, actor, remote)
		if (errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrInvoiceNotOpen)) && attempt < 3 {
			// Another instance recorded this transfer, or paid the invoice, first: look again.
			if prev, perr := s.st.PaymentByTransfer(ctx, t.Network, t.TxID, t.EventIndex); perr == nil {
				return prev, nil
			}
			continue
		}
		return p, err
	}
}

func (s *Server) creditOnce(ctx context.Context, t billing.Transfer, invoiceID int64, actor, remote string) (*store.Payment, error) {
	var (
		p     *store.Payment
		sub   *store.Subscription
		inv   *store.Invoice
		fresh bool
	)
	now := s.now()
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		fresh = false
		if prev, err := tx.PaymentByTransfer(ctx, t.Network, t.TxID, t.EventIndex); err == nil {
			p = prev
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var d billing.Decision
		byID := map[int64]*store.Invoice{}
		if invoiceID != 0 {
			i, err := tx.InvoiceByID(ctx, invoiceID)
			if err != nil {
				return err
			}
			if i.Status != store.InvoiceOpen {
				return fmt.Errorf("invoice %d is %s: %w", i.ID, i.Status, store.ErrInvoiceNotOpen)
			}
			byID[i.ID] = i
			d = billing.Judge(t, toMatchInvoice(i))
		} else {
			open, err := tx.OpenInvoices(ctx, t.Network)
			if err != nil {
				return err
			}
			cands := make([]billing.Invoice, len(open))
			for k := range open {
				cands[k] = *toMatchInvoice(&open[k])
				byID[open[k].ID] = &open[k]
			}
			d = billing.Match(t, cands)
		}
		p = &store.Payment{Network: t.Network, TxID: t.TxID, EventIndex: t.EventIndex, Outcome: d.Outcome, Reason: d.Reason,
			Sender: t.From, Amount: t.Amount, BlockTime: t.At, RecordedAt: now, RecordedBy: actor}
		if d.Invoice != nil {
			p.InvoiceID = d.Invoice.ID
			inv = byID[d.Invoice.ID]
		}
		// The payment row first: of two instances crediting one transfer, the second blocks here
		// on the unique index until the first commits, then fails with ErrConflict.
		if err := tx.RecordPayment(ctx, p); err != nil {
			return err
		}
		detail := fmt.Sprintf("%s %s from %s: %s (%s)", billing.FormatAmount(t.Network, t.Amount), t.Network, t.From, p.Outcome, p.Reason)
		if billing.Credits(d.Outcome) {
			if err := tx.MarkInvoicePaid(ctx, inv.ID, t.Amount, t.At); err != nil {
				return err
			}
			plan, err := tx.PlanByID(ctx, inv.PlanID)
			if err != nil {
				return err
			}
			if sub, err = tx.ExtendSubscription(ctx, inv.Account, plan, now); err != nil {
				return err
			}
			detail += fmt.Sprintf("; subscription of %q: plan %q, %d nodes, until %s", inv.Account, plan.Name, plan.NodeQuota, sub.ExpiresAt.Format(time.RFC3339))
		}
		fresh = true
		return tx.AddAudit(ctx, &store.AuditEntry{At: now, Actor: actor, Action: "billing.payment." + p.Outcome,
			Target: t.Network + "/" + t.TxID + "/" + strconv.Itoa(t.EventIndex), Detail: detail, Remote: remote})
	})
	if err != nil {
		return nil, err
	}
	if fresh {
		s.bill.payments.WithLabelValues(t.Network, p.Outcome).Inc()
		s.log.Info("billing: transfer recorded", "network", t.Network, "tx", t.TxID, "event", t.EventIndex, "outcome", p.Outcome, "invoice", p.InvoiceID, "reason", p.Reason)
		if sub != nil {
			s.log.Info("billing: subscription extended", "account", sub.Account, "expires", sub.ExpiresAt, "node_quota", sub.NodeQuota)
		}
	}
	return p, nil
}

func toMatchInvoice(i *store.Invoice) *billing.Invoice {
	return &billing.Invoice{ID: i.ID, Network: i.Network, Amount: i.Amount, Reference: i.Reference, CreatedAt: i.CreatedAt, ExpiresAt: i.ExpiresAt}
}

// billingRefusal is why an account may not enrol (renew false) or renew (renew true) a node now;
// reason is "" when it may.
func (s *Server) billingRefusal(ctx context.Context, o store.Ops, account string, renew bool) (reason, msg string, err error) {
	if account == "" {
		return "no_account", "billing is enabled and no account is charged for this node; create the join token with an account", nil
	}
	sub, err := o.SubscriptionOf(ctx, account)
	if errors.Is(err, store.ErrNotFound) {
		return "no_subscription", fmt.Sprintf("account %q has no subscription; pay an invoice first (x0tta6bl4 ctl billing invoice create)", account), nil
	}
	if err != nil {
		return "", "", err
	}
	now := s.now()
	grace := sub.ExpiresAt.Add(s.cfg.Billing.Grace)
	if renew {
		if !now.Before(grace) {
			return "expired", fmt.Sprintf("the subscription of account %q expired at %s and its grace period ended at %s; certificate renewals are refused until it is paid",
				account, sub.ExpiresAt.Format(time.RFC3339), grace.Format(time.RFC3339)), nil
		}
		if !now.Before(sub.ExpiresAt) {
			s.log.Warn("billing: renewal in the grace period", "account", account, "expired", sub.ExpiresAt, "grace_ends", grace)
		}
		return "", "", nil
	}
	if !now.Before(sub.ExpiresAt) {
		return "expired", fmt.Sprintf("the subscription of account %q expired at %s; new nodes may not enrol until it is paid", account, sub.ExpiresAt.Format(time.RFC3339)), nil
	}
	used, err := o.CountAccountNodes(ctx, account)
	if err != nil {
		return "", "", err
	}
	if used >= sub.NodeQuota {
		return "quota", fmt.Sprintf("account %q has %d of its %d nodes enrolled; revoke one or buy a larger plan", account, used, sub.NodeQuota), nil
	}
	return "", "", nil
}

// noteBillingRefusal counts and audits a refused enrolment or renewal (outside the transaction
// that was rolled back), so the operator sees it as well as the node.
func (s *Server) noteBillingRefusal(ctx context.Context, rc *reqCtx, action, node, account, reason, msg string) {
	s.bill.refusals.WithLabelValues(action, reason).Inc()
	s.log.Warn("billing: refused", "action", action, "node", node, "account", account, "reason", reason)
	if err := s.audit(ctx, s.st.Ops, rc, "billing.refused."+action, node, msg); err != nil {
		s.log.Error("billing: audit of a refusal", "err", err)
	}
}
