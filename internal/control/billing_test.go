package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/billing"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/identity"
)

const (
	testTronReceiver = "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW"
	testTronTx       = "7c2d4e6f80a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b"
	testTonWallet    = "0:417aa856918d9289f3482511bbfee985a91ea48d3a7aa1221dc955cd0138b1b9"
	testJettonWallet = "0:96649a8f62655bb26ee58ce80cda5c42b644b7732639d6602240f02ff75c03ab"
	testTonTx        = "6947500c621c599ab4f204b3603d019278b7bff287bbd3e88ea8017f9fce967e"
)

// testClock is a settable clock shared by the server and the test.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeChain is TronGrid and Toncenter in one in-process server, answering with the bodies in
// internal/billing/testdata (documented formats; testdata/README.md cites where).
type fakeChain struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	trc20    string            // body of the TRC-20 listing
	info     map[string]string // TRON tx ID → body of its solidified receipt; absent: {}
	ton      string            // body of /api/v3/transactions
	failWith func(w http.ResponseWriter) bool
	listed   atomic.Int64
}

func newFakeChain(t *testing.T) *fakeChain {
	f := &fakeChain{t: t, trc20: "tron/trc20_list_empty.json", info: map[string]string{}, ton: "ton/transactions_empty.json"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeChain) body(name string) []byte {
	b, err := os.ReadFile(filepath.Join("..", "billing", "testdata", name))
	if err != nil {
		f.t.Errorf("testdata: %v", err)
	}
	return b
}

func (f *fakeChain) set(fn func(f *fakeChain)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeChain) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil && f.failWith(w) {
		return
	}
	switch {
	case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/transactions/trc20"):
		f.listed.Add(1)
		if r.URL.Query().Get("contract_address") != billing.USDTTron || r.URL.Path != "/v1/accounts/"+testTronReceiver+"/transactions/trc20" {
			f.t.Errorf("unexpected listing %s", r.URL)
		}
		w.Write(f.body(f.trc20))
	case r.Method == "POST" && r.URL.Path == "/walletsolidity/gettransactioninfobyid":
		var req struct{ Value string }
		json.NewDecoder(r.Body).Decode(&req)
		name, ok := f.info[req.Value]
		if !ok {
			w.Write([]byte("{}"))
			return
		}
		w.Write(f.body(name))
	case r.Method == "GET" && r.URL.Path == "/api/v3/transactions":
		w.Write(f.body(f.ton))
	default:
		http.NotFound(w, r)
	}
}

func billingConfig(chainURL string) func(*Config) {
	return func(c *Config) {
		c.Billing.Enabled = true
		c.Billing.Grace = 24 * time.Hour
		c.Billing.PollInterval = time.Hour // the tests poll by hand
		c.Billing.Tron.Address = testTronReceiver
		c.Billing.Tron.BaseURL = chainURL
		c.Billing.Ton.Address = testTonWallet
		c.Billing.Ton.USDTJettonWallet = testJettonWallet
		c.Billing.Ton.BaseURL = chainURL
	}
}

func enrollWith(t *testing.T, h *harness, a *client.API, account, name string) (*testNode, error) {
	t.Helper()
	tok, err := a.CreateJoinToken(t.Context(), api.CreateJoinTokenRequest{Account: account, CertTTLSeconds: 60 * 24 * 3600})
	if err != nil {
		t.Fatal(err)
	}
	return enrollToken(t, h, tok.Token, name)
}

