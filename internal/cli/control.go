package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/control"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// runControl runs the control plane, or with "init" first prepares its data directory.
func runControl(e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "init":
			return runControlInit(e, args[1:])
		case "backup":
			return runControlBackup(e, args[1:])
		case "restore":
			return runControlRestore(e, args[1:])
		}
	}
	fs := newFlags(e, "control", "--config control.yaml [--insecure-dev]   |   control init --config control.yaml --trust-domain D --admin NAME   |   control backup --config control.yaml --out FILE   |   control restore --config control.yaml --in FILE")
	cfgPath := fs.String("config", "control.yaml", "configuration file (docs/control.md)")
	insecure := fs.Bool("insecure-dev", false, "serve plain HTTP on a loopback address, for local development only")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	cfg, err := control.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *insecure {
		cfg.InsecureDev = true
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
	switch *logFormat {
	case "text":
	case "json":
		h = slog.NewJSONHandler(e.stderr, nil)
	default:
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}
	log := slog.New(h)
	srv, err := control.New(e.ctx, cfg, control.Options{Logger: log, Version: Version, Now: e.now})
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.ListenAndServe(e.ctx)
}

func runControlInit(e *env, args []string) error {
	fs := newFlags(e, "control init", "--config control.yaml --trust-domain mesh.example.org [--admin NAME [--password-file FILE|-]]")
	cfgPath := fs.String("config", "control.yaml", "configuration file (its data_dir is created)")
	td := fs.String("trust-domain", "", "trust domain of a new CA (not needed if ca_dir already holds a CA)")
	caName := fs.String("ca-name", "mesh-ca", "name of a new CA")
	caGroups := fs.String("ca-groups", "", "comma-separated groups a new CA may grant (empty: any)")
	caDuration := fs.Duration("ca-duration", 10*365*24*time.Hour, "lifetime of a new CA")
	admin := fs.String("admin", "", "create this admin account and print an admin API key once")
	pwFile := fs.String("password-file", "", "file holding the admin's password on its first line ('-': standard input); without it the admin logs in with API keys only")
	var members memberFlags
	fs.Var(&members, "dao-member", "a member of the genesis governance roster: NAME=PUBLIC-KEY-FILE[:WEIGHT] (repeat; keys from 'ctl dao keygen')")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	cfg, err := control.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	password := ""
	if *pwFile != "" {
		if *admin == "" {
			return errors.New("--password-file needs --admin")
		}
		if password, err = readPassword(*pwFile); err != nil {
			return err
		}
	}
	res, err := control.Init(e.ctx, cfg, control.InitOptions{TrustDomain: *td, CAName: *caName, CAGroups: splitList(*caGroups),
		CADuration: *caDuration, Admin: *admin, AdminPassword: password, DAOMembers: members}, e.now())
	if err != nil {
		return err
	}
	if res.GenesisRoster != "" {
		fmt.Fprintf(e.stdout, "genesis roster: %s (%d members)\nroster hash:    %s   (nodes pin it: governance.genesis_sha256)\n",
			res.GenesisRoster, len(members), res.GenesisHash)
	}
	if res.CreatedCA {
		fmt.Fprintf(e.stdout, "created CA for trust domain %s in %s\n", res.TrustDomain, cfg.CADir)
	}
	fmt.Fprintf(e.stdout, "data directory: %s\ndatabase:       %s\nCA pin:         %s\n", cfg.DataDir, cfg.Database.Driver, res.CAPin)
	if c := res.Classical; c != nil {
		// For browsers, curl and Prometheus, which cannot verify ML-DSA-65.
		if c.CACertFile != "" {
			fmt.Fprintf(e.stdout, "classical CA:   %s (SHA-256 %s)\n", c.CACertFile, c.CAFingerprint)
		}
		fmt.Fprintf(e.stdout, "classical pin:  sha256//%s   (curl --pinnedpubkey; Chromium --ignore-certificate-errors-spki-list=%s)\n", c.SPKIPin, c.SPKIPin)
	}
	if res.AdminAPIKey != "" {
		fmt.Fprintf(e.stdout, "admin %q API key (shown once; store it now):\n%s\n", *admin, res.AdminAPIKey)
	}
	return nil
}

