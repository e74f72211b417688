package meshtest

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/routing"
)

// syncBuffer is a log sink the nodes may write from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// keptMesh is five nodes of area 1 (a ring a–b–c–d–e and a chord b–d), each keeping its routing
// records in a file of dir, converged and quiet. keep false gives the nodes no file. c, the node
// the tests restart, dials both its neighbours, as a node with configured peers does: it is back
// before their link layers notice it was gone.
func keptMesh(t *testing.T, dir string, keep bool, log *syncBuffer) *Mesh {
	t.Helper()
	cfg := Config{Seed: 31, Options: func(name string, o *node.Options) {
		o.RoutingArea = 1
		if keep {
			o.RecordsFile = filepath.Join(dir, name)
		}
	}}
	if log != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "d", "e"}
	if err := m.AddNodes(names...); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"a", "b"}, {"b", "c"}, {"d", "c"}, {"d", "e"}, {"e", "a"}, {"b", "d"}} {
		if err := m.Link(l[0], l[1], LinkParams{Delay: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.RunUntil(fullRoutes(m, names), 5*time.Second); !ok {
		t.Fatalf("not converged\n%s", dump(m))
	}
	// Link costs settle as probes measure the links (the first records are re-signed with them):
	// restart from a quiet mesh, so that what follows is the restart's doing.
	m.Run(10 * time.Second)
	return m
}

// fullRoutes is a condition: every node routes to every other.
func fullRoutes(m *Mesh, names []string) func() bool {
	return func() bool {
		for _, n := range names {
			nd := m.Node(n)
			if nd.Node == nil || len(nd.Routes()) != len(names)-1 {
				return false
			}
		}
		return true
	}
}

// A node that restarts with the records it kept (written at Close, read back and verified at
// start) asks its neighbours for none: it holds every record their summaries list, takes its own
// back and reaches full routes. The same restart without the file pulls its area's records.
func TestRestartWithKeptRecords(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	restart := func(keep bool) (afterBoot, final routing.Stats) {
		m := keptMesh(t, t.TempDir(), keep, nil)
		if err := m.Restart("c"); err != nil {
			t.Fatal(err)
		}
		afterBoot = m.Node("c").RoutingStats()
		if _, ok := m.RunUntil(fullRoutes(m, names), 3*time.Second); !ok {
			t.Fatalf("records kept %v: no full routes after the restart\n%s", keep, dump(m))
		}
		m.Run(time.Second)
		for _, n := range names {
			if n != "c" && m.Node(n).RoutingStats().Originated != 2 {
				t.Fatalf("records kept %v: %s signed a record because of the restart\n%s", keep, n, dump(m))
			}
		}
		return afterBoot, m.Node("c").RoutingStats()
	}

	boot, final := restart(true)
	if boot.Accepted != 4 {
		t.Fatalf("restarted node restored %d records from its file, want the 4 other nodes'", boot.Accepted)
	}
	if final.Accepted != boot.Accepted || final.Requested != 0 || final.CertRequests != 0 {
		t.Fatalf("restarted node with its records kept: installed %d more, asked for %d records and %d certificates; want none",
			final.Accepted-boot.Accepted, final.Requested, final.CertRequests)
	}
	if final.Adopted != 1 || final.Originated != 0 {
		t.Fatalf("restarted node took back %d own records and signed %d, want its kept record taken back", final.Adopted, final.Originated)
	}

	boot, final = restart(false)
	if boot.Accepted != 0 || final.Requested < 4 {
		t.Fatalf("restart without the file: %d records at boot, %d asked for; want 0 and the area's 4", boot.Accepted, final.Requested)
	}
}

// A damaged kept-records file is reported and ignored: the node starts with an empty database,
// pulls its area's records and routes; it rewrites the file at its next save.
func TestRestartWithDamagedKeptRecords(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	dir := t.TempDir()
	var log syncBuffer
	m := keptMesh(t, dir, true, &log)
	if err := m.Kill("c"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no records kept at close: %v", err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Restart("c"); err != nil {
		t.Fatalf("a damaged file stopped the node: %v", err)
	}
	if !strings.Contains(log.String(), "kept routing records not used") || !strings.Contains(log.String(), "checksum does not match") {
		t.Fatalf("the damaged file was not reported:\n%s", log.String())
	}
	if got := m.Node("c").RoutingStats().Accepted; got != 0 {
		t.Fatalf("%d records restored from a damaged file", got)
	}
	if _, ok := m.RunUntil(fullRoutes(m, names), 3*time.Second); !ok {
		t.Fatalf("no full routes after a restart with a damaged file\n%s", dump(m))
	}
	if st := m.Node("c").RoutingStats(); st.Requested < 4 {
		t.Fatalf("asked for %d records after starting empty, want the area's 4", st.Requested)
	}
	// The next clean restart finds a good file again.
	if err := m.Restart("c"); err != nil {
		t.Fatal(err)
	}
	if got := m.Node("c").RoutingStats().Accepted; got != 4 {
		t.Fatalf("%d records restored from the file rewritten at close, want 4", got)
	}
}

// A gateway keeps its level-2 router's records too (beside the level-1 ones): restarted, it holds
// the other gateways' level-2 records from its file at once and receives none of them from its
// neighbours, where a gateway restarted empty receives all three (with their certificates). Level
// 2 does not take its own record back: the gateway signs a new one, as before.
func TestGatewayRestartWithKeptRecords(t *testing.T) {
	area := map[string]uint32{"a1": 1, "ga1": 1, "gb1": 2, "b1": 2, "gb2": 2, "gc1": 3, "c1": 3}
	names := []string{"a1", "ga1", "gb1", "b1", "gb2", "gc1", "c1"}
	restart := func(keep bool) (boot, final routing.Stats) {
		dir := t.TempDir()
		m, err := New(Config{Seed: 23, Options: func(name string, o *node.Options) {
			o.RoutingArea, o.RoutingGateway = area[name], name[0] == 'g'
			if keep {
				o.RecordsFile = filepath.Join(dir, name)
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.AddNodes(names...); err != nil {
			t.Fatal(err)
		}
		// gb1, the gateway restarted, dials both its neighbours.
		for _, l := range [][2]string{{"ga1", "a1"}, {"ga1", "gb1"}, {"b1", "gb1"}, {"b1", "gb2"}, {"gb2", "gc1"}, {"gc1", "c1"}} {
			if err := m.Link(l[0], l[1], LinkParams{Delay: 2 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		gw := m.Node("gb1")
		l2Held := func() bool {
			st, _ := gw.Level2RoutingStats()
			return st.Accepted >= 3
		}
		if _, ok := m.RunUntil(l2Held, 10*time.Second); !ok {
			t.Fatalf("level 2 not converged\n%s", dump(m))
		}
		m.Run(10 * time.Second)
		if err := m.Restart("gb1"); err != nil {
			t.Fatal(err)
		}
		gw = m.Node("gb1")
		boot, _ = gw.Level2RoutingStats()
		if _, ok := m.RunUntil(l2Held, 5*time.Second); !ok {
			t.Fatalf("records kept %v: level 2 not back after the restart\n%s", keep, dump(m))
		}
		m.Run(5 * time.Second)
		final, _ = gw.Level2RoutingStats()
		return boot, final
	}
	keptBoot, kept := restart(true)
	_, empty := restart(false)
	if keptBoot.Accepted != 3 {
		t.Fatalf("restarted gateway restored %d level-2 records, want the 3 other gateways'", keptBoot.Accepted)
	}
	if kept.Accepted != keptBoot.Accepted || kept.Duplicates != 0 || empty.Accepted != 3 {
		t.Fatalf("restarted gateway installed %d level-2 records from its neighbours (%d duplicates) with its records kept, %d without; want none and 3",
			kept.Accepted-keptBoot.Accepted, kept.Duplicates, empty.Accepted)
	}
}
