package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/detector"
)

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errb}
	var err error
	switch args[0] {
	case "sim":
		err = runSim(e, args[1:])
	case "train":
		err = runAITrain(e, args[1:])
	case "eval":
		err = runAIEval(e, args[1:])
	case "inputs":
		err = runAIInputs(e, args[1:])
	case "advisor":
		err = runAIAdvisor(e, args[1:])
	}
	code := 0
	if err != nil {
		code = 1
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

// TestAICommands runs sim, ai train and ai eval on tiny settings: the plumbing, not the accuracy.
func TestAICommands(t *testing.T) {
	out, stderr, code := runCLI(t, "sim", "--nodes", "20", "--seed", "2", "--faults", "blackhole:1", "--duration", "5s")
	if code != 0 || !strings.Contains(out, "converged in") || !strings.Contains(out, "fault blackhole") {
		t.Fatalf("sim: %d %s %s", code, out, stderr)
	}
	model := filepath.Join(t.TempDir(), "m.x6m")
	small := []string{"--nodes", "20", "--duration", "4s", "--faults", "blackhole:1,crash:1", "--train-faults", "blackhole:1,crash:1"}
	out, stderr, code = runCLI(t, append([]string{"train", "--out", model, "--seeds", "1", "--val-seeds", "2", "--epochs", "2", "--hidden", "4"}, small...)...)
	if code != 0 || !strings.Contains(out, "version") || !strings.Contains(stderr, "training") {
		t.Fatalf("train: %d %s %s", code, out, stderr)
	}
	out, stderr, code = runCLI(t, append([]string{"eval", "--model", model, "--seeds", "3", "--train-seeds", "1", "--val-seeds", "2", "--rca=false"}, small...)...)
	for _, want := range []string{"robust z-score", "isolation forest", "flow conservation", "ratio rule", "ROC-AUC", "F1 [95% CI]", "persistence rule", "event F1 k=1",
		"kernel evidence on 50 % of the nodes", "kernel rule", "GraphSAGE anomaly + kernel (", "GraphSAGE class + kernel ("} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("eval: %d, no %q in %s %s", code, want, out, stderr)
		}
	}
	// Without eBPF anywhere there is no kernel evidence to set a threshold on, and no kernel row.
	out, stderr, code = runCLI(t, append([]string{"eval", "--model", model, "--seeds", "3", "--train-seeds", "1", "--val-seeds", "2", "--rca=false", "--persist-max", "1", "--kernel-fraction", "0"}, small...)...)
	if code != 0 || strings.Contains(out, "kernel") || !strings.Contains(out, "ratio rule") {
		t.Fatalf("eval --kernel-fraction 0: %d %s %s", code, out, stderr)
	}
	if _, stderr, code = runCLI(t, "eval", "--model", model, "--kernel-fraction", "1.5"); code == 0 || !strings.Contains(stderr, "--kernel-fraction") {
		t.Fatalf("kernel fraction 1.5: %d %s", code, stderr)
	}
	out, stderr, code = runCLI(t, append([]string{"eval", "--model", model, "--suite", "shift", "--scenarios", "nominal,liar", "--seeds", "3", "--train-seeds", "1", "--val-seeds", "2", "--detail", "--no-busy"}, small...)...)
	if code != 0 || !strings.Contains(out, "liar") || !strings.Contains(out, "goals") || strings.Contains(out, "volume") ||
		!strings.Contains(out, "validation runs (seeds 2)") || !strings.Contains(out, "liar: per fault kind at k =") || !strings.Contains(out, "false alarms") {
		t.Fatalf("eval --suite shift: %d %s %s", code, out, stderr)
	}
	out, stderr, code = runCLI(t, "inputs", "--scenarios", "nominal,volume×10", "--seeds", "4", "--nodes", "20", "--duration", "4s", "--faults", "blackhole:1")
	if code != 0 || !strings.Contains(out, "deficit_w") || !strings.Contains(out, "volume×10") {
		t.Fatalf("inputs: %d %s %s", code, out, stderr)
	}
	out, stderr, code = runCLI(t, "inputs", "--scenarios", "nominal", "--seeds", "4", "--nodes", "20", "--duration", "4s", "--faults", "blackhole:1", "--kind", "blackhole")
	if code != 0 || !strings.Contains(out, "blackhole node-intervals") || !strings.Contains(out, "5th / 25th / 50th") {
		t.Fatalf("inputs --kind blackhole: %d %s %s", code, out, stderr)
	}
	if _, stderr, code = runCLI(t, "inputs", "--kind", "gremlin"); code == 0 || !strings.Contains(stderr, "unknown fault") {
		t.Fatalf("inputs --kind gremlin: %d %s", code, stderr)
	}
	out, stderr, code = runCLI(t, append([]string{"advisor", "--model", model, "--scenarios", "nominal,intensity", "--seeds", "3", "--val-seeds", "2"}, small[:6]...)...)
	for _, want := range []string{"unexplained deficit ≥", "shipped default", "advisor (model or flow conservation)", "intensity", "healthy node-intervals flagged"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("advisor: %d, no %q in %s %s", code, want, out, stderr)
		}
	}
	out, stderr, code = runCLI(t, "eval", "--model", model, "--suite", "rca", "--seeds", "3", "--val-seeds", "2", "--nodes", "30")
	for _, want := range []string{"validation incidents", "held-out test incidents", "cascade-flap", "two-fault", "load-shift", "baro", "95 % CI"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("eval --suite rca: %d, no %q in %s %s", code, want, out, stderr)
		}
	}
	if _, stderr, code = runCLI(t, "eval", "--model", model, "--suite", "shift", "--scenarios", "moon"); code == 0 || !strings.Contains(stderr, "unknown scenario") {
		t.Fatalf("unknown scenario: %d %s", code, stderr)
	}
	// A model for another feature set is refused with a clear error.
	_, stderr, code = runCLI(t, append([]string{"eval", "--model", model, "--features", "self", "--seeds", "3", "--train-seeds", "1", "--val-seeds", "2"}, small...)...)
	if code == 0 || !strings.Contains(stderr, "features") {
		t.Fatalf("eval with the wrong feature set: %d %s", code, stderr)
	}
	_, stderr, code = runCLI(t, "eval", "--model", filepath.Join(t.TempDir(), "none"))
	if code == 0 || !strings.Contains(stderr, "no such file") {
		t.Fatalf("missing model: %d %s", code, stderr)
	}
}