// readPassword reads the first line of a file or of standard input.
// joinTokenEnv holds a join token, for commands that must not take it on the command line.
const joinTokenEnv = "X0TTA6BL4_JOIN_TOKEN"

// joinToken returns the join token from file (first line; '-': standard input), else from
// arg (a deprecated command-line flag, with a warning: every local user sees it in ps), else from
// the environment.
func joinToken(e *env, arg, file string) (string, error) {
	switch {
	case file != "":
		t, err := readPassword(file)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		return strings.TrimSpace(t), nil
	case arg != "":
		fmt.Fprintf(e.stderr, "warning: --token puts the join token on the command line, where ps shows it to every local user; use --token-file or %s\n", joinTokenEnv)
		return arg, nil
	case os.Getenv(joinTokenEnv) != "":
		return strings.TrimSpace(os.Getenv(joinTokenEnv)), nil
	}
	return "", fmt.Errorf("no join token: use --token-file or %s", joinTokenEnv)
}

func readPassword(path string) (string, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return "", errors.New("password file is empty")
	}
	return strings.TrimRight(sc.Text(), "\r"), nil
}

// ctlConn holds the flags every ctl verb shares.
type ctlConn struct {
	url, keyFile, pin, caFile *string
	insecure                  *bool
	asJSON                    *bool
}

func ctlFlags(e *env, name, usage string) (*flag.FlagSet, *ctlConn) {
	fs := newFlags(e, "ctl "+name, usage)
	c := connFlags(fs, "url")
	c.asJSON = fs.Bool("json", false, "print the API's JSON answer")
	return fs, c
}

// connFlags adds the flags that reach a control plane with an API key; urlFlag names the URL's.
func connFlags(fs *flag.FlagSet, urlFlag string) *ctlConn {
	return &ctlConn{
		url:      fs.String(urlFlag, os.Getenv("X0TTA6BL4_CONTROL_URL"), "control plane URL (env X0TTA6BL4_CONTROL_URL)"),
		keyFile:  fs.String("api-key-file", "", "file holding the API key (default: env X0TTA6BL4_API_KEY)"),
		pin:      fs.String("ca-pin", os.Getenv("X0TTA6BL4_CA_PIN"), "CA pin printed by 'control init' (env X0TTA6BL4_CA_PIN)"),
		caFile:   fs.String("ca", "", "the CA's X.509 certificate (ca-x509.pem), instead of --ca-pin"),
		insecure: fs.Bool("insecure-dev", false, "allow a plain-HTTP control plane (--insecure-dev on loopback)"),
	}
}

func (c *ctlConn) trust() (client.Trust, error) {
	t := client.Trust{CAPin: *c.pin, AllowHTTP: *c.insecure}
	if *c.caFile != "" {
		ca, err := meshca.LoadX509File(*c.caFile)
		if err != nil {
			return t, err
		}
		t.CA = ca
	}
	return t, nil
}

func (c *ctlConn) api() (*client.API, error) {
	if *c.url == "" {
		return nil, errors.New("no control plane URL: use --url or X0TTA6BL4_CONTROL_URL")
	}
	key := os.Getenv("X0TTA6BL4_API_KEY")
	if *c.keyFile != "" {
		k, err := readPassword(*c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("API key file: %w", err)
		}
		key = k
	}
	if key == "" {
		return nil, errors.New("no API key: use --api-key-file or X0TTA6BL4_API_KEY")
	}
	t, err := c.trust()
	if err != nil {
		return nil, err
	}
	return client.NewAPI(*c.url, strings.TrimSpace(key), t)
}

