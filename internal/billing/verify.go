package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Transfer is one verified incoming payment: final on its chain, of the genuine token, to our
// address. (Network, TxID, EventIndex) identifies it for ever; the store credits each at most once.
type Transfer struct {
	Network    string
	TxID       string // lower-case hex: TRON's transaction ID; TON: the hash of our wallet's transaction
	EventIndex int    // TRON: the Transfer event's index in the transaction's log; TON: 0
	From       string // the payer as the chain names it (TRON Base58; TON raw)
	To         string
	Amount     int64 // smallest unit: micro-USDT or nanotons
	Reference  string
	At         time.Time // block time
	Cursor     int64     // the position the watcher resumes from: TRON block ms, TON logical time
}

// ErrPending says the transaction is not final yet (TRON: not solidified; TON: not in a masterchain
// block). It is asked about again later; nothing is recorded.
var ErrPending = errors.New("not final yet")

// ErrNotPayment says a transaction is not an incoming payment at all (an outgoing message, a
// bounce, an external message); the watcher skips it without recording anything.
var ErrNotPayment = errors.New("not an incoming payment")

// Refused is a transaction that will never pay an invoice, with the reason recorded for people.
type Refused struct {
	Code   string // wrong_recipient, fake_token, fake_jetton, failed, aborted, malformed
	Reason string
}

func (r *Refused) Error() string { return "refused (" + r.Code + "): " + r.Reason }

func refuse(code, format string, a ...any) error {
	return &Refused{Code: code, Reason: fmt.Sprintf(format, a...)}
}

// decodeJSON decodes one JSON value of at most MaxBody bytes, keeping numbers exact, and says
// clearly when a provider answered with something that is not JSON (an HTML error page).
func decodeJSON(body []byte, v any) error {
	if len(body) > MaxBody {
		return fmt.Errorf("response of %d bytes exceeds the %d-byte limit", len(body), MaxBody)
	}
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return errors.New("empty response")
	}
	if t[0] != '{' {
		return fmt.Errorf("response is not a JSON object (starts with %q)", trunc(string(t[:min(len(t), 20)])))
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

// jsonInt reads a JSON number or numeric string as int64, refusing fractions and exponents.
func jsonInt(n json.Number, what string) (int64, error) {
	if n == "" {
		return 0, nil
	}
	v, err := ParseAmount(string(n))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}
