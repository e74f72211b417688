package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/telemetry"
)

// SampleConfig says how recorded reports become training samples.
type SampleConfig struct {
	// Step is the time between two samples (graphs): the mesh as the reports describe it every
	// Step from the first recorded report to the last. [10 s, the agents' report interval]
	Step time.Duration
	// Fresh is how old a node's latest report may be and still count (mesh.stale_after, which
	// GET /ai/predict uses). [60 s]
	Fresh time.Duration
	// MaxSamples bounds the graphs built (and the memory they take). [100 000]
	MaxSamples int
}

func (c SampleConfig) withDefaults() SampleConfig {
	if c.Step <= 0 {
		c.Step = 10 * time.Second
	}
	if c.Fresh <= 0 {
		c.Fresh = 60 * time.Second
	}
	if c.MaxSamples <= 0 {
		c.MaxSamples = 100_000
	}
	return c
}

// Sample is one training graph: the mesh at At, with labels.
type Sample struct {
	At    time.Time
	Mesh  *Mesh
	Graph detector.Graph // detector.Robust of Mesh.Graph, with Y set from the incidents
}

// Samples rebuilds the mesh every Step from the recorded reports, as GET /ai/predict would have
// seen it at that moment (each node's latest report received by then, fresh if no older than
// Fresh), derives the detector's inputs (detector.Robust), and only then labels each node from the
// incidents: the class of an incident of that node covering the time of the report it was judged
// by (the sample's time for a node without a fresh report); normal otherwise.
func Samples(a *api.ReportArchive, cfg SampleConfig) ([]Sample, error) {
	cfg = cfg.withDefaults()
	if len(a.Reports) == 0 {
		return nil, errors.New("reports: the archive holds no recorded reports")
	}
	kinds, err := incidentKinds(append(slices.Clone(a.Incidents), JournalIncidents(a)...))
	if err != nil {
		return nil, err
	}
	recs := slices.Clone(a.Reports)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
	var names []string
	for _, r := range recs {
		if !slices.Contains(names, r.Node) {
			names = append(names, r.Node)
		}
	}
	sort.Strings(names)
	index := make(map[string]int, len(names))
	for v, n := range names {
		index[n] = v
	}
	first, last := recs[0].At, recs[len(recs)-1].At
	if n := int(last.Sub(first)/cfg.Step) + 1; n > cfg.MaxSamples {
		return nil, fmt.Errorf("reports: %s of recorded reports at one sample every %s is %d samples, more than %d: raise the step or export a shorter window",
			last.Sub(first), cfg.Step, n, cfg.MaxSamples)
	}
	latest := make([]*api.MeshReport, len(names))
	at := make([]time.Time, len(names))
	var out []Sample
	next := 0
	for t := first; !t.After(last); t = t.Add(cfg.Step) {
		for next < len(recs) && !recs[next].At.After(t) {
			v := index[recs[next].Node]
			latest[v], at[v] = &recs[next].Report, recs[next].At
			next++
		}
		fresh := make([]bool, len(names))
		for v := range names {
			fresh[v] = latest[v] != nil && t.Sub(at[v]) <= cfg.Fresh
		}
		mg := Build(names, slices.Clone(latest), fresh)
		g := detector.Robust(&mg.Graph)
		g.Y = make([]int, len(names))
		for v, name := range names {
			judged := t
			if mg.Fresh[v] {
				judged = at[v]
			}
			g.Y[v] = kinds.at(name, judged)
		}
		out = append(out, Sample{At: t, Mesh: mg, Graph: g})
	}
	return out, nil
}

// Graphs returns the samples' labelled graphs.
func Graphs(ss []Sample) []detector.Graph {
	out := make([]detector.Graph, len(ss))
	for i := range ss {
		out[i] = ss[i].Graph
	}
	return out
}

// labels finds the class of a node at a time from the incidents.
type labels map[string][]labelled

type labelled struct {
	from, to time.Time
	class    int
}

func incidentKinds(incidents []api.Incident) (labels, error) {
	l := labels{}
	for i, in := range incidents {
		class, err := ClassOf(in.Kind)
		if err != nil {
			return nil, fmt.Errorf("reports: incident %d (%s): %w", i+1, in.Node, err)
		}
		if in.To.Before(in.From) {
			return nil, fmt.Errorf("reports: incident %d (%s): ends before it starts", i+1, in.Node)
		}
		l[in.Node] = append(l[in.Node], labelled{in.From, in.To, class})
	}
	return l, nil
}

// at is the class of node name at t: the latest-starting incident covering t, or normal.
func (l labels) at(name string, t time.Time) int {
	class, start := 0, time.Time{}
	for _, in := range l[name] {
		if !t.Before(in.from) && !t.After(in.to) && (class == 0 || in.from.After(start)) {
			class, start = in.class, in.from
		}
	}
	return class
}

