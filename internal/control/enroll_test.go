package control

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

type testNode struct {
	name   string
	key    *identity.NodeKey
	bundle *client.Bundle
	c      *client.Node
}

func (h *harness) enrollNode(t *testing.T, a *client.API, name string, groups ...string) *testNode {
	t.Helper()
	return h.enrollNodeInArea(t, a, name, nil, groups...)
}

// enrollNodeInArea is enrollNode naming a routing area in the request (nil: none).
func (h *harness) enrollNodeInArea(t *testing.T, a *client.API, name string, area *uint32, groups ...string) *testNode {
	t.Helper()
	tok, err := a.CreateJoinToken(t.Context(), api.CreateJoinTokenRequest{Groups: groups, Description: "for " + name})
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Enroll(t.Context(), h.url, tok.Token, key, name, client.EnrollOptions{RoutingArea: area})
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	c, err := client.NewNode(h.url, key, b, client.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &testNode{name: name, key: key, bundle: b, c: c}
}

// TestEnrollmentEndToEnd: a control plane and three nodes enrol over TLS; their certificates pass
// the mesh verifier; they renew and report over mutual TLS; one is revoked, the others learn of it
// by long-polling the revocation list, the verifier then refuses its certificate, and its own
// mutual-TLS calls are refused.
func TestEnrollmentEndToEnd(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		ctx := t.Context()
		admin := h.apiClient(h.adminKey)
		nodes := map[string]*testNode{}
		for _, name := range []string{"alpha", "beta", "gamma"} {
			nodes[name] = h.enrollNode(t, admin, name, "web")
		}
		ca, err := meshca.DecodeCertificatePEM([]byte(nodes["alpha"].bundle.Raw.CAPEM))
		if err != nil {
			t.Fatal(err)
		}
		if ca.SignPublicKey.ID().String() != h.pin {
			t.Fatal("bundle CA is not the pinned CA")
		}
		verifier, err := meshca.NewVerifier(ca)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := verifier.UpdateCRL(nodes["alpha"].bundle.CRL); err != nil {
			t.Fatal(err)
		}
		for name, n := range nodes {
			c := n.bundle.Certificate
			if err := verifier.Verify(c, time.Now()); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if c.Name != name || c.Overlay != n.key.Public().OverlayAddress() || !c.InGroup("web") ||
				c.SPIFFEID().String() != "spiffe://"+testTD+"/node/"+name {
				t.Fatalf("%s certificate %+v", name, c)
			}
			if c.NotAfter.Sub(c.NotBefore) < 24*time.Hour {
				t.Fatalf("%s lifetime %s", name, c.NotAfter.Sub(c.NotBefore))
			}
		}

		// Renewal over mutual TLS: a new serial for the same keys.
		alpha := nodes["alpha"]
		old := alpha.bundle.Certificate.Serial
		nb, err := alpha.c.Renew(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if nb.Certificate.Serial == old || nb.Certificate.Overlay != alpha.bundle.Certificate.Overlay || verifier.Verify(nb.Certificate, time.Now()) != nil {
			t.Fatalf("renewed certificate %+v", nb.Certificate)
		}

		// Reports: a triangle, as each node sees it.
		for name, n := range nodes {
			rep := &api.MeshReport{Sequence: 1, Version: "0.1.0-test", UptimeSeconds: 42}
			for other := range nodes {
				if other == name {
					continue
				}
				rep.Peers = append(rep.Peers, api.PeerReport{Name: other, Overlay: nodes[other].bundle.Raw.Overlay, Endpoint: "127.0.0.1:4242",
					State: api.PeerUp, RTTMillis: 1.5, LossRatio: 0.01, TxBytes: 1000, RxBytes: 2000})
				rep.Routes = append(rep.Routes, api.RouteReport{Destination: other, NextHop: other, Cost: 1.5, Hops: 1})
			}
			acc, err := n.c.Report(ctx, rep)
			if err != nil {
				t.Fatalf("%s report: %v", name, err)
			}
			if !acc.Accepted || acc.CRLNumber != 1 {
				t.Fatalf("report answer %+v", acc)
			}
		}
		var status api.MeshStatus
		h.must(200, "GET", "/mesh/status", h.adminKey, nil, &status)
		if status.Counts.Online != 3 || status.Counts.Links != 3 || status.Counts.LinksConfirmed != 3 || len(status.Nodes) != 3 {
			t.Fatalf("mesh status %+v", status.Counts)
		}
		if status.Nodes[0].Name != "alpha" || status.Nodes[0].Version != "0.1.0-test" || status.Nodes[0].PeersUp != 2 || status.Nodes[0].Status != api.NodeOnline {
			t.Fatalf("alpha in mesh status %+v", status.Nodes[0])
		}
		var peers api.MeshPeers
		h.must(200, "GET", "/api/v1/mesh/peers", h.adminKey, nil, &peers)
		if len(peers.Links) != 6 || !peers.Links[0].Confirmed || peers.Links[0].From != "alpha" || peers.Links[0].To != "beta" || peers.Links[0].RTTMillis != 1.5 {
			t.Fatalf("peers %+v", peers.Links)
		}
		var routes api.MeshRoutes
		h.must(200, "GET", "/mesh/routes", h.adminKey, nil, &routes)
		if len(routes.Routes) != 6 || routes.Routes[0].NextHopLink == nil || routes.Routes[0].NextHopLink.LossRatio != 0.01 {
			t.Fatalf("routes %+v", routes.Routes)
		}

		// The keys endpoint returns the certified keys from the issued certificate.
		var keys api.NodeKeys
		keysBody := h.must(200, "GET", "/api/v1/nodes/alpha/keys", h.adminKey, nil, &keys).body
		kem, _ := base64.StdEncoding.DecodeString(keys.KEM.PublicKey)
		sig, _ := base64.StdEncoding.DecodeString(keys.Signature.PublicKey)
		if !bytes.Equal(kem, alpha.key.Public().KEM.Bytes()) || !bytes.Equal(sig, alpha.key.Public().Sign.Bytes()) ||
			keys.KEM.Size != 1216 || keys.Signature.Size != 1952 || !keys.CertificateOK || keys.Serial != nb.Certificate.Serial.String() ||
			keys.Algorithms.KEM != "ML-KEM-768+X25519 (X-Wing)" || keys.Algorithms.Signature != "ML-DSA-65" ||
			keys.Algorithms.TLS != "TLS 1.3 X25519MLKEM768 / ML-DSA-65" || keys.Overlay != alpha.bundle.Raw.Overlay {
			t.Fatalf("keys %+v", keys)
		}
		if r := h.do("GET", "/api/v1/nodes/nobody/keys", h.adminKey, nil); r.status != 404 {
			t.Fatalf("keys of an unknown node: %d", r.status)
		}
		if r := h.do("GET", "/api/v1/nodes/Bad%20Name/keys", h.adminKey, nil); r.status != 400 {
			t.Fatalf("keys for a bad name: %d", r.status)
		}
		// The seed API's deprecated name gives the same keys, says no handshake took place, and
		// names its successor.
		for _, path := range []string{"/security/handshake", "/api/v1/security/handshake"} {
			var hs api.HandshakeResponse
			r := h.must(200, "POST", path, h.adminKey, api.HandshakeRequest{Node: "alpha"}, &hs)
			if !reflect.DeepEqual(hs.NodeKeys, keys) || hs.LiveCheck.Performed || hs.LiveCheck.Reason == "" {
				t.Fatalf("%s: %+v", path, hs)
			}
			if link := r.header.Get("Link"); link != `</api/v1/nodes/alpha/keys>; rel="successor-version"` {
				t.Fatalf("%s: Link %q", path, link)
			}
			conformsTo(t, h, "HandshakeResponse", r.body)
		}
		conformsTo(t, h, "NodeKeys", keysBody)
		if r := h.do("POST", "/security/handshake", h.adminKey, api.HandshakeRequest{Node: "nobody"}); r.status != 404 {
			t.Fatalf("handshake unknown node: %d", r.status)
		}
		if r := h.do("POST", "/security/handshake", h.adminKey, api.HandshakeRequest{Node: "Bad Name"}); r.status != 400 {
			t.Fatalf("handshake bad name: %d", r.status)
		}

		// Beta keeps a connection open, then is revoked while alpha long-polls the revocation list.
		beta := nodes["beta"]
		if _, err := beta.c.Report(ctx, &api.MeshReport{Sequence: 2}); err != nil {
			t.Fatal(err)
		}
		got := make(chan *meshca.RevocationList, 1)
		errc := make(chan error, 1)
		go func() {
			l, err := alpha.c.FetchCRL(ctx, 1, 50*time.Second)
			if err != nil {
				errc <- err
				return
			}
			got <- l
		}()
		waitForCRLWaiter(t, h)
		rev, err := admin.Revoke(ctx, "beta")
		if err != nil {
			t.Fatal(err)
		}
		if rev.CRLNumber != 2 || len(rev.RevokedSerials) != 1 || rev.RevokedKeyID != beta.key.Sign.PublicKey().ID().String() {
			t.Fatalf("revoke %+v", rev)
		}
		var crl *meshca.RevocationList
		select {
		case crl = <-got:
		case err := <-errc:
			t.Fatal(err)
		}
		if crl.Number != 2 {
			t.Fatalf("long poll returned list %d", crl.Number)
		}
		if changed, err := verifier.UpdateCRL(crl); err != nil || !changed {
			t.Fatalf("update CRL: %v %v", changed, err)
		}
		if err := verifier.Verify(beta.bundle.Certificate, time.Now()); !errors.Is(err, meshca.ErrRevoked) {
			t.Fatalf("revoked beta verifies: %v", err)
		}
		for _, n := range []string{"alpha", "gamma"} {
			if err := verifier.Verify(nodes[n].bundle.Certificate, time.Now()); err != nil {
				t.Fatalf("%s after revoking beta: %v", n, err)
			}
		}
		// Beta's calls are refused: on the kept-alive connection by the per-request check, on a
		// new connection by the TLS handshake.
		if _, err := beta.c.Report(ctx, &api.MeshReport{Sequence: 3}); !isStatus(err, 403) {
			t.Fatalf("revoked node reporting on its open connection: %v", err)
		}
		beta.c.Close()
		// TLS 1.3 sends the client certificate last, so the refusal reaches the client as a
		// "bad certificate" alert or a reset, never as an HTTP answer.
		var httpErr *client.Error
		if _, err := beta.c.Renew(ctx); err == nil || errors.As(err, &httpErr) {
			t.Fatalf("revoked node renewing on a new connection: %v", err)
		}
		if _, err := admin.Revoke(ctx, "beta"); !isStatus(err, 409) {
			t.Fatalf("second revoke: %v", err)
		}
		if _, err := admin.Revoke(ctx, "nobody"); !isStatus(err, 404) {
			t.Fatalf("revoke unknown: %v", err)
		}
		// The long poll returns at once when a newer list exists; ETag answers 304.
		if l, err := alpha.c.FetchCRL(ctx, 1, 30*time.Second); err != nil || l.Number != 2 {
			t.Fatalf("fetch after revoke: %v", err)
		}
		if r := h.do("GET", "/api/v1/crl", "", nil, "If-None-Match", `"crl-2"`); r.status != 304 || r.header.Get("X-CRL-Number") != "2" {
			t.Fatalf("conditional CRL: %d", r.status)
		}
		h.must(200, "GET", "/api/v1/nodes/beta/keys", h.adminKey, nil, &keys)
		if keys.CertificateOK || !strings.Contains(keys.Verification, "revoked") {
			t.Fatalf("keys of revoked beta %+v", keys)
		}
		h.must(200, "GET", "/mesh/status", h.adminKey, nil, &status)
		if status.Counts.Revoked != 1 || status.Counts.Enrolled != 2 || status.CRLNumber != 2 || status.Nodes[1].Status != api.NodeRevoked {
			t.Fatalf("mesh status after revoke %+v", status)
		}
		list, err := admin.Nodes(ctx)
		if err != nil || len(list.Nodes) != 3 || list.Nodes[1].Status != "revoked" || list.Nodes[0].RenewedAt == nil {
			t.Fatalf("nodes %+v %v", list, err)
		}

		// Beta's old keys cannot come back; new keys may take the name again.
		tok, _ := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: "beta"})
		if _, err := client.Enroll(ctx, h.url, tok.Token, beta.key, "beta", client.EnrollOptions{}); !isStatus(err, 403) {
			t.Fatalf("re-enrolling revoked keys: %v", err)
		}
		beta2 := h.enrollNode(t, admin, "beta")
		if err := verifier.Verify(beta2.bundle.Certificate, time.Now()); err != nil {
			t.Fatalf("beta with new keys: %v", err)
		}

		var audit api.AuditList
		h.must(200, "GET", "/api/v1/audit", h.adminKey, nil, &audit)
		count := map[string]int{}
		for _, e := range audit.Entries {
			count[e.Action]++
		}
		if count["node.enroll"] != 4 || count["node.renew"] != 1 || count["node.revoke"] != 1 || count["jointoken.create"] != 5 {
			t.Fatalf("audit %v", count)
		}
	})
}

