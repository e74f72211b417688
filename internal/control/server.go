package control

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/netguard"
	"x0tta6bl4/internal/secfile"
)

const serverKeyFile = "control.key"

// Options are the parts of a server that are not configuration.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Appliers carry out enacted governance actions of the types governance itself does not apply
	// (plan prices, detector model, healing thresholds); see docs/governance.md.
	Appliers map[governance.ActionType]governance.Applier
	// CRLPoll is how often the revocation list is re-read from the database as a backstop to
	// notifications; 0 means DefaultCRLPoll. Tests lengthen it to show notifications alone suffice.
	CRLPoll time.Duration
}

// Server is the control plane: the HTTP API over the store and the mesh CA.
type Server struct {
	cfg     Config
	log     *slog.Logger
	version string
	now     func() time.Time
	started time.Time

	st     *store.Store
	ca     *meshca.Store
	caCert *meshca.Certificate
	caX509 *x509.Certificate
	caPin  string

	detector    detector.Predictor // ai.model, nil without one; never modified after New
	detectorSHA [32]byte           // the SHA-256 of detector's file
	roots       *x509.CertPool
	td          string

	hasher                 *auth.Hasher
	ipLim, keyLim, authLim *auth.Limiter
	m                      *metrics

	crl        crlHolder
	crlWaiters chan struct{}
	crlPoll    time.Duration
	records    recordsState   // signed link-state records handed to nodes (records.go)
	proofs     recordsState   // destination proofs handed to the nodes of other areas (proofs.go)
	recorder   reportRecorder // reports recorded for training (reportlog.go)
	policy     policyState    // the mesh access policy (policy.go)
	adv        advisor        // cost advisories from the detector (advisory.go)
	bill       *billingState  // plans, invoices, payments; nil when billing is disabled (billing_watch.go)
	gov        govState       // member governance (governance.go)
	appliers   map[governance.ActionType]governance.Applier
	revokeMu   sync.Mutex // one revocation at a time in this process (the database serialises instances)

	tlsKey  *identity.NodeKey
	tlsCert atomic.Pointer[tls.Certificate]
	// classicCert is served to clients that cannot verify ML-DSA-65; classicIssuer re-issues it
	// (nil with an operator's certificate).
	classicCert   atomic.Pointer[tls.Certificate]
	classicIssuer *classicalIssuer

	dbHealth atomic.Pointer[dbHealth]

	apiListener, metricsListener atomic.Pointer[netguard.Listener] // set by Serve, for metrics and tests

	// The mesh view is rebuilt at most once a second, and at once after a change (viewGen), so
	// many viewers and the metrics scrape share one build.
	viewMu    sync.Mutex
	viewCache *meshView
	viewGen   atomic.Uint64
	// viewEvents wakes the console's event streams when the view may have changed.
	viewEvents   *generation
	eventStreams chan struct{} // one slot per open event stream
	scores       scoreCache    // the map's anomaly scores
	closing      chan struct{} // closed when Serve begins to shut down: event streams end
	closeOnce    sync.Once
	// sdKick wakes the node service discovery writer (nodesd.go); buffered, never blocks.
	sdKick chan struct{}

	handler http.Handler
	routes  []*route
}

type dbHealth struct {
	ok bool
	at time.Time
}

