package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/agent"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// defaultSocket is where a node listens for admin commands unless its config says otherwise.
const defaultSocket = "/run/x0tta6bl4/node.sock"

func socketFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("X0TTA6BL4_SOCKET")
	if def == "" {
		def = defaultSocket
	}
	return fs.String("socket", def, "node admin socket (env X0TTA6BL4_SOCKET)")
}

func runNode(e *env, args []string) error {
	fs := newFlags(e, "node", "--config node.yaml [--join URL [--token-file FILE] --name NAME]")
	config := fs.String("config", "", "node configuration file (docs/node.md)")
	join := fs.String("join", "", "control plane URL to enrol with before starting (needs control.state in the config)")
	tokenFile := fs.String("token-file", "", "file holding the one-time join token from 'ctl token create' (with --join; default: env "+joinTokenEnv+"; '-': standard input)")
	token := fs.String("token", "", "the join token itself (deprecated: ps shows it to every local user; use --token-file or "+joinTokenEnv+")")
	name := fs.String("name", "", "node name to enrol as (with --join)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "config", *config); err != nil {
		return err
	}
	f, err := node.ReadFile(*config)
	if err != nil {
		return err
	}
	if err := f.Control.CheckReportInterval(); err != nil {
		return fmt.Errorf("%s: %w", *config, err)
	}
	// The signed records of the enrolment answer: the node learns them before it first dials.
	var records *api.MeshRecords
	if *join != "" {
		if *name == "" {
			fmt.Fprintln(e.stderr, "--join needs --name")
			fs.Usage()
			return errUsage
		}
		tok, err := joinToken(e, *token, *tokenFile)
		if err != nil {
			return err
		}
		b, err := enrol(e, f.Control.State, *join, tok, *name, f.RoutingArea)
		if err != nil {
			return err
		}
		records = &b.Records
		if f.Control.URL == "" {
			f.Control.URL = *join
		}
	}
	opts, err := node.LoadConfig(*config)
	if err != nil {
		return err
	}
	if opts.AdminSocket == "" {
		opts.AdminSocket = defaultSocket
	}
	if err := os.MkdirAll(filepath.Dir(opts.AdminSocket), 0o700); err != nil {
		return err
	}
	n, err := node.New(opts)
	if err != nil {
		return err
	}
	if f.Control.URL != "" {
		b, err := client.LoadBundle(f.Control.State, opts.Key, e.now())
		if err != nil {
			return fmt.Errorf("control plane bundle: %w", err)
		}
		cl, err := client.NewNode(f.Control.URL, opts.Key, b, client.NodeOptions{})
		if err != nil {
			return err
		}
		defer cl.Close()
		go agent.Run(e.ctx, agent.Config{Node: n, Client: cl, StateDir: f.Control.State, Records: records, Logger: opts.Logger, Version: Version,
			ReportInterval: f.Control.ReportInterval})
	}
	if fl := f.Federated; fl != nil && fl.Enabled {
		if err := startFederated(e.ctx, n, opts, *fl); err != nil {
			return err
		}
	}
	// SIGHUP re-reads the configuration file and applies its firewall rules; a file that does not
	// load leaves the running rules in place.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			fresh, err := node.LoadConfig(*config)
			if err == nil {
				err = n.ReloadFirewall(fresh.Firewall)
			}
			if err != nil {
				fmt.Fprintf(e.stderr, "x0tta6bl4 node: reload %s: %v (keeping the running rules)\n", *config, err)
			}
		}
	}()
	return n.Run(e.ctx)
}

// enrol makes (or reuses) the node's key in state, enrols with the control plane (naming the node's
// routing area, so that the answer carries that area's records only) and saves the bundle there.
func enrol(e *env, state, url, token, name string, area uint32) (*client.Bundle, error) {
	if state == "" {
		return nil, errors.New("--join needs control.state in the configuration: the directory for the key and bundle")
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(state, node.StateKeyFile)
	key, err := identity.LoadNodeKeyFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = identity.GenerateNodeKey(); err == nil {
			err = identity.WriteNodeKeyFile(keyPath, key, false)
		}
	}
	if err != nil {
		return nil, err
	}
	return enrolAndSave(e, url, token, key, name, state, client.EnrollOptions{RoutingArea: &area})
}