func enrollToken(t *testing.T, h *harness, token, name string) (*testNode, error) {
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Enroll(t.Context(), h.url, token, key, name, client.EnrollOptions{Now: h.srv.now})
	if err != nil {
		return nil, err
	}
	c, err := client.NewNode(h.url, key, b, client.NodeOptions{Now: h.srv.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &testNode{name: name, key: key, bundle: b, c: c}, nil
}

func wantRefused(t *testing.T, err error, status int, text string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Status != status || !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want HTTP %d mentioning %q", err, status, text)
	}
}

// TestBillingEndToEnd runs the whole path on each database: an invoice is created; enrolment is
// refused before payment; the simulated TronGrid shows the payment, first not solidified (nothing
// credited), then solidified; the watcher credits it once; the subscription activates; a node
// enrols; the quota holds; after expiry enrolment is refused, renewal works in the grace period
// and is refused after it; a restarted control plane credits nothing twice.
func TestBillingEndToEnd(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			chain := newFakeChain(t)
			clock := newTestClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)) // the payment is at 10:00
			db := b.Config(t)
			h := newHarnessAt(t, db, billingConfig(chain.srv.URL), clock.Now)
			ctx := t.Context()
			admin := h.apiClient(h.adminKey)
			plan, err := admin.CreatePlan(ctx, api.CreatePlanRequest{Name: "one-node-day", PriceUSDT: "10001233", NodeQuota: 1, DurationSeconds: 24 * 3600})
			if err != nil {
				t.Fatal(err)
			}
			// Before payment: refused, and the token stays usable.
			tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{Account: "acme", CertTTLSeconds: 60 * 24 * 3600, TTLSeconds: 4 * 3600})
			if err != nil {
				t.Fatal(err)
			}
			_, err = enrollToken(t, h, tok.Token, "alpha")
			wantRefused(t, err, http.StatusPaymentRequired, `account "acme" has no subscription`)

			inv, err := admin.CreateInvoice(ctx, api.CreateInvoiceRequest{Account: "acme", PlanID: plan.ID, Network: billing.TronUSDT})
			if err != nil {
				t.Fatal(err)
			}
			if inv.Amount != "10001234" || inv.AmountText != "10.001234" || inv.Receiver != testTronReceiver || inv.Status != "open" {
				t.Fatalf("invoice %+v", inv)
			}
			// The payment appears, not yet solidified: nothing is credited, the cursor waits.
			clock.Set(time.Date(2026, 12, 6, 10, 5, 0, 0, time.UTC))
			chain.set(func(f *fakeChain) { f.trc20 = "tron/trc20_list.json" })
			if err := h.srv.PollPayments(ctx); err != nil {
				t.Fatal(err)
			}
			if got, _ := admin.Invoice(ctx, inv.ID); got.Status != "open" || len(got.Payments) != 0 {
				t.Fatalf("credited before solidification: %+v", got)
			}
			// A reorganisation before solidification: the listing no longer shows it.
			chain.set(func(f *fakeChain) { f.trc20 = "tron/trc20_list_empty.json" })
			if err := h.srv.PollPayments(ctx); err != nil {
				t.Fatal(err)
			}
			// It comes back and is solidified: credited once, however often the watcher looks.
			chain.set(func(f *fakeChain) { f.trc20 = "tron/trc20_list.json"; f.info[testTronTx] = "tron/info_success.json" })
			for range 3 {
				if err := h.srv.PollPayments(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got, err := admin.Invoice(ctx, inv.ID)
			if err != nil || got.Status != "paid" || got.PaidAmount != "10001234" || len(got.Payments) != 1 || got.Payments[0].Outcome != "paid" ||
				got.Payments[0].TxID != testTronTx || got.Payments[0].Sender != "TBXSw8fM4jpQkGc6zZjsVABFpVN7UvXPdV" {
				t.Fatalf("after payment: %+v %v", got, err)
			}
			sub, err := admin.Subscription(ctx, "acme")
			if err != nil || sub.Status != "active" || sub.NodeQuota != 1 || !sub.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) {
				t.Fatalf("subscription %+v %v", sub, err)
			}
			// The lists the console shows agree with the single reads.
			invs, err := admin.Invoices(ctx)
			if err != nil || len(invs.Invoices) != 1 || invs.Invoices[0].ID != inv.ID || invs.Invoices[0].Status != "paid" {
				t.Fatalf("invoice list %+v %v", invs, err)
			}
			subs, err := admin.Subscriptions(ctx)
			if err != nil || len(subs.Subscriptions) != 1 || subs.Subscriptions[0] != *sub {
				t.Fatalf("subscription list %+v %v, want %+v", subs, err, sub)
			}
			// Paid: the same token now enrols; the quota of one refuses a second node.
			alpha, err := enrollToken(t, h, tok.Token, "alpha")
			if err != nil {
				t.Fatalf("enrol after payment: %v", err)
			}
			_, err = enrollWith(t, h, admin, "acme", "beta")
			wantRefused(t, err, http.StatusPaymentRequired, "1 of its 1 nodes")
			// Expired: no new node; the enrolled one renews during the grace period only.
			clock.Advance(24*time.Hour + time.Minute)
			_, err = enrollWith(t, h, admin, "acme", "gamma")
			wantRefused(t, err, http.StatusPaymentRequired, "expired at")
			if _, err := alpha.c.Renew(ctx); err != nil {
				t.Fatalf("renewal in the grace period: %v", err)
			}
			clock.Advance(24 * time.Hour)
			_, err = alpha.c.Renew(ctx)
			wantRefused(t, err, http.StatusPaymentRequired, "grace period ended")

			// Every change is in the audit log and in the metrics.
			audit, err := admin.Audit(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, e := range audit.Entries {
				count[e.Action]++
			}
			for action, n := range map[string]int{"billing.plan.create": 1, "billing.invoice.create": 1, "billing.payment.paid": 1,
				"billing.refused.enroll": 3, "billing.refused.renew": 1, "node.enroll": 1, "node.renew": 1} {
				if count[action] != n {
					t.Errorf("audit %s: %d entries, want %d (%v)", action, count[action], n, count)
				}
			}
			m := string(h.must(200, "GET", "/api/v1/metrics", h.adminKey, nil, nil).body)
			for _, line := range []string{`x0tta6bl4_control_billing_payments_total{network="tron-usdt",outcome="paid"} 1`,
				`x0tta6bl4_control_billing_refusals_total{action="enroll",reason="expired"} 1`,
				`x0tta6bl4_control_billing_refusals_total{action="renew",reason="expired"} 1`} {
				if !strings.Contains(m, line) {
					t.Errorf("metrics lack %s", line)
				}
			}

			// A restart: a payment arrived meanwhile on TON (to no invoice); the new instance
			// records it once and credits nothing twice.
			chain.set(func(f *fakeChain) { f.ton = "ton/transactions_native.json" })
			h.srv.Close()
			srv2, err := New(ctx, h.cfg, Options{Logger: logger(t), Version: "test", Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer srv2.Close()
			for range 2 {
				if err := srv2.PollPayments(ctx); err != nil {
					t.Fatal(err)
				}
			}
			ps, err := srv2.Store().PaymentsOfInvoice(ctx, inv.ID)
			if err != nil || len(ps) != 1 {
				t.Fatalf("payments of the invoice after restart: %d %v", len(ps), err)
			}
			native, err := srv2.Store().PaymentsOfTx(ctx, billing.Ton, "5b1f0c3e9a7d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7")
			if err != nil || len(native) != 1 || native[0].Outcome != billing.Unmatched || native[0].Amount != 9007199254740993 {
				t.Fatalf("payment made while down: %+v %v", native, err)
			}
			if sub2, _ := srv2.Store().SubscriptionOf(ctx, "acme"); !sub2.ExpiresAt.Equal(sub.ExpiresAt) {
				t.Fatalf("subscription changed by the restart: %v -> %v", sub.ExpiresAt, sub2.ExpiresAt)
			}
		})
	}
}