func (c *ctlConn) print(e *env, v any, human func(w io.Writer)) error {
	if *c.asJSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

// runCtl operates a control plane through its API with an API key.
func runCtl(e *env, args []string) error {
	verbs := []struct {
		name, summary string
		run           func(e *env, args []string) error
	}{
		{"revoke", "revoke a node: ctl revoke NODE", ctlRevoke},
		{"token create", "create a one-time join token", ctlTokenCreate},
		{"token list", "list join tokens", ctlTokenList},
		{"nodes", "list enrolled nodes", ctlNodes},
		{"status", "show the mesh as nodes report it", ctlStatus},
		{"predict", "the anomaly detector's judgement of a node, with its evidence", ctlPredict},
		{"advisory list", "the cost advisories in force (relays the detector or an admin names)", ctlAdvisoryList},
		{"advisory set", "name a relay by hand: ctl advisory set --reason TEXT [--multiplier 8] [--ttl 1h] NODE", ctlAdvisorySet},
		{"advisory clear", "withdraw what names a node (an operator advisory, the detector's hold): ctl advisory clear NODE", ctlAdvisoryClear},
		{"incident label", "label a fault for training: --node N --kind blackhole --from T --to T", ctlIncidentLabel},
		{"reports export", "write the recorded reports and incidents to a file for ai train --from-records", ctlReportsExport},
		{"user add", "create an account (password from --password-file)", ctlUserAdd},
		{"users", "list accounts", ctlUsers},
		{"key create", "create an API key for yourself (shown once)", ctlKeyCreate},
		{"keys", "list your API keys", ctlKeys},
		{"audit", "show the audit log", ctlAudit},
		{"policy get", "show the mesh access policy (YAML source with its version)", ctlPolicyGet},
		{"policy set", "set the mesh access policy: ctl policy set --file policy.yaml", ctlPolicySet},
		{"dao keygen", "make a governance member key locally: ctl dao keygen --out alice.key", ctlDAOKeygen},
		{"dao propose", "put an action to the members: ctl dao propose --title T --action policy --policy-file p.yaml", ctlDAOPropose},
		{"dao vote", "sign a ballot locally and cast it: ctl dao vote --key alice.key --proposal ID --choice yes", ctlDAOVote},
		{"dao show", "proposals with state and tally: ctl dao show [ID]", ctlDAOShow},
		{"dao verify", "recompute every tally and the chain from the governance log", ctlDAOVerify},
		{"billing plans", "list billing plans", ctlBillingPlans},
		{"billing plan create", "create a plan: --name --price-usdt MICRO --node-quota N --duration 720h", ctlBillingPlanCreate},
		{"billing invoice create", "ask an account to pay for a plan: --account A --plan ID --network tron-usdt|ton-usdt|ton", ctlBillingInvoiceCreate},
		{"billing invoice show", "an invoice and its payments: ctl billing invoice show ID", ctlBillingInvoiceShow},
		{"billing verify", "check one transaction on its chain now: --network N --tx ID [--invoice ID]", ctlBillingVerify},
		{"billing subscription", "an account's subscription: ctl billing subscription ACCOUNT", ctlBillingSubscription},
		{"join", "enrol this machine as a node with a join token (writes its certificate bundle)", ctlJoin},
	}
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: x0tta6bl4 ctl <verb> [flags]   (x0tta6bl4 ctl <verb> -h for its flags)\n\nVerbs:")
		for _, v := range verbs {
			fmt.Fprintf(w, "  %-22s %s\n", v.name, v.summary)
		}
		fmt.Fprintln(w, "\nConnection: --url (or X0TTA6BL4_CONTROL_URL), the API key in X0TTA6BL4_API_KEY or --api-key-file,\nand --ca-pin (or X0TTA6BL4_CA_PIN) or --ca ca-x509.pem to recognise the control plane.")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, v := range verbs {
		words := strings.Fields(v.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == v.name {
			return v.run(e, args[len(words):])
		}
	}
	if wantsHelp(args) {
		usage(e.stdout)
		return errHelp
	}
	fmt.Fprintf(e.stderr, "ctl: unknown verb %q\n\n", strings.Join(args[:min(2, len(args))], " "))
	usage(e.stderr)
	return errUsage
}

func withTimeout(e *env) (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, 2*time.Minute)
}

func ctlRevoke(e *env, args []string) error {
	fs, c := ctlFlags(e, "revoke", "NODE")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.RevokeResponse, error) { return a.Revoke(ctx, fs.Arg(0)) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "revoked node %s: revocation list %d (%d certificates and key %s)\n", res.Node, res.CRLNumber, len(res.RevokedSerials), res.RevokedKeyID)
	})
}

