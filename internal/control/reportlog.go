package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/identity"
)

// Recorded reports and labelled incidents (docs/control.md, "Recording reports"): with
// ai.record.enabled the detector's part of node reports is kept, at most one per node every
// ai.record.every, for ai.record.retention and within ai.record.max_rows and max_bytes; operators
// label incidents; GET /api/v1/ai/reports hands both to `ai train --from-records`.

// Bounds of incidents and export pages.
const (
	maxIncidents     = 100_000
	maxIncidentSpan  = 30 * 24 * time.Hour
	maxIncidentNote  = 1024
	maxArchivePage   = 4 << 20 // report bytes per GET /api/v1/ai/reports answer (the client reads at most 8 MiB)
	recordPruneEvery = 100     // prune the caps after every max_rows/recordPruneEvery recorded reports
)

// reportRecorder decides which reports are recorded and keeps the table within its bounds.
type reportRecorder struct {
	mu   sync.Mutex
	last map[int64]time.Time // node ID -> when its last recorded report was received (enrolled nodes only)
	// pending holds a healing journal that came with a report not recorded (within every): it
	// goes with the node's next recorded report, since a node sends its journal only when it
	// changed. At most api.MaxHealingEntries entries per enrolled node.
	pending    map[int64][]api.HealingEntry
	sincePrune int64 // reports recorded since the last pruning
}

// recordReport keeps the detector's part of an accepted report, if recording is on and the node
// has no recorded report from the last ai.record.every. A failure is logged, never returned: the
// report itself was stored, and the node must not resend it.
func (s *Server) recordReport(ctx context.Context, nodeID int64, at time.Time, rep *api.MeshReport) {
	cfg := s.cfg.AI.Record
	if !cfg.Enabled {
		return
	}
	rr := &s.recorder
	rr.mu.Lock()
	if rr.last == nil {
		rr.last, rr.pending = map[int64]time.Time{}, map[int64][]api.HealingEntry{}
	}
	if last, ok := rr.last[nodeID]; ok && at.Sub(last) < cfg.Every {
		if rep.Healing != nil {
			rr.pending[nodeID] = rep.Healing
		}
		rr.mu.Unlock()
		return
	}
	healing := rep.Healing
	if healing == nil {
		healing = rr.pending[nodeID]
	}
	delete(rr.pending, nodeID)
	rr.last[nodeID] = at
	rr.sincePrune++
	prune := rr.sincePrune >= max(1, cfg.MaxRows/recordPruneEvery)
	if prune {
		rr.sincePrune = 0
	}
	rr.mu.Unlock()
	trimmed := reports.Trim(rep)
	trimmed.Healing = healing
	body, err := json.Marshal(trimmed)
	if err != nil {
		s.log.Error("record report", "err", err)
		return
	}
	if int64(len(body)) > cfg.MaxReportBytes {
		s.m.recordSkipped.Inc()
		return
	}
	if err := s.st.AddRecordedReport(ctx, &store.RecordedReport{NodeID: nodeID, ReportedAt: at, Body: string(body)}); err != nil {
		s.log.Error("record report", "err", err)
		return
	}
	s.m.recorded.Inc()
	if prune {
		s.pruneRecorded(ctx)
	}
}

// pruneRecorded applies the retention and the caps of recorded reports and incidents.
func (s *Server) pruneRecorded(ctx context.Context) {
	cfg := s.cfg.AI.Record
	cutoff := s.now().Add(-cfg.Retention)
	if n, err := s.st.PruneRecordedReports(ctx, cutoff, cfg.MaxRows, cfg.MaxBytes); err != nil {
		s.log.Error("prune recorded reports", "err", err)
	} else if n > 0 {
		s.log.Info("pruned recorded reports", "count", n)
	}
	if n, err := s.st.PruneIncidents(ctx, cutoff); err != nil {
		s.log.Error("prune incidents", "err", err)
	} else if n > 0 {
		s.log.Info("pruned incidents", "count", n)
	}
}

// archiveWindow reads the from and to query parameters (RFC 3339; default: all time).
func archiveWindow(r *http.Request) (from, to time.Time, err error) {
	from, to = time.UnixMilli(0), time.UnixMilli(1<<53)
	for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339, v); err != nil {
				return from, to, fmt.Errorf("query parameter %s=%q: want an RFC 3339 time", name, v)
			}
		}
	}
	return from, to, nil
}