// TestAITrainEnsemble: ai train --ensemble trains its members as single trainings of consecutive
// init seeds would (the first member is the model --init-seed 1 writes), writes one ensemble file,
// and ai eval reads it like any model.
func TestAITrainEnsemble(t *testing.T) {
	dir := t.TempDir()
	small := []string{"--nodes", "20", "--duration", "4s", "--faults", "blackhole:1,crash:1", "--train-faults", "blackhole:1,crash:1"}
	args := []string{"--seeds", "1", "--val-seeds", "2", "--epochs", "2", "--hidden", "4"}
	single, ens := filepath.Join(dir, "single.x6m"), filepath.Join(dir, "ens.x6m")
	if out, stderr, code := runCLI(t, append(append([]string{"train", "--out", single, "--init-seed", "2"}, args...), small...)...); code != 0 {
		t.Fatalf("train: %d %s %s", code, out, stderr)
	}
	out, stderr, code := runCLI(t, append(append([]string{"train", "--out", ens, "--ensemble", "2"}, args...), small...)...)
	if code != 0 {
		t.Fatalf("train --ensemble 2: %d %s %s", code, out, stderr)
	}
	s, err := detector.Load(single)
	if err != nil {
		t.Fatal(err)
	}
	p, err := detector.Load(ens)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := p.(*detector.Ensemble)
	if !ok || len(m.Members) != 2 || m.Members[1].Version() != s.Version() ||
		!strings.Contains(out, "member 2: init seed 2, version "+s.Version()) || !strings.Contains(out, "version "+m.Version()) {
		t.Fatalf("the ensemble's second member is not the model of init seed 2 (%s): %s", s.Version(), out)
	}
	out, stderr, code = runCLI(t, append([]string{"eval", "--model", ens, "--suite", "shift", "--scenarios", "nominal", "--seeds", "3", "--train-seeds", "1", "--val-seeds", "2", "--kernel-fraction", "0"}, small...)...)
	if code != 0 || !strings.Contains(out, "validation runs (seeds 2)") || !strings.Contains(out, m.Version()) {
		t.Fatalf("eval of an ensemble: %d %s %s", code, out, stderr)
	}
	for _, bad := range [][]string{{"--ensemble", "0"}, {"--ensemble", "17"}, {"--ensemble", "2", "--federated"}} {
		if _, stderr, code := runCLI(t, append([]string{"train", "--out", filepath.Join(dir, "x.x6m")}, bad...)...); code == 0 || !strings.Contains(stderr, "--ensemble") {
			t.Fatalf("%v accepted: %s", bad, stderr)
		}
	}
}

