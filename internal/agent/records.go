package agent

import (
	"context"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/node"
)

// recordsLoop keeps the node supplied with the signed records of the nodes it may reach: it learns
// the enrolment answer's records (if any), then long-polls the control plane for the records
// published after the last generation it saw. An answer comes only when something was published,
// so a quiet mesh costs one request per node per long-poll wait.
func (a *agent) recordsLoop(ctx context.Context) {
	a.directoryLoop(ctx, "signed records", a.cfg.Records, a.cfg.Client.FetchRecords, a.learn)
}

// proofsLoop keeps a node of a routing area supplied, the same way, with the destination proofs of
// the nodes of other areas it may reach (docs/routing.md, "Level 2"): with them it routes to those
// nodes through its area's gateways.
func (a *agent) proofsLoop(ctx context.Context) {
	a.directoryLoop(ctx, "destination proofs", nil, a.cfg.Client.FetchProofs, a.learnProofs)
}

// directoryLoop learns first (if any), then long-polls fetch for what was published after the last
// generation it saw, handing each answer to learn.
func (a *agent) directoryLoop(ctx context.Context, what string, first *api.MeshRecords,
	fetch func(context.Context, uint64, time.Duration) (*api.MeshRecords, error), learn func(*api.MeshRecords)) {
	var after uint64
	if first != nil {
		learn(first)
		after = first.Generation
	}
	backoff := time.Second
	for ctx.Err() == nil {
		asked := time.Now()
		recs, err := fetch(ctx, after, a.cfg.CRLWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn(what+" fetch failed", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			// Ask for everything next: what was learnt before may have expired meanwhile.
			after = 0
			continue
		}
		learn(recs)
		if !recs.More && recs.Generation == after && time.Since(asked) < a.cfg.CRLWait/2 {
			// Nothing new, and long before the wait: the control plane parks no more long polls
			// (limits.max_record_waiters). Ask again later rather than at once.
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = time.Second
		}
		after = recs.Generation
	}
}

// learn hands records to the node, which verifies each and ignores those it holds already.
func (a *agent) learn(m *api.MeshRecords) {
	if recs := a.decode(m, "signed record"); len(recs) > 0 {
		if err := a.cfg.Node.LearnRecords(recs); err != nil {
			a.log.Debug("signed records from the control plane refused by the node", "err", err)
		}
	}
}

// learnProofs hands destination proofs to the node, which verifies each and ignores those it holds
// already.
func (a *agent) learnProofs(m *api.MeshRecords) {
	if recs := a.decode(m, "destination proof"); len(recs) > 0 {
		if err := a.cfg.Node.LearnProofs(recs); err != nil {
			a.log.Debug("destination proofs from the control plane refused by the node", "err", err)
		}
	}
}

func (a *agent) decode(m *api.MeshRecords, what string) []node.SignedRecord {
	recs := make([]node.SignedRecord, 0, len(m.Records))
	for i := range m.Records {
		cert, rec, err := m.Records[i].Decode()
		if err != nil {
			a.log.Debug(what+" from the control plane unreadable", "node", m.Records[i].Node, "err", err)
			continue
		}
		recs = append(recs, node.SignedRecord{Cert: cert, Record: rec})
	}
	return recs
}
