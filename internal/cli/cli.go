// Package cli implements the x0tta6bl4 command line: a small dispatcher over subcommands, each a
// function with its own flag set.
//
// It must never hold state between invocations other than files the user names, never print a
// private key, and never exit the process itself (Run returns an exit code).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// env is what every command gets: where to write, and the clock.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
}

type command struct {
	name    string // "ca issue"
	summary string
	run     func(e *env, args []string) error
}

func commands() []command {
	return []command{
		{"demo", "run the demonstration: a CA, certified nodes, revocation and post-quantum TLS", runDemo},
		{"node", "run a mesh node (--config node.yaml)", runNode},
		{"status", "show the running node's status", runStatus},
		{"peers", "show every peer: direct (at which endpoint) or relayed (through whom), and why", runPeers},
		{"routes", "show the running node's routes", runRoutes},
		{"ping", "ping a node through the mesh", runPing},
		{"heal", "show the running node's self-healing state and decisions", runNodeHeal},
		{"flows", "show the kernel's view of the node's traffic, live: top flows, drops by reason, TCP health", runFlows},
		{"memory", "show the running node's Go memory figures (--heap-profile FILE: and its heap profile)", runMemory},
		{"control", "run the control plane API (control init: create its CA, key, schema and first admin)", runControl},
		{"ctl", "operate a control plane: join tokens, revoke, nodes, mesh status, users, API keys, audit", runCtl},
		{"keys generate", "generate a node's key pair (hybrid KEM + ML-DSA-65)", runKeysGenerate},
		{"ca init", "create a mesh certificate authority", runCAInit},
		{"ca issue", "issue a node certificate (and an X.509-SVID)", runCAIssue},
		{"ca list", "list the certificates a CA has issued", runCAList},
		{"ca revoke", "revoke certificates by serial or node name", runCARevoke},
		{"ca crl", "show the CA's current revocation list", runCACRL},
		{"cert inspect", "show a certificate, revocation list, public key or X.509-SVID", runCertInspect},
		{"cert verify", "verify a node certificate against a CA and revocation list", runCertVerify},
		{"version", "print the version", runVersion},
		{"sim", "run the mesh simulator and print a summary", runSim},
		{"ai train", "train the GraphSAGE anomaly detector (node and per-link features) on simulator data, or on recorded reports", runAITrain},
		{"ai eval", "evaluate the detector and the baselines on held-out simulator runs", runAIEval},
		{"ai inputs", "where healthy nodes' derived inputs lie under distribution-shift scenarios", runAIInputs},
		{"ai advisor", "choose the control plane advisor's flow-conservation threshold on validation runs and measure the advisor on held-out ones", runAIAdvisor},
	}
}

// Version is the program version.
const Version = "0.1.0-dev"

// errUsage marks errors whose message is usage help, already printed.
var errUsage = errors.New("usage")

// errHelp says help was asked for (-h, -help or --help anywhere before "--") and printed: exit 0.
var errHelp = errors.New("help")

// groups are the first words of two-word commands, which alone print their commands.
var groups = []string{"ai", "ca", "cert", "keys"}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "--h" }

// wantsHelp says whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// Run executes the command line args (without the program name) and returns the exit code:
// 0 on success, 1 when the command failed, 2 for a usage error.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, now: time.Now}
	if len(args) == 0 || (len(args) == 1 && args[0] == "help") || isHelpFlag(args[0]) {
		printHelp(stdout)
		return 0
	}
	if args[0] == "help" { // help CMD: CMD's own help
		args = append(slices.Clone(args[1:]), "-h")
	}
	cmd, rest, ok := lookup(args)
	if !ok {
		if slices.Contains(groups, args[0]) && (len(args) == 1 || wantsHelp(args[1:2])) {
			printGroupHelp(stdout, args[0])
			return 0
		}
		fmt.Fprintf(stderr, "x0tta6bl4: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		if slices.Contains(groups, args[0]) {
			printGroupHelp(stderr, args[0])
		} else {
			printHelp(stderr)
		}
		return 2
	}
	if err := cmd.run(e, rest); err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(stderr, "x0tta6bl4 %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func lookup(args []string) (command, []string, bool) {
	cmds := commands()
	if len(args) >= 2 {
		name := args[0] + " " + args[1]
		if i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name }); i >= 0 {
			return cmds[i], args[2:], true
		}
	}
	if i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] }); i >= 0 {
		return cmds[i], args[1:], true
	}
	return command{}, nil, false
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "x0tta6bl4 — post-quantum, self-healing mesh network")
	fmt.Fprintln(w, "\nUsage: x0tta6bl4 <command> [flags]   (x0tta6bl4 <command> -h for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
}

func printGroupHelp(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: x0tta6bl4 %s <command> [flags]   (x0tta6bl4 %s <command> -h for its flags)\n\nCommands:\n", group, group)
	for _, c := range commands() {
		if strings.HasPrefix(c.name, group+" ") {
			fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
		}
	}
}

// newFlags returns a flag set that reports errors instead of exiting and prints usage to stderr
// (to stdout when help was asked for).
func newFlags(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: x0tta6bl4 %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags and rejects stray positional arguments beyond want. Help asked for anywhere
// among the arguments prints the usage to stdout and returns errHelp.
func (e *env) parse(fs *flag.FlagSet, args []string, positional int) error {
	if wantsHelp(args) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return errHelp
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != positional {
		if positional == 0 {
			fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		} else {
			fmt.Fprintf(fs.Output(), "want %d argument(s), got %d\n", positional, fs.NArg())
		}
		fs.Usage()
		return errUsage
	}
	return nil
}

// required reports a missing required flag.
func required(fs *flag.FlagSet, name, value string) error {
	if value == "" {
		fmt.Fprintf(fs.Output(), "flag --%s is required\n", name)
		fs.Usage()
		return errUsage
	}
	return nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func runVersion(e *env, args []string) error {
	fs := newFlags(e, "version", "")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "x0tta6bl4 %s\n", Version)
	return nil
}
