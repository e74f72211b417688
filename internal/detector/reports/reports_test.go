package reports

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/telemetry"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// archive: alpha – beta – gamma report every 10 s for a minute; gamma stops after 20 s.
func archive() *api.ReportArchive {
	a := &api.ReportArchive{Format: api.ReportArchiveFormat}
	feat := func(x float64) map[string]float64 {
		f := map[string]float64{}
		for i, n := range telemetry.NodeNames {
			f[n] = x + float64(i)
		}
		f["missing"] = 0
		return f
	}
	edge := map[string]float64{"tx_transit": 3, "rx_transit": 1, "up": 1}
	for s := 0; s <= 60; s += 10 {
		at := t0.Add(time.Duration(s) * time.Second)
		a.Reports = append(a.Reports,
			api.RecordedReport{Node: "alpha", At: at, Report: api.MeshReport{Features: feat(float64(s)), Peers: []api.PeerReport{{Name: "beta", State: "up", Features: edge}}}},
			api.RecordedReport{Node: "beta", At: at.Add(time.Second), Report: api.MeshReport{Features: feat(1), Peers: []api.PeerReport{{Name: "alpha", State: "up", Features: edge}, {Name: "gamma", State: "up"}}}})
		if s <= 20 {
			a.Reports = append(a.Reports, api.RecordedReport{Node: "gamma", At: at, Report: api.MeshReport{Features: feat(2), Peers: []api.PeerReport{{Name: "beta", State: "up"}}}})
		}
	}
	return a
}