func (s *Server) handleReportArchive(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	from, to, err := archiveWindow(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	after, limit, err := pageQuery(r, "after_id")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if limit == 0 {
		limit = store.MaxList
	}
	recs, err := s.st.ListRecordedReports(r.Context(), from, to, after, int(limit)+1)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.ReportArchive{Format: api.ReportArchiveFormat, Reports: []api.RecordedReport{}, Incidents: []api.Incident{}}
	size := 0
	for i, rec := range recs {
		if i == int(limit) || (size+len(rec.Body) > maxArchivePage && i > 0) {
			out.More = true
			break
		}
		var rep api.MeshReport
		if err := json.Unmarshal([]byte(rec.Body), &rep); err != nil {
			s.log.Error("recorded report unreadable", "id", rec.ID, "err", err)
			continue
		}
		size += len(rec.Body)
		out.Reports = append(out.Reports, api.RecordedReport{ID: rec.ID, Node: rec.NodeName, At: rec.ReportedAt.UTC(), Report: rep})
		out.NextAfterID = rec.ID
	}
	if after == 0 {
		ins, err := s.st.ListIncidents(r.Context(), from, to, 0, store.MaxList)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		for _, in := range ins {
			out.Incidents = append(out.Incidents, toAPIIncident(&in))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func toAPIIncident(in *store.Incident) api.Incident {
	return api.Incident{ID: in.ID, Node: in.NodeName, Kind: in.Kind, From: in.From.UTC(), To: in.To.UTC(), Note: in.Note,
		Source: "operator", CreatedBy: in.CreatedBy}
}

func (s *Server) handleLabelIncident(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.Incident
	if !decodeJSON(w, r, &req) {
		return
	}
	if err := identity.ValidateNodeName(req.Node); err != nil {
		badRequest(w, "node: "+err.Error())
		return
	}
	if _, err := reports.ClassOf(req.Kind); err != nil {
		badRequest(w, err.Error())
		return
	}
	switch {
	case req.From.IsZero() || req.To.IsZero():
		badRequest(w, "from and to are required")
		return
	case !req.To.After(req.From):
		badRequest(w, "to must be after from")
		return
	case req.To.Sub(req.From) > maxIncidentSpan:
		badRequest(w, fmt.Sprintf("an incident spans at most %s", maxIncidentSpan))
		return
	case len(req.Note) > maxIncidentNote || !utf8.ValidString(req.Note):
		badRequest(w, fmt.Sprintf("note: at most %d bytes of UTF-8", maxIncidentNote))
		return
	case req.ID != 0 || (req.Source != "" && req.Source != "operator") || req.CreatedBy != "":
		badRequest(w, "id, source and created_by are set by the control plane")
		return
	}
	in := &store.Incident{NodeName: req.Node, Kind: req.Kind, From: req.From, To: req.To, Note: req.Note, CreatedBy: rc.actor(), CreatedAt: s.now()}
	status, msg := 0, ""
	err := s.st.InTx(r.Context(), func(tx *store.Tx) error {
		if _, err := tx.NodeByName(r.Context(), req.Node); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				status, msg = http.StatusNotFound, fmt.Sprintf("no enrolled node %q", req.Node)
				return nil
			}
			return err
		}
		n, err := tx.CountIncidents(r.Context())
		if err != nil {
			return err
		}
		if n >= maxIncidents {
			status, msg = http.StatusConflict, fmt.Sprintf("%d incidents are stored, the most there may be; they are pruned with ai.record.retention", n)
			return nil
		}
		if err := tx.InsertIncident(r.Context(), in); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "incident.label", req.Node,
			fmt.Sprintf("%s from %s to %s", req.Kind, req.From.UTC().Format(time.RFC3339), req.To.UTC().Format(time.RFC3339)))
	})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if status != 0 {
		writeError(w, status, map[int]string{http.StatusNotFound: "not_found", http.StatusConflict: "conflict"}[status], msg)
		return
	}
	writeJSON(w, http.StatusCreated, toAPIIncident(in))
}
