// Command trongrid-fixture is a test fixture, not a TRON node: a loopback stand-in for the two
// TronGrid endpoints the control plane's payment watcher reads, so that bench/killloop.sh can pay
// invoices while it SIGKILLs the control plane. A script "pays" with POST /pay?amount=N; the
// fixture then lists that USDT transfer to our address on GET /v1/accounts/{address}/transactions/trc20
// and, once solidify_after has passed, answers POST /walletsolidity/gettransactioninfobyid with its
// receipt (before that, {} as TRON does for a transaction not yet in a solidified block).
//
// Its bodies have the fields, nesting and types of the recorded provider bodies in
// internal/billing/testdata/tron (trc20_list.json, info_success.json; main_test.go checks that
// the shapes match), with the value, transaction ID, timestamps and the Transfer event's topics
// and data rewritten for each payment. Nothing about it is trusted by the control plane: its
// receipts go through the same decoder and TronRules.Verify as TronGrid's.
//
// It must never listen on anything but a loopback address, and never be configured as a
// production control plane's billing.tron.base_url: it confirms whatever it is told to.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"x0tta6bl4/internal/billing"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "trongrid-fixture:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("trongrid-fixture", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	to := fs.String("to", "", "our receiving address (Base58 T…): every payment goes to it")
	contract := fs.String("contract", billing.USDTTron, "the USDT contract the transfers are made on")
	solidify := fs.Duration("solidify-after", time.Second, "how long a transfer is listed before its receipt is solidified")
	addrFile := fs.String("addr-file", "", "write the address it listens on to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ch, err := newChain(*to, *contract, *solidify, time.Now)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: only a loopback address is allowed (this is a test fixture)", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	slog.Info("trongrid-fixture listening", "addr", ln.Addr().String(), "to", *to, "solidify_after", *solidify)
	srv := &http.Server{Handler: ch.handler(), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// transfer is one USDT transfer the fixture's chain holds.
type transfer struct {
	TxID      string `json:"tx_id"`
	Amount    string `json:"amount"` // micro-USDT, decimal
	Timestamp int64  `json:"block_timestamp"`
	Block     int64  `json:"block"`
	made      time.Time
}

// chain is the fixture's ledger: transfers to one address, in block-time order.
type chain struct {
	to, from, contract billing.TronAddress
	solidify           time.Duration
	now                func() time.Time

	mu        sync.Mutex
	transfers []transfer
	byID      map[string]int
}

// sender is the payer's address in every transfer: the "from" of the recorded trc20_list.json.
const sender = "TBXSw8fM4jpQkGc6zZjsVABFpVN7UvXPdV"

func newChain(to, contract string, solidify time.Duration, now func() time.Time) (*chain, error) {
	c := &chain{solidify: solidify, now: now, byID: map[string]int{}}
	var err error
	if c.to, err = billing.ParseTronAddress(to); err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	if c.contract, err = billing.ParseTronAddress(contract); err != nil {
		return nil, fmt.Errorf("--contract: %w", err)
	}
	c.from, _ = billing.ParseTronAddress(sender)
	return c, nil
}

// pay adds a transfer of amount to our address, block time now (never before the previous one).
func (c *chain) pay(amount string) (transfer, error) {
	v, ok := new(big.Int).SetString(amount, 10)
	if !ok || v.Sign() <= 0 || v.BitLen() > 63 {
		return transfer{}, fmt.Errorf("amount %q: want a positive decimal integer below 2^63", amount)
	}
	var id [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return transfer{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	ts := now.UnixMilli()
	if n := len(c.transfers); n > 0 && c.transfers[n-1].Timestamp > ts {
		ts = c.transfers[n-1].Timestamp
	}
	t := transfer{TxID: hex.EncodeToString(id[:]), Amount: v.String(), Timestamp: ts, Block: 79012345 + int64(len(c.transfers)), made: now}
	c.byID[t.TxID] = len(c.transfers)
	c.transfers = append(c.transfers, t)
	return t, nil
}

func (c *chain) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
		t, err := c.pay(r.URL.Query().Get("amount"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, t.TxID)
	})
	mux.HandleFunc("GET /transfers", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		list := slices.Clone(c.transfers)
		c.mu.Unlock()
		writeJSON(w, list)
	})
	mux.HandleFunc("GET /v1/accounts/{address}/transactions/trc20", c.listTRC20)
	mux.HandleFunc("POST /walletsolidity/gettransactioninfobyid", c.txInfo)
	return mux
}

// listTRC20 answers TronGrid's listing (only_confirmed, only_to, contract_address, min_timestamp,
// order_by=block_timestamp,asc, limit ≤ 200) with the body of trc20_list.json per transfer.
func (c *chain) listTRC20(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.PathValue("address") != c.to.String() {
		tronError(w, "the fixture only holds transfers to "+c.to.String())
		return
	}
	if q.Get("contract_address") != c.contract.String() || q.Get("only_to") != "true" || q.Get("order_by") != "block_timestamp,asc" {
		tronError(w, "the fixture answers contract_address="+c.contract.String()+"&only_to=true&order_by=block_timestamp,asc only")
		return
	}
	minTS, limit := int64(0), 20
	var err error
	if s := q.Get("min_timestamp"); s != "" {
		if minTS, err = strconv.ParseInt(s, 10, 64); err != nil {
			tronError(w, "min_timestamp: "+err.Error())
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 200 {
			tronError(w, "limit: want 1 to 200")
			return
		}
	}
	type tokenInfo struct {
		Symbol   string `json:"symbol"`
		Address  string `json:"address"`
		Decimals int    `json:"decimals"`
		Name     string `json:"name"`
	}
	type item struct {
		TransactionID  string    `json:"transaction_id"`
		TokenInfo      tokenInfo `json:"token_info"`
		BlockTimestamp int64     `json:"block_timestamp"`
		From           string    `json:"from"`
		To             string    `json:"to"`
		Type           string    `json:"type"`
		Value          string    `json:"value"`
	}
	type meta struct {
		At          int64  `json:"at"`
		PageSize    int    `json:"page_size"`
		Fingerprint string `json:"fingerprint,omitempty"`
	}
	body := struct {
		Data    []item `json:"data"`
		Success bool   `json:"success"`
		Meta    meta   `json:"meta"`
	}{Data: []item{}, Success: true}
	c.mu.Lock()
	more := false
	for _, t := range c.transfers {
		if t.Timestamp < minTS {
			continue
		}
		if len(body.Data) == limit {
			more = true
			break
		}
		body.Data = append(body.Data, item{TransactionID: t.TxID, TokenInfo: tokenInfo{Symbol: "USDT", Address: c.contract.String(), Decimals: 6, Name: "Tether USD"},
			BlockTimestamp: t.Timestamp, From: c.from.String(), To: c.to.String(), Type: "Transfer", Value: t.Amount})
	}
	body.Meta = meta{At: c.now().UnixMilli(), PageSize: len(body.Data)}
	c.mu.Unlock()
	if more {
		// The watcher pages by min_timestamp; the fingerprint is only there because TronGrid sends one.
		body.Meta.Fingerprint = hex.EncodeToString([]byte(body.Data[len(body.Data)-1].TransactionID[:16]))
	}
	writeJSON(w, body)
}

// txInfo answers gettransactioninfobyid with info_success.json's body for a solidified transfer:
// one USDT Transfer event from the payer to us for the amount; {} for a transaction unknown or not
// solidified yet.
func (c *chain) txInfo(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		tronError(w, "body: "+err.Error())
		return
	}
	c.mu.Lock()
	k, ok := c.byID[strings.ToLower(req.Value)]
	var t transfer
	if ok {
		t = c.transfers[k]
	}
	c.mu.Unlock()
	if !ok || c.now().Sub(t.made) < c.solidify {
		writeJSON(w, struct{}{})
		return
	}
	amount, _ := new(big.Int).SetString(t.Amount, 10)
	var data [32]byte
	amount.FillBytes(data[:])
	word := func(a billing.TronAddress) string { return strings.Repeat("00", 12) + hex.EncodeToString(a[1:]) }
	type receipt struct {
		EnergyFee        int64  `json:"energy_fee"`
		EnergyUsageTotal int64  `json:"energy_usage_total"`
		NetFee           int64  `json:"net_fee"`
		Result           string `json:"result"`
	}
	type event struct {
		Address string   `json:"address"`
		Topics  []string `json:"topics"`
		Data    string   `json:"data"`
	}
	writeJSON(w, struct {
		ID              string   `json:"id"`
		Fee             int64    `json:"fee"`
		BlockNumber     int64    `json:"blockNumber"`
		BlockTimeStamp  int64    `json:"blockTimeStamp"`
		ContractResult  []string `json:"contractResult"`
		ContractAddress string   `json:"contract_address"`
		Receipt         receipt  `json:"receipt"`
		Log             []event  `json:"log"`
	}{
		ID: t.TxID, Fee: 13844850, BlockNumber: t.Block, BlockTimeStamp: t.Timestamp,
		ContractResult:  []string{strings.Repeat("0", 63) + "1"},
		ContractAddress: hex.EncodeToString(c.contract[:]),
		Receipt:         receipt{EnergyFee: 13499850, EnergyUsageTotal: 64285, NetFee: 345000, Result: "SUCCESS"},
		Log: []event{{Address: hex.EncodeToString(c.contract[1:]),
			Topics: []string{transferTopic, word(c.from), word(c.to)}, Data: hex.EncodeToString(data[:])}},
	})
}

// transferTopic is keccak256("Transfer(address,address,uint256)").
const transferTopic = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

func tronError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]any{"success": false, "error": msg, "statusCode": 400})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		slog.Debug("trongrid-fixture: writing an answer", "err", err)
	}
}
