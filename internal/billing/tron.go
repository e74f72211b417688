package billing

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// USDTTron is the official USDT TRC-20 contract on TRON mainnet.
const USDTTron = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"

// transferTopic is keccak256("Transfer(address,address,uint256)"), topic 0 of every ERC-20/TRC-20
// Transfer event.
const transferTopic = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

// TRC20Item is one entry of TronGrid's GET /v1/accounts/{address}/transactions/trc20. It is only a
// hint of where to look: the token name, symbol and even the value it shows are never trusted;
// the solidified transaction info decides (TronRules.Verify).
type TRC20Item struct {
	TxID           string
	Contract       string
	From, To       string
	Value          string
	BlockTimestamp int64 // ms
}

// TRC20Page is one page of that listing.
type TRC20Page struct {
	Items       []TRC20Item
	Fingerprint string // the next page's cursor; "" on the last page
}

// DecodeTRC20List decodes TronGrid's TRC-20 transfer listing.
func DecodeTRC20List(body []byte) (*TRC20Page, error) {
	var raw struct {
		Success *bool  `json:"success"`
		Error   string `json:"error"`
		Data    []struct {
			TransactionID string `json:"transaction_id"`
			TokenInfo     struct {
				Address string `json:"address"`
			} `json:"token_info"`
			BlockTimestamp json.Number `json:"block_timestamp"`
			From           string      `json:"from"`
			To             string      `json:"to"`
			Type           string      `json:"type"`
			Value          string      `json:"value"`
		} `json:"data"`
		Meta struct {
			Fingerprint string `json:"fingerprint"`
		} `json:"meta"`
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, fmt.Errorf("trongrid trc20 list: %w", err)
	}
	if raw.Success == nil || !*raw.Success {
		return nil, fmt.Errorf("trongrid trc20 list: success is not true (error %q)", trunc(raw.Error))
	}
	p := &TRC20Page{Fingerprint: raw.Meta.Fingerprint}
	for i, d := range raw.Data {
		if _, err := parseTxID(d.TransactionID); err != nil {
			return nil, fmt.Errorf("trongrid trc20 list: item %d: %w", i, err)
		}
		ts, err := jsonInt(d.BlockTimestamp, "block_timestamp")
		if err != nil {
			return nil, fmt.Errorf("trongrid trc20 list: item %d: %w", i, err)
		}
		p.Items = append(p.Items, TRC20Item{TxID: strings.ToLower(d.TransactionID), Contract: d.TokenInfo.Address,
			From: d.From, To: d.To, Value: d.Value, BlockTimestamp: ts})
	}
	return p, nil
}

// TronTxInfo is the part of /walletsolidity/gettransactioninfobyid this package reads. The
// solidity endpoint answers only for transactions in solidified (irreversible) blocks, and {} for
// any other.
type TronTxInfo struct {
	ID             string
	BlockTimestamp int64 // ms
	Found          bool
	ReceiptResult  string // "SUCCESS" for a contract call that succeeded
	Result         string // "FAILED" when the call failed; absent on success
	Logs           []TronLog
}

// TronLog is one event of the transaction.
type TronLog struct {
	Address []byte   // 20-byte contract address
	Topics  [][]byte // 32 bytes each
	Data    []byte
}