// TestBillingTwoInstancesCreditOnce: two control-plane instances share one database; each is
// offered the same transfer for a different invoice at the same moment. The transfer is recorded
// once and exactly one invoice is paid, every round. The first round goes through the verify
// path (a real Toncenter body from the simulated provider), the rest through the crediting core
// with fresh transfers.
func TestBillingTwoInstancesCreditOnce(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			chain := newFakeChain(t)
			chain.set(func(f *fakeChain) { f.ton = "ton/transactions_jetton.json" })
			clock := newTestClock(time.Date(2024, 6, 21, 3, 0, 0, 0, time.UTC)) // the jetton transfer is at 04:07:03
			cfg := testConfig(t, b.Config(t))
			billingConfig(chain.srv.URL)(&cfg)
			ctx := context.Background()
			if _, err := Init(ctx, cfg, InitOptions{TrustDomain: testTD, Admin: testAdmin, AdminPassword: testPassword}, clock.Now()); err != nil {
				t.Fatal(err)
			}
			var srvs [2]*Server
			for i := range srvs {
				s, err := New(ctx, cfg, Options{Logger: logger(t), Version: "test", Now: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				srvs[i] = s
			}
			st := srvs[0].Store()
			plan := &store.Plan{Name: "p", PriceUSDT: 10_000_000_000, NodeQuota: 1, Duration: 24 * time.Hour, CreatedAt: clock.Now()}
			if err := st.CreatePlan(ctx, plan); err != nil {
				t.Fatal(err)
			}
			const rounds = 20
			for round := range rounds {
				var invs [2]*store.Invoice
				for i := range invs {
					invs[i] = &store.Invoice{Account: fmt.Sprintf("acct-%d-%d", round, i), PlanID: plan.ID, Network: billing.TonUSDT, Amount: 10_000_000_000,
						Receiver: testTonWallet, Reference: fmt.Sprintf("ref-%d-%d", round, i), CreatedBy: "test", CreatedAt: clock.Now(), ExpiresAt: clock.Now().Add(48 * time.Hour)}
					if err := st.CreateInvoice(ctx, invs[i]); err != nil {
						t.Fatal(err)
					}
				}
				tr := billing.Transfer{Network: billing.TonUSDT, TxID: fmt.Sprintf("%064x", round), From: "0:aa", To: testTonWallet, Amount: 10_000_000_000,
					At: time.Unix(1718942823, 0).UTC()}
				var wg sync.WaitGroup
				errs := make([]error, 2)
				start := make(chan struct{})
				for i := range srvs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						if round == 0 {
							_, errs[i] = srvs[i].VerifyTransaction(ctx, api.VerifyRequest{Network: billing.TonUSDT, TxID: testTonTx, InvoiceID: invs[i].ID}, "op", "")
						} else {
							_, errs[i] = srvs[i].creditTransfer(ctx, tr, invs[i].ID, "op", "")
						}
					}()
				}
				close(start)
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				txID := tr.TxID
				if round == 0 {
					txID = testTonTx
				}
				ps, err := st.PaymentsOfTx(ctx, billing.TonUSDT, txID)
				if err != nil || len(ps) != 1 || ps[0].Outcome != billing.Paid {
					t.Fatalf("round %d: recorded %+v %v, want one paid record", round, ps, err)
				}
				paid := 0
				for _, inv := range invs {
					got, _ := st.InvoiceByID(ctx, inv.ID)
					if got.Status == store.InvoicePaid {
						paid++
						if got.ID != ps[0].InvoiceID {
							t.Fatalf("round %d: invoice %d paid, the record names %d", round, got.ID, ps[0].InvoiceID)
						}
						if _, err := st.SubscriptionOf(ctx, got.Account); err != nil {
							t.Fatalf("round %d: no subscription for the paid invoice: %v", round, err)
						}
					} else if _, err := st.SubscriptionOf(ctx, got.Account); !errors.Is(err, store.ErrNotFound) {
						t.Fatalf("round %d: a subscription for the unpaid invoice", round)
					}
				}
				if paid != 1 {
					t.Fatalf("round %d: %d invoices paid by one transfer", round, paid)
				}
			}
		})
	}
}

