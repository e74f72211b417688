package federated

// HTTP between overlay addresses (docs/federated.md): the coordinator serves the round announcement
// and takes updates; a participant polls, trains, and posts. The caller supplies the listener and the
// dialer, so the same code runs over a node's userspace netstack or its kernel TUN device.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// DefaultPort is the coordinator's TCP port on its overlay address.
const DefaultPort = 7446

// Paths.
const (
	PathRound  = "/fl/v1/round"
	PathUpdate = "/fl/v1/update"
)

const maxErrorBody = 1024

// Handler serves GET PathRound (the signed announcement) and POST PathUpdate (an update envelope).
// The request's source address is its mesh identity: run it only on a listener bound to the node's
// overlay address.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathRound, func(w http.ResponseWriter, r *http.Request) {
		b, etag := c.announcement()
		if b == nil {
			http.Error(w, "no round open", http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified) // a poll: same round as last time
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	mux.HandleFunc("POST "+PathUpdate, func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "no source address", http.StatusForbidden)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.MaxBody()))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				c.Submit(ap.Addr(), nil) // counted as refused
				http.Error(w, fmt.Sprintf("body larger than %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "read: "+err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := c.Submit(ap.Addr(), body); err != nil {
			http.Error(w, err.Error(), StatusOf(err))
			return
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "accepted\n")
	})
	return mux
}