func ctlTokenCreate(e *env, args []string) error {
	fs, c := ctlFlags(e, "token create", "[--node-name N] [--groups a,b] [--ttl 1h] [--cert-ttl 24h] [--description TEXT] [--account A]")
	nodeName := fs.String("node-name", "", "the only node name the token may enrol (default: any)")
	groups := fs.String("groups", "", "comma-separated groups for the node's certificate")
	ttl := fs.Duration("ttl", 0, "how long the token is valid (default: the server's enrollment.token_ttl)")
	certTTL := fs.Duration("cert-ttl", 0, "certificate lifetime (default: the server's enrollment.cert_duration)")
	desc := fs.String("description", "", "a note stored with the token")
	account := fs.String("account", "", "the account charged for the node (required when billing is enabled)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	req := api.CreateJoinTokenRequest{NodeName: *nodeName, Groups: splitList(*groups),
		TTLSeconds: int64(*ttl / time.Second), CertTTLSeconds: int64(*certTTL / time.Second), Description: *desc, Account: *account}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.JoinTokenCreated, error) {
		return a.CreateJoinToken(ctx, req)
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "join token (shown once; valid until %s, one use):\n%s\n", res.ExpiresAt.Format(time.RFC3339), res.Token)
	})
}

func ctlTokenList(e *env, args []string) error {
	fs, c := ctlFlags(e, "token list", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.JoinTokenList, error) { return a.JoinTokens(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "PREFIX\tNODE\tGROUPS\tEXPIRES\tUSED BY\tDESCRIPTION")
		for _, t := range res.Tokens {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%q\n", t.Prefix, dash(t.NodeName), dash(strings.Join(t.Groups, ",")), t.ExpiresAt.Format(time.RFC3339), dash(t.UsedBy), t.Description)
		}
	})
}

// query runs one call against the control plane's API with the command's connection settings and
// its time limit.
func query[T any](e *env, c *ctlConn, call func(context.Context, *client.API) (T, error)) (T, error) {
	var zero T
	a, err := c.api()
	if err != nil {
		return zero, err
	}
	defer a.Close()
	ctx, cancel := withTimeout(e)
	defer cancel()
	return call(ctx, a)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ctlNodes(e *env, args []string) error {
	fs, c := ctlFlags(e, "nodes", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.NodeList, error) { return a.Nodes(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tSTATUS\tAREA\tOVERLAY\tGROUPS\tCERT EXPIRES")
		for _, n := range res.Nodes {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Status, nodeArea(&n), n.Overlay, dash(strings.Join(n.Groups, ",")), n.NotAfter.Format(time.RFC3339))
		}
	})
}

// nodeArea shows a node's routing area: as signed in its record, or "(enrolment)" when only its
// enrolment named it (its configuration has not confirmed it yet), or "-" when the control plane
// knows none.
func nodeArea(n *api.Node) string {
	switch {
	case n.RoutingArea == nil:
		return "-"
	case n.RoutingAreaSource == api.AreaFromRecord:
		return strconv.FormatUint(uint64(*n.RoutingArea), 10)
	}
	return fmt.Sprintf("%d (%s)", *n.RoutingArea, n.RoutingAreaSource)
}