// ClassOf returns the detector class of an incident kind: a class name other than normal.
func ClassOf(kind string) (int, error) {
	for k, name := range telemetry.Classes {
		if k > 0 && name == kind {
			return k, nil
		}
	}
	return 0, fmt.Errorf("kind %q: want one of %v", kind, telemetry.Classes[1:])
}

// MaxArchiveBytes bounds an archive file read by ReadArchive.
const MaxArchiveBytes = 4 << 30

// ReadArchive decodes a report archive (api.ReportArchive, as `ctl reports export` writes it) of
// at most limit bytes, checking its format and each recorded report's and incident's names.
func ReadArchive(r io.Reader, limit int64) (*api.ReportArchive, error) {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	dec := json.NewDecoder(lr)
	dec.DisallowUnknownFields()
	var a api.ReportArchive
	if err := dec.Decode(&a); err != nil {
		if lr.N <= 0 {
			return nil, fmt.Errorf("reports: archive larger than %d bytes", limit)
		}
		return nil, fmt.Errorf("reports: archive: %w", err)
	}
	if dec.More() {
		return nil, errors.New("reports: archive: trailing data after the document")
	}
	if a.Format != api.ReportArchiveFormat {
		return nil, fmt.Errorf("reports: archive format %q, want %q", a.Format, api.ReportArchiveFormat)
	}
	for i, rec := range a.Reports {
		if err := identity.ValidateNodeName(rec.Node); err != nil {
			return nil, fmt.Errorf("reports: archive: report %d: node: %w", i+1, err)
		}
		if rec.At.IsZero() {
			return nil, fmt.Errorf("reports: archive: report %d: no time", i+1)
		}
		if err := checkValues(rec.Report.Features, rec.Report.KernelFeatures); err != nil {
			return nil, fmt.Errorf("reports: archive: report %d: %w", i+1, err)
		}
		if err := api.ValidateHealing(rec.Report.Healing); err != nil {
			return nil, fmt.Errorf("reports: archive: report %d: healing%w", i+1, err)
		}
		for _, p := range rec.Report.Peers {
			if err := checkValues(p.Features); err != nil {
				return nil, fmt.Errorf("reports: archive: report %d: peer %q: %w", i+1, p.Name, err)
			}
		}
	}
	for i, in := range a.Incidents {
		if err := identity.ValidateNodeName(in.Node); err != nil {
			return nil, fmt.Errorf("reports: archive: incident %d: node: %w", i+1, err)
		}
	}
	return &a, nil
}

// checkValues refuses non-finite feature values (JSON cannot carry them, but a number too large
// for a float64 decodes as an error and one that fits may still be absurd).
func checkValues(ms ...map[string]float64) error {
	for _, m := range ms {
		for name, v := range m {
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
				return fmt.Errorf("feature %q: %v is not a finite value of at most 1e12", name, v)
			}
		}
	}
	return nil
}

// JournalIncidents derives incidents from the healing journals the recorded reports carry: a
// neighbour a node penalised as a blackhole or grey hole was faulty that way from the decision
// until the same node restored it (or, without a restore, until the node's last recorded report).
// A node sends its whole recent journal whenever it changes, so the same decision arrives many
// times; each is counted once. These labels are the probe rule's verdicts: a fault the rule
// misses is never labelled by them.
func JournalIncidents(a *api.ReportArchive) []api.Incident {
	type key struct {
		node, peer, action string
		at                 time.Time
	}
	seen := map[key]bool{}
	type decision struct {
		peer, action, class string
		at                  time.Time
	}
	byNode := map[string][]decision{}
	lastReport := map[string]time.Time{}
	for _, r := range a.Reports {
		if r.At.After(lastReport[r.Node]) {
			lastReport[r.Node] = r.At
		}
		for _, h := range r.Report.Healing {
			k := key{r.Node, h.Peer, h.Action, h.Time}
			if seen[k] {
				continue
			}
			seen[k] = true
			byNode[r.Node] = append(byNode[r.Node], decision{h.Peer, h.Action, h.Class, h.Time})
		}
	}
	var out []api.Incident
	for _, n := range slices.Sorted(maps.Keys(byNode)) {
		ds := byNode[n]
		sort.SliceStable(ds, func(i, j int) bool { return ds[i].at.Before(ds[j].at) })
		open := map[string]*api.Incident{}
		for _, d := range ds {
			switch d.action {
			case "penalise":
				if _, err := ClassOf(d.class); err != nil || open[d.peer] != nil || identity.ValidateNodeName(d.peer) != nil {
					continue
				}
				open[d.peer] = &api.Incident{Node: d.peer, Kind: d.class, From: d.at, Source: "journal", CreatedBy: "node:" + n}
			case "restore":
				if in := open[d.peer]; in != nil {
					in.To = d.at
					out = append(out, *in)
					delete(open, d.peer)
				}
			}
		}
		for _, p := range slices.Sorted(maps.Keys(open)) {
			in := open[p]
			in.To = lastReport[n]
			if in.To.Before(in.From) {
				in.To = in.From
			}
			out = append(out, *in)
		}
	}
	return out
}
