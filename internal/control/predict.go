package control

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/telemetry"
)

// GET /api/v1/ai/predict/{node_id}: the anomaly detector (internal/detector, docs/intelligence.md) run on
// the mesh as the nodes' latest reports describe it. The graph is every enrolled, unrevoked node;
// its links are the links any report lists; a node's features are those of its fresh report, or
// "missing" (as for a dead node) without one; a link's features are what its reporting end counted.

// maxModelBytes bounds the detector file read at start-up.
const maxModelBytes = 64 << 20

// topNeighbours is how many neighbour contributions a prediction lists.
const topNeighbours = 5

// loadDetector reads and checks the configured model: the shipped one (internal/detector/defaultmodel)
// when none is configured, none at all with "none". It returns the SHA-256 of the model's file too,
// by which an enacted governance decision pins the model the control plane may serve.
func loadDetector(path string) (detector.Predictor, [32]byte, error) {
	switch path {
	case "":
		m, err := defaultmodel.Load()
		if err != nil {
			return nil, [32]byte{}, fmt.Errorf("control: the shipped detector model: %w", err)
		}
		return m, defaultmodel.SHA256(), nil
	case "none":
		return nil, [32]byte{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("control: ai.model: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxModelBytes+1))
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("control: ai.model %s: %w", path, err)
	}
	if len(b) > maxModelBytes {
		return nil, [32]byte{}, fmt.Errorf("control: ai.model %s: larger than %d MiB", path, maxModelBytes>>20)
	}
	m, err := detector.UnmarshalModel(b)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("control: ai.model %s: %w", path, err)
	}
	if s := m.Shape(); s.F != detector.NumRobust || (s.E != 0 && s.E != detector.NumRobustEdge) || s.K != len(telemetry.Classes) {
		return nil, [32]byte{}, fmt.Errorf("control: ai.model %s: %d node features, %d edge features, %d classes; this build derives %d, %d and %d (a model from an earlier build: retrain it with 'x0tta6bl4 ai train')",
			path, s.F, s.E, s.K, detector.NumRobust, detector.NumRobustEdge, len(telemetry.Classes))
	}
	return m, sha256.Sum256(b), nil
}

// governedModelRefusal is why the loaded model may not be served, or "" when it may: once the
// members have enacted a detector model (docs/governance.md), only a model file of that SHA-256 is
// served, whatever ai.model says. Without governance, or before any model decision, ai.model
// decides alone.
func (s *Server) governedModelRefusal(ctx context.Context) (string, error) {
	var pin *governance.DetectorModel
	err := s.govRead(ctx, func(sum *governance.LogSummary) {
		if sum.State.Model != nil {
			m := *sum.State.Model
			pin = &m
		}
	})
	if errors.Is(err, errNoGovernance) || (err == nil && pin == nil) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if pin.SHA256 == s.detectorSHA {
		return "", nil
	}
	return fmt.Sprintf("the members enacted detector model %q (sha256 %x), and ai.model (%s) is a file of sha256 %x: "+
		"point ai.model at the enacted model's file and restart; until then no prediction is served",
		pin.Name, pin.SHA256, modelSource(s.cfg.AI.Model), s.detectorSHA), nil
}

func modelSource(path string) string {
	if path == "" {
		return "the shipped model"
	}
	return path
}

// meshGraph is the detector's input built from the stored reports.
type meshGraph struct {
	*reports.Mesh
	reported []*store.Report // per node: its fresh report with features, or nil
}

// buildMeshGraph builds the graph of raw telemetry vectors (the model reads detector.Robust of it)
// from every enrolled, unrevoked node's latest report, as `ai train --from-records` does from
// recorded ones (internal/detector/reports).
func (s *Server) buildMeshGraph(ctx context.Context) (*meshGraph, error) {
	nodes, stored, err := s.nodesAndReports(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	index := map[string]int{}
	for _, n := range nodes {
		if !n.Revoked() {
			index[n.Name] = len(names)
			names = append(names, n.Name)
		}
	}
	latest := make([]*api.MeshReport, len(names))
	fresh := make([]bool, len(names))
	byNode := make([]*store.Report, len(names))
	now := s.now()
	for _, r := range stored {
		v, ok := index[r.NodeName]
		if !ok {
			continue
		}
		var rep api.MeshReport
		if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
			s.log.Error("stored report unreadable", "node", r.NodeName, "err", err)
			continue
		}
		latest[v], byNode[v] = &rep, &r
		fresh[v] = now.Sub(r.ReportedAt) <= s.cfg.Mesh.StaleAfter
	}
	mg := &meshGraph{Mesh: reports.Build(names, latest, fresh), reported: make([]*store.Report, len(names))}
	for v := range names {
		if mg.Fresh[v] {
			mg.reported[v] = byNode[v]
		}
	}
	return mg, nil
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	m := s.detector
	if m == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable",
			"the detector is switched off (ai.model: none): set ai.model to a file made by 'x0tta6bl4 ai train', or leave it empty for the shipped model")
		return
	}
	refusal, err := s.governedModelRefusal(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if refusal != "" {
		s.log.Warn("ai/predict refused: the loaded detector model is not the governed one", "reason", refusal)
		writeError(w, http.StatusServiceUnavailable, "unavailable", refusal)
		return
	}
	name := r.PathValue("node_id")
	if err := identity.ValidateNodeName(name); err != nil {
		badRequest(w, "node_id: "+err.Error())
		return
	}
	mg, err := s.buildMeshGraph(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	v, ok := mg.Index[name]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no enrolled, unrevoked node %q", name))
		return
	}
	in := detector.Robust(&mg.Graph)
	if err := m.CheckGraph(&in); err != nil {
		s.internal(w, r, fmt.Errorf("detector graph: %w", err))
		return
	}
	probs, classes := m.Classify(&in)
	p := probs[v]
	out := api.Prediction{Node: name, ModelVersion: m.Version(), ComputedAt: s.now(), GraphNodes: len(mg.Names),
		TelemetryMissing: mg.reported[v] == nil, Score: 1 - p[0], Threshold: m.DetectionThreshold(),
		Probabilities: map[string]float64{}, Features: map[string]float64{}, LinkFeatures: map[string]map[string]float64{},
		TopNeighbours: []api.NeighbourContribution{}}
	if rep := mg.reported[v]; rep != nil {
		at := rep.ReportedAt
		out.ReportedAt = &at
	}
	out.Anomalous = out.Score >= m.DetectionThreshold()
	for k, q := range p {
		out.Probabilities[telemetry.Classes[k]] = q
	}
	out.Class = telemetry.Classes[classes[v]]
	for i, name := range telemetry.NodeNames {
		out.Features[name] = mg.Graph.X[v][i]
	}
	out.Inputs = make(map[string]float64, len(detector.RobustNames))
	for i, name := range detector.RobustNames {
		out.Inputs[name] = in.X[v][i]
	}
	out.KernelFeatures = mg.Kernel[v]
	out.KernelInputsVersion = detector.KernelInputsVersion
	out.KernelInputs = make(map[string]float64, detector.NumKernelInputs)
	for i, x := range detector.KernelInputs(mg.Graph.X[v], mg.Kernel[v]) {
		out.KernelInputs[detector.KernelInputNames[i]] = x
	}
	for i, u := range mg.Graph.Adj[v] {
		lf := map[string]float64{}
		for k, name := range telemetry.EdgeNames {
			lf[name] = mg.Graph.E[v][i][k]
		}
		out.LinkFeatures[mg.Names[u]] = lf
	}
	for _, u := range mg.Graph.Adj[v] {
		g := mg.Without(u)
		gi := detector.Robust(&g)
		q := m.Predict(&gi)[v]
		out.TopNeighbours = append(out.TopNeighbours, api.NeighbourContribution{Name: mg.Names[u],
			Contribution: out.Score - (1 - q[0]), Score: 1 - probs[u][0]})
	}
	sort.SliceStable(out.TopNeighbours, func(i, j int) bool {
		return out.TopNeighbours[i].Contribution > out.TopNeighbours[j].Contribution
	})
	out.TopNeighbours = out.TopNeighbours[:min(topNeighbours, len(out.TopNeighbours))]
	writeJSON(w, http.StatusOK, out)
}
