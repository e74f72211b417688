// Package agent keeps a running node in step with its control plane: it long-polls the revocation list
// and hands every newer one to the node (which spreads it over the mesh and drops revoked peers),
// long-polls the access policy likewise (the node applies it to its firewall and spreads it),
// long-polls the signed records of the nodes it may reach and hands them to the node (which can then
// dial them), on a node of a routing area long-polls the destination proofs of the other areas' nodes
// it may reach likewise (the node then routes to them through its area's gateways), reports the
// node's links, routes, own signed record and own destination proof, hands the cost advisories that
// come back with each report to the node, and renews the node's certificate before it expires.
//
// It must never install a revocation list, policy, certificate, record, proof or advisory the node has
// not verified (the node checks all six), never block the node's packet path, and never retry in a
// tight loop.
package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
)

// Config configures an agent.
type Config struct {
	Node           *node.Node
	Client         *client.Node
	StateDir       string        // where the bundle is saved after a renewal or a new revocation list; empty: not saved
	ReportInterval time.Duration // default 10 s
	CRLWait        time.Duration // long-poll wait (revocation lists, records and proofs), default 25 s
	// Records are the signed records of the enrolment answer: the node learns them at start, and
	// the agent then asks only for what was published since. Nil: it asks for all of them.
	Records *api.MeshRecords
	Logger  *slog.Logger
	Version string
}

// Run works until ctx ends.
func Run(ctx context.Context, cfg Config) {
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = 10 * time.Second
	}
	if cfg.CRLWait <= 0 {
		cfg.CRLWait = 25 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &agent{cfg: cfg, log: cfg.Logger.With("component", "agent")}
	if l := cfg.Client.Bundle().CRL; l != nil {
		a.crlNumber = l.Number
		if _, err := cfg.Node.UpdateCRL(l); err != nil {
			a.log.Debug("bundled revocation list", "err", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); a.crlLoop(ctx) }()
	go func() { defer wg.Done(); a.policyLoop(ctx) }()
	if _, governed := cfg.Node.Governance(); governed {
		wg.Go(func() { a.decisionsLoop(ctx) })
	}
	go func() { defer wg.Done(); a.recordsLoop(ctx) }()
	if cfg.Node.RoutingArea() != 0 {
		wg.Go(func() { a.proofsLoop(ctx) })
	}
	go func() { defer wg.Done(); a.reportLoop(ctx) }()
	go func() {
		defer wg.Done()
		cfg.Client.RunRenewal(ctx, a.log, a.renewed)
	}()
	wg.Wait()
}

type agent struct {
	cfg       Config
	log       *slog.Logger
	mu        sync.Mutex
	crlNumber uint64
	seq       uint64
	// recordSent is the encoding of the node's own record the control plane last answered for
	// (report loop only): a record is sent once, not with every report.
	recordSent []byte
	// proofSent is, likewise, the node's own destination proof the control plane last answered for.
	proofSent []byte
	// healingSent identifies the healing journal the control plane last took.
	healingSent healingMark
	lastReport  time.Time // when report last ran (reportLoop alone reads and writes it)
}

func (a *agent) crlLoop(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		a.mu.Lock()
		after := a.crlNumber
		a.mu.Unlock()
		l, err := a.cfg.Client.FetchCRL(ctx, after, a.cfg.CRLWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("revocation list fetch failed", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		if l.Number <= after {
			continue // the long poll ended without a newer list
		}
		changed, err := a.cfg.Node.UpdateCRL(l)
		if err != nil {
			a.log.Warn("revocation list refused by the node", "number", l.Number, "err", err)
			sleep(ctx, backoff)
			continue
		}
		a.mu.Lock()
		a.crlNumber = l.Number
		a.mu.Unlock()
		if changed {
			a.log.Info("revocation list from the control plane installed", "number", l.Number)
		}
	}
}

func (a *agent) reportLoop(ctx context.Context) {
	// A node with no link yet would sign no record: the control plane would have nothing to give
	// the others, and nodes that all joined without a configured peer would never meet.
	a.cfg.Node.Announce()
	t := time.NewTicker(a.cfg.ReportInterval)
	defer t.Stop()
	// Until the control plane holds the node's first signed record, look for it often: a node that
	// joins a fresh mesh can only be dialled once others get that record, and waiting for the next
	// report would cost them up to a report interval.
	first := time.NewTicker(firstRecordPoll)
	defer first.Stop()
	for {
		a.report(ctx)
		for wait := true; wait; {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				wait = false
			case <-first.C:
				switch {
				case a.recordSent != nil:
					first.Stop()
				case time.Since(a.lastReport) >= time.Second && a.cfg.Node.OwnRecord().Record != nil:
					wait = false // at most one early report a second, should the control plane fail
				}
			}
		}
	}
}

// healingMark identifies a state of the node's append-only healing journal.
type healingMark struct {
	n           int
	first, last time.Time
}

// firstRecordPoll is how often the agent looks for the node's first signed record.
const firstRecordPoll = 100 * time.Millisecond

// report sends the node's view of its links and routes.
func (a *agent) report(ctx context.Context) {
	n := a.cfg.Node
	a.lastReport = time.Now()
	a.seq++
	r := BuildReport(n, a.seq, a.cfg.Version)
	// The healing journal goes only when it changed since the control plane last took it: the
	// journal is append-only, so its length and its newest decision's time identify it.
	journal := n.HealJournal(api.MaxHealingEntries)
	var mark healingMark
	if len(journal) > 0 {
		mark = healingMark{n: len(journal), first: journal[0].Time, last: journal[len(journal)-1].Time}
		if mark != a.healingSent {
			r.Healing = make([]api.HealingEntry, len(journal))
			for i, d := range journal {
				r.Healing[i] = api.HealingEntry{Time: d.Time.UTC(), Peer: d.Peer, Action: d.Action, Rule: d.Rule, Class: d.Class,
					Confidence: d.Confidence, Evidence: d.Evidence}
			}
			// The control plane would refuse the whole report for it: report without the journal.
			if err := api.ValidateHealing(r.Healing); err != nil {
				a.log.Warn("healing journal not reportable; reporting without it", "err", err)
				r.Healing = nil
			}
		}
	}
	own := n.OwnRecord()
	if own.Record != nil && !bytes.Equal(own.Record, a.recordSent) {
		sr := api.EncodeSignedRecord("", own.Cert, own.Record)
		r.Record = &sr
	}
	var proof node.SignedRecord
	if n.RoutingArea() != 0 {
		// No proof until the node reaches a gateway of its area: nothing to report yet.
		if p, err := n.OwnDestinationProof(); err == nil && !bytes.Equal(p.Record, a.proofSent) {
			proof = p
			sr := api.EncodeSignedRecord("", p.Cert, p.Record)
			r.Proof = &sr
		}
	}
	acc, err := a.cfg.Client.Report(ctx, r)
	var ae *client.Error
	if err != nil && (r.Record != nil || r.Proof != nil) && errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
		// Whatever the control plane holds against this record or proof, it would hold it against
		// every copy: report without them, and send the next ones.
		a.log.Warn("the control plane refused the node's signed record or proof; reporting without them", "err", err)
		if r.Record != nil {
			a.recordSent = own.Record
		}
		if r.Proof != nil {
			a.proofSent = proof.Record
		}
		r.Record, r.Proof = nil, nil
		acc, err = a.cfg.Client.Report(ctx, r)
	}
	if err == nil && r.Proof != nil {
		a.proofSent = proof.Record
	}
	if err == nil && acc.Advisories != "" {
		a.advisories(acc.Advisories)
	}
	if err == nil {
		a.healingSent = mark
	}
	switch {
	case err == nil && r.Record != nil:
		a.recordSent = own.Record
	case err != nil && ctx.Err() == nil:
		a.log.Debug("report failed", "err", err)
	}
}

