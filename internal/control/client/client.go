// Package client talks to the control plane: a node enrolls with a join token (Enroll), then
// renews its certificate, fetches revocation lists and reports its status over mutual TLS with its
// X.509-SVID (Node); operators' tools call the admin API with an API key (API).
//
// It must never send a private key anywhere (enrollment sends the public key file only), never
// accept a control plane other than spiffe://<trust-domain>/node/control certified by the pinned
// or configured CA, never accept a bundle whose certificate is not for the node's own keys, and
// never read an unbounded response.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// maxResponse bounds any response body read (a bundle with a large revocation list is the
// largest: up to ~4.5 MB of PEM).
const maxResponse = 8 << 20

// Error is an error answer from the API.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter is set from a 429's or 503's Retry-After header.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("control plane: %d %s: %s", e.Status, e.Code, e.Message)
}

// Trust says how a client recognises the control plane.
type Trust struct {
	// CAPin is the hex key ID of the CA's ML-DSA-65 key (what join tokens carry, and what
	// `control init` prints). The server sends the CA certificate in its chain; it is accepted only
	// if its key has this ID.
	CAPin string
	// CA is the CA's X.509 certificate (ca-x509.pem), an alternative to CAPin.
	CA *x509.Certificate
	// AllowHTTP permits http:// URLs (a control plane run with --insecure-dev on loopback). Nothing
	// is authenticated then; never use it across a network.
	AllowHTTP bool
}

// serverTLS returns a TLS 1.3, X25519MLKEM768-only configuration that accepts only the control
// plane's X.509-SVID certified by the trusted CA, presenting client (if any) for mutual TLS.
func (t Trust) serverTLS(client *tls.Certificate) (*tls.Config, error) {
	var pin identity.KeyID
	if t.CA == nil {
		b, err := hex.DecodeString(t.CAPin)
		if err != nil || len(b) != len(pin) {
			return nil, errors.New("client: need the CA pin (64 hex digits) or the CA certificate to trust the control plane")
		}
		copy(pin[:], b)
	}
	verify := func(cs tls.ConnectionState) error {
		chain := cs.PeerCertificates
		if len(chain) == 0 {
			return errors.New("control plane sent no certificate")
		}
		root := t.CA
		if root == nil {
			// The server sends [leaf, CA]; the CA is trusted only if its key is the pinned one.
			cand := chain[len(chain)-1]
			id, err := api.X509KeyID(cand)
			if err != nil || id != pin || !cand.IsCA || cand.CheckSignatureFrom(cand) != nil {
				return fmt.Errorf("control plane's CA does not match the pinned CA key %s", t.CAPin)
			}
			root = cand
		}
		roots := x509.NewCertPool()
		roots.AddCert(root)
		id, err := meshca.VerifySVID(chain[0], chain[1:], roots, time.Now())
		if err != nil {
			return fmt.Errorf("control plane certificate: %w", err)
		}
		if id.Path != "/node/"+api.ControlNodeName {
			return fmt.Errorf("server %s is not the control plane (want …/node/%s)", id, api.ControlNodeName)
		}
		return nil
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		// The chain and the SPIFFE identity are checked in VerifyConnection, by the SVID rules
		// instead of host names.
		InsecureSkipVerify: true,
		VerifyConnection:   verify,
		// The last entry asks for the mesh CA's ML-DSA-65 chain (api.MeshCAProtocol); it is
		// never selected. "h2" is left to transports that set ForceAttemptHTTP2 (they add it), so
		// a plain http.Transport built on this configuration does not negotiate a protocol it
		// would not speak.
		NextProtos: []string{"http/1.1", api.MeshCAProtocol},
	}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	return cfg, nil
}

// TLSConfig is the client TLS configuration that accepts only the trusted control plane, for
// callers that build their own HTTP transport.
func (t Trust) TLSConfig() (*tls.Config, error) { return t.serverTLS(nil) }