func ctlStatus(e *env, args []string) error {
	fs, c := ctlFlags(e, "status", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.MeshStatus, error) { return a.MeshStatus(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		k := res.Counts
		fmt.Fprintf(w, "trust domain %s, revocation list %d: %d enrolled (%d online, %d stale, %d silent), %d revoked; %d links (%d confirmed by both ends)\n\n",
			res.TrustDomain, res.CRLNumber, k.Enrolled, k.Online, k.Stale, k.Silent, k.Revoked, k.Links, k.LinksConfirmed)
		fmt.Fprintln(w, "NODE\tSTATUS\tOVERLAY\tPEERS UP\tROUTES\tLAST REPORT\tVERSION")
		for _, n := range res.Nodes {
			last := "-"
			if n.LastReport != nil {
				last = n.LastReport.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\n", n.Name, n.Status, n.Overlay, n.PeersUp, n.Peers, n.Routes, last, dash(n.Version))
		}
	})
}

func ctlPredict(e *env, args []string) error {
	fs, c := ctlFlags(e, "predict", "NODE")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Prediction, error) { return a.Predict(ctx, fs.Arg(0)) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		verdict := "normal"
		if res.Anomalous {
			verdict = "ANOMALOUS"
		}
		fmt.Fprintf(w, "%s: %s, score %.3f (threshold %.3f), most likely %s (p=%.3f); model %s, %d nodes in the graph\n",
			res.Node, verdict, res.Score, res.Threshold, res.Class, res.Probabilities[res.Class], res.ModelVersion, res.GraphNodes)
		if res.TelemetryMissing {
			fmt.Fprintln(w, "no fresh telemetry from this node: the model saw it as missing")
		}
		for _, nc := range res.TopNeighbours {
			fmt.Fprintf(w, "  neighbour %s\tcontribution %+.3f\tits own score %.3f\n", nc.Name, nc.Contribution, nc.Score)
		}
		printKernelInputs(w, res.KernelInputs)
	})
}

// printKernelInputs prints the reported part of the detector's kernel block (value and presence
// inputs alternate, detector.KernelInputNames), or says there is none.
func printKernelInputs(w io.Writer, in map[string]float64) {
	var parts []string
	for i := 0; i+1 < detector.NumKernelInputs; i += 2 {
		if in[detector.KernelInputNames[i+1]] == 1 {
			parts = append(parts, fmt.Sprintf("%s %.4f", detector.KernelInputNames[i], in[detector.KernelInputNames[i]]))
		}
	}
	if len(parts) == 0 {
		fmt.Fprintln(w, "kernel (eBPF) evidence: none reported")
		return
	}
	fmt.Fprintf(w, "kernel (eBPF) evidence, not read by the model: %s\n", strings.Join(parts, ", "))
}

func ctlUserAdd(e *env, args []string) error {
	fs, c := ctlFlags(e, "user add", "--username NAME [--role viewer|operator|admin] [--password-file FILE|-]")
	name := fs.String("username", "", "account name")
	role := fs.String("role", "viewer", "viewer, operator or admin")
	pwFile := fs.String("password-file", "", "file holding the password on its first line ('-': standard input); without it the account uses API keys only")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "username", *name); err != nil {
		return err
	}
	pw := ""
	if *pwFile != "" {
		var err error
		if pw, err = readPassword(*pwFile); err != nil {
			return err
		}
	}
	u, err := query(e, c, func(ctx context.Context, a *client.API) (*api.User, error) {
		return a.CreateUser(ctx, api.RegisterRequest{Username: *name, Password: pw, Role: *role})
	})
	if err != nil {
		return err
	}
	return c.print(e, u, func(w io.Writer) { fmt.Fprintf(w, "created account %q (id %d, role %s)\n", u.Username, u.ID, u.Role) })
}

func ctlUsers(e *env, args []string) error {
	fs, c := ctlFlags(e, "users", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.UserList, error) { return a.Users(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tUSERNAME\tROLE\tDISABLED\tPASSWORD")
		for _, u := range res.Users {
			fmt.Fprintf(w, "%d\t%q\t%s\t%v\t%v\n", u.ID, u.Username, u.Role, u.Disabled, u.HasPassword)
		}
	})
}

func ctlKeyCreate(e *env, args []string) error {
	fs, c := ctlFlags(e, "key create", "--name NAME [--role R] [--expires-in 720h]")
	name := fs.String("name", "", "what the key is for")
	role := fs.String("role", "", "role of the key, at most yours (default: yours)")
	exp := fs.Duration("expires-in", 0, "lifetime (default: never expires)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "name", *name); err != nil {
		return err
	}
	k, err := query(e, c, func(ctx context.Context, a *client.API) (*api.APIKeyCreated, error) {
		return a.CreateAPIKey(ctx, api.CreateAPIKeyRequest{Name: *name, Role: *role, ExpiresInSeconds: int64(*exp / time.Second)})
	})
	if err != nil {
		return err
	}
	return c.print(e, k, func(w io.Writer) {
		fmt.Fprintf(w, "API key %q (role %s, id %d; shown once):\n%s\n", k.Name, k.Role, k.ID, k.Key)
	})
}