// waitForCRLWaiter waits until a request is parked in the revocation-list long poll.
func waitForCRLWaiter(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(h.srv.crlWaiters) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no long poll arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEnrollmentRefusals(t *testing.T) {
	h := sqliteHarness(t, nil)
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	key, _ := identity.GenerateNodeKey()
	newTok := func(req api.CreateJoinTokenRequest) string {
		tok, err := admin.CreateJoinToken(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(tok.Token, "_"+h.pin) || tok.CAPin != h.pin {
			t.Fatalf("token %q does not carry the CA pin", tok.Token)
		}
		return tok.Token
	}
	pubPEM := string(identity.MarshalNodePublicKey(key.Public()))
	enroll := func(token, name, pub string) resp {
		return h.do("POST", "/api/v1/enroll", "", api.EnrollRequest{Token: token, Name: name, PublicKey: pub})
	}
	tok := newTok(api.CreateJoinTokenRequest{NodeName: "delta"})
	for _, c := range []struct {
		token, name, pub string
		want             int
	}{
		{tok, "epsilon", pubPEM, 403},    // token bound to another name
		{tok, "Delta", pubPEM, 400},      // invalid name
		{tok, "control", pubPEM, 400},    // reserved
		{tok, "delta", "not a key", 400}, // bad public key
		{tok[:len(tok)-70] + strings.Repeat("0", 6) + tok[len(tok)-64:], "delta", pubPEM, 401}, // wrong secret
		{"x6k" + tok[3:], "delta", pubPEM, 401},                                                // not a join token
		{"", "delta", pubPEM, 401},
	} {
		if r := enroll(c.token, c.name, c.pub); r.status != c.want {
			t.Errorf("enroll(%.20q, %q): %d %s, want %d", c.token, c.name, r.status, r.body, c.want)
		}
	}
	// The refused attempts did not use up the token.
	var b api.Bundle
	h.must(201, "POST", "/api/v1/enroll", "", api.EnrollRequest{Token: tok, Name: "delta", PublicKey: pubPEM}, &b)
	if r := enroll(tok, "delta", pubPEM); r.status != 401 || !strings.Contains(string(r.body), "already used") {
		t.Fatalf("token reuse: %d %s", r.status, r.body)
	}
	if r := enroll(newTok(api.CreateJoinTokenRequest{}), "zeta", pubPEM); r.status != 409 {
		t.Fatalf("same key under a second name: %d %s", r.status, r.body)
	}
	key2, _ := identity.GenerateNodeKey()
	if r := enroll(newTok(api.CreateJoinTokenRequest{}), "delta", string(identity.MarshalNodePublicKey(key2.Public()))); r.status != 409 {
		t.Fatalf("second live node named delta: %d", r.status)
	}
	// Token creation rules.
	for _, req := range []api.CreateJoinTokenRequest{
		{Groups: []string{"db"}},     // the CA may grant only ops and web
		{NodeName: "control"},        // reserved
		{TTLSeconds: 10},             // too short
		{CertTTLSeconds: 1 << 40},    // too long
		{Description: "line\nbreak"}, // control character
	} {
		if _, err := admin.CreateJoinToken(ctx, req); !isStatus(err, 400) {
			t.Errorf("token %+v: %v", req, err)
		}
	}
	// A client refuses a control plane whose CA is not the token's pin.
	other := sqliteHarness(t, nil)
	otherTok, _ := other.apiClient(other.adminKey).CreateJoinToken(ctx, api.CreateJoinTokenRequest{})
	forged := otherTok.Token[:len(otherTok.Token)-64] + h.pin
	if _, err := client.Enroll(ctx, other.url, forged, key2, "eta", client.EnrollOptions{}); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("enrolling against a control plane with another CA: %v", err)
	}
	// Plain HTTP is refused unless asked for.
	if _, err := client.Enroll(ctx, strings.Replace(h.url, "https", "http", 1), newTok(api.CreateJoinTokenRequest{}), key2, "eta", client.EnrollOptions{}); err == nil {
		t.Fatal("enrolled over plain HTTP")
	}
	// A TLS client that cannot do X25519MLKEM768 is refused by the server.
	cfg, _ := client.Trust{CAPin: h.pin}.TLSConfig()
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if _, err := hc.Get(h.url + "/health"); err == nil {
		t.Fatal("server accepted a classical-only key exchange")
	}
	cfg, _ = client.Trust{CAPin: h.pin}.TLSConfig()
	cfg.MaxVersion, cfg.MinVersion = tls.VersionTLS12, tls.VersionTLS12
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if _, err := hc.Get(h.url + "/health"); err == nil {
		t.Fatal("server accepted TLS 1.2")
	}
}

func TestNodeReportValidation(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.Limits.MaxReportBytes = 4096 })
	admin := h.apiClient(h.adminKey)
	n := h.enrollNode(t, admin, "alpha")
	ctx := t.Context()
	up := api.PeerUp
	hc := nodeHTTP(t, n)
	for _, rep := range []*api.MeshReport{
		{Peers: []api.PeerReport{{Name: "alpha", State: up}}},               // itself
		{Peers: []api.PeerReport{{Name: "beta", State: "sideways"}}},        // state
		{Peers: []api.PeerReport{{Name: "beta", State: up, LossRatio: 2}}},  // loss > 1
		{Peers: []api.PeerReport{{Name: "beta", State: up, RTTMillis: -1}}}, // negative
		{Peers: []api.PeerReport{{Name: "b", State: up}, {Name: "b", State: up}}},
		{Peers: []api.PeerReport{{Name: "beta", State: up, Overlay: "10.0.0.1"}}},
		{Peers: []api.PeerReport{{Name: "beta", State: up, Endpoint: "example.org:1"}}},
		{Routes: []api.RouteReport{{Destination: "beta", NextHop: "gamma", Hops: 0}}},
		{UptimeSeconds: -5},
		{KernelFeatures: map[string]float64{"cpu": 1}},                                // not a kernel feature
		{KernelFeatures: map[string]float64{"kernel_drop_Not-A-Reason": 1}},           // reason syntax
		{KernelFeatures: map[string]float64{"kernel_drops": 2 * api.MaxFeatureValue}}, // out of range
	} {
		// Validate runs on the client too; send it raw to test the server's check.
		if st := postRaw(t, hc, h.url+"/api/v1/mesh/report", rep); st != 400 {
			t.Errorf("report %+v: status %d", rep, st)
		}
	}
	if st := postRaw(t, hc, h.url+"/api/v1/mesh/report", strings.Repeat(" ", 5000)+"{}"); st != 413 {
		t.Errorf("oversized report: %d", st)
	}
	if st := postRaw(t, hc, h.url+"/api/v1/mesh/report", `{"peers": [], "extra": 1}`); st != 400 {
		t.Errorf("unknown field: %d", st)
	}
	kernel := map[string]float64{"kernel_rx_unread": 3, "kernel_drops": 1.5, "kernel_drop_socket_rcvbuff": 1.5}
	if _, err := n.c.Report(ctx, &api.MeshReport{Sequence: 1, KernelFeatures: kernel}); err != nil {
		t.Fatal(err)
	}
	var status api.MeshStatus
	h.must(200, "GET", "/mesh/status", h.adminKey, nil, &status)
	if len(status.Nodes) != 1 || !maps.Equal(status.Nodes[0].KernelFeatures, kernel) {
		t.Errorf("mesh status nodes %+v, want alpha with kernel features %v", status.Nodes, kernel)
	}
}

func postRaw(t *testing.T, hc *http.Client, url string, body any) int {
	t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), "POST", url, rd)
	req.Header.Set("Content-Type", "application/json")
	r, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return r.StatusCode
}

// nodeHTTP is an HTTP client with the node's mutual-TLS configuration, for sending raw requests.
func nodeHTTP(t *testing.T, n *testNode) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(n.bundle.CAX509)
	cfg := meshca.TLSConfig(n.bundle.TLSCertificate(n.key), roots, testTD, nil)
	cfg.NextProtos = []string{"http/1.1", api.MeshCAProtocol} // ask for the mesh CA's chain
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// conformsTo checks a response body against a schema of the server's OpenAPI document.
func conformsTo(t *testing.T, h *harness, schema string, body []byte) {
	t.Helper()
	var doc map[string]any
	h.must(200, "GET", "/openapi.json", "", nil, &doc)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if err := conforms(schemas, map[string]any{"$ref": "#/components/schemas/" + schema}, v, schema); err != nil {
		t.Errorf("response does not match schema %s: %v\n%s", schema, err, body)
	}
}
