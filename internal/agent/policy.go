package agent

import (
	"context"
	"time"

	"x0tta6bl4/internal/governance"
)

// decisionsInterval is how often a governed node asks the control plane for newly enacted
// decisions. Decisions are rare and wait out a timelock anyway; the mesh also floods them.
const decisionsInterval = 10 * time.Second

// decisionsLoop hands the node every decision the control plane enacted; the node verifies each
// quorum certificate against the roster it follows and applies, keeps and floods the new ones.
func (a *agent) decisionsLoop(ctx context.Context) {
	var after uint64
	for ctx.Err() == nil {
		ds, err := a.cfg.Client.FetchDecisions(ctx, after)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("governance decisions fetch failed", "err", err)
			}
		}
		for _, d := range ds {
			if _, err := a.cfg.Node.ApplyDecision(d.Certificate); err != nil {
				a.log.Warn("governance decision refused by the node", "proposal", d.Proposal, "log_seq", d.LogSeq, "err", err)
				break // a later one may rest on it (a roster change): ask again from here
			}
			after = d.LogSeq
		}
		sleep(ctx, decisionsInterval)
	}
}

// policyLoop keeps the node's access policy current: it long-polls the control plane for a policy
// newer than the one in force on the node, and hands it to the node, which verifies it, refuses one
// that is not newer than its own, applies it and spreads it over the mesh. The node may also get
// policies from its neighbours meanwhile; the loop always asks for what is newer than the node's.
func (a *agent) policyLoop(ctx context.Context) {
	if a.cfg.Node.Governs(governance.ActionPolicy) {
		return // only the members' decisions change it (decisionsLoop)
	}
	backoff := time.Second
	for ctx.Err() == nil {
		var after uint64
		if p := a.cfg.Node.Policy(); p != nil {
			after = p.Version
		}
		asked := time.Now()
		p, err := a.cfg.Client.FetchPolicy(ctx, after, a.cfg.CRLWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("access policy fetch failed", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		if p == nil || p.Version <= after {
			// The wait ran out with nothing newer (a control plane behind the node answers with
			// its older policy then), or, long before the wait, the control plane parks no more
			// long polls: ask again later rather than at once.
			if time.Since(asked) < a.cfg.CRLWait/2 {
				sleep(ctx, backoff)
				backoff = min(2*backoff, 30*time.Second)
			} else {
				backoff = time.Second
			}
			continue
		}
		changed, err := a.cfg.Node.UpdatePolicy(p)
		if err != nil {
			a.log.Warn("access policy refused by the node", "version", p.Version, "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		if changed {
			a.log.Info("access policy from the control plane applied", "version", p.Version)
		}
		backoff = time.Second
	}
}