// New opens the store and the CA named by cfg and builds the API. It fails if `control init` has
// not been run (no CA or no server key).
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: opts.Logger, version: opts.Version, now: opts.Now, crlPoll: opts.CRLPoll, sdKick: make(chan struct{}, 1)}
	s.appliers = map[governance.ActionType]governance.Applier{governance.ActionPrices: governance.ApplierFunc(s.applyPlanPrices)}
	maps.Copy(s.appliers, opts.Appliers)
	if s.crlPoll <= 0 {
		s.crlPoll = DefaultCRLPoll
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now()
	detector, sum, err := loadDetector(cfg.AI.Model)
	if err != nil {
		return nil, err
	}
	s.detector, s.detectorSHA = detector, sum
	if detector != nil {
		s.log.Info("detector model loaded", "model", modelSource(cfg.AI.Model), "version", detector.Version(), "sha256", fmt.Sprintf("%x", sum))
	}
	ca, err := meshca.OpenStore(cfg.CADir)
	if err != nil {
		return nil, fmt.Errorf("control: open CA (run 'x0tta6bl4 control init' first): %w", err)
	}
	s.ca, s.caCert, s.caX509 = ca, ca.CA().Certificate(), ca.X509CA()
	s.td = s.caCert.TrustDomain
	s.caPin = s.caCert.SignPublicKey.ID().String()
	s.roots = x509.NewCertPool()
	s.roots.AddCert(s.caX509)
	crl, err := ca.RevocationList()
	if err != nil {
		return nil, fmt.Errorf("control: read revocation list: %w", err)
	}
	if !cfg.InsecureDev {
		if s.tlsKey, err = identity.LoadNodeKeyFile(filepath.Join(cfg.DataDir, serverKeyFile)); err != nil {
			return nil, fmt.Errorf("control: server key (run 'x0tta6bl4 control init' first): %w", err)
		}
		if cfg.TLS.ClassicalCertFile != "" {
			c, err := loadOperatorCertificate(cfg.TLS.ClassicalCertFile, cfg.TLS.ClassicalKeyFile)
			if err != nil {
				return nil, err
			}
			s.classicCert.Store(c)
		} else {
			ca, caKey, leafKey, err := loadClassicalCA(cfg.DataDir)
			if err != nil {
				return nil, fmt.Errorf("control: classical certificate authority (run 'x0tta6bl4 control init' again): %w", err)
			}
			s.classicIssuer = &classicalIssuer{ca: ca, caKey: caKey, leafKey: leafKey, names: classicalNames(cfg)}
		}
	}
	p := auth.Params{Time: cfg.Auth.Argon2.Time, MemoryKiB: cfg.Auth.Argon2.MemoryKiB, Threads: cfg.Auth.Argon2.Threads}
	if s.hasher, err = auth.NewHasher(p, cfg.Auth.MaxConcurrentHash, cfg.Auth.HashWait); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	rl := cfg.RateLimits
	if s.ipLim, err = auth.NewLimiter(rl.PerIP, rl.MaxTracked); err != nil {
		return nil, fmt.Errorf("control: rate_limits.per_ip: %w", err)
	}
	if s.keyLim, err = auth.NewLimiter(rl.PerKey, rl.MaxTracked); err != nil {
		return nil, fmt.Errorf("control: rate_limits.per_key: %w", err)
	}
	if s.authLim, err = auth.NewLimiter(rl.Auth, rl.MaxTracked); err != nil {
		return nil, fmt.Errorf("control: rate_limits.auth: %w", err)
	}
	s.crlWaiters = make(chan struct{}, cfg.Limits.MaxCRLWaiters)
	s.viewEvents = newGeneration(0)
	s.eventStreams = make(chan struct{}, maxEventStreams)
	s.closing = make(chan struct{})
	if s.st, err = store.Open(ctx, store.Config{
		Driver: cfg.Database.Driver, Path: cfg.Database.Path, DSN: cfg.Database.DSN,
		Synchronous: cfg.Database.Synchronous, MaxOpenConns: cfg.Database.MaxOpenConns, QueryTimeout: cfg.Database.QueryTimeout,
	}); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.dbHealth.Store(&dbHealth{ok: true, at: s.now()})
	s.crl.set(crl)
	s.m = newMetrics(s)
	if err := s.initCRL(ctx, crl); err != nil {
		s.st.Close()
		return nil, err
	}
	if s.bill, err = newBilling(cfg.Billing, s.m.reg); err != nil {
		s.st.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := s.initRecords(ctx); err != nil {
		s.st.Close()
		return nil, err
	}
	if err := s.initPolicy(ctx); err != nil {
		s.st.Close()
		return nil, err
	}
	s.m.crlNumber.Set(float64(s.crl.get().list.Number))
	s.routes = s.buildRoutes()
	s.handler = s.buildHandler()
	if !cfg.InsecureDev {
		if err := s.renewServerCert(); err != nil {
			s.st.Close()
			return nil, err
		}
	}
	return s, nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// CAPin is the hex key ID of the CA key, which join tokens carry and clients check.
func (s *Server) CAPin() string { return s.caPin }

// Store returns the server's store.
func (s *Server) Store() *store.Store { return s.st }

// Close releases the store.
func (s *Server) Close() error { return s.st.Close() }

// TLSConfig is the API's server configuration, TLS 1.3 only, chosen per ClientHello:
//
//   - a client that asks for the mesh CA (ALPN api.MeshCAProtocol: our CLI, client library and
//     nodes) and accepts ML-DSA-65 signatures gets the server's ML-DSA-65 X.509-SVID and must
//     agree X25519MLKEM768. A client
//     certificate is optional (operators use tokens), but one that is presented must be a valid,
//     unrevoked X.509-SVID of this trust domain, or the handshake fails;
//   - any other client (browsers, curl, Prometheus) gets the classical certificate and may fall
//     back to X25519 unless tls.require_hybrid is set; no client certificate is asked for, so node
//     mutual TLS never runs over a classical certificate or group.
func (s *Server) TLSConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}
	pq := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.tlsCert.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.CurveID != tls.X25519MLKEM768 {
				return fmt.Errorf("key exchange %v refused: this certificate needs X25519MLKEM768", cs.CurveID)
			}
			s.countHandshake(cs, "ml-dsa-65")
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := s.verifyNodeChain(cs.PeerCertificates)
			return err
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
	classicCurves := []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
	if s.cfg.TLS.RequireHybrid {
		classicCurves = classicCurves[:1]
	}
	classic := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: classicCurves,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.classicCert.Load(), nil
		},
		ClientAuth: tls.NoClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) != 0 {
				return errors.New("client certificates need the ML-DSA-65 server certificate")
			}
			s.countHandshake(cs, classicalKind(s.classicCert.Load()))
			return nil
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := s.tlsCert.Load(); c != nil && slices.Contains(hello.SupportedProtos, api.MeshCAProtocol) && hello.SupportsCertificate(c) == nil {
			return pq, nil
		}
		if s.classicCert.Load() == nil {
			return pq, nil
		}
		return classic, nil
	}
	return base
}

