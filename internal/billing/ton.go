package billing

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// USDTTonMaster is the official USDT jetton master on TON mainnet.
const USDTTonMaster = "EQCxE6mUtQJKFnGfaROTKOt1lZbDiiX1kCixRv7Nw2Id_sDs"

// opTransferNotification is TEP-74's transfer_notification#7362d09c, which a jetton wallet sends
// its owner after accepting jettons.
const opTransferNotification = 0x7362d09c

// TonTx is the part of one Toncenter v3 /api/v3/transactions entry this package reads.
type TonTx struct {
	Account string
	Hash    string // lower-case hex of the 32-byte transaction hash
	LT      int64
	Now     int64
	McSeqno int64 // the masterchain block that committed it; 0 if the answer does not say
	Aborted bool
	InMsg   *TonMsg
}

// TonMsg is the transaction's inbound message.
type TonMsg struct {
	Source  string // raw address; "" for an external message
	Value   int64
	Opcode  string
	Bounced bool
	Body    []byte // the BoC of the body
}

// DecodeTonTransactions decodes Toncenter v3's /api/v3/transactions.
func DecodeTonTransactions(body []byte) ([]TonTx, error) {
	var raw struct {
		Error        string `json:"error"`
		Transactions []struct {
			Account     string      `json:"account"`
			Hash        string      `json:"hash"`
			LT          json.Number `json:"lt"`
			Now         json.Number `json:"now"`
			McSeqno     json.Number `json:"mc_block_seqno"`
			Description struct {
				Aborted *bool `json:"aborted"`
			} `json:"description"`
			InMsg *struct {
				Source         *string     `json:"source"`
				Value          json.Number `json:"value"`
				Opcode         *string     `json:"opcode"`
				Bounced        *bool       `json:"bounced"`
				MessageContent *struct {
					Body string `json:"body"`
				} `json:"message_content"`
			} `json:"in_msg"`
		} `json:"transactions"`
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, fmt.Errorf("toncenter transactions: %w", err)
	}
	if raw.Transactions == nil {
		return nil, fmt.Errorf("toncenter transactions: no transactions field (error %q)", trunc(raw.Error))
	}
	out := make([]TonTx, 0, len(raw.Transactions))
	for i, t := range raw.Transactions {
		fail := func(err error) ([]TonTx, error) {
			return nil, fmt.Errorf("toncenter transactions: item %d: %w", i, err)
		}
		h, err := parseTonHash(t.Hash)
		if err != nil {
			return fail(err)
		}
		if _, err := ParseTonAddress(t.Account); err != nil {
			return fail(err)
		}
		if t.Description.Aborted == nil {
			return fail(fmt.Errorf("description.aborted missing"))
		}
		tx := TonTx{Account: t.Account, Hash: h, Aborted: *t.Description.Aborted}
		if tx.LT, err = jsonInt(t.LT, "lt"); err != nil {
			return fail(err)
		}
		if tx.Now, err = jsonInt(t.Now, "now"); err != nil {
			return fail(err)
		}
		if tx.McSeqno, err = jsonInt(t.McSeqno, "mc_block_seqno"); err != nil {
			return fail(err)
		}
		if m := t.InMsg; m != nil {
			msg := &TonMsg{}
			if m.Source != nil {
				msg.Source = *m.Source
			}
			if m.Opcode != nil {
				msg.Opcode = *m.Opcode
			}
			msg.Bounced = m.Bounced != nil && *m.Bounced
			if msg.Value, err = jsonInt(m.Value, "in_msg.value"); err != nil {
				return fail(err)
			}
			if m.MessageContent != nil && m.MessageContent.Body != "" {
				if msg.Body, err = base64.StdEncoding.DecodeString(m.MessageContent.Body); err != nil {
					return fail(fmt.Errorf("in_msg body: %w", err))
				}
			}
			tx.InMsg = msg
		}
		out = append(out, tx)
	}
	return out, nil
}

