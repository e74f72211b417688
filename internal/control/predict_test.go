package control

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/telemetry"
)

// writeModel saves an (untrained, seeded) detector with this build's dimensions.
func writeModel(t *testing.T, m *detector.Model) string {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.x6m")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func nodeFeatures(seed float64) map[string]float64 {
	f := map[string]float64{}
	for i, name := range telemetry.NodeNames {
		f[name] = seed + float64(i)/10
	}
	f["missing"] = 0
	return f
}

func edgeFeatures(tx, rx float64) map[string]float64 {
	return map[string]float64{"tx_transit": tx, "rx_transit": rx, "tx_transit_5s_mean": tx, "rx_transit_5s_mean": rx,
		"probe_loss": 0.01, "probe_rtt_ms": 1.5, "up": 1}
}

// TestPredict: the score an API call returns is the model's output on the mesh the reports describe
// (checked against the model run directly on a graph built here), with the features it read, the
// model version, and neighbours ranked by how much cutting them out changes the score.
func TestPredict(t *testing.T) {
	m := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 8, 8, len(telemetry.Classes), 3)
	m.Threshold = 0.5
	path := writeModel(t, m)
	h := sqliteHarness(t, func(c *Config) { c.AI.Model = path })
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	// A line alpha – beta – gamma; gamma reports no features.
	names := []string{"alpha", "beta", "gamma"}
	nodes := map[string]*testNode{}
	for _, n := range names {
		nodes[n] = h.enrollNode(t, admin, n, "web")
	}
	peer := func(name string, f map[string]float64) api.PeerReport {
		return api.PeerReport{Name: name, State: api.PeerUp, RTTMillis: 1, Features: f}
	}
	reports := map[string]*api.MeshReport{
		"alpha": {Sequence: 1, Features: nodeFeatures(1), Peers: []api.PeerReport{peer("beta", edgeFeatures(40, 0))}},
		"beta": {Sequence: 1, Features: nodeFeatures(2), Peers: []api.PeerReport{
			peer("alpha", edgeFeatures(0, 0)), peer("gamma", edgeFeatures(0, 0))}},
		"gamma": {Sequence: 1, Peers: []api.PeerReport{peer("beta", nil)}},
	}
	for _, n := range names {
		if _, err := nodes[n].c.Report(ctx, reports[n]); err != nil {
			t.Fatalf("%s report: %v", n, err)
		}
	}

	viewer := h.user("vic", auth.Viewer)
	var p api.Prediction
	h.must(200, "GET", "/api/v1/ai/predict/beta", viewer, nil, &p)

	// The same graph, built independently: 0 alpha, 1 beta, 2 gamma.
	x := func(f map[string]float64) []float64 {
		v := make([]float64, telemetry.NumNode)
		for i, name := range telemetry.NodeNames {
			v[i] = f[name]
		}
		return v
	}
	e := func(f map[string]float64) []float64 {
		v := make([]float64, telemetry.NumEdge)
		for i, name := range telemetry.EdgeNames {
			v[i] = f[name]
		}
		return v
	}
	missing := make([]float64, telemetry.NumNode)
	missing[telemetry.FMissing] = 1
	zero := make([]float64, telemetry.NumEdge)
	g := detector.Graph{
		X:   [][]float64{x(reports["alpha"].Features), x(reports["beta"].Features), missing},
		Adj: [][]int{{1}, {0, 2}, {1}},
		E:   [][][]float64{{e(edgeFeatures(40, 0))}, {e(edgeFeatures(0, 0)), e(edgeFeatures(0, 0))}, {zero}},
	}
	in := detector.Robust(&g)
	want := m.Predict(&in)
	if math.Abs(p.Score-(1-want[1][0])) > 1e-9 {
		t.Fatalf("score %v, the model says %v", p.Score, 1-want[1][0])
	}
	if p.ModelVersion != m.Version() || p.Node != "beta" || p.GraphNodes != 3 || p.TelemetryMissing || p.ReportedAt == nil ||
		p.Threshold != 0.5 || p.Anomalous != (p.Score >= 0.5) {
		t.Fatalf("prediction %+v", p)
	}
	sum := 0.0
	for _, q := range p.Probabilities {
		sum += q
	}
	if len(p.Probabilities) != len(telemetry.Classes) || math.Abs(sum-1) > 1e-9 || p.Probabilities[p.Class] < p.Probabilities["normal"]-1e-12 {
		t.Fatalf("probabilities %v, class %s", p.Probabilities, p.Class)
	}
	if p.Features["sent"] != reports["beta"].Features["sent"] || p.LinkFeatures["alpha"]["up"] != 1 || len(p.LinkFeatures) != 2 {
		t.Fatalf("features %v %v", p.Features, p.LinkFeatures)
	}
	if len(p.TopNeighbours) != 2 || p.TopNeighbours[0].Contribution < p.TopNeighbours[1].Contribution {
		t.Fatalf("top neighbours %+v", p.TopNeighbours)
	}
	// Cutting alpha out of the graph: beta's score computed directly.
	cut := detector.Graph{X: g.X, Adj: [][]int{nil, {2}, {1}}, E: [][][]float64{nil, {g.E[1][1]}, {zero}}}
	for _, nc := range p.TopNeighbours {
		cutIn := detector.Robust(&cut)
		if nc.Name == "alpha" && math.Abs(nc.Contribution-(p.Score-(1-m.Predict(&cutIn)[1][0]))) > 1e-9 {
			t.Fatalf("alpha's contribution %v", nc.Contribution)
		}
	}

	// gamma reported no features: the model saw it as missing, and the answer says so.
	h.must(200, "GET", "/ai/predict/gamma", viewer, nil, &p)
	if !p.TelemetryMissing || p.Features["missing"] != 1 || math.Abs(p.Score-(1-want[2][0])) > 1e-9 {
		t.Fatalf("gamma %+v", p)
	}
	if r := h.do("GET", "/ai/predict/nobody", viewer, nil); r.status != 404 {
		t.Fatalf("unknown node: %d", r.status)
	}
	if r := h.do("GET", "/ai/predict/Not_A_Name", viewer, nil); r.status != 400 {
		t.Fatalf("bad name: %d", r.status)
	}
	if r := h.do("GET", "/ai/predict/beta", "", nil); r.status != 401 {
		t.Fatalf("without credentials: %d", r.status)
	}
	// A report with an unknown feature is refused.
	bad := &api.MeshReport{Sequence: 2, Features: map[string]float64{"mystery": 1}}
	if _, err := nodes["alpha"].c.Report(ctx, bad); err == nil || !strings.Contains(err.Error(), `unknown feature "mystery"`) {
		t.Fatalf("unknown feature accepted: %v", err)
	}
	bad = &api.MeshReport{Sequence: 2, Features: map[string]float64{"sent": math.Inf(1)}}
	if _, err := nodes["alpha"].c.Report(ctx, bad); err == nil {
		t.Fatal("infinite feature accepted")
	}
}

