package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

// Node is an enrolled node's connection to the control plane, authenticated by mutual TLS with
// its X.509-SVID. It is safe for concurrent use.
type Node struct {
	base    string
	key     *identity.NodeKey
	timeout time.Duration
	now     func() time.Time

	mu     sync.Mutex
	bundle *Bundle
	hc     *http.Client

	requests atomic.Uint64 // HTTP requests sent (Requests)
}

// Requests returns how many HTTP requests the node has sent to the control plane: what a node
// costs the control plane, counted where it is spent.
func (n *Node) Requests() uint64 { return n.requests.Load() }

// counting is an http.RoundTripper that counts the requests it carries.
type counting struct {
	next http.RoundTripper
	n    *atomic.Uint64
}

func (c counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// CloseIdleConnections passes on to the transport, as http.Client.CloseIdleConnections expects.
func (c counting) CloseIdleConnections() {
	if t, ok := c.next.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// NodeOptions adjust a Node.
type NodeOptions struct {
	Timeout time.Duration // per request, default 30 s (CRL long polls add their wait)
	Now     func() time.Time
}

// NewNode returns a client for an enrolled node.
func NewNode(baseURL string, key *identity.NodeKey, b *Bundle, opts NodeOptions) (*Node, error) {
	n := &Node{base: baseURL, key: key, timeout: opts.Timeout, now: opts.Now}
	if n.timeout == 0 {
		n.timeout = 30 * time.Second
	}
	if n.now == nil {
		n.now = time.Now
	}
	if err := n.install(b); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) install(b *Bundle) error {
	cert := b.TLSCertificate(n.key)
	hc, err := Trust{CA: b.CAX509}.httpClient(n.base, &cert, n.timeout)
	if err != nil {
		return err
	}
	hc.Transport = counting{next: hc.Transport, n: &n.requests}
	n.mu.Lock()
	old := n.hc
	n.bundle, n.hc = b, hc
	n.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

func (n *Node) client() (*http.Client, *Bundle) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hc, n.bundle
}

// Bundle returns the current bundle.
func (n *Node) Bundle() *Bundle {
	_, b := n.client()
	return b
}

// Close releases idle connections.
func (n *Node) Close() {
	hc, _ := n.client()
	hc.CloseIdleConnections()
}

// Renew asks for a new certificate for the same keys and installs it.
func (n *Node) Renew(ctx context.Context) (*Bundle, error) {
	hc, cur := n.client()
	var raw api.Bundle
	if err := call(ctx, hc, http.MethodPost, n.base, "/api/v1/renew", nil, nil, &raw); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	b, err := parseBundle(raw, n.key.Public(), cur.Certificate.Name, cur.CA.SignPublicKey.ID().String(), n.now())
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if err := n.install(b); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	return b, nil
}

// FetchCRL fetches the CA's revocation list. With wait > 0 it long-polls: the control plane answers
// as soon as a list numbered above after exists, or when wait has passed. The list's signature is
// checked against the bundle's CA; the caller installs it in its verifiers (which refuse rollback).
func (n *Node) FetchCRL(ctx context.Context, after uint64, wait time.Duration) (*meshca.RevocationList, error) {
	hc, b := n.client()
	path := "/api/v1/crl"
	if wait > 0 {
		path += "?after=" + strconv.FormatUint(after, 10) + "&wait=" + strconv.Itoa(int(wait/time.Second))
		ctx2, cancel := context.WithTimeout(ctx, wait+n.timeout)
		defer cancel()
		ctx = ctx2
	}
	var data []byte
	if err := call(ctx, hc, http.MethodGet, n.base, path, nil, nil, &data); err != nil {
		return nil, fmt.Errorf("fetch revocation list: %w", err)
	}
	l, err := meshca.DecodeRevocationListPEM(data)
	if err != nil {
		return nil, fmt.Errorf("fetch revocation list: %w", err)
	}
	if err := l.CheckSignature(b.CA.SignPublicKey); err != nil {
		return nil, fmt.Errorf("fetch revocation list: %w", err)
	}
	return l, nil
}

// Report sends the node's status; the answer carries the current revocation list number.
func (n *Node) Report(ctx context.Context, r *api.MeshReport) (*api.ReportAccepted, error) {
	hc, b := n.client()
	if err := r.Validate(b.Certificate.Name); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var out api.ReportAccepted
	if err := call(ctx, hc, http.MethodPost, n.base, "/api/v1/mesh/report", nil, r, &out); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &out, nil
}

// RunRenewal renews the certificate at two thirds of its lifetime until ctx ends, calling onRenew
// (if set) with every new bundle. A failed renewal is retried with backoff (10 s doubling to 5 min,
// or sooner if the server says so), never later than the certificate's expiry.
func (n *Node) RunRenewal(ctx context.Context, log *slog.Logger, onRenew func(*Bundle)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := 10 * time.Second
	for {
		b := n.Bundle()
		wait := b.Raw.RenewAfter.Sub(n.now())
		if wait < 0 {
			wait = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		nb, err := n.Renew(ctx)
		if err == nil {
			backoff = 10 * time.Second
			log.Info("certificate renewed", "serial", nb.Raw.Serial, "not_after", nb.Raw.NotAfter)
			if onRenew != nil {
				onRenew(nb)
			}
			continue
		}
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
			return fmt.Errorf("renewal refused (revoked or unknown node; enroll again): %w", err)
		}
		delay := backoff
		if ae != nil && ae.RetryAfter > 0 {
			delay = ae.RetryAfter
		}
		if left := b.Certificate.NotAfter.Sub(n.now()); left <= 0 {
			return fmt.Errorf("certificate expired before it could be renewed: %w", err)
		} else if delay > left {
			delay = left / 2
		}
		log.Warn("certificate renewal failed; retrying", "err", err, "in", delay)
		backoff = min(backoff*2, 5*time.Minute)
		t = time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		// Renew right away on the next turn of the loop: RenewAfter has passed.
	}
}

// Files of a saved bundle.
const (
	BundleFile = "bundle.json"
	CertFile   = "node.crt"
	SVIDFile   = "node-svid.pem"
	CAFile     = "ca.crt"
	CAX509File = "ca-x509.pem"
	CRLFile    = "crl.pem"
)

// Save writes the bundle into dir: bundle.json (everything) and the separate PEM files the CLI's
// `cert` commands read. Files are written atomically and replaced.
func (b *Bundle) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save bundle: %w", err)
	}
	j, err := json.MarshalIndent(b.Raw, "", "  ")
	if err != nil {
		return fmt.Errorf("save bundle: %w", err)
	}
	for _, f := range []struct{ name, data string }{
		{CertFile, b.Raw.CertificatePEM}, {SVIDFile, b.Raw.SVIDPEM}, {CAFile, b.Raw.CAPEM}, {CAX509File, b.Raw.CAX509PEM},
		{CRLFile, b.Raw.CRLPEM}, {BundleFile, string(j) + "\n"},
	} {
		if err := secfile.Write(filepath.Join(dir, f.name), []byte(f.data), 0o644, true); err != nil {
			return fmt.Errorf("save bundle: %w", err)
		}
	}
	return nil
}

// LoadBundle reads a bundle saved by Save and checks it against the node's key as on enrollment.
func LoadBundle(dir string, key *identity.NodeKey, now time.Time) (*Bundle, error) {
	data, err := secfile.Read(filepath.Join(dir, BundleFile), maxResponse)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	var raw api.Bundle
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	b, err := parseBundle(raw, key.Public(), raw.Name, "", now)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	return b, nil
}
