package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"x0tta6bl4/internal/billing"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
)

func ctlBillingPlans(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing plans", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.BillingPlanList, error) { return a.Plans(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tNAME\tUSDT\tTON\tNODES\tDURATION")
		for _, p := range res.Plans {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\n", p.ID, p.Name, amount(billing.TronUSDT, p.PriceUSDT), amount(billing.Ton, p.PriceTON), p.NodeQuota,
				time.Duration(p.DurationSeconds)*time.Second)
		}
	})
}

// amount shows a smallest-unit string in whole units (the API's strings are exact; so is this).
func amount(network, s string) string {
	v, err := billing.ParseAmount(s)
	if err != nil {
		return s
	}
	return billing.FormatAmount(network, v)
}

func ctlBillingPlanCreate(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing plan create", "--name N --price-usdt MICRO_USDT [--price-ton NANOTON] --node-quota N --duration 720h")
	name := fs.String("name", "", "plan name")
	usdt := fs.String("price-usdt", "", "price in micro-USDT (6 decimals: 10000000 is 10 USDT)")
	ton := fs.String("price-ton", "", "price in nanotons (9 decimals); empty: not sold for Toncoin")
	quota := fs.Int("node-quota", 0, "how many nodes the plan allows")
	dur := fs.Duration("duration", 0, "how long a payment lasts")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "name", *name); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.BillingPlan, error) {
		return a.CreatePlan(ctx, api.CreatePlanRequest{Name: *name, PriceUSDT: *usdt, PriceTON: *ton, NodeQuota: *quota, DurationSeconds: int64(*dur / time.Second)})
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { fmt.Fprintf(w, "plan %d %q created\n", res.ID, res.Name) })
}

func ctlBillingInvoiceCreate(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing invoice create", "--account A --plan ID --network tron-usdt|ton-usdt|ton")
	account := fs.String("account", "", "the account that pays")
	plan := fs.Int64("plan", 0, "plan ID (ctl billing plans)")
	network := fs.String("network", billing.TronUSDT, "tron-usdt, ton-usdt or ton")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "account", *account); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Invoice, error) {
		return a.CreateInvoice(ctx, api.CreateInvoiceRequest{Account: *account, PlanID: *plan, Network: *network})
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printInvoice(w, res) })
}

func printInvoice(w io.Writer, i *api.Invoice) {
	fmt.Fprintf(w, "invoice\t%d\naccount\t%s\nplan\t%d\nnetwork\t%s\namount\t%s (%s smallest units)\nreceiver\t%s\nreference\t%s\nstatus\t%s\nexpires\t%s\n",
		i.ID, i.Account, i.PlanID, i.Network, i.AmountText, i.Amount, i.Receiver, i.Reference, i.Status, i.ExpiresAt.Format(time.RFC3339))
	if i.PaidAt != nil {
		fmt.Fprintf(w, "paid\t%s at %s\n", amount(i.Network, i.PaidAmount), i.PaidAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "\n%s\n", i.Instructions)
	if len(i.Payments) > 0 {
		fmt.Fprintln(w, "\nTX\tEVENT\tAMOUNT\tOUTCOME\tREASON")
		for _, p := range i.Payments {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", p.TxID, p.EventIndex, amount(p.Network, p.Amount), p.Outcome, p.Reason)
		}
	}
}

func ctlBillingInvoiceShow(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing invoice show", "ID")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil {
		return fmt.Errorf("invoice ID %q: want a number", fs.Arg(0))
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Invoice, error) { return a.Invoice(ctx, id) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printInvoice(w, res) })
}

func ctlBillingVerify(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing verify", "--network tron-usdt|ton-usdt|ton --tx ID [--invoice ID]")
	network := fs.String("network", billing.TronUSDT, "tron-usdt, ton-usdt or ton")
	tx := fs.String("tx", "", "transaction ID (TRON: 64 hex digits; TON: our wallet's transaction hash, hex or base64)")
	inv := fs.Int64("invoice", 0, "attest that the transaction pays this invoice (a TON payment whose comment was lost)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "tx", *tx); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.VerifyResponse, error) {
		return a.VerifyPayment(ctx, api.VerifyRequest{Network: *network, TxID: *tx, InvoiceID: *inv})
	})
	if err != nil {
		return err
	}
	if err := c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "status\t%s\n", res.Status)
		if res.Reason != "" {
			fmt.Fprintf(w, "reason\t%s\n", res.Reason)
		}
		for _, p := range res.Payments {
			fmt.Fprintf(w, "transfer\t%s/%d: %s %s, %s, invoice %d: %s\n", p.TxID, p.EventIndex, amount(p.Network, p.Amount), p.Network, p.Outcome, p.InvoiceID, p.Reason)
		}
	}); err != nil {
		return err
	}
	if res.Status == "refused" {
		return errors.New("the transaction pays nothing")
	}
	return nil
}

func ctlBillingSubscription(e *env, args []string) error {
	fs, c := ctlFlags(e, "billing subscription", "ACCOUNT")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Subscription, error) {
		return a.Subscription(ctx, fs.Arg(0))
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "account\t%s\nstatus\t%s\nnodes\t%d of %d\nexpires\t%s\ngrace ends\t%s\n", res.Account, res.Status, res.NodesUsed, res.NodeQuota,
			res.ExpiresAt.Format(time.RFC3339), res.GraceEndsAt.Format(time.RFC3339))
	})
}
