package store_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

func newPlan(t *testing.T, s *store.Store) *store.Plan {
	p := &store.Plan{Name: "basic", PriceUSDT: 10_000_000, PriceTON: 2_000_000_000, NodeQuota: 2, Duration: 30 * 24 * time.Hour, CreatedAt: t0}
	if err := s.CreatePlan(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBillingPlansAndInvoices(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		p := newPlan(t, s)
		if err := s.CreatePlan(ctx, &store.Plan{Name: "basic", PriceUSDT: 1, NodeQuota: 1, Duration: time.Hour, CreatedAt: t0}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate plan name: %v", err)
		}
		if err := s.SetPlanPrice(ctx, p.ID, math.MaxInt64, 0, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, err := s.PlanByID(ctx, p.ID)
		if err != nil || got.PriceUSDT != math.MaxInt64 || got.PriceTON != 0 || got.Duration != p.Duration || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("price change: %+v %v", got, err)
		}
		if err := s.SetPlanPrice(ctx, 999, 1, 1, t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown plan: %v", err)
		}
		if err := s.SetPlanPrice(ctx, p.ID, 0, 1, t0); err == nil {
			t.Fatal("a zero price was accepted")
		}
		inv := func(net string, amount int64, ref string) *store.Invoice {
			return &store.Invoice{Account: "acme", PlanID: p.ID, Network: net, Amount: amount, Receiver: "R", Reference: ref,
				CreatedBy: "root", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
		}
		a := inv("tron-usdt", 10_000_001, "r1")
		if err := s.CreateInvoice(ctx, a); err != nil {
			t.Fatal(err)
		}
		// The database refuses a second open TRON invoice with the same amount: the amount is
		// what identifies it.
		if err := s.CreateInvoice(ctx, inv("tron-usdt", 10_000_001, "r2")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same open TRON amount: %v", err)
		}
		if err := s.CreateInvoice(ctx, inv("ton-usdt", 10_000_001, "r1")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same reference: %v", err)
		}
		if err := s.CreateInvoice(ctx, inv("ton-usdt", 10_000_001, "r3")); err != nil {
			t.Fatalf("same amount on TON: %v", err)
		}
		am, err := s.OpenAmounts(ctx, "tron-usdt", 10_000_000, 10_009_999)
		if err != nil || !am[10_000_001] || len(am) != 1 {
			t.Fatalf("open amounts %v %v", am, err)
		}
		if err := s.MarkInvoicePaid(ctx, a.ID, a.Amount, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkInvoicePaid(ctx, a.ID, a.Amount, t0.Add(time.Minute)); !errors.Is(err, store.ErrInvoiceNotOpen) {
			t.Fatalf("paid twice: %v", err)
		}
		// Once paid, the amount is free again.
		if err := s.CreateInvoice(ctx, inv("tron-usdt", 10_000_001, "r4")); err != nil {
			t.Fatal(err)
		}
		n, err := s.ExpireInvoices(ctx, t0.Add(2*time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("expired %d %v", n, err)
		}
		if open, _ := s.OpenInvoices(ctx, "tron-usdt"); len(open) != 0 {
			t.Fatalf("open after expiry: %v", open)
		}
	})
}

// Each transfer is recorded at most once, by the database's constraint; an invoice is credited
// at most once.
func TestBillingPaymentsExactlyOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		p := newPlan(t, s)
		var ids []int64
		for _, ref := range []string{"a", "b"} {
			i := &store.Invoice{Account: "acme", PlanID: p.ID, Network: "ton-usdt", Amount: 5, Receiver: "R", Reference: ref, CreatedBy: "w", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			if err := s.CreateInvoice(ctx, i); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, i.ID)
		}
		pay := func(tx string, idx int, inv int64, outcome string) error {
			return s.RecordPayment(ctx, &store.Payment{Network: "ton-usdt", TxID: tx, EventIndex: idx, InvoiceID: inv, Outcome: outcome, Reason: "r",
				Sender: "S", Amount: 5, BlockTime: t0, RecordedAt: t0, RecordedBy: "test"})
		}
		if err := pay("tx1", 0, ids[0], "paid"); err != nil {
			t.Fatal(err)
		}
		if err := pay("tx1", 0, ids[1], "paid"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("one transfer for a second invoice: %v", err)
		}
		if err := pay("tx1", 1, ids[1], "paid"); err != nil {
			t.Fatalf("another event of the same transaction: %v", err)
		}
		if err := pay("tx2", 0, ids[0], "overpaid"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("an invoice credited twice: %v", err)
		}
		if err := pay("tx3", 0, ids[0], "underpaid"); err != nil {
			t.Fatalf("a refused transfer against a paid invoice: %v", err)
		}
		got, err := s.PaymentByTransfer(ctx, "ton-usdt", "tx1", 0)
		if err != nil || got.InvoiceID != ids[0] || got.Outcome != "paid" {
			t.Fatalf("%+v %v", got, err)
		}
		if ps, _ := s.PaymentsOfInvoice(ctx, ids[0]); len(ps) != 2 {
			t.Fatalf("payments of invoice: %d", len(ps))
		}
	})
}

func TestBillingSubscriptionsAndCursor(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		p := newPlan(t, s)
		sub, err := s.ExtendSubscription(ctx, "acme", p, t0)
		if err != nil || !sub.ExpiresAt.Equal(t0.Add(p.Duration)) {
			t.Fatalf("%+v %v", sub, err)
		}
		// Paying again before expiry adds the duration to the expiry; after a lapse it counts from now.
		sub, _ = s.ExtendSubscription(ctx, "acme", p, t0.Add(time.Hour))
		if !sub.ExpiresAt.Equal(t0.Add(2 * p.Duration)) {
			t.Fatalf("renewal before expiry: %v", sub.ExpiresAt)
		}
		late := t0.Add(10 * p.Duration)
		sub, _ = s.ExtendSubscription(ctx, "acme", p, late)
		if got, _ := s.SubscriptionOf(ctx, "acme"); !got.ExpiresAt.Equal(late.Add(p.Duration)) || got.NodeQuota != 2 || !sub.ExpiresAt.Equal(got.ExpiresAt) {
			t.Fatalf("after a lapse: %+v", got)
		}
		if _, err := s.SubscriptionOf(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if v, err := s.BillingCursor(ctx, "tron-usdt"); v != 0 || err != nil {
			t.Fatalf("%d %v", v, err)
		}
		for _, v := range []int64{100, 50, 200} {
			if err := s.SetBillingCursor(ctx, "tron-usdt", v, t0); err != nil {
				t.Fatal(err)
			}
		}
		if v, _ := s.BillingCursor(ctx, "tron-usdt"); v != 200 {
			t.Fatalf("cursor %d, want 200 (never backwards)", v)
		}
	})
}