func adminQuery(e *env, name string, args []string, out any) (printed bool, err error) {
	fs := newFlags(e, name, "[--socket PATH] [--json]")
	socket := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := e.parse(fs, args, 0); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := node.AdminCall(ctx, *socket, node.AdminRequest{Op: name}, out); err != nil {
		return false, err
	}
	if *asJSON {
		return true, writeJSON(e, out)
	}
	return false, nil
}

func runStatus(e *env, args []string) error {
	var s node.Status
	printed, err := adminQuery(e, "status", args, &s)
	if err != nil || printed {
		return err
	}
	fmt.Fprintf(e.stdout, "%s  %s\n  overlay:   %s\n  udp:       %s\n  device:    %s\n  uptime:    %s\n",
		s.Name, s.SPIFFEID, s.Overlay, s.UDP, s.Device, s.Uptime.Round(time.Second))
	fmt.Fprintf(e.stdout, "  links up:  %d\n  nodes:     %d known, %d reachable\n  e2e:       %d sessions\n", s.Links, s.Nodes, s.Reachable, s.E2E)
	if s.Policy > 0 {
		fmt.Fprintf(e.stdout, "  policy:    version %d\n", s.Policy)
	} else {
		fmt.Fprintln(e.stdout, "  policy:    none (local firewall rules alone)")
	}
	st := s.Stats
	fmt.Fprintf(e.stdout, "  packets:   %d sent, %d delivered, %d forwarded\n  drops:     no-route %d, hop-limit %d, firewall %d, spoofed %d, auth %d, malformed %d\n",
		st.Sent, st.Delivered, st.Forwarded, st.DropNoRoute, st.DropHopLimit, st.DropFirewall, st.DropSpoofed, st.DropAuth, st.DropMalformed)
	return nil
}

