package federated_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/sim"
)

// flMesh is a mesh of netstack nodes in this process on 127.0.0.1 UDP ports: "coord" and
// participants p1…pn in a binary tree rooted at coord (so most updates cross relays).
type flMesh struct {
	*pki
	names []string
	nodes map[string]*node.Node
}

func newFLMesh(t *testing.T, n int) *flMesh {
	t.Helper()
	names := []string{"coord"}
	groups := map[string][]string{"coord": {"fl"}}
	for i := 1; i <= n; i++ {
		names = append(names, "p"+strconv.Itoa(i))
		groups[names[i]] = []string{"fl"}
	}
	m := &flMesh{pki: newPKI(t, "fl.test", groups), names: names, nodes: map[string]*node.Node{}}
	fw := firewall.Config{
		Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Group: "fl"}},
		Outbound: []firewall.Rule{{Proto: "any", Port: "any", Group: "fl"}},
	}
	for i, name := range names {
		opts := node.Options{Key: m.keys[name], Cert: m.certs[name], CA: []*meshca.Certificate{m.ca.Certificate()},
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Device: node.DeviceNetstack, Firewall: fw, Logger: slog.New(slog.DiscardHandler)}
		if i > 0 {
			parent := names[(i-1)/2]
			opts.Peers = []node.Peer{{Addr: m.nodes[parent].UDPAddr(), Cert: m.certs[parent]}}
		}
		nd, err := node.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { nd.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		m.nodes[name] = nd
	}
	// Routes, then one end-to-end session per participant with the coordinator.
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range names[1:] {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := m.nodes[name].Ping(ctx, m.certs["coord"].Overlay)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s cannot reach coord: %v", name, err)
			}
		}
	}
	return m
}

func (m *flMesh) dial(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	n := m.nodes[name]
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, err
		}
		return n.Device().Net.DialContextTCPAddrPort(ctx, ap)
	}
}

func (m *flMesh) wireBytes() uint64 {
	var s uint64
	for _, n := range m.nodes {
		s += n.Status().Stats.TxBytes
	}
	return s
}

// flRun is one federated training run over the mesh.
type flRun struct {
	rounds   int
	cfg      federated.CoordinatorConfig
	data     map[string][]detector.Graph
	poisoned map[string]bool // send −10 × their honest update in train rounds
	port     uint16
}

type flResult struct {
	model   *detector.Model
	results []*federated.RoundResult
	wire    []uint64 // UDP bytes sent by all nodes during each round
	stats   map[string]federated.ParticipantStats
	annSize int
}

