package provider

import (
	"context"
	"os"
	"testing"
	"time"

	"x0tta6bl4/internal/billing"
)

// Opt-in checks against the real public APIs, for an operator on a machine with internet access.
// Each is skipped unless its variables name an address and a transaction that paid it:
//
//	X0TTA6BL4_LIVE_TRON_ADDRESS=T… X0TTA6BL4_LIVE_TRON_TX=<64 hex> [X0TTA6BL4_LIVE_TRONGRID=https://api.trongrid.io]
//	X0TTA6BL4_LIVE_TON_ADDRESS=<our wallet> X0TTA6BL4_LIVE_TON_TX=<our wallet's tx hash>
//	    [X0TTA6BL4_LIVE_TON_JETTON_WALLET=<our USDT jetton wallet>] [X0TTA6BL4_LIVE_TONCENTER=https://toncenter.com]
//	go test -run Live -v ./internal/billing/provider/
//
// API keys, if any, come from X0TTA6BL4_LIVE_TRONGRID_KEY and X0TTA6BL4_LIVE_TONCENTER_KEY.

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func TestLiveTron(t *testing.T) {
	addr, tx := os.Getenv("X0TTA6BL4_LIVE_TRON_ADDRESS"), os.Getenv("X0TTA6BL4_LIVE_TRON_TX")
	if addr == "" || tx == "" {
		t.Skip("set X0TTA6BL4_LIVE_TRON_ADDRESS and X0TTA6BL4_LIVE_TRON_TX to check a real USDT-TRC20 payment")
	}
	recv, err := billing.ParseTronAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	usdt, _ := billing.ParseTronAddress(billing.USDTTron)
	id, err := billing.ParseTxID(billing.TronUSDT, tx)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := NewTronGrid(Config{BaseURL: env("X0TTA6BL4_LIVE_TRONGRID", "https://api.trongrid.io"), APIKey: os.Getenv("X0TTA6BL4_LIVE_TRONGRID_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	page, err := tg.ListTRC20(ctx, recv.String(), usdt.String(), 0)
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	t.Logf("listing: %d recent USDT transfers to %s", len(page.Items), recv)
	info, err := tg.SolidifiedInfo(ctx, id)
	if err != nil {
		t.Fatalf("solidified info: %v", err)
	}
	transfers, err := billing.TronRules{USDT: usdt, Receiver: recv}.Verify(info)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, tr := range transfers {
		t.Logf("verified: %s USDT from %s at %s (event %d)", billing.FormatAmount(tr.Network, tr.Amount), tr.From, tr.At.Format(time.RFC3339), tr.EventIndex)
	}
}

func TestLiveTon(t *testing.T) {
	addr, tx := os.Getenv("X0TTA6BL4_LIVE_TON_ADDRESS"), os.Getenv("X0TTA6BL4_LIVE_TON_TX")
	if addr == "" || tx == "" {
		t.Skip("set X0TTA6BL4_LIVE_TON_ADDRESS and X0TTA6BL4_LIVE_TON_TX to check a real TON or USDT-on-TON payment")
	}
	var rules billing.TonRules
	var err error
	if rules.Receiver, err = billing.ParseTonAddress(addr); err != nil {
		t.Fatal(err)
	}
	if w := os.Getenv("X0TTA6BL4_LIVE_TON_JETTON_WALLET"); w != "" {
		if rules.USDTWallet, err = billing.ParseTonAddress(w); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := billing.ParseTxID(billing.Ton, tx)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := NewToncenter(Config{BaseURL: env("X0TTA6BL4_LIVE_TONCENTER", "https://toncenter.com"), APIKey: os.Getenv("X0TTA6BL4_LIVE_TONCENTER_KEY")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := tc.Transaction(ctx, hash)
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	tr, err := rules.Verify(*got)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	t.Logf("verified: %s %s from %s at %s, comment %q", billing.FormatAmount(tr.Network, tr.Amount), tr.Network, tr.From, tr.At.Format(time.RFC3339), tr.Reference)
}