func runPeers(e *env, args []string) error {
	var peers []node.PeerStatus
	printed, err := adminQuery(e, "peers", args, &peers)
	if err != nil || printed {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPATH\tOVERLAY\tENDPOINT / VIA\tRTT\tJITTER\tLOSS\tWHY")
	for _, p := range peers {
		switch p.Path {
		case "relayed":
			fmt.Fprintf(w, "%s\trelayed\t%s\tvia %s\t\t\t\t%s\n", p.Name, p.Overlay, p.Via, p.Why)
		case "direct":
			fmt.Fprintf(w, "%s\tdirect\t%s\t%s\t%s\t%s\t%.1f%%\t%s\n", p.Name, p.Overlay, p.Remote,
				p.RTT.Round(time.Microsecond), p.Jitter.Round(time.Microsecond), 100*p.Loss, p.Why)
		default:
			fmt.Fprintf(w, "%s\tdown\t%s\t%s\t\t\t\t%s\n", p.Name, p.Overlay, p.Remote, p.Why)
		}
	}
	return w.Flush()
}

func runRoutes(e *env, args []string) error {
	var routes []node.RouteStatus
	printed, err := adminQuery(e, "routes", args, &routes)
	if err != nil || printed {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tOVERLAY\tNEXT HOP\tHOPS\tCOST")
	for _, r := range routes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", r.Name, r.Overlay, r.NextHop, r.Hops, r.Cost)
	}
	return w.Flush()
}

func runNodeHeal(e *env, args []string) error {
	var h node.HealStatus
	printed, err := adminQuery(e, "heal", args, &h)
	if err != nil || printed {
		return err
	}
	if !h.Enabled {
		fmt.Fprintln(e.stdout, "self-healing is disabled (heal.enabled: false)")
	}
	fmt.Fprintf(e.stdout, "probes: %d sent, %d answered, %d lost; decisions: %d penalise, %d restore\n",
		h.ProbesSent, h.ProbesOK, h.ProbesLost, h.Penalties, h.Restores)
	if h.LocalStalls > 0 {
		fmt.Fprintf(e.stdout, "local stalls: %d (this node's own schedule stalled; the probes in flight were set aside)\n", h.LocalStalls)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NEIGHBOUR\tSTATE\tVERDICT\tP\tPATH LOSS\tTARGETS")
	for _, p := range h.Peers {
		state := "normal"
		if p.Penalised {
			state = "routed around"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.3f\t%.1f%%\t%s\n", p.Name, state, p.Class, p.Confidence,
			100*p.Evidence["path_loss"], strings.Join(p.Targets, ","))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, d := range h.Decisions {
		fmt.Fprintf(e.stdout, "%s %s %s (%s): %s p=%.3f %v\n", d.Time.Format(time.RFC3339Nano), d.Action, d.Peer,
			d.Rule, d.Class, d.Confidence, d.Evidence)
	}
	return nil
}

func runMemory(e *env, args []string) error {
	fs := newFlags(e, "memory", "[--socket PATH] [--json] [--heap-profile FILE]")
	socket := socketFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	profile := fs.String("heap-profile", "", "also write the node's pprof heap profile to FILE (go tool pprof FILE)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	op := "memory"
	if *profile != "" {
		op = "heap_profile"
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	var m node.MemoryStatus
	if err := node.AdminCall(ctx, *socket, node.AdminRequest{Op: op}, &m); err != nil {
		return err
	}
	if *profile != "" {
		if err := os.WriteFile(*profile, m.HeapProfile, 0o644); err != nil {
			return err
		}
		m.HeapProfile = nil
	}
	if *asJSON {
		return writeJSON(e, m)
	}
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(e.stdout, "heap:       %s allocated, %s in use, %s idle (%s returned to the system)\n",
		mib(m.HeapAlloc), mib(m.HeapInuse), mib(m.HeapIdle), mib(m.HeapReleased))
	fmt.Fprintf(e.stdout, "runtime:    %s from the system, %s of stacks, %d goroutines\n", mib(m.Sys), mib(m.StackInuse), m.Goroutines)
	fmt.Fprintf(e.stdout, "gc:         %d cycles, next at %s, GOGC %d\n", m.NumGC, mib(m.NextGC), m.GOGC)
	return nil
}

func runPing(e *env, args []string) error {
	fs := newFlags(e, "ping", "[--socket PATH] [-c COUNT] NAME|ADDRESS")
	socket := socketFlag(fs)
	count := fs.Int("c", 4, "echo requests to send (1-100)")
	if err := e.parse(fs, args, 1); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, time.Duration(*count+2)*3*time.Second)
	defer cancel()
	var res []node.PingResult
	if err := node.AdminCall(ctx, *socket, node.AdminRequest{Op: "ping", Target: fs.Arg(0), Count: *count}, &res); err != nil {
		return err
	}
	lost := 0
	for _, r := range res {
		if r.Error != "" {
			lost++
			fmt.Fprintf(e.stdout, "seq=%d %s\n", r.Seq, r.Error)
		} else {
			fmt.Fprintf(e.stdout, "seq=%d time=%s\n", r.Seq, r.RTT.Round(time.Microsecond))
		}
	}
	fmt.Fprintf(e.stdout, "%d sent, %d received\n", len(res), len(res)-lost)
	if lost == len(res) {
		return fmt.Errorf("no reply from %s", fs.Arg(0))
	}
	return nil
}

// startFederated starts the node's part in federated training (the federated: section, already
// checked by node.LoadConfig).
func startFederated(ctx context.Context, n *node.Node, opts node.Options, fl node.FederatedFile) error {
	fl.Defaults()
	ver, err := meshca.NewVerifier(opts.CA...)
	if err != nil {
		return fmt.Errorf("federated: %w", err)
	}
	if opts.CRL != nil {
		if _, err := ver.UpdateCRL(opts.CRL); err != nil {
			return fmt.Errorf("federated: revocation list: %w", err)
		}
	}
	cfg := federated.DaemonConfig{Node: n, Key: opts.Key.Sign, Verifier: ver, Settings: fl, Logger: opts.Logger}
	if fl.Role == "participant" {
		if cfg.Coordinator, err = meshca.LoadCertificateFile(fl.Coordinator); err != nil {
			return fmt.Errorf("federated.coordinator: %w", err)
		}
	}
	go func() {
		if _, err := federated.RunDaemon(ctx, cfg); err != nil && ctx.Err() == nil {
			opts.Logger.Error("federated training stopped", "err", err)
		}
	}()
	return nil
}