func ctlKeys(e *env, args []string) error {
	fs, c := ctlFlags(e, "keys", "[--all]")
	all := fs.Bool("all", false, "every account's keys (admin)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.APIKeyList, error) { return a.APIKeys(ctx, *all) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tPREFIX\tOWNER\tROLE\tNAME\tSTATE")
		for _, k := range res.Keys {
			state := "live"
			if k.RevokedAt != nil {
				state = "revoked"
			} else if k.ExpiresAt != nil && k.ExpiresAt.Before(e.now()) {
				state = "expired"
			}
			fmt.Fprintf(w, "%d\t%s\t%q\t%s\t%q\t%s\n", k.ID, k.Prefix, k.Owner, k.Role, k.Name, state)
		}
	})
}

func ctlAudit(e *env, args []string) error {
	fs, c := ctlFlags(e, "audit", "[--limit N]")
	limit := fs.Int("limit", 50, "entries to show (at most 1000)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.AuditList, error) { return a.Audit(ctx, *limit) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "AT\tACTOR\tACTION\tTARGET\tDETAIL")
		for _, en := range res.Entries {
			fmt.Fprintf(w, "%s\t%q\t%s\t%q\t%q\n", en.At.Format(time.RFC3339), en.Actor, en.Action, en.Target, en.Detail)
		}
	})
}

// ctlJoin enrols with a join token using keys made on this machine (keys generate), and writes the
// bundle: node.crt, node-svid.pem, ca.crt, ca-x509.pem, crl.pem and bundle.json.
func ctlJoin(e *env, args []string) error {
	fs := newFlags(e, "ctl join", "--url URL [--token-file FILE] --key node.key --name NAME --out DIR [--routing-area N | --config node.yaml]")
	url := fs.String("url", os.Getenv("X0TTA6BL4_CONTROL_URL"), "control plane URL")
	tokenFile := fs.String("token-file", "", "file holding the join token (default: env X0TTA6BL4_JOIN_TOKEN)")
	keyPath := fs.String("key", "", "the node's private key file (x0tta6bl4 keys generate); only its public key is sent")
	name := fs.String("name", "", "node name")
	out := fs.String("out", "", "directory for the certificate bundle")
	insecure := fs.Bool("insecure-dev", false, "allow a plain-HTTP control plane (--insecure-dev on loopback)")
	var area routingAreaFlag
	fs.Var(&area, "routing-area", "the node's routing area, 0 to 4294967295 (docs/routing.md, \"Level 1: areas\"): the control plane hands it that area's records until its first signed record names its area; set the same routing_area in the node's configuration, which is what the node signs")
	config := fs.String("config", "", "the node's configuration file: name the routing_area it sets (none if it sets none), so that enrolment and the node agree; with --routing-area, the two must be equal")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if *config != "" {
		if err := areaFromConfig(&area, *config); err != nil {
			return err
		}
	}
	for _, f := range []struct{ n, v string }{{"url", *url}, {"key", *keyPath}, {"name", *name}, {"out", *out}} {
		if err := required(fs, f.n, f.v); err != nil {
			return err
		}
	}
	token, err := joinToken(e, "", *tokenFile)
	if err != nil {
		return err
	}
	key, err := identity.LoadNodeKeyFile(*keyPath)
	if err != nil {
		return err
	}
	_, err = enrolAndSave(e, *url, token, key, *name, *out, client.EnrollOptions{Trust: client.Trust{AllowHTTP: *insecure}, RoutingArea: area.area})
	switch {
	case err != nil || area.area == nil:
	case *config != "":
		fmt.Fprintf(e.stdout, "routing area %d named at enrolment, as %s sets it\n", *area.area, *config)
	default:
		fmt.Fprintf(e.stdout, "routing area %d named at enrolment; set routing_area: %d in the node's configuration (the area it signs counts)\n", *area.area, *area.area)
	}
	return err
}