// TestPredictOutOfTheBox: with no ai.model configured the shipped model answers (here: 404 for a
// node that is not enrolled, not 503).
func TestPredictOutOfTheBox(t *testing.T) {
	h := sqliteHarness(t, nil)
	viewer := h.user("vic", auth.Viewer)
	if r := h.do("GET", "/ai/predict/alpha", viewer, nil); r.status != 404 {
		t.Fatalf("shipped model: %d %s", r.status, r.body)
	}
}

// A detector file that is damaged, or made for other features, stops the control plane at start
// with a clear error.
func TestPredictModelRefused(t *testing.T) {
	good := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 4, 4, len(telemetry.Classes), 1)
	b, err := good.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	damaged := filepath.Join(dir, "damaged.x6m")
	b[len(b)/2] ^= 1
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadDetector(damaged); err == nil || !strings.Contains(err.Error(), "ai.model") || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("damaged model: %v", err)
	}
	other := writeModel(t, detector.NewModel(detector.NumRobust+1, detector.NumRobustEdge, 4, 4, len(telemetry.Classes), 1))
	if _, _, err := loadDetector(other); err == nil || !strings.Contains(err.Error(), "this build derives") {
		t.Fatalf("model for other features: %v", err)
	}
	if _, _, err := loadDetector(filepath.Join(dir, "absent.x6m")); err == nil {
		t.Fatal("absent model accepted")
	}
	if m, _, err := loadDetector("none"); m != nil || err != nil {
		t.Fatalf("detector switched off: %v %v", m, err)
	}
	if m, _, err := loadDetector(""); m == nil || err != nil {
		t.Fatalf("no model configured: the shipped one should load: %v %v", m, err)
	}
}