// DecodeTronTxInfo decodes /wallet(solidity)/gettransactioninfobyid (hex addresses, visible=false).
func DecodeTronTxInfo(body []byte) (*TronTxInfo, error) {
	var raw struct {
		ID             string      `json:"id"`
		BlockTimeStamp json.Number `json:"blockTimeStamp"`
		Result         string      `json:"result"`
		Receipt        struct {
			Result string `json:"result"`
		} `json:"receipt"`
		Log []struct {
			Address string   `json:"address"`
			Topics  []string `json:"topics"`
			Data    string   `json:"data"`
		} `json:"log"`
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, fmt.Errorf("tron transaction info: %w", err)
	}
	info := &TronTxInfo{Found: raw.ID != "", ReceiptResult: raw.Receipt.Result, Result: raw.Result}
	if !info.Found {
		return info, nil
	}
	if _, err := parseTxID(raw.ID); err != nil {
		return nil, fmt.Errorf("tron transaction info: %w", err)
	}
	info.ID = strings.ToLower(raw.ID)
	ts, err := jsonInt(raw.BlockTimeStamp, "blockTimeStamp")
	if err != nil {
		return nil, fmt.Errorf("tron transaction info: %w", err)
	}
	info.BlockTimestamp = ts
	if len(raw.Log) > 256 {
		return nil, fmt.Errorf("tron transaction info: %d logs, more than 256", len(raw.Log))
	}
	for i, l := range raw.Log {
		addr, err := hex.DecodeString(strings.TrimPrefix(l.Address, "41"))
		if err != nil || len(addr) != 20 {
			return nil, fmt.Errorf("tron transaction info: log %d: address %q is not 20 hex bytes", i, trunc(l.Address))
		}
		tl := TronLog{Address: addr}
		if len(l.Topics) > 4 {
			return nil, fmt.Errorf("tron transaction info: log %d: %d topics, at most 4", i, len(l.Topics))
		}
		for _, t := range l.Topics {
			b, err := hex.DecodeString(t)
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("tron transaction info: log %d: topic %q is not 32 hex bytes", i, trunc(t))
			}
			tl.Topics = append(tl.Topics, b)
		}
		if tl.Data, err = hex.DecodeString(l.Data); err != nil {
			return nil, fmt.Errorf("tron transaction info: log %d: data: %w", i, err)
		}
		info.Logs = append(info.Logs, tl)
	}
	return info, nil
}

func parseTxID(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("transaction ID %q: want 64 hex digits", trunc(s))
	}
	return b, nil
}

// ParseTxID normalises a transaction ID given by a person: TRON's 64 hex digits, or a TON
// transaction hash in hex or base64.
func ParseTxID(network, s string) (string, error) {
	if network != TronUSDT {
		return parseTonHash(s)
	}
	b, err := parseTxID(strings.TrimPrefix(strings.ToLower(s), "0x"))
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// TronRules are what a USDT payment on TRON must satisfy.
type TronRules struct {
	USDT     TronAddress // the official contract; a token is recognised by this address only
	Receiver TronAddress // our receiving address
}

// Verify returns the USDT transfers to our address that a solidified transaction made. A
// transaction not yet solidified is ErrPending; one that failed, that moved only another token
// (whatever it calls itself), or that paid someone else is Refused.
func (r TronRules) Verify(info *TronTxInfo) ([]Transfer, error) {
	if !info.Found {
		return nil, ErrPending
	}
	if info.ReceiptResult != "SUCCESS" || (info.Result != "" && info.Result != "SUCCESS") {
		return nil, refuse("failed", "transaction %s did not succeed (receipt %q, result %q)", info.ID, info.ReceiptResult, info.Result)
	}
	topic, _ := hex.DecodeString(transferTopic)
	var out []Transfer
	var otherToken, otherRecipient string
	for i, l := range info.Logs {
		if len(l.Topics) != 3 || !bytes.Equal(l.Topics[0], topic) || len(l.Data) != 32 {
			continue
		}
		to := l.Topics[2][12:]
		if !bytes.Equal(l.Address, r.USDT.evm()) {
			if bytes.Equal(to, r.Receiver.evm()) {
				otherToken = tronFromEVM(l.Address)
			}
			continue
		}
		if !bytes.Equal(to, r.Receiver.evm()) {
			otherRecipient = tronFromEVM(to)
			continue
		}
		amount, err := amountFromWord(l.Data)
		if err != nil {
			return nil, refuse("malformed", "transaction %s log %d: %v", info.ID, i, err)
		}
		out = append(out, Transfer{Network: TronUSDT, TxID: info.ID, EventIndex: i, From: tronFromEVM(l.Topics[1][12:]),
			To: r.Receiver.String(), Amount: amount, At: time.UnixMilli(info.BlockTimestamp).UTC(), Cursor: info.BlockTimestamp})
	}
	switch {
	case len(out) > 0:
		return out, nil
	case otherToken != "":
		return nil, refuse("fake_token", "transaction %s sent us a token of contract %s, not the official USDT contract %s", info.ID, otherToken, r.USDT)
	case otherRecipient != "":
		return nil, refuse("wrong_recipient", "transaction %s paid USDT to %s, not to our address %s", info.ID, otherRecipient, r.Receiver)
	}
	return nil, refuse("wrong_recipient", "transaction %s has no USDT Transfer to our address %s", info.ID, r.Receiver)
}

func tronFromEVM(b []byte) string {
	var a TronAddress
	a[0] = 0x41
	copy(a[1:], b)
	return a.String()
}
