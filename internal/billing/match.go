package billing

import (
	"fmt"
	"strings"
	"time"
)

// Invoice is what Match needs of an open invoice.
type Invoice struct {
	ID        int64
	Network   string
	Amount    int64
	Reference string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Outcomes of matching a verified transfer. Paid and Overpaid credit the invoice; the rest are
// recorded against the transfer (and the invoice, if one was identified) and credit nothing.
const (
	Paid      = "paid"      // exactly the amount asked
	Overpaid  = "overpaid"  // more than asked: credited; the excess is recorded for a refund by hand
	Underpaid = "underpaid" // less than asked: not credited; recorded for a refund or top-up by hand
	Early     = "early"     // made before the invoice existed
	Late      = "late"      // made at or after the invoice's expiry
	Unmatched = "unmatched" // no open invoice is identified by the transfer
)

// Credits reports whether an outcome pays its invoice.
func Credits(outcome string) bool { return outcome == Paid || outcome == Overpaid }

// Decision is the outcome of matching one transfer.
type Decision struct {
	Invoice *Invoice // nil when Unmatched
	Outcome string
	Reason  string
}

// TronUniqueSpan is how many distinct amounts one TRON price can take: an invoice asks the plan's
// price plus an offset of 1 to TronUniqueSpan micro-USDT, unique among open invoices, because a
// TRC-20 transfer carries no memo to name its invoice.
const TronUniqueSpan = 9999

// Match identifies the invoice a verified transfer pays and judges it. On TRON the exact amount
// identifies the invoice (so an under- or overpayment is Unmatched); on TON the comment, compared
// exactly after trimming spaces, does.
func Match(t Transfer, open []Invoice) Decision {
	var cands []*Invoice
	for i := range open {
		inv := &open[i]
		if inv.Network != t.Network {
			continue
		}
		if t.Network == TronUSDT && inv.Amount == t.Amount || t.Network != TronUSDT && inv.Reference == strings.TrimSpace(t.Reference) && t.Reference != "" {
			cands = append(cands, inv)
		}
	}
	if len(cands) == 0 {
		if t.Network == TronUSDT {
			return Decision{Outcome: Unmatched, Reason: fmt.Sprintf("no open invoice asks exactly %s USDT", FormatAmount(t.Network, t.Amount))}
		}
		return Decision{Outcome: Unmatched, Reason: fmt.Sprintf("no open %s invoice has reference %q", t.Network, trunc(t.Reference))}
	}
	// Of several candidates (an amount reused after an old invoice expired), the one whose
	// validity window holds the transfer wins.
	inv := cands[0]
	for _, c := range cands {
		if !t.At.Before(c.CreatedAt) && t.At.Before(c.ExpiresAt) {
			inv = c
			break
		}
	}
	return Judge(t, inv)
}

// Judge decides what a transfer does to an invoice already identified (by Match, or by an
// operator who attests that a payment with a missing comment was meant for it): the time and the
// amount still have to be right.
func Judge(t Transfer, inv *Invoice) Decision {
	d := Decision{Invoice: inv}
	switch {
	case t.Network != inv.Network:
		d.Outcome, d.Reason = Unmatched, fmt.Sprintf("paid on %s, invoice %d asks %s", t.Network, inv.ID, inv.Network)
	case t.At.Before(inv.CreatedAt):
		d.Outcome, d.Reason = Early, fmt.Sprintf("made at %s, before invoice %d was created at %s", t.At.Format(time.RFC3339), inv.ID, inv.CreatedAt.Format(time.RFC3339))
	case !t.At.Before(inv.ExpiresAt):
		d.Outcome, d.Reason = Late, fmt.Sprintf("made at %s, after invoice %d expired at %s", t.At.Format(time.RFC3339), inv.ID, inv.ExpiresAt.Format(time.RFC3339))
	case t.Amount < inv.Amount:
		d.Outcome, d.Reason = Underpaid, fmt.Sprintf("paid %s, invoice %d asks %s", FormatAmount(t.Network, t.Amount), inv.ID, FormatAmount(t.Network, inv.Amount))
	case t.Amount > inv.Amount:
		d.Outcome, d.Reason = Overpaid, fmt.Sprintf("paid %s, invoice %d asks %s; the excess %s is recorded", FormatAmount(t.Network, t.Amount), inv.ID,
			FormatAmount(t.Network, inv.Amount), FormatAmount(t.Network, t.Amount-inv.Amount))
	default:
		d.Outcome, d.Reason = Paid, fmt.Sprintf("paid invoice %d in full", inv.ID)
	}
	return d
}