// areaFromConfig sets area to the routing_area the node configuration at path names, if it names
// one; an area given on the command line must be the same. It runs before the token is sent, so a
// refusal leaves the token usable.
func areaFromConfig(area *routingAreaFlag, path string) error {
	f, err := node.ReadFile(path)
	if err != nil {
		return err
	}
	switch {
	case area.area != nil && *area.area != f.RoutingArea && !f.RoutingAreaSet:
		return fmt.Errorf("--routing-area %d, but %s sets no routing_area, so the node signs area 0: set routing_area: %d there", *area.area, path, *area.area)
	case area.area != nil && *area.area != f.RoutingArea:
		return fmt.Errorf("--routing-area %d, but %s sets routing_area: %d, which the node signs", *area.area, path, f.RoutingArea)
	case f.RoutingAreaSet:
		area.area = &f.RoutingArea
	}
	return nil
}

// routingAreaFlag is a routing area given on the command line; area stays nil when none is.
type routingAreaFlag struct{ area *uint32 }

func (f *routingAreaFlag) String() string {
	if f.area == nil {
		return ""
	}
	return strconv.FormatUint(uint64(*f.area), 10)
}

func (f *routingAreaFlag) Set(s string) error {
	a, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a routing area from 0 to %d", uint32(math.MaxUint32))
	}
	v := uint32(a)
	f.area = &v
	return nil
}

// enrolAndSave enrols key as node name with a join token and writes the bundle into dir; both
// 'ctl join' and 'node --join' use it.
func enrolAndSave(e *env, url, token string, key *identity.NodeKey, name, dir string, opts client.EnrollOptions) (*client.Bundle, error) {
	ctx, cancel := withTimeout(e)
	defer cancel()
	b, err := client.Enroll(ctx, url, token, key, name, opts)
	if err != nil {
		return nil, err
	}
	if err := b.Save(dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(e.stdout, "enrolled %s (%s, overlay %s); certificate valid until %s, renew after %s\nbundle written to %s\n",
		b.Raw.Name, b.Raw.SPIFFEID, b.Raw.Overlay, b.Raw.NotAfter.Format(time.RFC3339), b.Raw.RenewAfter.Format(time.RFC3339), dir)
	return b, nil
}

// runControlBackup writes a backup of a control plane, running or not.
func runControlBackup(e *env, args []string) error {
	fs := newFlags(e, "control backup", "--config control.yaml --out FILE")
	cfgPath := fs.String("config", "control.yaml", "configuration file (docs/control.md)")
	out := fs.String("out", "", "backup file to create (mode 0600; never overwritten)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out", *out); err != nil {
		return err
	}
	cfg, err := control.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sum, err := control.Backup(e.ctx, cfg, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		return err
	}
	fmt.Fprintf(e.stdout, "backup %s: schema version %d, %s, %d CA files\n", *out, sum.Schema, rowSummary(sum.Rows), sum.CAFiles)
	return nil
}

// runControlRestore restores a backup into a new control plane (empty database, no CA yet).
func runControlRestore(e *env, args []string) error {
	fs := newFlags(e, "control restore", "--config control.yaml --in FILE")
	cfgPath := fs.String("config", "control.yaml", "configuration file of the new control plane (either database driver)")
	in := fs.String("in", "", "backup file from 'control backup'")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "in", *in); err != nil {
		return err
	}
	cfg, err := control.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := control.Restore(e.ctx, cfg, f)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored %s into %s: schema version %d, %s, %d CA files\n", *in, cfg.Database.Driver, sum.Schema, rowSummary(sum.Rows), sum.CAFiles)
	return nil
}

func rowSummary(rows map[string]int) string {
	total := 0
	for _, n := range rows {
		total += n
	}
	return fmt.Sprintf("%d rows in %d tables (%d users, %d nodes, %d audit entries)", total, len(rows), rows["users"], rows["nodes"], rows["audit_log"])
}
