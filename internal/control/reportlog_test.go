package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/agent"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/detector/finetune"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/meshtest"
	"x0tta6bl4/internal/node"
)

// TestRecordReports (both databases): with ai.record on, accepted reports are recorded at most
// once per node per ai.record.every, trimmed to the detector's part; the archive is admin-only
// and pages; incidents need an operator, are checked, audited, and come with the archive.
func TestRecordReports(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { recordReports(t, b.Config(t)) })
	}
}

func recordReports(t *testing.T, db store.Config) {
	clock := time.Now().Truncate(time.Second)
	{
		h := newHarnessAt(t, db, func(c *Config) { c.AI.Record.Enabled, c.AI.Record.Every = true, 2*time.Second },
			func() time.Time { return clock })
		ctx := t.Context()
		admin := h.apiClient(h.adminKey)
		alpha := h.enrollNode(t, admin, "alpha", "web")
		h.enrollNode(t, admin, "beta", "web")
		for i := range 6 { // one report a second: every other one is recorded
			rep := &api.MeshReport{Sequence: uint64(i + 1), Features: nodeFeatures(float64(i)),
				Peers:  []api.PeerReport{{Name: "beta", State: api.PeerUp, RTTMillis: 1, Features: edgeFeatures(40, 0)}},
				Routes: []api.RouteReport{{Destination: "beta", NextHop: "beta", Cost: 1, Hops: 1}}}
			if i == 1 { // not recorded (within every): its journal goes with the next recorded report
				rep.Healing = []api.HealingEntry{{Time: clock, Peer: "beta", Action: "penalise", Rule: "run of losses", Class: "blackhole", Confidence: 0.999}}
			}
			if _, err := alpha.c.Report(ctx, rep); err != nil {
				t.Fatal(err)
			}
			clock = clock.Add(time.Second)
		}
		viewer := h.user("vic", auth.Viewer)
		operator := h.user("olga", auth.Operator)
		h.must(http.StatusForbidden, "GET", "/api/v1/ai/reports", viewer, nil, nil)
		var a api.ReportArchive
		h.must(200, "GET", "/api/v1/ai/reports?limit=2", h.adminKey, nil, &a)
		if len(a.Reports) != 2 || !a.More || a.Reports[0].Node != "alpha" || a.Reports[0].Report.Features["sent"] != nodeFeatures(0)["sent"] ||
			a.Reports[1].Report.Sequence != 3 || len(a.Reports[0].Report.Routes) != 0 || a.Reports[0].Report.Peers[0].Features["tx_transit"] != 40 {
			t.Fatalf("first page: %+v", a)
		}
		if len(a.Reports[0].Report.Healing) != 0 || len(a.Reports[1].Report.Healing) != 1 || a.Reports[1].Report.Healing[0].Class != "blackhole" {
			t.Fatalf("healing journals of the recorded reports: %+v, %+v", a.Reports[0].Report.Healing, a.Reports[1].Report.Healing)
		}
		var rest api.ReportArchive
		h.must(200, "GET", fmt.Sprintf("/api/v1/ai/reports?after_id=%d", a.NextAfterID), h.adminKey, nil, &rest)
		if len(rest.Reports) != 1 || rest.More || rest.Reports[0].Report.Sequence != 5 {
			t.Fatalf("second page: %+v", rest)
		}

		from, to := clock.Add(-5*time.Second).UTC(), clock.Add(-2*time.Second).UTC()
		h.must(http.StatusForbidden, "POST", "/api/v1/ai/incidents", viewer, api.Incident{Node: "alpha", Kind: "greyhole", From: from, To: to}, nil)
		for _, bad := range []api.Incident{
			{Node: "alpha", Kind: "normal", From: from, To: to},
			{Node: "alpha", Kind: "greyhole", From: to, To: from},
			{Node: "alpha", Kind: "greyhole", From: from, To: from.Add(31 * 24 * time.Hour)},
			{Node: "alpha", Kind: "greyhole"},
			{Node: "../x", Kind: "greyhole", From: from, To: to},
			{Node: "alpha", Kind: "greyhole", From: from, To: to, Note: strings.Repeat("n", 1025)},
			{Node: "alpha", Kind: "greyhole", From: from, To: to, CreatedBy: "someone else"},
		} {
			if r := h.do("POST", "/api/v1/ai/incidents", operator, bad); r.status != http.StatusBadRequest {
				t.Errorf("incident %+v: %d %s", bad, r.status, r.body)
			}
		}
		h.must(http.StatusNotFound, "POST", "/api/v1/ai/incidents", operator, api.Incident{Node: "gamma", Kind: "greyhole", From: from, To: to}, nil)
		got, err := h.apiClient(operator).LabelIncident(ctx, api.Incident{Node: "alpha", Kind: "greyhole", From: from, To: to, Note: nasty})
		if err != nil || got.ID == 0 || !strings.HasPrefix(got.CreatedBy, "user:olga") || got.Source != "operator" || got.Note != nasty {
			t.Fatalf("label: %+v, %v", got, err)
		}
		all, err := admin.ReportArchive(ctx, time.Time{}, time.Time{})
		if err != nil || len(all.Reports) != 3 || len(all.Incidents) != 1 || all.Incidents[0].Kind != "greyhole" {
			t.Fatalf("archive: %+v, %v", all, err)
		}
		entries, err := h.srv.st.ListAudit(ctx, 0, 10)
		if err != nil || entries[0].Action != "incident.label" || entries[0].Target != "alpha" || !strings.HasPrefix(entries[0].Actor, "user:olga") {
			t.Fatalf("audit: %+v, %v", entries, err)
		}
	}
}

