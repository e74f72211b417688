package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/detector/finetune"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/secfile"
	"x0tta6bl4/internal/telemetry"
)

// parseWhen reads an RFC 3339 time; empty is the zero time.
func parseWhen(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-12-06T22:00:00Z", name, v)
	}
	return t, nil
}

func ctlIncidentLabel(e *env, args []string) error {
	fs, c := ctlFlags(e, "incident label", "--node NODE --kind "+strings.Join(telemetry.Classes[1:], "|")+" --from T --to T [--note TEXT]")
	nodeName := fs.String("node", "", "the faulty node")
	kind := fs.String("kind", "", "what the fault was: "+strings.Join(telemetry.Classes[1:], ", "))
	from := fs.String("from", "", "when it started (RFC 3339)")
	to := fs.String("to", "", "when it ended (RFC 3339)")
	note := fs.String("note", "", "what was seen (at most 1 KiB)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	for name, v := range map[string]string{"node": *nodeName, "kind": *kind, "from": *from, "to": *to} {
		if err := required(fs, name, v); err != nil {
			return err
		}
	}
	if _, err := reports.ClassOf(*kind); err != nil {
		return fmt.Errorf("--kind: %w", err)
	}
	f, err := parseWhen("from", *from)
	if err != nil {
		return err
	}
	t, err := parseWhen("to", *to)
	if err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Incident, error) {
		return a.LabelIncident(ctx, api.Incident{Node: *nodeName, Kind: *kind, From: f, To: t, Note: *note})
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "incident %d: %s %s from %s to %s, labelled by %s\n", res.ID, res.Node, res.Kind,
			res.From.Format(time.RFC3339), res.To.Format(time.RFC3339), res.CreatedBy)
	})
}

func ctlReportsExport(e *env, args []string) error {
	fs, c := ctlFlags(e, "reports export", "--out FILE [--from T] [--to T]")
	out := fs.String("out", "", "file to write (mode 0600; '-': standard output)")
	from := fs.String("from", "", "only reports received at or after this time (RFC 3339)")
	to := fs.String("to", "", "only reports received at or before this time (RFC 3339)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out", *out); err != nil {
		return err
	}
	a, err := fetchArchive(e, c, *from, *to)
	if err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	if err := secfile.Write(*out, append(b, '\n'), 0o600, true); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %d recorded reports and %d incidents to %s\n", len(a.Reports), len(a.Incidents), *out)
	return nil
}

// fetchArchive collects the recorded reports and incidents from the control plane.
func fetchArchive(e *env, c *ctlConn, from, to string) (*api.ReportArchive, error) {
	f, err := parseWhen("from", from)
	if err != nil {
		return nil, err
	}
	t, err := parseWhen("to", to)
	if err != nil {
		return nil, err
	}
	a, err := c.api()
	if err != nil {
		return nil, err
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Minute)
	defer cancel()
	return a.ReportArchive(ctx, f, t)
}

// recordFlags are ai train's flags for training on recorded reports.
type recordFlags struct {
	file, from, to, base *string
	step, fresh          *time.Duration
	conn                 *ctlConn
}

func addRecordFlags(fs *flag.FlagSet) recordFlags {
	return recordFlags{
		file:  fs.String("from-records", "", "train on recorded reports: a file from 'ctl reports export'"),
		conn:  connFlags(fs, "control"),
		from:  fs.String("records-from", "", "with --control: only reports received at or after this time (RFC 3339)"),
		to:    fs.String("records-to", "", "with --control: only reports received at or before this time (RFC 3339)"),
		base:  fs.String("base", "shipped", "recorded reports: the model to fine-tune: shipped (its first member when the shipped model is an ensemble), a single-model .x6m file, or none (train a new one)"),
		step:  fs.Duration("step", 10*time.Second, "recorded reports: one training graph per this much time"),
		fresh: fs.Duration("fresh", 60*time.Second, "recorded reports: a node's latest report counts for this long (the control plane's mesh.stale_after)"),
	}
}

// used says whether training on recorded reports was asked for.
func (r recordFlags) used(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "control" })
	return *r.file != "" || set
}

// trainFromRecords fine-tunes (or trains) the detector on recorded reports labelled with
// incidents and writes the model to out.
func trainFromRecords(e *env, fs *flag.FlagSet, rf recordFlags, out string, epochs int, lr float64, hidden int, seed uint64) error {
	var (
		a   *api.ReportArchive
		err error
	)
	if *rf.file != "" {
		f, err := os.Open(*rf.file)
		if err != nil {
			return err
		}
		a, err = reports.ReadArchive(f, reports.MaxArchiveBytes)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *rf.file, err)
		}
	} else if a, err = fetchArchive(e, rf.conn, *rf.from, *rf.to); err != nil {
		return err
	}
	var base *detector.Model
	switch *rf.base {
	case "shipped":
		base, err = defaultmodel.Base()
	case "none":
	default:
		base, err = loadSingle(*rf.base)
	}
	if err != nil {
		return fmt.Errorf("--base: %w", err)
	}
	ss, err := reports.Samples(a, reports.SampleConfig{Step: *rf.step, Fresh: *rf.fresh})
	if err != nil {
		return err
	}
	// Flags left at ai train's simulator defaults take the defaults of fine-tuning.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := finetune.Config{Hidden: hidden, Seed: seed}
	if set["epochs"] {
		cfg.Epochs = epochs
	}
	if set["lr"] {
		cfg.LR = lr
	}
	bar := newBar(e.stderr, "training on recorded reports")
	cfg.Progress = func(ep, n int, loss float64) { bar.setMsg(ep, n, fmt.Sprintf("loss %.4f", loss)) }
	m, loss, err := finetune.Train(base, reports.Graphs(ss), cfg)
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d recorded reports, %d labelled incidents and %d from healing journals: %d graphs every %s\n",
		len(a.Reports), len(a.Incidents), len(reports.JournalIncidents(a)), len(ss), *rf.step)
	for k := 1; k < len(telemetry.Classes); k++ {
		after, n := finetune.MeanScore(m, ss, k)
		if n == 0 {
			continue
		}
		line := fmt.Sprintf("  %-9s %5d labelled node-intervals: mean score %.3f", telemetry.Classes[k], n, after)
		if base != nil {
			before, _ := finetune.MeanScore(base, ss, k)
			line += fmt.Sprintf(" (base model %.3f)", before)
		}
		fmt.Fprintln(e.stdout, line)
	}
	normal, n := finetune.MeanScore(m, ss, 0)
	fmt.Fprintf(e.stdout, "  %-9s %5d node-intervals: mean score %.3f\n", "normal", n, normal)
	if err := m.Save(out); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "final loss %.4f; threshold %.3f\nmodel %s version %s\n", loss, m.Threshold, out, m.Version())
	return nil
}

// loadSingle loads the model file at path for training, which starts from a single model.
func loadSingle(path string) (*detector.Model, error) {
	p, err := detector.Load(path)
	if err != nil {
		return nil, err
	}
	m, ok := p.(*detector.Model)
	if !ok {
		return nil, fmt.Errorf("%s is an ensemble: training starts from a single model (--base shipped starts from the shipped ensemble's first member)", path)
	}
	return m, nil
}