func TestParseSeeds(t *testing.T) {
	s, err := parseSeeds("1-3,7")
	if err != nil || len(s) != 4 || s[3] != 7 {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"", "a", "3-1", "1-"} {
		if _, err := parseSeeds(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// TestAITrainFromRecords: ai train reads an archive file, fine-tunes the shipped model or trains a
// new one, prints the labelled classes' scores and writes a model that loads.
func TestAITrainFromRecords(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := api.ReportArchive{Format: api.ReportArchiveFormat}
	for s := range 30 {
		at := t0.Add(time.Duration(s) * time.Second)
		for i, n := range []string{"alpha", "beta", "gamma"} {
			f := map[string]float64{"degree": 1, "sent": 3, "transit_in": 4, "forwarded": 4, "delivery": 1, "worst_hop_delivery": 1}
			if n == "beta" && s >= 10 && s < 20 {
				f["forwarded"], f["dropped"] = 0, 4
			}
			peer := []string{"beta", "alpha", "beta"}[i]
			a.Reports = append(a.Reports, api.RecordedReport{Node: n, At: at, Report: api.MeshReport{Features: f,
				Peers: []api.PeerReport{{Name: peer, State: "up", Features: map[string]float64{"tx_transit": 50, "rx_transit": 50, "up": 1}}}}})
		}
	}
	a.Incidents = []api.Incident{{Node: "beta", Kind: "blackhole", From: t0.Add(10 * time.Second), To: t0.Add(19 * time.Second)}}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "reports.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{"shipped", "none"} {
		model := filepath.Join(dir, base+".x6m")
		out, stderr, code := runCLI(t, "train", "--from-records", file, "--base", base, "--step", "1s", "--epochs", "2", "--out", model)
		if code != 0 || !strings.Contains(out, "10 labelled node-intervals") || !strings.Contains(out, "model "+model) {
			t.Fatalf("--base %s: %d\n%s\n%s", base, code, out, stderr)
		}
		if base == "shipped" && !strings.Contains(out, "(base model") {
			t.Fatalf("fine-tuning does not compare with the base model:\n%s", out)
		}
		if _, err := detector.Load(model); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := runCLI(t, "train", "--from-records", file, "--base", filepath.Join(dir, "missing.x6m"), "--out", filepath.Join(dir, "x.x6m")); code == 0 || !strings.Contains(stderr, "--base") {
		t.Fatalf("a missing base model: %d %s", code, stderr)
	}
	// The shipped file is an ensemble: training cannot start from it as a file.
	if _, stderr, code := runCLI(t, "train", "--from-records", file, "--base", "../detector/defaultmodel/detector.x6m", "--out", filepath.Join(dir, "x.x6m")); code == 0 || !strings.Contains(stderr, "is an ensemble") {
		t.Fatalf("an ensemble as the base model: %d %s", code, stderr)
	}
}