// TestPredictKernelInputs: a report's kernel_features reach /ai/predict as the detector's kernel
// block, computed from that report's fields; a node without them gets the block with every presence
// 0; and the score of a model that does not read the block is the same with or without them.
func TestPredictKernelInputs(t *testing.T) {
	m := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 8, 8, len(telemetry.Classes), 5)
	m.Threshold = 0.5
	h := sqliteHarness(t, func(c *Config) { c.AI.Model = writeModel(t, m) })
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	alpha, beta := h.enrollNode(t, admin, "alpha", "web"), h.enrollNode(t, admin, "beta", "web")
	peer := func(name string) []api.PeerReport {
		return []api.PeerReport{{Name: name, State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(10, 10)}}
	}
	features := func() map[string]float64 {
		f := nodeFeatures(0)
		f["sent"], f["transit_in"] = math.Log1p(99), math.Log1p(100) // 200 packets per second with the +1
		return f
	}
	if _, err := alpha.c.Report(ctx, &api.MeshReport{Sequence: 1, Features: features(), Peers: peer("beta")}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.c.Report(ctx, &api.MeshReport{Sequence: 1, Features: features(), Peers: peer("alpha")}); err != nil {
		t.Fatal(err)
	}
	viewer := h.user("vic", auth.Viewer)
	var before api.Prediction
	h.must(200, "GET", "/api/v1/ai/predict/beta", viewer, nil, &before)
	if before.KernelInputsVersion != detector.KernelInputsVersion || len(before.KernelInputs) != detector.NumKernelInputs ||
		before.KernelFeatures != nil {
		t.Fatalf("without eBPF: %+v", before)
	}
	for name, x := range before.KernelInputs {
		if x != 0 {
			t.Fatalf("without eBPF %s = %v, want 0 (unknown)", name, x)
		}
	}

	// beta now reports what its kernel saw: 40 datagrams a second it never read, 30 drops a second
	// (all full socket buffer), 4 retransmits a second.
	kernel := map[string]float64{"kernel_rx_unread": 40, "kernel_tx_unseen": 0, "kernel_drops": math.Log1p(30),
		"kernel_tcp_retransmits": math.Log1p(4), "kernel_drop_socket_rcvbuff": math.Log1p(30)}
	if _, err := beta.c.Report(ctx, &api.MeshReport{Sequence: 2, Features: features(), Peers: peer("alpha"),
		KernelFeatures: kernel}); err != nil {
		t.Fatal(err)
	}
	var after api.Prediction
	h.must(200, "GET", "/api/v1/ai/predict/beta", viewer, nil, &after)
	want := map[string]float64{"kernel_rx_unread_frac": 0.2, "kernel_rx_unread_present": 1,
		"kernel_tx_unseen_frac": 0, "kernel_tx_unseen_present": 1, "kernel_drops_per_packet": 0.15,
		"kernel_drops_present": 1, "kernel_retransmits_per_sent": 0.04, "kernel_retransmits_present": 1}
	for name, w := range want {
		if got, ok := after.KernelInputs[name]; !ok || math.Abs(got-w) > 1e-9 {
			t.Fatalf("%s = %v, want %v (all %v)", name, got, w, after.KernelInputs)
		}
	}
	if len(after.KernelInputs) != len(want) || after.KernelFeatures["kernel_drop_socket_rcvbuff"] != kernel["kernel_drop_socket_rcvbuff"] {
		t.Fatalf("kernel in the answer: %v %v", after.KernelInputs, after.KernelFeatures)
	}
	// The model reads NumRobust inputs, not the kernel block: its score is unchanged.
	if after.Score != before.Score {
		t.Fatalf("score moved from %v to %v for a model that does not read the kernel block", before.Score, after.Score)
	}
	// alpha, without eBPF, is still unknown.
	var a api.Prediction
	h.must(200, "GET", "/api/v1/ai/predict/alpha", viewer, nil, &a)
	if a.KernelFeatures != nil || a.KernelInputs["kernel_drops_present"] != 0 {
		t.Fatalf("alpha: %v %v", a.KernelFeatures, a.KernelInputs)
	}
}

// fixedModel returns a model of this build's dimensions that gives every node the class
// probabilities p (zero output weights, biases log p).
func fixedModel(p ...float64) *detector.Model {
	m := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 8, 8, len(p), 5)
	for i := range m.Wo {
		m.Wo[i] = 0
	}
	for k, q := range p {
		m.Bo[k] = math.Log(q)
	}
	return m
}

// TestPredictEnsembleClass: with an ensemble, the class the API names is the ensemble's decision
// (its members' majority), not the most probable class of the mean, which one confident member
// can swing; the probabilities are the mean.
func TestPredictEnsembleClass(t *testing.T) {
	unsure := []float64{0.40, 0.05, 0.05, 0.05, 0.35, 0.05, 0.05} // normal, just
	sure := []float64{0.01, 0.01, 0.01, 0.01, 0.94, 0.01, 0.01}   // blackhole
	if telemetry.Classes[4] != "blackhole" || len(telemetry.Classes) != len(unsure) {
		t.Fatalf("classes %v: the test's probabilities need updating", telemetry.Classes)
	}
	e, err := detector.NewEnsemble([]*detector.Model{fixedModel(unsure...), fixedModel(unsure...), fixedModel(unsure...), fixedModel(sure...)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ensemble.x6m")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h := sqliteHarness(t, func(c *Config) { c.AI.Model = path })
	admin := h.apiClient(h.adminKey)
	alpha := h.enrollNode(t, admin, "alpha", "web")
	if _, err := alpha.c.Report(t.Context(), &api.MeshReport{Sequence: 1, Features: nodeFeatures(1)}); err != nil {
		t.Fatal(err)
	}
	var p api.Prediction
	h.must(200, "GET", "/api/v1/ai/predict/alpha", h.user("vic", auth.Viewer), nil, &p)
	if p.Probabilities["blackhole"] <= p.Probabilities["normal"] {
		t.Fatalf("probabilities %v: the mean must favour blackhole, or the test tells nothing", p.Probabilities)
	}
	if p.Class != "normal" || p.ModelVersion != e.Version() {
		t.Fatalf("class %q (model %s): one member of four named a fault, so the ensemble names none", p.Class, p.ModelVersion)
	}
}