// countHandshake logs and counts a completed handshake by key-exchange group and certificate.
func (s *Server) countHandshake(cs tls.ConnectionState, cert string) {
	kind := "classical"
	if cs.CurveID == tls.X25519MLKEM768 {
		kind = "hybrid"
	}
	s.m.tlsHandshakes.WithLabelValues(cs.CurveID.String(), kind, cert).Inc()
	s.log.Debug("tls handshake", "group", cs.CurveID.String(), "key_exchange", kind, "certificate", cert,
		"resumed", cs.DidResume, "server_name", cs.ServerName)
}

func classicalKind(c *tls.Certificate) string {
	if c != nil {
		if _, ok := c.PrivateKey.(ed25519.PrivateKey); ok {
			return "ed25519"
		}
	}
	return "ecdsa-p256"
}

// nodePeer is a node authenticated by its X.509-SVID.
type nodePeer struct {
	name   string
	serial meshca.Serial
	keyID  identity.KeyID
}

// verifyNodeChain checks a client's X.509-SVID chain, its trust domain and node path, and the
// current revocation list.
func (s *Server) verifyNodeChain(chain []*x509.Certificate) (*nodePeer, error) {
	id, err := meshca.VerifySVID(chain[0], chain[1:], s.roots, s.now())
	if err != nil {
		return nil, err
	}
	if id.TrustDomain != s.td {
		return nil, fmt.Errorf("client %s is outside trust domain %s", id, s.td)
	}
	name, ok := cutNodePath(id.Path)
	if !ok || identity.ValidateNodeName(name) != nil {
		return nil, fmt.Errorf("client %s is not a node", id)
	}
	keyID, err := api.X509KeyID(chain[0])
	if err != nil {
		return nil, err
	}
	var serial meshca.Serial
	sb := chain[0].SerialNumber.Bytes()
	if len(sb) > len(serial) {
		return nil, errors.New("client certificate serial is too long")
	}
	copy(serial[len(serial)-len(sb):], sb)
	crl := s.crl.get().list
	if crl.RevokesSerial(serial) || crl.RevokesKey(keyID) {
		return nil, fmt.Errorf("client %s: %w (revocation list %d)", id, meshca.ErrRevoked, crl.Number)
	}
	return &nodePeer{name: name, serial: serial, keyID: keyID}, nil
}

func cutNodePath(p string) (string, bool) {
	const pre = "/node/"
	if len(p) <= len(pre) || p[:len(pre)] != pre {
		return "", false
	}
	return p[len(pre):], true
}