func (m *flMesh) run(t *testing.T, r flRun) flResult {
	t.Helper()
	coordNode := m.nodes["coord"]
	ln, err := coordNode.Device().Net.ListenTCPAddrPort(netip.AddrPortFrom(coordNode.Addr(), r.port))
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.Key, r.cfg.Verifier, r.cfg.Group = m.keys["coord"].Sign, m.ver, "fl"
	co, err := federated.NewCoordinator(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := co.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := flResult{stats: map[string]federated.ParticipantStats{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	finals := map[string]*detector.Model{}
	for _, name := range m.names[1:] {
		cfg := federated.ParticipantConfig{Key: m.keys[name].Sign, Cert: m.certs[name], Coordinator: m.certs["coord"], Verifier: m.ver,
			Port: r.port, Dial: m.dial(name), Poll: 20 * time.Millisecond, Data: r.data[name]}
		if r.poisoned[name] {
			data := r.data[name]
			cfg.Local = func(a *federated.Announcement) (*federated.Update, error) {
				u, err := federated.LocalUpdate(a, data, 99)
				if err == nil && a.Kind == federated.KindTrain {
					for i := range u.Delta {
						u.Delta[i] *= -10
					}
				}
				return u, err
			}
		}
		p, err := federated.NewParticipant(cfg)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			final, err := p.Run(ctx, func(err error) {
				// A poll before the first round finds no announcement; on a loaded machine a request
				// may time out and its retry arrive after the round closed (the rounds' own checks
				// below still want every update). Anything else is a failure.
				switch {
				case errors.Is(err, context.Canceled) || isNoRound(err):
				case isTransient(err):
					t.Logf("%s (transient): %v", name, err)
				default:
					t.Errorf("%s: %v", name, err)
				}
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			finals[name], out.stats[name] = final, p.Stats()
		}()
	}
	n := len(m.names) - 1
	round := func(kind federated.Kind) {
		before := m.wireBytes()
		res, err := co.RunRound(ctx, kind, n, time.Minute)
		if err != nil || res.Accepted != n || res.Refused != 0 {
			t.Fatalf("%s round: %+v %v", kind, res, err)
		}
		out.results = append(out.results, res)
		out.wire = append(out.wire, m.wireBytes()-before)
	}
	round(federated.KindStats)
	for range r.rounds {
		round(federated.KindTrain)
	}
	if _, err := co.Open(federated.KindFinal); err != nil {
		t.Fatal(err)
	}
	out.annSize = len(co.Announcement())
	wg.Wait()
	out.model = co.Model()
	for name, f := range finals {
		if f == nil || f.Version() != out.model.Version() {
			t.Fatalf("%s did not get the final model", name)
		}
	}
	return out
}

// isTransient reports a request that timed out or lost its connection, or an update that arrived
// after its round closed (the retry of one that timed out).
func isTransient(err error) bool {
	var ne net.Error
	var refused *federated.RefusedError
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &refused) && refused.Status == 409 && strings.Contains(refused.Message, federated.ErrRound.Error())
}

func isNoRound(err error) bool {
	return strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "connection refused")
}

// TestRoundsOverMesh runs federated training between six mesh nodes (a coordinator and five
// participants, up to two relays apart) over their userspace TCP/IP stacks: HTTP between overlay
// addresses, through the encrypted overlay. Every round completes with all five updates; every
// participant ends with the coordinator's final model; the federated model is close to the centrally
// trained one; one poisoned participant of five (20 %) does not break the trimmed mean; an update
// posted from another node's address is refused.
func TestRoundsOverMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a six-node mesh")
	}
	const participants, rounds, local, lr = 5, 40, 3, 0.01
	m := newFLMesh(t, participants)
	data := map[string][]detector.Graph{}
	var all, test []detector.Graph
	for i, name := range m.names[1:] {
		for s := range 3 {
			g := federated.RingTask(uint64(i*10 + s))
			data[name] = append(data[name], g)
			all = append(all, g)
		}
	}
	for s := range 6 {
		test = append(test, federated.RingTask(uint64(1000+s)))
	}

	// A node cannot post another's update: p2 sends p1's certificate and signed update.
	t.Run("wrong source", func(t *testing.T) {
		coordNode := m.nodes["coord"]
		ln, err := coordNode.Device().Net.ListenTCPAddrPort(netip.AddrPortFrom(coordNode.Addr(), 7000))
		if err != nil {
			t.Fatal(err)
		}
		co, err := federated.NewCoordinator(federated.CoordinatorConfig{Key: m.keys["coord"].Sign, Verifier: m.ver, Model: detector.NewModel(3, 0, 8, 8, 2, 1)})
		if err != nil {
			t.Fatal(err)
		}
		srv := co.Serve(ln)
		defer srv.Close()
		co.Open(federated.KindStats)
		ctx := context.Background()
		for _, c := range []struct{ as, from string }{{"p1", "p2"}, {"p1", "p1"}} {
			p, err := federated.NewParticipant(federated.ParticipantConfig{Key: m.keys[c.as].Sign, Cert: m.certs[c.as], Coordinator: m.certs["coord"],
				Verifier: m.ver, Port: 7000, Dial: m.dial(c.from), Data: data[c.as]})
			if err != nil {
				t.Fatal(err)
			}
			a, _, err := p.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Answer(ctx, a)
			t.Logf("%s's update from %s: %v", c.as, c.from, err)
			var refused *federated.RefusedError
			if c.as != c.from && (!errors.As(err, &refused) || refused.Status != 403) {
				t.Fatalf("accepted from the wrong address: %v", err)
			}
			if c.as == c.from && err != nil {
				t.Fatal(err)
			}
		}
		if res, err := co.Close(); err != nil || res.Accepted != 1 || res.Refused != 1 {
			t.Fatalf("%+v %v", res, err)
		}
	})

	central := detector.NewModel(3, 0, 8, 8, 2, 1)
	train.Standardise(central, all)
	if _, err := train.Run(central, all, train.Config{Epochs: rounds * local, LR: lr, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	centralF1 := federated.HeldOutF1(central, test)

	base := federated.CoordinatorConfig{Model: detector.NewModel(3, 0, 8, 8, 2, 1), LocalEpochs: local, LR: lr, Seed: 1, FirstRound: 100}
	clean := m.run(t, flRun{rounds: rounds, cfg: base, data: data, port: federated.DefaultPort})
	// The transport changes nothing: the same rounds without HTTP give the same bits.
	if v := m.inProcess(t, base, rounds, data).Version(); v != clean.model.Version() {
		t.Fatalf("over the mesh: model %s; in process: %s", clean.model.Version(), v)
	}
	poisonedCfg := base
	poisoned := m.run(t, flRun{rounds: rounds, cfg: poisonedCfg, data: data, poisoned: map[string]bool{"p3": true}, port: federated.DefaultPort + 1})
	naiveCfg := base
	naiveCfg.Rule, naiveCfg.NoClip = federated.FedAvg, true
	naive := m.run(t, flRun{rounds: rounds, cfg: naiveCfg, data: data, poisoned: map[string]bool{"p3": true}, port: federated.DefaultPort + 2})

	cleanF1, poisonedF1, naiveF1 := federated.HeldOutF1(clean.model, test), federated.HeldOutF1(poisoned.model, test), federated.HeldOutF1(naive.model, test)
	t.Logf("F1 central %.3f, federated over the mesh %.3f; 1 of 5 poisoned: trimmed mean %.3f, unclipped FedAvg %.3f",
		centralF1, cleanF1, poisonedF1, naiveF1)
	logFigures(t, clean, participants)
	// With thresholds from validation graphs (not the test graphs), federated is 0.028 below
	// central here (0.937 against 0.909; docs/intelligence.md): the bound is 0.03, not 0.02.
	if cleanF1 < centralF1-0.03 || poisonedF1 < cleanF1-0.05 || naiveF1 > poisonedF1-0.1 {
		t.Fatalf("central %.3f federated %.3f poisoned %.3f naive %.3f", centralF1, cleanF1, poisonedF1, naiveF1)
	}
}

// inProcess runs the same rounds as run, calling the coordinator directly.
func (m *flMesh) inProcess(t *testing.T, cfg federated.CoordinatorConfig, rounds int, data map[string][]detector.Graph) *detector.Model {
	t.Helper()
	cfg.Key, cfg.Verifier, cfg.Group = m.keys["coord"].Sign, m.ver, "fl"
	co, err := federated.NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for r := range rounds + 1 {
		kind := federated.KindTrain
		if r == 0 {
			kind = federated.KindStats
		}
		if _, err := co.Open(kind); err != nil {
			t.Fatal(err)
		}
		a, err := federated.DecodeAnnouncement(co.Announcement(), m.certs["coord"].SignPublicKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range m.names[1:] {
			id := m.keys[name].Sign.PublicKey().ID()
			sum := sha256.Sum256(id[:]) // Participant's seed
			u, err := federated.LocalUpdate(a, data[name], binary.BigEndian.Uint64(sum[:]))
			if err != nil {
				t.Fatal(err)
			}
			ub, err := federated.Encode(m.keys[name].Sign, *u)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := co.Submit(m.certs[name].Overlay, federated.EncodeEnvelope(m.certs[name], ub)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := co.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return co.Model()
}

func logFigures(t *testing.T, r flResult, n int) {
	var upd, env int
	var compute time.Duration
	for _, s := range r.stats {
		upd, env = s.LastUpdateSize, s.LastEnvelope
		compute = max(compute, s.Compute)
	}
	t.Logf("model %d parameters: X6FU update %d B (of which 3309 B signature), envelope with certificate %d B, final announcement %d B",
		len(r.model.Params()), upd, env, r.annSize)
	for i, res := range r.results {
		if i < 3 || i == len(r.results)-1 {
			t.Logf("round %d (%s): %d updates, %d B of update bodies, %s, %d B of UDP sent by the %d nodes",
				res.Round, res.Kind, res.Accepted, res.Bytes, res.Took.Round(time.Millisecond), r.wire[i], n+1)
		}
	}
	var took time.Duration
	var wire uint64
	for i, res := range r.results[1:] {
		took += res.Took
		wire += r.wire[i+1]
	}
	k := time.Duration(len(r.results) - 1)
	t.Logf("train rounds: mean %s, %d B of UDP each (all nodes, including link probes); the slowest participant computed (trained and signed) %s per round",
		(took / k).Round(time.Millisecond), wire/uint64(k), (compute / time.Duration(len(r.results))).Round(time.Millisecond))
}

// TestRoundsOverMeshSim is the same with simulator telemetry (one seed per participant) and the
// detector's real size; it takes minutes, so it runs only with X0TTA6BL4_FL_SIM=1.
func TestRoundsOverMeshSim(t *testing.T) {
	if os.Getenv("X0TTA6BL4_FL_SIM") == "" {
		t.Skip("set X0TTA6BL4_FL_SIM=1")
	}
	participants, _ := strconv.Atoi(os.Getenv("X0TTA6BL4_FL_N"))
	if participants == 0 {
		participants = 5
	}
	const rounds = 3
	m := newFLMesh(t, participants)
	data := map[string][]detector.Graph{}
	for i, name := range m.names[1:] {
		var gs []detector.Graph
		var err error
		for seed := uint64(i + 1); seed < 10000; seed += 1000 { // a seed whose topology cannot hold every fault: the next
			if gs, err = experiment.Generate(experiment.DataConfig{Seeds: []uint64{seed}, Nodes: 50, Duration: 20 * time.Second, Faults: experiment.DefaultFaults}); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		data[name] = gs
	}
	r := m.run(t, flRun{rounds: rounds, cfg: federated.CoordinatorConfig{Model: detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 32, 32, int(sim.NumKinds), 1), Seed: 1},
		data: data, port: federated.DefaultPort})
	logFigures(t, r, participants)
	fmt.Fprintln(os.Stderr, "done")
}
