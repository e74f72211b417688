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
	var after uint64
	if r := a.cfg.Records; r != nil {
		a.learn(r)
		after = r.Generation
	}
	backoff := time.Second
	for ctx.Err() == nil {
		asked := time.Now()
		recs, err := a.cfg.Client.FetchRecords(ctx, after, a.cfg.CRLWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("signed records fetch failed", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 30*time.Second)
			// Ask for everything next: records learnt before may have expired meanwhile.
			after = 0
			continue
		}
		a.learn(recs)
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
	if len(m.Records) == 0 {
		return
	}
	recs := make([]node.SignedRecord, 0, len(m.Records))
	for i := range m.Records {
		cert, rec, err := m.Records[i].Decode()
		if err != nil {
			a.log.Debug("signed record from the control plane unreadable", "node", m.Records[i].Node, "err", err)
			continue
		}
		recs = append(recs, node.SignedRecord{Cert: cert, Record: rec})
	}
	if err := a.cfg.Node.LearnRecords(recs); err != nil {
		a.log.Debug("signed records from the control plane refused by the node", "err", err)
	}
}