// renewServerCert issues the server a fresh X.509-SVID (spiffe://<td>/node/control) from the CA.
func (s *Server) renewServerCert() error {
	now := s.now()
	c, err := s.ca.Issue(meshca.IssueRequest{Name: api.ControlNodeName, PublicKey: s.tlsKey.Public(), Duration: s.cfg.TLS.CertDuration}, now)
	if err != nil {
		return fmt.Errorf("control: issue server certificate: %w", err)
	}
	svid, err := s.ca.CA().IssueSVID(s.caX509, c)
	if err != nil {
		return fmt.Errorf("control: issue server certificate: %w", err)
	}
	s.tlsCert.Store(&tls.Certificate{
		Certificate: [][]byte{svid.Raw, s.caX509.Raw},
		PrivateKey:  s.tlsKey.Sign.MLDSA(),
		Leaf:        svid,
	})
	s.log.Info("server certificate issued", "spiffe_id", svid.URIs[0].String(), "serial", c.Serial.String(),
		"not_after", svid.NotAfter.UTC().Format(time.RFC3339))
	if s.classicIssuer != nil {
		cc, err := s.classicIssuer.issue(now, s.cfg.TLS.CertDuration)
		if err != nil {
			return fmt.Errorf("control: issue classical certificate: %w", err)
		}
		s.classicCert.Store(cc)
		s.log.Info("classical certificate issued", "names", s.classicIssuer.names,
			"not_after", cc.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully. It also runs the
// background work: database health checks, server certificate renewal and cleanup of expired
// sessions, join tokens and old audit entries.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	gl, err := netguard.Wrap(ln, netguard.Config{Name: "api", MaxConns: s.cfg.Limits.MaxConnections,
		MaxConnsPerSource: s.cfg.Limits.MaxConnectionsPerSource, HandshakeTimeout: apiHandshakeTimeout,
		IdleTimeout: apiIdleTimeout, Logger: s.log})
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	s.apiListener.Store(gl)
	ln = gl
	if s.cfg.InsecureDev {
		s.log.Warn("INSECURE DEVELOPMENT MODE: serving plain HTTP without TLS; credentials and tokens cross the wire in clear text. Never use this outside a local machine.",
			"listen", ln.Addr().String())
	} else {
		ln = tls.NewListener(ln, s.TLSConfig())
	}
	srv := &http.Server{
		Handler:           s.handler,
		ConnState:         gl.HTTPConnState,
		ReadHeaderTimeout: apiHandshakeTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.Limits.MaxCRLWait + 30*time.Second,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	bg, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	wg.Add(2)
	go func() { defer wg.Done(); s.background(bg) }()
	go func() { defer wg.Done(); s.watchCRL(bg) }()
	if s.cfg.Metrics.NodeSD.File != "" {
		wg.Add(1)
		go func() { defer wg.Done(); s.runNodeSD(bg) }()
	}
	if s.bill != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.runBilling(bg) }()
	}
	wg.Go(func() { s.advisoryLoop(bg) })

	errc := make(chan error, 2)
	if s.cfg.Metrics.Listen != "" {
		ml, err := net.Listen("tcp", s.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("control: metrics listener: %w", err)
		}
		mln, err := netguard.Wrap(ml, netguard.Config{Name: "metrics", MaxConns: metricsMaxConns, MaxConnsPerSource: metricsMaxConnsPerSource,
			HandshakeTimeout: apiHandshakeTimeout, IdleTimeout: metricsIdleTimeout, Logger: s.log})
		if err != nil {
			ml.Close()
			return fmt.Errorf("control: metrics listener: %w", err)
		}
		s.metricsListener.Store(mln)
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.m.handler)
		msrv := &http.Server{Handler: mux, ConnState: mln.HTTPConnState, ReadHeaderTimeout: apiHandshakeTimeout, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: metricsIdleTimeout, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
		go func() {
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		defer msrv.Close()
		s.log.Info("plain-HTTP metrics listener (unauthenticated, /metrics only)", "addr", mln.Addr().String())
	}
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("control plane listening", "addr", ln.Addr().String(), "tls", !s.cfg.InsecureDev,
		"database", s.st.Driver(), "trust_domain", s.td, "ca_pin", s.caPin)
	select {
	case err := <-errc:
		return fmt.Errorf("control: serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.closeOnce.Do(func() { close(s.closing) })
	s.crl.wakeAll() // long-polling CRL readers return at once
	s.records.gen.wakeAll()
	s.proofs.gen.wakeAll()
	s.policy.gen.wakeAll()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control: %w", err)
	}
	return nil
}

// ListenAndServe listens on cfg.Listen and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return s.Serve(ctx, ln)
}

