package federated_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/telemetry"
)

// TestDaemonRounds: four real netstack nodes; their federated: sections come from configuration
// files. Three participants keep windows of their own telemetry and answer a statistics round and
// two train rounds of the coordinator node over the overlay; all end with the coordinator's final
// model, which both roles write to model_out, and which differs from the shipped model it started
// from. No node is faulty here, so the healing loops label nothing (the count is logged): this
// shows the rounds complete on real telemetry, not that they teach a fault.
func TestDaemonRounds(t *testing.T) {
	m := newFLMesh(t, 3)
	dir := t.TempDir()
	coordCert := filepath.Join(dir, "coord.crt")
	if err := os.WriteFile(coordCert, meshca.EncodeCertificatePEM(m.certs["coord"]), 0o644); err != nil {
		t.Fatal(err)
	}
	settings := func(name, section string) node.FederatedFile {
		t.Helper()
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte("federated: "+section+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := node.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Federated.Defaults()
		if err := f.Federated.Validate(); err != nil {
			t.Fatal(err)
		}
		return *f.Federated
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		name string
		m    *detector.Model
		err  error
	}
	done := make(chan result, 4)
	windows := map[string]*federated.Window{}
	run := func(name string, s node.FederatedFile) {
		windows[name] = federated.NewWindow(int(s.Window / telemetry.Interval))
		cfg := federated.DaemonConfig{Node: m.nodes[name], Key: m.keys[name].Sign, Verifier: m.ver, Settings: s,
			Window: windows[name], Logger: slog.New(slog.DiscardHandler)}
		if s.Role == "participant" {
			cfg.Coordinator = m.certs["coord"]
		}
		go func() {
			got, err := federated.RunDaemon(ctx, cfg)
			done <- result{name, got, err}
		}()
	}
	run("coord", settings("coord", "{enabled: true, role: coordinator, group: fl, participants: 3, rounds: 2, start_after: 3s, round_timeout: 20s, model_out: coord.x6m}"))
	for _, p := range []string{"p1", "p2", "p3"} {
		run(p, settings(p, "{enabled: true, coordinator: coord.crt, window: 1m, max_samples: 30, model_out: "+p+".x6m}"))
	}
	models := map[string]*detector.Model{}
	for range 4 {
		r := <-done
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
		models[r.name] = r.m
	}
	for _, p := range []string{"p1", "p2", "p3"} {
		t.Logf("%s: %d samples in its window, %d labelled node-samples", p, windows[p].Len(), windows[p].Labelled())
	}
	shipped, err := defaultmodel.Base()
	if err != nil {
		t.Fatal(err)
	}
	final := models["coord"]
	if reflect.DeepEqual(final.Params(), shipped.Params()) || reflect.DeepEqual(final.Mean, shipped.Mean) {
		t.Fatal("the final model is the shipped model: no round changed it")
	}
	want, err := final.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"coord", "p1", "p2", "p3"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".x6m"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("%s wrote a model other than the coordinator's final one", name)
		}
	}
}

// TestOwnGraphLabelsOnlyLabels: the healing loop's verdicts set the labels of the node's ego graph
// and nothing else.
func TestOwnGraphLabelsOnlyLabels(t *testing.T) {
	v := telemetry.Vector{At: time.Unix(100, 0), Peers: []string{"a", "b"}, Edges: make([][telemetry.NumEdge]float64, 2)}
	for i := range v.Node {
		v.Node[i] = float64(i + 1)
	}
	v.Edges[0][0], v.Edges[1][1] = 40, 7
	plain := federated.OwnGraph("self", v, nil)
	heal := []node.HealPeer{{Name: "a", Penalised: true, Class: "greyhole"}, {Name: "b", Penalised: false, Class: "blackhole"}}
	labelled := federated.OwnGraph("self", v, heal)
	if !reflect.DeepEqual(plain.X, labelled.X) || !reflect.DeepEqual(plain.E, labelled.E) || !reflect.DeepEqual(plain.Adj, labelled.Adj) {
		t.Fatal("the labels changed the inputs")
	}
	if !reflect.DeepEqual(plain.Y, []int{0, 0, 0}) || !reflect.DeepEqual(labelled.Y, []int{0, 5, 0}) {
		t.Fatalf("labels %v and %v; want none, and a (penalised) as greyhole", plain.Y, labelled.Y)
	}
	w := federated.NewWindow(2)
	for s := range 3 {
		v.At = time.Unix(int64(100+s), 0)
		w.Add("self", v, heal)
		w.Add("self", v, heal) // the same interval again: ignored
	}
	if w.Len() != 2 || len(w.Graphs(5)) != 2 || len(w.Graphs(1)) != 1 {
		t.Fatalf("window of 2 holds %d", w.Len())
	}
}
