package billing

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testReceiver   = "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW"
	testTonWallet  = "0:417aa856918d9289f3482511bbfee985a91ea48d3a7aa1221dc955cd0138b1b9"
	testJettonWall = "0:96649a8f62655bb26ee58ce80cda5c42b644b7732639d6602240f02ff75c03ab"
)

func body(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tronRules(t testing.TB) TronRules {
	u, err := ParseTronAddress(USDTTron)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseTronAddress(testReceiver)
	if err != nil {
		t.Fatal(err)
	}
	return TronRules{USDT: u, Receiver: r}
}

func tonRules(t testing.TB) TonRules {
	r, _ := ParseTonAddress(testTonWallet)
	w, _ := ParseTonAddress(testJettonWall)
	return TonRules{Receiver: r, USDTWallet: w}
}

func verifyTron(t *testing.T, name string) ([]Transfer, error) {
	info, err := DecodeTronTxInfo(body(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tronRules(t).Verify(info)
}

func refusedCode(err error) string {
	var r *Refused
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func TestTronAddressRoundTrip(t *testing.T) {
	a, err := ParseTronAddress(USDTTron)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.String(); got != USDTTron {
		t.Fatalf("round trip %s", got)
	}
	if b, _ := ParseTronAddress("41a614f803b6fd780986a42c78ec9c7f77e6ded13c"); b != a {
		t.Fatal("hex form differs")
	}
	bad := []byte(USDTTron)
	bad[5] = 'z'
	if _, err := ParseTronAddress(string(bad)); err == nil {
		t.Fatal("a changed character passed the checksum")
	}
}

func TestTonAddressForms(t *testing.T) {
	a, err := ParseTonAddress(USDTTonMaster)
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "0:b113a994b5024a16719f69139328eb759596c38a25f59028b146fecdc3621dfe" {
		t.Fatalf("USDT master raw form %s", a)
	}
	b, _ := ParseTonAddress(strings.ToUpper(a.String()))
	if a != b {
		t.Fatal("raw forms differ by case")
	}
	if _, err := ParseTonAddress("EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDt"); err == nil {
		t.Fatal("bad checksum accepted")
	}
}

func TestTronVerifySuccess(t *testing.T) {
	got, err := verifyTron(t, "tron/info_success.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Amount != 10001234 || got[0].EventIndex != 0 || got[0].From != "TBXSw8fM4jpQkGc6zZjsVABFpVN7UvXPdV" ||
		got[0].To != testReceiver || got[0].Network != TronUSDT || got[0].At != time.UnixMilli(1796551200000).UTC() {
		t.Fatalf("got %+v", got)
	}
}

// Each bad TRON transaction is refused with its reason, or left pending.
func TestTronVerifyRefusals(t *testing.T) {
	for file, code := range map[string]string{
		"tron/info_failed.json":          "failed",
		"tron/info_fake_token.json":      "fake_token",
		"tron/info_other_recipient.json": "wrong_recipient",
		"tron/info_above_int64.json":     "malformed",
	} {
		_, err := verifyTron(t, file)
		if refusedCode(err) != code {
			t.Errorf("%s: %v, want refusal %s", file, err, code)
		}
	}
	if _, err := verifyTron(t, "tron/info_not_solidified.json"); !errors.Is(err, ErrPending) {
		t.Errorf("unsolidified: %v, want ErrPending", err)
	}
}

// An amount above 2^53 (where a float64 loses units) arrives exactly.
func TestTronAmountAbove2p53(t *testing.T) {
	got, err := verifyTron(t, "tron/info_above_2p53.json")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Amount != 1<<53+1 {
		t.Fatalf("amount %d, want %d", got[0].Amount, int64(1<<53+1))
	}
}

func TestTRC20List(t *testing.T) {
	p, err := DecodeTRC20List(body(t, "tron/trc20_list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 || p.Items[0].Value != "10001234" || p.Items[0].BlockTimestamp != 1796551200000 {
		t.Fatalf("%+v", p.Items)
	}
}

func TestTonJettonNotification(t *testing.T) {
	txs, err := DecodeTonTransactions(body(t, "ton/transactions_jetton.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tonRules(t).Verify(txs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := Transfer{Network: TonUSDT, TxID: "6947500c621c599ab4f204b3603d019278b7bff287bbd3e88ea8017f9fce967e", To: testTonWallet,
		From: "0:9bd705c0ef158165067a082fcbb34a406e975f47fffec8c62a490ba74cf0b4d8", Amount: 10_000_000_000,
		Reference: "7ade4478ebe27e4272de295952b307f1b1affe6a070fa8accf594c14d75f1df4", At: time.Unix(1718942823, 0).UTC(), Cursor: 22838801000001}
	if got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestTonRefusals(t *testing.T) {
	for file, code := range map[string]string{
		"ton/transactions_fake_jetton.json":    "fake_jetton",
		"ton/transactions_jetton_aborted.json": "aborted",
	} {
		txs, err := DecodeTonTransactions(body(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tonRules(t).Verify(txs[0]); refusedCode(err) != code {
			t.Errorf("%s: %v, want %s", file, err, code)
		}
	}
	txs, _ := DecodeTonTransactions(body(t, "ton/transactions_jetton_unfinalised.json"))
	if _, err := tonRules(t).Verify(txs[0]); !errors.Is(err, ErrPending) {
		t.Errorf("unfinalised: %v", err)
	}
	// Our transactions listed for another account: a transfer to another address.
	r := tonRules(t)
	r.Receiver.Hash[0] ^= 1
	txs, _ = DecodeTonTransactions(body(t, "ton/transactions_jetton.json"))
	if _, err := r.Verify(txs[0]); refusedCode(err) != "wrong_recipient" {
		t.Errorf("other account: %v", err)
	}
}

// Nine decimals and a value above 2^53 nanotons, with its comment.
func TestTonNative(t *testing.T) {
	txs, err := DecodeTonTransactions(body(t, "ton/transactions_native.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tonRules(t).Verify(txs[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Network != Ton || got.Amount != 9007199254740993 || got.Reference != "INV-7Q2M9XK4" {
		t.Fatalf("%+v", got)
	}
	if s := FormatAmount(Ton, got.Amount); s != "9007199.254740993" {
		t.Fatalf("format %s", s)
	}
	if s := FormatAmount(TronUSDT, 10001234); s != "10.001234" {
		t.Fatalf("format %s", s)
	}
}

// The provider misbehaves: every decoder answers with a clear error.
func TestDecodersRefuseGarbage(t *testing.T) {
	html := []byte("<html><body><h1>502 Bad Gateway</h1></body></html>")
	full := body(t, "tron/info_success.json")
	huge := append([]byte(`{"data":[],"pad":"`), make([]byte, MaxBody)...)
	for name, b := range map[string][]byte{
		"html": html, "truncated": full[:len(full)/2], "empty": nil, "huge": huge,
		"float amount": []byte(`{"id":"` + strings.Repeat("a", 64) + `","blockTimeStamp":1.5e12}`),
		"trailing":     append(append([]byte{}, full...), []byte("{}")...),
	} {
		if _, err := DecodeTronTxInfo(b); err == nil {
			t.Errorf("tx info %s: accepted", name)
		}
		if _, err := DecodeTRC20List(b); err == nil {
			t.Errorf("trc20 %s: accepted", name)
		}
		if _, err := DecodeTonTransactions(b); err == nil {
			t.Errorf("toncenter %s: accepted", name)
		}
	}
	if _, err := DecodeTRC20List([]byte(`{"success":false,"error":"rate limited"}`)); err == nil {
		t.Error("success:false accepted")
	}
}

func TestParseAmount(t *testing.T) {
	for _, s := range []string{"", "-1", "+1", "1.0", "1e3", "9223372036854775808", "99999999999999999999", " 1"} {
		if _, err := ParseAmount(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if v, err := ParseAmount("9223372036854775807"); err != nil || v != math.MaxInt64 {
		t.Errorf("max int64: %d %v", v, err)
	}
}

func TestMatch(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	invs := []Invoice{
		{ID: 1, Network: TronUSDT, Amount: 10_000_001, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{ID: 2, Network: TonUSDT, Amount: 10_000_000, Reference: "INV-A", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	}
	in := t0.Add(time.Minute)
	cases := []struct {
		name    string
		tr      Transfer
		outcome string
		inv     int64
	}{
		{"tron exact", Transfer{Network: TronUSDT, Amount: 10_000_001, At: in}, Paid, 1},
		{"tron other amount", Transfer{Network: TronUSDT, Amount: 10_000_000, At: in}, Unmatched, 0},
		{"tron before invoice", Transfer{Network: TronUSDT, Amount: 10_000_001, At: t0.Add(-time.Second)}, Early, 1},
		{"tron after expiry", Transfer{Network: TronUSDT, Amount: 10_000_001, At: t0.Add(time.Hour)}, Late, 1},
		{"ton exact", Transfer{Network: TonUSDT, Amount: 10_000_000, Reference: " INV-A ", At: in}, Paid, 2},
		{"ton too little", Transfer{Network: TonUSDT, Amount: 9_999_999, Reference: "INV-A", At: in}, Underpaid, 2},
		{"ton too much", Transfer{Network: TonUSDT, Amount: 10_000_002, Reference: "INV-A", At: in}, Overpaid, 2},
		{"ton unknown reference", Transfer{Network: TonUSDT, Amount: 10_000_000, Reference: "INV-B", At: in}, Unmatched, 0},
		{"ton no comment", Transfer{Network: TonUSDT, Amount: 10_000_000, At: in}, Unmatched, 0},
		{"native ton never pays a USDT invoice", Transfer{Network: Ton, Amount: 10_000_000, Reference: "INV-A", At: in}, Unmatched, 0},
	}
	for _, c := range cases {
		d := Match(c.tr, invs)
		var id int64
		if d.Invoice != nil {
			id = d.Invoice.ID
		}
		if d.Outcome != c.outcome || id != c.inv || d.Reason == "" {
			t.Errorf("%s: %s invoice %d (%s), want %s invoice %d", c.name, d.Outcome, id, d.Reason, c.outcome, c.inv)
		}
	}
}