// TestNoFeatureFromLabels: labelling incidents changes the labels and nothing else: every node
// and link input of every sample is the same with and without them. It fails if a feature is ever
// derived from an incident.
func TestNoFeatureFromLabels(t *testing.T) {
	plain := archive()
	labelled := archive()
	labelled.Incidents = []api.Incident{
		{Node: "beta", Kind: "blackhole", From: t0.Add(15 * time.Second), To: t0.Add(40 * time.Second)},
		{Node: "gamma", Kind: "crash", From: t0.Add(25 * time.Second), To: t0.Add(time.Hour)},
	}
	a, err := Samples(plain, SampleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Samples(labelled, SampleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 7 || len(a) != len(b) {
		t.Fatalf("%d and %d samples, want 7", len(a), len(b))
	}
	faulty := 0
	for i := range a {
		if !reflect.DeepEqual(a[i].Graph.X, b[i].Graph.X) || !reflect.DeepEqual(a[i].Graph.E, b[i].Graph.E) || !reflect.DeepEqual(a[i].Graph.Adj, b[i].Graph.Adj) {
			t.Fatalf("sample %d: the inputs changed with the labels", i)
		}
		for v, y := range a[i].Graph.Y {
			if y != 0 {
				t.Fatalf("sample %d node %d labelled %d without incidents", i, v, y)
			}
		}
		for _, y := range b[i].Graph.Y {
			if y != 0 {
				faulty++
			}
		}
	}
	// beta is judged at 30 s and 40 s by its reports of 21 s and 31 s, inside its incident; gamma,
	// silent after 20 s, stays fresh (60 s) for the minute and is judged by its report of 20 s,
	// before its incident: normal.
	if faulty != 2 {
		t.Fatalf("%d faulty node-intervals, want 2 (beta at 30 s and 40 s)", faulty)
	}
	if y := b[3].Graph.Y[b[3].Mesh.Index["beta"]]; y != 4 {
		t.Fatalf("beta at 30 s labelled %d, want blackhole", y)
	}
}

// TestSamplesFollowReports: a node's latest report counts while it is fresh; after that the node
// is missing, and a missing node is labelled by the sample's time.
func TestSamplesFollowReports(t *testing.T) {
	a := archive()
	a.Incidents = []api.Incident{{Node: "gamma", Kind: "crash", From: t0.Add(35 * time.Second), To: t0.Add(time.Hour)}}
	ss, err := Samples(a, SampleConfig{Step: 10 * time.Second, Fresh: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g := ss[0].Mesh.Index["gamma"]
	for i, s := range ss {
		fresh := i <= 3 // gamma's last report is at 20 s, fresh until 35 s
		if s.Mesh.Fresh[g] != fresh || (s.Mesh.Graph.X[g][telemetry.FMissing] == 1) == fresh {
			t.Fatalf("sample %d (%s): gamma fresh %v", i, s.At.Sub(t0), s.Mesh.Fresh[g])
		}
		if want := map[bool]int{true: 0, false: 2}[i < 4]; s.Graph.Y[g] != want {
			t.Fatalf("sample %d: gamma labelled %d, want %d", i, s.Graph.Y[g], want)
		}
	}
	if got := ss[0].Mesh.Graph.Adj[ss[0].Mesh.Index["beta"]]; len(got) != 2 {
		t.Fatalf("beta's links %v", got)
	}
}

func TestReadArchiveRefuses(t *testing.T) {
	good, err := json.Marshal(archive())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadArchive(bytes.NewReader(good), MaxArchiveBytes); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"format":   strings.Replace(string(good), api.ReportArchiveFormat, "other", 1),
		"trailing": string(good) + "{}",
		"unknown":  `{"format":"` + api.ReportArchiveFormat + `","extra":1}`,
		"node":     `{"format":"` + api.ReportArchiveFormat + `","reports":[{"node":"../x","at":"2030-01-01T00:00:00Z","report":{}}]}`,
		"huge":     `{"format":"` + api.ReportArchiveFormat + `","reports":[{"node":"a","at":"2030-01-01T00:00:00Z","report":{"features":{"sent":1e300}}}]}`,
		"kind":     `{"format":"` + api.ReportArchiveFormat + `","reports":[],"incidents":[{"node":"a","kind":"nope"}]}`,
	} {
		a, err := ReadArchive(strings.NewReader(in), MaxArchiveBytes)
		if err == nil && name == "kind" {
			_, err = Samples(a, SampleConfig{})
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ReadArchive(bytes.NewReader(good), 100); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("size bound: %v", err)
	}
}

// FuzzReadArchive: any bytes give an archive or an error, and an archive gives samples or an
// error, within the sample bound.
func FuzzReadArchive(f *testing.F) {
	good, _ := json.Marshal(archive())
	f.Add(good)
	f.Add([]byte(`{"format":"` + api.ReportArchiveFormat + `","reports":[{"node":"a","at":"2030-01-01T00:00:00Z","report":{"peers":[{"name":"a"}]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ReadArchive(bytes.NewReader(b), 1<<20)
		if err != nil {
			return
		}
		if _, err := Samples(a, SampleConfig{Step: time.Second, MaxSamples: 1000}); err != nil {
			return
		}
	})
}

// TestJournalIncidents: the healing journals the reports carry become incidents — once per
// decision although every report repeats the journal, from penalise to restore, or to the node's
// last report — and label the samples without touching their inputs.
func TestJournalIncidents(t *testing.T) {
	a := archive()
	pen := api.HealingEntry{Time: t0.Add(15 * time.Second), Peer: "beta", Action: "penalise", Rule: "r", Class: "greyhole", Confidence: 0.99}
	res := api.HealingEntry{Time: t0.Add(35 * time.Second), Peer: "beta", Action: "restore", Rule: "r", Class: "healthy", Confidence: 1}
	lossy := api.HealingEntry{Time: t0.Add(50 * time.Second), Peer: "beta", Action: "penalise", Rule: "r", Class: "lossy-path", Confidence: 1}
	for i := range a.Reports {
		r := &a.Reports[i]
		if r.Node != "alpha" {
			continue
		}
		switch s := r.At.Sub(t0); {
		case s >= 50*time.Second:
			r.Report.Healing = []api.HealingEntry{pen, res, lossy}
		case s >= 40*time.Second:
			r.Report.Healing = []api.HealingEntry{pen, res}
		case s >= 20*time.Second:
			r.Report.Healing = []api.HealingEntry{pen}
		}
	}
	in := JournalIncidents(a)
	if len(in) != 1 || in[0].Node != "beta" || in[0].Kind != "greyhole" || !in[0].From.Equal(pen.Time) || !in[0].To.Equal(res.Time) ||
		in[0].Source != "journal" || in[0].CreatedBy != "node:alpha" {
		t.Fatalf("journal incidents %+v; want beta greyhole 15–35 s (lossy-path is no detector class)", in)
	}
	plain, err := Samples(archive(), SampleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadArchive(bytes.NewReader(b), MaxArchiveBytes)
	if err != nil {
		t.Fatal(err)
	}
	labelled, err := Samples(back, SampleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	beta := labelled[0].Mesh.Index["beta"]
	for i := range labelled {
		if !reflect.DeepEqual(plain[i].Graph.X, labelled[i].Graph.X) || !reflect.DeepEqual(plain[i].Graph.E, labelled[i].Graph.E) {
			t.Fatalf("sample %d: the journal changed the inputs", i)
		}
		// beta is judged at 10 s … by its reports of 1 s, 11 s, 21 s, 31 s, 41 s: greyhole at 30 s and 40 s.
		want := map[bool]int{true: 5, false: 0}[i == 3 || i == 4]
		if labelled[i].Graph.Y[beta] != want {
			t.Fatalf("sample %d: beta labelled %d, want %d", i, labelled[i].Graph.Y[beta], want)
		}
	}
	open := archive()
	for i := range open.Reports {
		if open.Reports[i].Node == "alpha" && open.Reports[i].At.After(t0.Add(20*time.Second)) {
			open.Reports[i].Report.Healing = []api.HealingEntry{pen}
		}
	}
	if in := JournalIncidents(open); len(in) != 1 || !in[0].To.Equal(t0.Add(60*time.Second)) {
		t.Fatalf("a penalty never restored: %+v; want it to last to alpha's last report (60 s)", in)
	}
}
