package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
)

// ctl advisory set|clear|list: cost advisories by hand (docs/control.md, "Cost advisories").

func ctlAdvisorySet(e *env, args []string) error {
	fs, c := ctlFlags(e, "advisory set", "--reason TEXT [--multiplier 8] [--ttl 1h] NODE")
	reason := fs.String("reason", "", "why (1 to 54 printable ASCII characters; shown to every node's journal)")
	mult := fs.Int("multiplier", 0, "link-cost multiplier, 2 to 16 (default: the server's ai.advisories.multiplier)")
	ttl := fs.Duration("ttl", time.Hour, "how long it stays in force (1m to 24h)")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	if err := required(fs, "reason", *reason); err != nil {
		return err
	}
	req := api.SetAdvisoryRequest{Multiplier: *mult, Reason: *reason, TTLSeconds: int64(ttl.Seconds())}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.AdvisoryList, error) {
		return a.SetAdvisory(ctx, fs.Arg(0), req)
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printAdvisories(w, res) })
}

func ctlAdvisoryClear(e *env, args []string) error {
	fs, c := ctlFlags(e, "advisory clear", "NODE")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.AdvisoryList, error) {
		return a.ClearAdvisory(ctx, fs.Arg(0))
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printAdvisories(w, res) })
}

func ctlAdvisoryList(e *env, args []string) error {
	fs, c := ctlFlags(e, "advisory list", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.AdvisoryList, error) { return a.Advisories(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printAdvisories(w, res) })
}

func printAdvisories(w io.Writer, l *api.AdvisoryList) {
	if l.Sequence == 0 {
		fmt.Fprintln(w, "no cost advisories signed yet")
		return
	}
	fmt.Fprintf(w, "advisories %d, signed %s, expire %s: %d in force\n", l.Sequence, l.IssuedAt.UTC().Format(time.RFC3339),
		l.ExpiresAt.UTC().Format(time.RFC3339), len(l.Entries))
	if len(l.Entries) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMULTIPLIER\tSOURCE\tREASON\tCONFIDENCE\tUNTIL")
	for _, a := range l.Entries {
		until := "renewed while judged"
		switch {
		case a.Until != nil:
			until = a.Until.UTC().Format(time.RFC3339)
		case a.HeldUntil != nil:
			until = fmt.Sprintf("held to %s (penalty %.2f", a.HeldUntil.UTC().Format(time.RFC3339), a.Penalty)
			if a.Suppressed {
				until += ", suppressed"
			}
			until += ")"
		}
		fmt.Fprintf(tw, "%s\t×%d\t%s\t%s\t%.3f\t%s\n", a.Node, a.Multiplier, a.Source, a.Reason, a.Confidence, until)
	}
	tw.Flush()
}