func (s *Server) background(ctx context.Context) {
	health := time.NewTicker(5 * time.Second)
	cleanup := time.NewTicker(10 * time.Minute)
	certCheck := time.NewTicker(time.Minute)
	defer health.Stop()
	defer cleanup.Stop()
	defer certCheck.Stop()
	s.cleanup(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := s.st.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Error("database health check failed", "err", err)
			}
			s.dbHealth.Store(&dbHealth{ok: err == nil, at: s.now()})
		case <-cleanup.C:
			s.cleanup(ctx)
		case <-certCheck.C:
			if c := s.tlsCert.Load(); c != nil {
				life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
				if s.now().After(c.Leaf.NotBefore.Add(life * 2 / 3)) {
					if err := s.renewServerCert(); err != nil {
						s.log.Error("server certificate renewal failed; will retry", "err", err)
					}
				}
			}
		}
	}
}

func (s *Server) cleanup(ctx context.Context) {
	now := s.now()
	if n, err := s.st.DeleteExpiredSessions(ctx, now.Add(-24*time.Hour)); err != nil {
		s.log.Error("cleanup sessions", "err", err)
	} else if n > 0 {
		s.log.Info("removed expired sessions", "count", n)
	}
	if n, err := s.st.DeleteJoinTokensBefore(ctx, now.Add(-7*24*time.Hour)); err != nil {
		s.log.Error("cleanup join tokens", "err", err)
	} else if n > 0 {
		s.log.Info("removed old join tokens", "count", n)
	}
	s.pruneRecorded(ctx) // also with recording off: what an earlier configuration recorded ages out
	if n, err := s.st.PruneAudit(ctx, now.Add(-s.cfg.AuditRetention)); err != nil {
		s.log.Error("prune audit log", "err", err)
	} else if n > 0 {
		s.log.Info("pruned audit log", "count", n)
	}
}

// Connection bounds (docs/control.md, "Limits"). A client has 10 s from connecting to sending a
// request head, TLS handshake included, and may keep a connection idle for two minutes; the
// listener cuts both tenfold when slots run short. The metrics listener serves a few scrapers.
const (
	apiHandshakeTimeout      = 10 * time.Second
	apiIdleTimeout           = 120 * time.Second
	metricsMaxConns          = 64
	metricsMaxConnsPerSource = 16
	metricsIdleTimeout       = time.Minute
)

// InitOptions describe a new control plane installation.
type InitOptions struct {
	TrustDomain string
	CAName      string
	CAGroups    []string
	CADuration  time.Duration
	// Admin, if set, is the name of a first admin account to create, with an admin API key.
	Admin string
	// AdminPassword is its password; empty makes an account that logs in with API keys only.
	AdminPassword string
	// DAOMembers, if set, make the genesis roster of member governance (docs/governance.md): the
	// first entry of the governance log, also written to <data_dir>/genesis-roster.pem for nodes.
	DAOMembers []governance.Member
}

// GenesisRosterFile is the genesis roster's file in the data directory.
const GenesisRosterFile = "genesis-roster.pem"

// InitResult is what Init made.
type InitResult struct {
	GenesisRoster string // the genesis roster file, when DAOMembers were given
	GenesisHash   string // its hash, hex: what node operators pin
	CreatedCA     bool
	CAPin         string
	TrustDomain   string
	AdminAPIKey   string // shown once
	// Classical identifies the certificate served to clients without ML-DSA-65, for pinning.
	Classical *ClassicalPins
}