// nasty is a note shaped like SQL, stored and read back verbatim.
const nasty = `x'); DROP TABLE incidents;-- "名前"`

// TestTrainFromRecordedMesh: real nodes (internal/meshtest, a virtual clock) carry traffic while
// relay bravo drops 30 % of what it relays in two episodes; every virtual second each node's report,
// built as the agent builds it, goes to a control plane that records it. An operator labels the
// first episode; the shipped model is fine-tuned on the reports up to the second one, written to
// a file and loaded as the control plane loads ai.model; on the second episode, which training
// never saw, bravo's mean score must rise by 0.1 over the shipped model's (or reach 0.9 should the
// shipped model already know the fault) and stand 0.5 above the healthy nodes' mean.
func TestTrainFromRecordedMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("a 140 s virtual run")
	}
	m, err := meshtest.New(meshtest.Config{Seed: 7, Heal: node.HealConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"alpha", "bravo", "charlie", "delta"}
	if err := m.AddNodes(names...); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"alpha", "bravo"}, {"bravo", "charlie"}, {"charlie", "delta"}} {
		if err := m.Link(l[0], l[1], meshtest.LinkParams{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	alpha := m.Node("alpha")
	if _, ok := m.RunUntil(func() bool { return len(alpha.Routes()) == 3 }, 30*time.Second); !ok {
		t.Fatal("alpha has no route to every node")
	}
	// The control plane's clock follows the mesh's virtual one; only this goroutine steps the mesh,
	// so it publishes the time for the server's goroutines.
	base := time.Now().Truncate(time.Second)
	start := m.Elapsed()
	var virtual atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(virtual.Load())) }
	tick := func() { virtual.Store(int64(m.Elapsed() - start)) }
	h := newHarnessAt(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "control.db")},
		func(c *Config) { c.AI.Record.Enabled, c.AI.Record.Every = true, 0 }, now)
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	clients := map[string]*testNode{}
	for _, n := range names {
		clients[n] = h.enrollNode(t, admin, n, "web")
	}
	seq := uint64(0)
	// run carries 100 packets a second from alpha to delta and to charlie, and reports every second.
	run := func(seconds int) {
		for range seconds {
			for i := range 100 {
				alpha.Inject(meshtest.UDPPacket(alpha.Addr(), m.Node("delta").Addr(), 40000, 7, []byte{byte(i)}))
				alpha.Inject(meshtest.UDPPacket(alpha.Addr(), m.Node("charlie").Addr(), 40001, 7, []byte{byte(i)}))
				m.Run(10 * time.Millisecond)
			}
			tick()
			seq++
			for _, n := range names {
				if _, err := clients[n].c.Report(ctx, agent.BuildReport(m.Node(n).Node, seq, "test")); err != nil {
					t.Fatalf("%s report: %v", n, err)
				}
			}
		}
	}
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second).UTC() }
	bravo := m.Node("bravo")
	run(40)
	bravo.SetTransitFault(0.3)
	run(30) // episode 1: 40–70 s
	bravo.SetTransitFault(0)
	run(30)
	bravo.SetTransitFault(0.3)
	run(30) // episode 2: 100–130 s
	bravo.SetTransitFault(0)
	run(10)

	operator := h.apiClient(h.user("olga", auth.Operator))
	for _, ep := range [][2]int{{40, 70}, {100, 130}} {
		if _, err := operator.LabelIncident(ctx, api.Incident{Node: "bravo", Kind: "greyhole", From: at(ep[0]), To: at(ep[1])}); err != nil {
			t.Fatal(err)
		}
	}
	export := func(from, to int) []reports.Sample {
		a, err := admin.ReportArchive(ctx, at(from), at(to))
		if err != nil {
			t.Fatal(err)
		}
		// Through the file format, as `ctl reports export` and `ai train --from-records` pass it.
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		back, err := reports.ReadArchive(strings.NewReader(string(b)), reports.MaxArchiveBytes)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := reports.Samples(back, reports.SampleConfig{Step: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	trainSet, heldOut := export(0, 95), export(100, 140)
	shipped, err := defaultmodel.Base()
	if err != nil {
		t.Fatal(err)
	}
	tuned, loss, err := finetune.Train(shipped, reports.Graphs(trainSet), finetune.Config{Epochs: 10})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tuned.x6m")
	if err := tuned.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, _, err := loadDetector(path)
	if err != nil || loaded.Version() != tuned.Version() {
		t.Fatalf("the fine-tuned model as ai.model: %v", err)
	}
	greyhole, _ := reports.ClassOf("greyhole")
	before, n := finetune.MeanScore(shipped, heldOut, greyhole)
	after, _ := finetune.MeanScore(loaded, heldOut, greyhole)
	normalBefore, _ := finetune.MeanScore(shipped, heldOut, 0)
	normalAfter, _ := finetune.MeanScore(loaded, heldOut, 0)
	t.Logf("held-out episode, %d grey-hole node-intervals: mean score %.3f shipped → %.3f fine-tuned; healthy %.3f → %.3f; final loss %.4f, %d training graphs",
		n, before, after, normalBefore, normalAfter, loss, len(trainSet))
	if n < 20 {
		t.Fatalf("only %d labelled node-intervals in the held-out episode", n)
	}
	// Higher than before by 0.1, or at least 0.9 should the shipped model already know this fault;
	// and well apart from the healthy nodes.
	if after < min(before+0.1, 0.9) || after < normalAfter+0.5 {
		t.Fatalf("fine-tuning did not teach the grey hole: %.3f → %.3f (healthy %.3f)", before, after, normalAfter)
	}
}
