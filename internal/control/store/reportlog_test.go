package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

// TestRecordedReportsBounded: recorded reports are pruned by age, then to the newest rows and the
// newest bytes the caps allow, oldest first, on both databases.
func TestRecordedReportsBounded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		n := &store.Node{Name: "alpha", KeyID: "ka", Overlay: "fd74::1", SPIFFEID: "spiffe://m/node/alpha", PublicKeyPEM: "p",
			Serial: "s", CertPEM: "c", SVIDPEM: "v", NotBefore: t0, NotAfter: t0.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: t0}
		if err := s.InsertNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			// Report i is 100+i bytes, received at t0 + i s.
			body := `{"n":"` + strings.Repeat("x", 100+i-8) + `"}`
			if err := s.AddRecordedReport(ctx, &store.RecordedReport{NodeID: n.ID, ReportedAt: t0.Add(time.Duration(i) * time.Second), Body: body}); err != nil {
				t.Fatal(err)
			}
		}
		ids := func() []int64 {
			rs, err := s.ListRecordedReports(ctx, t0.Add(-time.Hour), t0.Add(time.Hour), 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, r := range rs {
				if r.NodeName != "alpha" {
					t.Fatalf("node name %q", r.NodeName)
				}
				out = append(out, r.ReportedAt.Sub(t0).Milliseconds()/1000)
			}
			return out
		}
		prune := func(cutoff time.Time, rows, bytes int64, want int64) {
			t.Helper()
			got, err := s.PruneRecordedReports(ctx, cutoff, rows, bytes)
			if err != nil || got != want {
				t.Fatalf("prune(%s, %d rows, %d bytes) deleted %d, %v; want %d", cutoff.Sub(t0), rows, bytes, got, err, want)
			}
		}
		prune(t0.Add(2*time.Second), 1000, 1<<20, 2) // reports 0 and 1 are too old
		prune(t0, 6, 1<<20, 2)                       // keep the newest 6: 4…9
		if got := ids(); len(got) != 6 || got[0] != 4 || got[5] != 9 {
			t.Fatalf("after the row cap: %v", got)
		}
		prune(t0, 100, 109+108+107, 3) // the newest three sum to 324 bytes
		if got := ids(); len(got) != 3 || got[0] != 7 {
			t.Fatalf("after the byte cap: %v", got)
		}
		if rows, bytes, err := s.RecordedReportTotals(ctx); err != nil || rows != 3 || bytes != 324 {
			t.Fatalf("totals %d rows, %d bytes, %v", rows, bytes, err)
		}
		page, err := s.ListRecordedReports(ctx, t0.Add(8*time.Second), t0.Add(time.Hour), 0, 100)
		if err != nil || len(page) != 2 {
			t.Fatalf("reports from t0+8s: %d, %v", len(page), err)
		}
		page, err = s.ListRecordedReports(ctx, t0, t0.Add(time.Hour), page[0].ID, 100)
		if err != nil || len(page) != 1 {
			t.Fatalf("reports after id: %d, %v", len(page), err)
		}

		for i, kind := range []string{"blackhole", "greyhole"} {
			in := &store.Incident{NodeName: "alpha", Kind: kind, From: t0.Add(time.Duration(10*i) * time.Second),
				To: t0.Add(time.Duration(10*i+5) * time.Second), Note: nasty[i], CreatedBy: "user:alice", CreatedAt: t0}
			if err := s.InsertIncident(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListIncidents(ctx, t0.Add(4*time.Second), t0.Add(11*time.Second), 0, 10)
		if err != nil || len(got) != 2 || got[0].Note != nasty[0] || got[1].Kind != "greyhole" {
			t.Fatalf("overlapping incidents: %+v, %v", got, err)
		}
		got, err = s.ListIncidents(ctx, t0.Add(6*time.Second), t0.Add(9*time.Second), 0, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("incidents in a gap: %+v, %v", got, err)
		}
		if n, err := s.PruneIncidents(ctx, t0.Add(6*time.Second)); err != nil || n != 1 {
			t.Fatalf("pruned %d incidents, %v", n, err)
		}
		if c, err := s.CountIncidents(ctx); err != nil || c != 1 {
			t.Fatalf("%d incidents left, %v", c, err)
		}
	})
}