// StatusOf maps a Submit error to its HTTP status.
func StatusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorised), errors.Is(err, ErrBadUpdate):
		return http.StatusForbidden
	case errors.Is(err, ErrRound), errors.Is(err, ErrDuplicate), errors.Is(err, ErrFull):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Serve serves the coordinator on ln (the node's overlay address, e.g. its netstack's
// ListenTCPAddrPort or a kernel socket bound to the TUN address) with bounded headers and timeouts.
// Shut it down with the returned server's Close.
func (c *Coordinator) Serve(ln net.Listener) *http.Server {
	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
	go srv.Serve(ln)
	return srv
}

// ParticipantConfig configures a Participant. Zero values take the defaults shown.
type ParticipantConfig struct {
	Key  *identity.SigningKey // this node's ML-DSA-65 key
	Cert *meshca.Certificate  // this node's certificate (sent with every update)
	// Coordinator is the coordinator node's certificate: its overlay address is dialled and its key
	// must have signed every announcement.
	Coordinator *meshca.Certificate
	Verifier    *meshca.Verifier
	Port        uint16 // DefaultPort
	// Dial opens TCP connections from this node's overlay address (a netstack's DialContext, or
	// net.Dialer for a TUN device).
	Dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	Timeout time.Duration // per request, 30 s
	Poll    time.Duration // between polls in Run, 100 ms
	// Data is this node's own labelled telemetry.
	Data []detector.Graph
	// Local, if set, replaces LocalUpdate(a, Data, …) (experiments: a poisoned participant).
	Local func(a *Announcement) (*Update, error)
	Now   func() time.Time
}

// Participant takes part in a coordinator's rounds. Use one goroutine per Participant.
type Participant struct {
	cfg    ParticipantConfig
	client *http.Client
	base   string
	seed   uint64

	mu    sync.Mutex
	last  uint32
	seen  bool
	stats ParticipantStats
	cur   *Announcement // the last verified announcement, and its entity tag
	etag  string
}

// ParticipantStats counts a participant's traffic (HTTP bodies, not headers).
type ParticipantStats struct {
	Announcements  int // announcements fetched and verified
	Polls          int // polls answered "not modified"
	AnnounceBytes  int
	Updates        int           // updates accepted by the coordinator
	UpdateBytes    int           // envelope bytes posted
	Refused        int           // announcements or updates refused (by either side)
	LastUpdateSize int           // the X6FU update alone
	LastEnvelope   int           // the whole request body
	Compute        time.Duration // spent computing local updates (training) and signing
}

// NewParticipant checks cfg: the key must be the certificate's, and the coordinator's certificate
// must verify against the CA.
func NewParticipant(cfg ParticipantConfig) (*Participant, error) {
	if cfg.Key == nil || cfg.Cert == nil || cfg.Coordinator == nil || cfg.Verifier == nil || cfg.Dial == nil {
		return nil, errors.New("federated: participant needs a key, its certificate, the coordinator's, a verifier and a dialer")
	}
	if cfg.Cert.SignPublicKey == nil || cfg.Cert.SignPublicKey.ID() != cfg.Key.PublicKey().ID() {
		return nil, errors.New("federated: certificate does not belong to the key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Verifier.Verify(cfg.Coordinator, cfg.Now()); err != nil {
		return nil, fmt.Errorf("federated: coordinator certificate: %w", err)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	id := cfg.Key.PublicKey().ID()
	sum := sha256.Sum256(id[:])
	return &Participant{
		cfg:    cfg,
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{DialContext: cfg.Dial, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}},
		base:   "http://" + netip.AddrPortFrom(cfg.Coordinator.Overlay, cfg.Port).String(),
		seed:   binary.BigEndian.Uint64(sum[:]),
	}, nil
}

// Stats returns the participant's counters.
func (p *Participant) Stats() ParticipantStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Fetch gets and verifies the current announcement. A round older than one already seen is refused
// (ErrBadAnnouncement); fresh reports whether the round is newer than the last one this participant
// answered.
func (p *Participant) Fetch(ctx context.Context) (a *Announcement, fresh bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+PathRound, nil)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	p.mu.Unlock()
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.stats.Polls++
		if p.cur == nil {
			return nil, false, errors.New("federated: coordinator answered 304 to a first request")
		}
		return p.cur, !p.seen || p.cur.Round > p.last, nil
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, false, fmt.Errorf("federated: coordinator: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnnouncementSize+1))
	if err != nil {
		return nil, false, err
	}
	if err := p.cfg.Verifier.Verify(p.cfg.Coordinator, p.cfg.Now()); err != nil {
		return nil, false, fmt.Errorf("federated: coordinator certificate: %w", err)
	}
	a, err = DecodeAnnouncement(b, p.cfg.Coordinator.SignPublicKey)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.stats.Refused++
		return nil, false, err
	}
	if p.seen && a.Round < p.last {
		p.stats.Refused++
		return nil, false, fmt.Errorf("%w: round %d is older than round %d", ErrBadAnnouncement, a.Round, p.last)
	}
	p.stats.Announcements++
	p.stats.AnnounceBytes += len(b)
	p.cur, p.etag = a, resp.Header.Get("ETag")
	return a, !p.seen || a.Round > p.last, nil
}

// Answer computes this node's update for a and posts it. The round counts as answered once the
// coordinator has replied, whatever it said.
func (p *Participant) Answer(ctx context.Context, a *Announcement) error {
	local := p.cfg.Local
	if local == nil {
		local = func(a *Announcement) (*Update, error) { return LocalUpdate(a, p.cfg.Data, p.seed) }
	}
	start := time.Now()
	u, err := local(a)
	if err != nil {
		return err
	}
	u.Round = a.Round
	ub, err := Encode(p.cfg.Key, *u)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.stats.Compute += time.Since(start)
	p.mu.Unlock()
	return p.post(ctx, a.Round, ub)
}

// post sends an encoded update (exported behaviour through Answer; tests use it for forged ones).
func (p *Participant) post(ctx context.Context, round uint32, ub []byte) error {
	body := EncodeEnvelope(p.cfg.Cert, ub)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+PathUpdate, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	p.mu.Lock()
	defer p.mu.Unlock()
	if round >= p.last || !p.seen {
		p.last, p.seen = round, true
	}
	if resp.StatusCode != http.StatusOK {
		p.stats.Refused++
		return &RefusedError{Status: resp.StatusCode, Message: string(bytes.TrimSpace(msg))}
	}
	p.stats.Updates++
	p.stats.UpdateBytes += len(body)
	p.stats.LastUpdateSize, p.stats.LastEnvelope = len(ub), len(body)
	return nil
}

// RefusedError is the coordinator's refusal of an update.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("federated: coordinator refused the update: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Run takes part until the coordinator publishes the final model, which it returns, or ctx ends.
// Errors on one poll (network, a refused announcement or update) are reported through onError (if
// set) and the loop goes on.
func (p *Participant) Run(ctx context.Context, onError func(error)) (*detector.Model, error) {
	report := func(err error) {
		if onError != nil && err != nil && ctx.Err() == nil {
			onError(err)
		}
	}
	for {
		a, fresh, err := p.Fetch(ctx)
		switch {
		case err != nil:
			report(err)
		case a.Kind == KindFinal:
			return a.Model, nil
		case fresh:
			err := p.Answer(ctx, a)
			if err == nil {
				continue
			}
			report(err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(p.cfg.Poll):
		}
	}
}
