package client

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// fakeControl serves handler over TLS as the control plane of ca (the X.509-SVID of
// spiffe://<td>/node/control), and returns a node client enrolled with that CA.
func fakeControl(t *testing.T, handler http.HandlerFunc) *Node {
	t.Helper()
	ca := newCA(t)
	serverKey, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ca.Issue(meshca.IssueRequest{Name: api.ControlNodeName, PublicKey: serverKey.Public(), Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svid, err := ca.CA().IssueSVID(ca.X509CA(), sc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768},
		ClientAuth:   tls.RequestClientCert,
		Certificates: []tls.Certificate{{Certificate: [][]byte{svid.Raw, ca.X509CA().Raw}, PrivateKey: serverKey.Sign.MLDSA(), Leaf: svid}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseBundle(bundleFor(t, ca, key, "alpha"), key.Public(), "alpha", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(srv.URL, key, b, NodeOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// TestFetchRecords: the node asks with its generation and wait, and refuses answers beyond the
// bounds before handing anything on.
func TestFetchRecords(t *testing.T) {
	one := api.EncodeSignedRecord("beta", make([]byte, 7000), make([]byte, 3400))
	var (
		answer any
		query  string
	)
	n := fakeControl(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/mesh/records" || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "wrong path or no client certificate", http.StatusTeapot)
			return
		}
		query = r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	})
	answer = api.MeshRecords{Generation: 9, Records: []api.SignedRecord{one}}
	m, err := n.FetchRecords(t.Context(), 4, 2*time.Second)
	if err != nil || m.Generation != 9 || len(m.Records) != 1 || m.Records[0] != one {
		t.Fatalf("answer %+v %v", m, err)
	}
	if query != "after=4&wait=2" {
		t.Fatalf("query %q", query)
	}
	if _, err := n.FetchRecords(t.Context(), 0, 0); err != nil || query != "after=0" {
		t.Fatalf("without a wait: %q %v", query, err)
	}

	many := make([]api.SignedRecord, api.MaxRecordsPerAnswer+1)
	for i := range many {
		many[i] = one
	}
	big := api.EncodeSignedRecord("beta", make([]byte, meshca.MaxCertificateSize), make([]byte, routing.MaxRecordSize))
	heavy := make([]api.SignedRecord, 200)
	for i := range heavy {
		heavy[i] = big
	}
	for name, a := range map[string]any{
		"too many records":      api.MeshRecords{Records: many},
		"too many bytes":        api.MeshRecords{Records: heavy},
		"oversized certificate": api.MeshRecords{Records: []api.SignedRecord{api.EncodeSignedRecord("beta", make([]byte, meshca.MaxCertificateSize+3), []byte{1})}},
		"bad name":              api.MeshRecords{Records: []api.SignedRecord{api.EncodeSignedRecord("../etc", []byte{1}, []byte{1})}},
		"not JSON":              "]]",
		"larger than 8 MiB":     strings.Repeat("x", maxResponse+1),
	} {
		answer = a
		if m, err := n.FetchRecords(t.Context(), 0, 0); err == nil {
			t.Errorf("%s: accepted (%d records)", name, len(m.Records))
		}
	}
}
