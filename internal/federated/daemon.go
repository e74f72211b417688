package federated

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/telemetry"
)

// A daemon's part in the rounds (the federated: section of node.yaml, docs/intelligence.md
// "Federated rounds in the daemon"): a participant keeps a window of its own telemetry, labelled by
// its healing loop's judgement of its neighbours, and answers the coordinator's rounds from it; a
// coordinator runs a statistics round, the train rounds and the final round, and writes the model.

// Window is a node's own telemetry, one sample per telemetry interval, newest last: each sample is
// the node's ego graph (itself with its telemetry, its neighbours missing, its links with its own
// counters on them), built by reports.Build as GET /ai/predict builds a mesh, then labelled: a
// neighbour the healing loop penalises as a blackhole or grey hole carries that class, everything
// else is normal. Labels never touch the features.
type Window struct {
	mu       sync.Mutex
	size     int
	samples  []detector.Graph
	last     time.Time
	labelled int // node-samples ever added with a fault label
}

// NewWindow keeps the newest size samples.
func NewWindow(size int) *Window { return &Window{size: max(size, 1)} }

// Add appends the sample of vector v (a new interval; an interval already added is ignored) with
// the healing loop's view of the neighbours.
func (w *Window) Add(self string, v telemetry.Vector, heal []node.HealPeer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !v.At.After(w.last) {
		return
	}
	w.last = v.At
	g := OwnGraph(self, v, heal)
	for _, y := range g.Y {
		if y != 0 {
			w.labelled++
		}
	}
	if len(w.samples) == w.size {
		w.samples = slices.Delete(w.samples, 0, 1)
	}
	w.samples = append(w.samples, g)
}

// Len is the number of samples held.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.samples)
}

// Labelled is the number of node-samples ever added with a fault label.
func (w *Window) Labelled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.labelled
}

// Graphs returns the newest n samples.
func (w *Window) Graphs(n int) []detector.Graph {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.samples[max(0, len(w.samples)-n):])
}

// OwnGraph is the labelled ego graph of one telemetry vector (see Window).
func OwnGraph(self string, v telemetry.Vector, heal []node.HealPeer) detector.Graph {
	names := append([]string{self}, v.Peers...)
	own := &api.MeshReport{Features: v.NodeMap()}
	for i, p := range v.Peers {
		own.Peers = append(own.Peers, api.PeerReport{Name: p, State: api.PeerUp, Features: v.EdgeMap(i)})
	}
	latest := make([]*api.MeshReport, len(names))
	fresh := make([]bool, len(names))
	latest[0], fresh[0] = own, true
	mg := reports.Build(names, latest, fresh)
	g := detector.Robust(&mg.Graph)
	g.Y = make([]int, len(names))
	for _, h := range heal {
		if !h.Penalised || (h.Class != "blackhole" && h.Class != "greyhole") {
			continue
		}
		if v, ok := mg.Index[h.Name]; ok && v > 0 {
			g.Y[v], _ = reports.ClassOf(h.Class)
		}
	}
	return g
}

// DaemonConfig configures RunDaemon.
type DaemonConfig struct {
	Node     *node.Node
	Key      *identity.SigningKey // the node's
	Verifier *meshca.Verifier     // the mesh CA
	// Settings is the federated section, with Defaults applied and validated.
	Settings node.FederatedFile
	// Coordinator is the coordinator's certificate (participants).
	Coordinator *meshca.Certificate
	// Window, if set, is the participant's window (nil: one of Settings.Window).
	Window *Window
	// Save writes the final model (Settings.ModelOut); nil: detector.Model.Save.
	Save   func(m *detector.Model, path string) error
	Logger *slog.Logger
}

// RunDaemon takes the node's part in federated training until the final model (which it returns)
// or until ctx ends.
func RunDaemon(ctx context.Context, cfg DaemonConfig) (*detector.Model, error) {
	if cfg.Node == nil || cfg.Key == nil || cfg.Verifier == nil {
		return nil, errors.New("federated: the daemon needs the node, its key and the mesh CA")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Save == nil {
		cfg.Save = func(m *detector.Model, path string) error { return m.Save(path) }
	}
	log := cfg.Logger.With("component", "federated", "role", cfg.Settings.Role)
	var (
		m   *detector.Model
		err error
	)
	if cfg.Settings.Role == "coordinator" {
		m, err = runCoordinator(ctx, cfg, log)
	} else {
		m, err = runParticipant(ctx, cfg, log)
	}
	if err != nil {
		return nil, err
	}
	if out := cfg.Settings.ModelOut; out != "" {
		if err := cfg.Save(m, out); err != nil {
			return m, fmt.Errorf("federated: model_out: %w", err)
		}
		log.Info("federated model written", "path", out, "version", m.Version())
	}
	return m, nil
}

// dialer dials from the node's overlay address: through its netstack, or the kernel's sockets over
// its TUN device.
func dialer(n *node.Node) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if d := n.Device(); d != nil && d.Net != nil {
		return func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return d.Net.DialContextTCPAddrPort(ctx, ap)
		}
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: n.Addr().AsSlice()}}
	return d.DialContext
}