func (t Trust) httpClient(base string, client *tls.Certificate, timeout time.Duration) (*http.Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("client: control plane URL %q: want https://host:port", base)
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		ResponseHeaderTimeout: timeout, ForceAttemptHTTP2: true,
	}
	switch u.Scheme {
	case "https":
		if tr.TLSClientConfig, err = t.serverTLS(client); err != nil {
			return nil, err
		}
	case "http":
		if !t.AllowHTTP {
			return nil, fmt.Errorf("client: %s is plain HTTP; only a --insecure-dev control plane on loopback serves it (allow it explicitly)", base)
		}
	default:
		return nil, fmt.Errorf("client: control plane URL scheme %q: want https", u.Scheme)
	}
	return &http.Client{Transport: tr, Timeout: timeout + 10*time.Second}, nil
}

// call sends one request and decodes a JSON answer into out (unless out is nil).
func call(ctx context.Context, hc *http.Client, method, base, path string, header http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("client: %s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		var ae api.Error
		if json.Unmarshal(data, &ae) == nil && ae.Error != "" {
			e.Code, e.Message = ae.Error, ae.Message
		} else {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			var secs int
			if _, err := fmt.Sscan(ra, &secs); err == nil && secs > 0 {
				e.RetryAfter = time.Duration(secs) * time.Second
			}
		}
		return e
	}
	if out == nil {
		return nil
	}
	switch o := out.(type) {
	case *[]byte:
		*o = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Bundle is a node's verified enrollment: its certificates, the CA and the revocation list.
type Bundle struct {
	Raw         api.Bundle
	Certificate *meshca.Certificate
	SVID        *x509.Certificate
	CA          *meshca.Certificate
	CAX509      *x509.Certificate
	CRL         *meshca.RevocationList
	// Records are the signed records of the enrolment answer, within their bounds but not
	// verified (node.LearnRecords verifies each); empty in a renewed or loaded bundle.
	Records api.MeshRecords
}

// TLSCertificate is the node's X.509-SVID with its ML-DSA-65 key, for mutual TLS.
func (b *Bundle) TLSCertificate(key *identity.NodeKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{b.SVID.Raw}, PrivateKey: key.Sign.MLDSA(), Leaf: b.SVID}
}

// Verifier returns a mesh certificate verifier trusting the bundle's CA and holding its
// revocation list.
func (b *Bundle) Verifier() (*meshca.Verifier, error) {
	v, err := meshca.NewVerifier(b.CA)
	if err != nil {
		return nil, err
	}
	if _, err := v.UpdateCRL(b.CRL); err != nil {
		return nil, err
	}
	return v, nil
}

func decodeX509(s string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want one PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseBundle decodes and checks a bundle: the CA is the pinned one (if pin is set) in both forms,
// the certificate is for this node's name and keys and verifies against the CA and its revocation
// list, and the X.509-SVID carries the same identity and key.
func parseBundle(raw api.Bundle, pub *identity.NodePublicKey, name, pin string, now time.Time) (*Bundle, error) {
	b := &Bundle{Raw: raw}
	var err error
	if b.CA, err = meshca.DecodeCertificatePEM([]byte(raw.CAPEM)); err != nil {
		return nil, fmt.Errorf("bundle CA: %w", err)
	}
	if b.CAX509, err = decodeX509(raw.CAX509PEM); err != nil {
		return nil, fmt.Errorf("bundle CA (X.509): %w", err)
	}
	caID := b.CA.SignPublicKey.ID()
	if x509ID, err := api.X509KeyID(b.CAX509); err != nil || x509ID != caID {
		return nil, errors.New("bundle: the X.509 CA certificate is not the mesh CA's key")
	}
	if pin != "" && caID.String() != pin {
		return nil, fmt.Errorf("bundle: CA key %s is not the pinned CA %s", caID, pin)
	}
	if b.Certificate, err = meshca.DecodeCertificatePEM([]byte(raw.CertificatePEM)); err != nil {
		return nil, fmt.Errorf("bundle certificate: %w", err)
	}
	if b.SVID, err = decodeX509(raw.SVIDPEM); err != nil {
		return nil, fmt.Errorf("bundle X.509-SVID: %w", err)
	}
	if b.CRL, err = meshca.DecodeRevocationListPEM([]byte(raw.CRLPEM)); err != nil {
		return nil, fmt.Errorf("bundle revocation list: %w", err)
	}
	c := b.Certificate
	if c.Name != name {
		return nil, fmt.Errorf("bundle: certificate is for %q, not %q", c.Name, name)
	}
	if !bytes.Equal(c.KEMPublicKey.Bytes(), pub.KEM.Bytes()) || !bytes.Equal(c.SignPublicKey.Bytes(), pub.Sign.Bytes()) {
		return nil, errors.New("bundle: certificate is not for this node's keys")
	}
	v, err := b.Verifier()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if err := v.Verify(c, now); err != nil {
		return nil, fmt.Errorf("bundle certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(b.CAX509)
	id, err := meshca.VerifySVID(b.SVID, nil, roots, now)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if id != c.SPIFFEID() {
		return nil, fmt.Errorf("bundle: X.509-SVID is for %s, certificate for %s", id, c.SPIFFEID())
	}
	if kid, err := api.X509KeyID(b.SVID); err != nil || kid != pub.Sign.ID() {
		return nil, errors.New("bundle: X.509-SVID is not for this node's key")
	}
	return b, nil
}

// EnrollOptions adjust Enroll.
type EnrollOptions struct {
	// Trust overrides the trust taken from the token's CA pin (e.g. AllowHTTP for a development
	// control plane).
	Trust Trust
	// Timeout bounds the request (default 30 s).
	Timeout time.Duration
	// Now is the clock for checking the bundle; nil: time.Now.
	Now func() time.Time
	// RoutingArea, if set, is the node's routing area: the enrolment answer then carries the signed
	// records of that area only (api.EnrollRequest).
	RoutingArea *uint32
}

// Enroll enrolls a node: it sends the join token, the node's name and its public key file (never
// the private key) and returns the verified bundle. The token as `ctl token create` prints it
// carries the CA pin, which is checked both on the TLS connection and on the bundle's CA.
func Enroll(ctx context.Context, baseURL, token string, key *identity.NodeKey, name string, opts EnrollOptions) (*Bundle, error) {
	tok, pin, err := auth.SplitJoinToken(strings.TrimSpace(token))
	if err != nil {
		return nil, fmt.Errorf("enroll: join token: %w", err)
	}
	if err := identity.ValidateNodeName(name); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	trust := opts.Trust
	if trust.CAPin == "" {
		trust.CAPin = pin
	}
	if pin != "" && trust.CAPin != pin {
		return nil, errors.New("enroll: the token's CA pin differs from the configured one")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	hc, err := trust.httpClient(baseURL, nil, timeout)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	defer hc.CloseIdleConnections()
	pub := key.Public()
	var raw api.Enrolment
	req := api.EnrollRequest{Token: tok, Name: name, PublicKey: string(identity.MarshalNodePublicKey(pub)), RoutingArea: opts.RoutingArea}
	if err := call(ctx, hc, http.MethodPost, baseURL, "/api/v1/enroll", nil, req, &raw); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	pinWant := trust.CAPin
	if trust.CA != nil {
		id, err := api.X509KeyID(trust.CA)
		if err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
		pinWant = id.String()
	}
	b, err := parseBundle(raw.Bundle, pub, name, pinWant, now())
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	// The token is used up by now, so records out of bounds do not fail the enrolment: they are
	// dropped, and the node fetches the records itself.
	if raw.Records.Validate() == nil {
		b.Records = raw.Records
	}
	return b, nil
}