func parseTonHash(s string) (string, error) {
	if b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(s), "0x")); err == nil && len(b) == 32 {
		return hex.EncodeToString(b), nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return hex.EncodeToString(b), nil
		}
	}
	return "", fmt.Errorf("transaction hash %q: want 32 bytes in hex or base64", trunc(s))
}

// TonRules are what a payment on TON must satisfy.
type TonRules struct {
	Receiver TonAddress // our wallet
	// USDTWallet is our own USDT jetton wallet: the wallet the official USDT master derives for
	// Receiver. Only a transfer_notification from it proves that genuine USDT arrived; any contract
	// can send a notification claiming to be USDT.
	USDTWallet TonAddress
}

// Verify turns one transaction of our wallet into a payment. Toncoin sent with a comment is a Ton
// payment; a transfer_notification from our USDT jetton wallet is a TonUSDT payment. A notification
// from any other contract, an aborted transaction, or one for another account is Refused;
// outgoing, external and bounced messages are ErrNotPayment.
func (r TonRules) Verify(tx TonTx) (Transfer, error) {
	var t Transfer
	acct, err := ParseTonAddress(tx.Account)
	if err != nil {
		return t, refuse("malformed", "account: %v", err)
	}
	m := tx.InMsg
	if m == nil || m.Source == "" || m.Bounced {
		return t, ErrNotPayment
	}
	if acct != r.Receiver {
		return t, refuse("wrong_recipient", "transaction %s is on account %s, not our address %s", tx.Hash, acct, r.Receiver)
	}
	if tx.Aborted {
		return t, refuse("aborted", "transaction %s was aborted", tx.Hash)
	}
	if tx.McSeqno <= 0 {
		return t, ErrPending
	}
	src, err := ParseTonAddress(m.Source)
	if err != nil {
		return t, refuse("malformed", "in_msg source: %v", err)
	}
	t = Transfer{TxID: tx.Hash, To: r.Receiver.String(), At: time.Unix(tx.Now, 0).UTC(), Cursor: tx.LT}
	var root *cell
	if len(m.Body) > 0 {
		if root, err = parseBoC(m.Body); err != nil {
			return Transfer{}, refuse("malformed", "transaction %s body: %v", tx.Hash, err)
		}
	}
	if root != nil && root.bits >= 32 && (&slice{c: root}).uint(32) == opTransferNotification {
		if src != r.USDTWallet {
			return Transfer{}, refuse("fake_jetton", "transaction %s: jetton notification from %s, which is not our USDT jetton wallet %s", tx.Hash, src, r.USDTWallet)
		}
		s := &slice{c: root}
		s.uint(32 + 64) // op, query_id
		if t.Amount, err = s.coins(); err != nil {
			return Transfer{}, refuse("malformed", "transaction %s amount: %v", tx.Hash, err)
		}
		sender, ok, err := s.address()
		if err != nil {
			return Transfer{}, refuse("malformed", "transaction %s sender: %v", tx.Hash, err)
		}
		if ok {
			t.From = sender.String()
		}
		payload := s
		if s.bit() {
			payload = &slice{c: s.nextRef()}
		}
		if s.fail != nil {
			return Transfer{}, refuse("malformed", "transaction %s forward payload: %v", tx.Hash, s.fail)
		}
		if t.Reference, _, err = textComment(payload); err != nil {
			return Transfer{}, refuse("malformed", "transaction %s comment: %v", tx.Hash, err)
		}
		t.Network = TonUSDT
		return t, nil
	}
	t.Network, t.From, t.Amount = Ton, src.String(), m.Value
	if root != nil {
		if t.Reference, _, err = textComment(&slice{c: root}); err != nil {
			return Transfer{}, refuse("malformed", "transaction %s comment: %v", tx.Hash, err)
		}
	}
	if t.Amount <= 0 {
		return Transfer{}, ErrNotPayment
	}
	return t, nil
}