func listen(n *node.Node, port int) (net.Listener, error) {
	ap := netip.AddrPortFrom(n.Addr(), uint16(port))
	if d := n.Device(); d != nil && d.Net != nil {
		return d.Net.ListenTCPAddrPort(ap)
	}
	return net.Listen("tcp", ap.String())
}

func runParticipant(ctx context.Context, cfg DaemonConfig, log *slog.Logger) (*detector.Model, error) {
	s := cfg.Settings
	if cfg.Coordinator == nil {
		return nil, errors.New("federated: a participant needs the coordinator's certificate")
	}
	n := cfg.Node
	w := cfg.Window
	if w == nil {
		w = NewWindow(int(s.Window / telemetry.Interval))
	}
	self := n.Certificate().Name
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(telemetry.Interval)
		defer t.Stop()
		for {
			if v, ok := n.Telemetry(); ok {
				w.Add(self, v, n.Heal().Peers)
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	id := cfg.Key.PublicKey().ID()
	sum := sha256.Sum256(id[:])
	seed := binary.BigEndian.Uint64(sum[:])
	p, err := NewParticipant(ParticipantConfig{Key: cfg.Key, Cert: n.Certificate(), Coordinator: cfg.Coordinator, Verifier: cfg.Verifier,
		Port: uint16(s.Port), Dial: dialer(n), Poll: time.Second,
		Local: func(a *Announcement) (*Update, error) {
			data := w.Graphs(s.MaxSamples)
			if len(data) == 0 {
				return nil, errors.New("federated: no telemetry sample yet")
			}
			return LocalUpdate(a, data, seed)
		}})
	if err != nil {
		return nil, err
	}
	log.Info("taking part in federated rounds", "coordinator", cfg.Coordinator.Name, "window", s.Window, "max_samples", s.MaxSamples)
	return p.Run(ctx, func(err error) { log.Debug("federated round", "err", err) })
}

func runCoordinator(ctx context.Context, cfg DaemonConfig, log *slog.Logger) (*detector.Model, error) {
	s := cfg.Settings
	initial, err := defaultmodel.Base()
	if err != nil {
		return nil, err
	}
	c, err := NewCoordinator(CoordinatorConfig{Key: cfg.Key, Verifier: cfg.Verifier, Group: s.Group, Model: initial,
		LocalEpochs: s.LocalEpochs, LR: s.LR, Rule: Rule(s.Rule), Trim: s.Trim, NoClip: s.Clip != nil && !*s.Clip, Krum: s.Krum,
		MaxParticipants: max(s.Participants, DefaultMaxParticipants)})
	if err != nil {
		return nil, err
	}
	ln, err := listen(cfg.Node, s.Port)
	if err != nil {
		return nil, fmt.Errorf("federated: listen: %w", err)
	}
	srv := c.Serve(ln)
	keep := false // after the final round the announcement stays published
	defer func() {
		if !keep {
			srv.Close()
		}
	}()
	log.Info("coordinating federated rounds", "port", s.Port, "participants", s.Participants, "rounds", s.Rounds)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(s.StartAfter):
	}
	// The statistics round must succeed (it sets the normalisation): it is retried until it does.
	for {
		res, err := c.RunRound(ctx, KindStats, s.Participants, s.RoundTimeout)
		if err == nil {
			log.Info("federated statistics round", "round", res.Round, "updates", res.Accepted, "refused", res.Refused)
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		log.Warn("federated statistics round failed; again", "err", err)
	}
	for r := range s.Rounds {
		res, err := c.RunRound(ctx, KindTrain, s.Participants, s.RoundTimeout)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			log.Warn("federated train round failed", "round", r+1, "err", err)
			continue
		}
		log.Info("federated train round", "round", res.Round, "updates", res.Accepted, "refused", res.Refused, "clip_norm", res.ClipNorm)
	}
	if _, err := c.Open(KindFinal); err != nil {
		return nil, err
	}
	m := c.Model()
	// The final announcement stays published until the daemon stops, for participants that poll late.
	keep = true
	go func() { <-ctx.Done(); srv.Close() }()
	return m, nil
}