// TestBillingProviderMisbehaves: 429, 500, an HTML error page, truncated JSON and a fake jetton.
// The watcher reports a clear error (429 with the wait the provider asked), records nothing for
// a failed poll, and records the fake jetton as refused, with its reason, once.
func TestBillingProviderMisbehaves(t *testing.T) {
	chain := newFakeChain(t)
	clock := newTestClock(time.Date(2024, 6, 21, 3, 0, 0, 0, time.UTC))
	h := newHarnessAt(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "c.db")}, func(c *Config) {
		billingConfig(chain.srv.URL)(c)
		c.Billing.Tron.Address = "" // TON only
	}, clock.Now)
	ctx := t.Context()
	chain.set(func(f *fakeChain) { f.ton = "ton/transactions_fake_jetton.json" })
	for name, fail := range map[string]func(w http.ResponseWriter) bool{
		"429": func(w http.ResponseWriter) bool {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		},
		"500":       func(w http.ResponseWriter) bool { w.WriteHeader(500); return true },
		"html":      func(w http.ResponseWriter) bool { w.Write([]byte("<html><h1>Cloudflare</h1></html>")); return true },
		"truncated": func(w http.ResponseWriter) bool { w.Write([]byte(`{"transactions":[{"account":"0:`)); return true },
	} {
		chain.set(func(f *fakeChain) { f.failWith = fail })
		err := h.srv.PollPayments(ctx)
		if err == nil {
			t.Fatalf("%s: the poll succeeded", name)
		}
		if name == "429" && !strings.Contains(err.Error(), "retry after 30s") {
			t.Errorf("429: %v", err)
		}
		if done, _ := h.srv.Store().TransferRecorded(ctx, testTonTx, billing.Ton, billing.TonUSDT); done {
			t.Fatalf("%s: something was recorded", name)
		}
	}
	chain.set(func(f *fakeChain) { f.failWith = nil })
	for range 2 {
		if err := h.srv.PollPayments(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := h.srv.Store().PaymentsOfTx(ctx, billing.TonUSDT, testTonTx)
	if err != nil || len(ps) != 1 || ps[0].Outcome != "refused" || !strings.Contains(ps[0].Reason, "not our USDT jetton wallet") {
		t.Fatalf("fake jetton: %+v %v", ps, err)
	}
}

// A pending transfer holds the cursor at its position, however many settled ones follow; a
// listing that goes back before the cursor is an error.
func TestBillingSettleHoldsCursor(t *testing.T) {
	type item struct {
		pos     int64
		pending bool
		done    bool
	}
	id := func(i item) (int64, string) { return i.pos, fmt.Sprint(i.pos) }
	recorded := func(i item) (bool, error) { return i.done, nil }
	var checked []int64
	check := func(i item) error {
		checked = append(checked, i.pos)
		if i.pending {
			return billing.ErrPending
		}
		return nil
	}
	next, err := settle(10, []item{{pos: 10, done: true}, {pos: 20, pending: true}, {pos: 30}, {pos: 40, pending: true}}, id, recorded, check)
	if err != nil || next != 20 || fmt.Sprint(checked) != "[20 30 40]" {
		t.Fatalf("next %d %v, checked %v", next, err, checked)
	}
	if next, _ := settle(10, []item{{pos: 10, done: true}, {pos: 30}}, id, recorded, check); next != 30 {
		t.Fatalf("all settled: next %d, want 30", next)
	}
	if _, err := settle(10, []item{{pos: 5}}, id, recorded, check); err == nil {
		t.Fatal("an item before the cursor was accepted")
	}
	boom := errors.New("provider down")
	if _, err := settle(10, []item{{pos: 12}}, id, recorded, func(item) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed check: %v", err)
	}
}