// advisories hands the control plane's cost advisories to the node, which verifies them and keeps
// them only if they are newer than the ones it holds.
func (a *agent) advisories(encoded string) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(raw) > meshca.MaxAdvisoriesSize {
		a.log.Warn("cost advisories from the control plane unreadable", "err", err, "bytes", len(raw))
		return
	}
	adv, err := meshca.ParseAdvisories(raw)
	if err != nil {
		a.log.Warn("cost advisories from the control plane unreadable", "err", err)
		return
	}
	changed, err := a.cfg.Node.UpdateAdvisories(adv)
	switch {
	case err != nil:
		a.log.Warn("cost advisories refused by the node", "sequence", adv.Sequence, "err", err)
	case changed:
		a.log.Info("cost advisories from the control plane installed", "sequence", adv.Sequence, "entries", len(adv.Entries))
	}
}

// BuildReport is the report of node n's links, routes and detector telemetry, with sequence
// number seq, without its signed record.
func BuildReport(n *node.Node, seq uint64, version string) *api.MeshReport {
	st := n.Status()
	r := &api.MeshReport{Sequence: seq, Version: version, UptimeSeconds: int64(st.Uptime / time.Second)}
	tv, haveTelemetry := n.Telemetry()
	if haveTelemetry {
		r.Features, r.KernelFeatures = tv.NodeMap(), tv.Kernel
	}
	for _, p := range n.Peers() {
		state := "down"
		if p.Up {
			state = "up"
		}
		pr := api.PeerReport{Name: p.Name, Overlay: p.Overlay.String(), Endpoint: p.Remote, State: state,
			RTTMillis: float64(p.RTT.Microseconds()) / 1000, LossRatio: p.Loss, TxBytes: p.TxBytes, RxBytes: p.RxBytes}
		if i := slices.Index(tv.Peers, p.Name); haveTelemetry && i >= 0 {
			pr.Features = tv.EdgeMap(i)
		}
		r.Peers = append(r.Peers, pr)
	}
	for _, rt := range n.Routes() {
		r.Routes = append(r.Routes, api.RouteReport{Destination: rt.Name, NextHop: rt.NextHop, Cost: float64(rt.Cost), Hops: rt.Hops})
	}
	return r
}

// renewed installs a renewed certificate in the node and saves the bundle.
func (a *agent) renewed(b *client.Bundle) {
	if err := a.cfg.Node.SetCertificate(b.Certificate); err != nil {
		a.log.Error("renewed certificate refused by the node", "err", err)
		return
	}
	if a.cfg.StateDir != "" {
		if err := b.Save(a.cfg.StateDir); err != nil {
			a.log.Error("save renewed bundle", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
