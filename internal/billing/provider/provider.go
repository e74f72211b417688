// Package provider fetches payment evidence from the chains' public HTTP APIs: TronGrid (and any
// TRON node's /walletsolidity API) and Toncenter v3. It bounds every request (a timeout, a body
// cap of billing.MaxBody), reports rate limiting (429, with the Retry-After the provider asks) and
// server errors as typed errors for the caller's backoff, and hands the bodies to the decoders of
// internal/billing.
//
// It must never follow a redirect to another host, never log or return an API key, and never read
// an unbounded body.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/billing"
)

// Config says how to reach one provider.
type Config struct {
	BaseURL string // e.g. https://api.trongrid.io, https://toncenter.com
	APIKey  string // sent in the provider's header; "" for none
	Timeout time.Duration
	// HTTP is the client to use; nil means a new one. Tests pass the httptest server's.
	HTTP *http.Client
}

// HTTPError is an answer other than 200.
type HTTPError struct {
	Status     int
	RetryAfter time.Duration // from Retry-After on 429 and 503; 0 when absent
	Snippet    string        // the start of the body, for the log
}

func (e *HTTPError) Error() string {
	if e.Status == http.StatusTooManyRequests {
		return fmt.Sprintf("rate limited by the provider (429, retry after %s): %s", e.RetryAfter, e.Snippet)
	}
	return fmt.Sprintf("provider answered %d: %s", e.Status, e.Snippet)
}

// RateLimited reports whether err is a 429, and how long the provider asked to wait.
func RateLimited(err error) (time.Duration, bool) {
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusTooManyRequests {
		return he.RetryAfter, true
	}
	return 0, false
}

type client struct {
	base    *url.URL
	key     string
	keyHdr  string
	timeout time.Duration
	hc      *http.Client
}

func newClient(cfg Config, keyHeader string) (*client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("provider base URL %q: want http(s)://host[/path]", cfg.BaseURL)
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	c := *hc
	host := u.Host
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host || len(via) > 3 {
			return fmt.Errorf("provider redirected to %s: refused", req.URL.Host)
		}
		return nil
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return &client{base: u, key: cfg.APIKey, keyHdr: keyHeader, timeout: timeout, hc: &c}, nil
}

func (c *client) do(ctx context.Context, method, path string, q url.Values, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set(c.keyHdr, c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, billing.MaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		he := &HTTPError{Status: resp.StatusCode, Snippet: snippet(b)}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			he.RetryAfter = time.Duration(min(s, 3600)) * time.Second
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, he)
	}
	if len(b) > billing.MaxBody {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, billing.MaxBody)
	}
	return b, nil
}

func snippet(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(b[:min(len(b), 120)]))
	return strings.TrimSpace(s)
}

// TronGrid reads USDT transfers to our address and their solidified receipts.
type TronGrid struct{ c *client }

// NewTronGrid returns a TronGrid client; the API key goes in TRON-PRO-API-KEY.
func NewTronGrid(cfg Config) (*TronGrid, error) {
	c, err := newClient(cfg, "TRON-PRO-API-KEY")
	if err != nil {
		return nil, err
	}
	return &TronGrid{c: c}, nil
}

// TRC20PageSize is how many transfers one listing asks for (TronGrid's maximum).
const TRC20PageSize = 200

// ListTRC20 lists confirmed transfers of contract to address from minTimestamp (ms, inclusive),
// oldest first.
func (t *TronGrid) ListTRC20(ctx context.Context, address, contract string, minTimestamp int64) (*billing.TRC20Page, error) {
	q := url.Values{}
	q.Set("only_confirmed", "true")
	q.Set("only_to", "true")
	q.Set("contract_address", contract)
	q.Set("limit", strconv.Itoa(TRC20PageSize))
	q.Set("order_by", "block_timestamp,asc")
	if minTimestamp > 0 {
		q.Set("min_timestamp", strconv.FormatInt(minTimestamp, 10))
	}
	b, err := t.c.do(ctx, http.MethodGet, "/v1/accounts/"+url.PathEscape(address)+"/transactions/trc20", q, nil)
	if err != nil {
		return nil, err
	}
	return billing.DecodeTRC20List(b)
}

// SolidifiedInfo asks /walletsolidity/gettransactioninfobyid: the receipt of a transaction in a
// solidified block ({} for any other).
func (t *TronGrid) SolidifiedInfo(ctx context.Context, txID string) (*billing.TronTxInfo, error) {
	b, err := t.c.do(ctx, http.MethodPost, "/walletsolidity/gettransactioninfobyid", nil, map[string]string{"value": txID})
	if err != nil {
		return nil, err
	}
	info, err := billing.DecodeTronTxInfo(b)
	if err != nil {
		return nil, err
	}
	if info.Found && info.ID != txID {
		return nil, fmt.Errorf("tron transaction info: asked for %s, answered %s", txID, info.ID)
	}
	return info, nil
}

// Toncenter reads our wallet's transactions from Toncenter v3.
type Toncenter struct{ c *client }

// NewToncenter returns a Toncenter v3 client; the API key goes in X-API-Key.
func NewToncenter(cfg Config) (*Toncenter, error) {
	c, err := newClient(cfg, "X-API-Key")
	if err != nil {
		return nil, err
	}
	return &Toncenter{c: c}, nil
}

// TonPageSize is how many transactions one listing asks for.
const TonPageSize = 100

// Transactions lists account's transactions from logical time startLT (inclusive), oldest first.
func (t *Toncenter) Transactions(ctx context.Context, account string, startLT int64) ([]billing.TonTx, error) {
	q := url.Values{}
	q.Set("account", account)
	q.Set("sort", "asc")
	q.Set("limit", strconv.Itoa(TonPageSize))
	q.Set("offset", "0")
	if startLT > 0 {
		q.Set("start_lt", strconv.FormatInt(startLT, 10))
	}
	b, err := t.c.do(ctx, http.MethodGet, "/api/v3/transactions", q, nil)
	if err != nil {
		return nil, err
	}
	return billing.DecodeTonTransactions(b)
}

// Transaction looks one transaction up by its hash (hex).
func (t *Toncenter) Transaction(ctx context.Context, hash string) (*billing.TonTx, error) {
	q := url.Values{}
	q.Set("hash", hash)
	q.Set("limit", "1")
	b, err := t.c.do(ctx, http.MethodGet, "/api/v3/transactions", q, nil)
	if err != nil {
		return nil, err
	}
	txs, err := billing.DecodeTonTransactions(b)
	if err != nil {
		return nil, err
	}
	for i := range txs {
		if txs[i].Hash == hash {
			return &txs[i], nil
		}
	}
	return nil, fmt.Errorf("toncenter: transaction %s not found (not indexed yet, or not ours)", hash)
}