// Init prepares cfg.DataDir: a mesh CA (unless cfg.CADir already holds one), the server's key, the
// database schema, and optionally a first admin with an API key.
func Init(ctx context.Context, cfg Config, opts InitOptions, now time.Time) (*InitResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("control init: %w", err)
	}
	res := &InitResult{}
	ca, err := meshca.OpenStore(cfg.CADir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control init: %w", err)
		}
		if opts.TrustDomain == "" {
			return nil, errors.New("control init: no CA in " + cfg.CADir + "; give a trust domain to create one")
		}
		if opts.CAName == "" {
			opts.CAName = "mesh-ca"
		}
		if opts.CADuration == 0 {
			opts.CADuration = 10 * 365 * 24 * time.Hour
		}
		ca, err = meshca.InitStore(cfg.CADir, meshca.CAOptions{TrustDomain: opts.TrustDomain, Name: opts.CAName,
			Groups: opts.CAGroups, Duration: opts.CADuration}, now)
		if err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		res.CreatedCA = true
	} else if opts.TrustDomain != "" && opts.TrustDomain != ca.CA().Certificate().TrustDomain {
		return nil, fmt.Errorf("control init: the CA in %s is for trust domain %q, not %q", cfg.CADir,
			ca.CA().Certificate().TrustDomain, opts.TrustDomain)
	}
	res.CAPin = ca.CA().Certificate().SignPublicKey.ID().String()
	if cfg.TLS.ClassicalCertFile == "" {
		if res.Classical, err = initClassical(cfg.DataDir, now); err != nil {
			return nil, fmt.Errorf("control init: classical certificate authority: %w", err)
		}
	} else {
		c, err := loadOperatorCertificate(cfg.TLS.ClassicalCertFile, cfg.TLS.ClassicalKeyFile)
		if err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		if res.Classical, err = classicalPins("", nil, c.Leaf.PublicKey); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
	}
	res.TrustDomain = ca.CA().Certificate().TrustDomain
	keyPath := filepath.Join(cfg.DataDir, serverKeyFile)
	if _, err := identity.LoadNodeKeyFile(keyPath); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("control init: %w", err)
		}
		k, err := identity.GenerateNodeKey()
		if err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		if err := identity.WriteNodeKeyFile(keyPath, k, false); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
	}
	st, err := store.Open(ctx, store.Config{Driver: cfg.Database.Driver, Path: cfg.Database.Path, DSN: cfg.Database.DSN,
		Synchronous: cfg.Database.Synchronous, MaxOpenConns: cfg.Database.MaxOpenConns})
	if err != nil {
		return nil, fmt.Errorf("control init: %w", err)
	}
	defer st.Close()
	if len(opts.DAOMembers) > 0 {
		genesis, err := governance.Genesis(res.TrustDomain, opts.DAOMembers)
		if err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		if err := InitGovernance(ctx, st, genesis, now); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		res.GenesisRoster = filepath.Join(cfg.DataDir, GenesisRosterFile)
		if err := secfile.Write(res.GenesisRoster, genesis.EncodePEM(), 0o644, true); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		res.GenesisHash = hexHash(genesis.Hash())
	}
	if opts.Admin == "" {
		return res, nil
	}
	if err := validUsername(opts.Admin); err != nil {
		return nil, fmt.Errorf("control init: admin name: %w", err)
	}
	hash := ""
	if opts.AdminPassword != "" {
		if err := auth.CheckPassword(opts.AdminPassword, cfg.Auth.MinPasswordLen); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		p := auth.Params{Time: cfg.Auth.Argon2.Time, MemoryKiB: cfg.Auth.Argon2.MemoryKiB, Threads: cfg.Auth.Argon2.Threads}
		h, err := auth.NewHasher(p, 1, time.Minute)
		if err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
		if hash, err = h.Hash(ctx, opts.AdminPassword); err != nil {
			return nil, fmt.Errorf("control init: %w", err)
		}
	}
	tok, err := auth.NewToken(auth.KindAPIKey)
	if err != nil {
		return nil, fmt.Errorf("control init: %w", err)
	}
	err = st.InTx(ctx, func(tx *store.Tx) error {
		u := &store.User{Username: opts.Admin, PasswordHash: hash, Role: string(auth.Admin), CreatedAt: now}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		k := &store.APIKey{Prefix: tok.Prefix, Hash: tok.Hash(), UserID: u.ID, Name: "created by control init", Role: string(auth.Admin), CreatedAt: now}
		if err := tx.CreateAPIKey(ctx, k); err != nil {
			return err
		}
		for _, e := range []*store.AuditEntry{
			{At: now, Actor: "system:init", Action: "user.register", Target: opts.Admin, Detail: "role=admin"},
			{At: now, Actor: "system:init", Action: "apikey.create", Target: tok.Prefix, Detail: "owner=" + opts.Admin + " role=admin"},
		} {
			if err := tx.AddAudit(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("control init: user %q already exists", opts.Admin)
		}
		return nil, fmt.Errorf("control init: %w", err)
	}
	res.AdminAPIKey = tok.String()
	return res, nil
}
