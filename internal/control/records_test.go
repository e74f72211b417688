package control

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// signRecord signs a link-state record as n's router would, under certificate cert (n's current
// one when nil), with links to the given nodes.
func signRecord(t testing.TB, n *testNode, cert *meshca.Certificate, seq uint64, expires time.Time, endpoint string, to ...*testNode) ([]byte, []byte) {
	t.Helper()
	if cert == nil {
		cert = n.bundle.Certificate
	}
	rec := &routing.Record{Origin: n.key.Sign.PublicKey().ID(), Seq: seq, Expires: expires, CertFingerprint: cert.Fingerprint(), Incarnation: 7}
	if endpoint != "" {
		rec.Endpoints = []routing.Endpoint{{Addr: netip.MustParseAddrPort(endpoint), Kind: routing.EndpointLocal}}
	}
	for _, o := range to {
		rec.Links = append(rec.Links, routing.LinkInfo{Neighbour: o.key.Sign.PublicKey().ID(), Cost: 10, RTT: time.Millisecond})
	}
	slices.SortFunc(rec.Links, func(a, b routing.LinkInfo) int { return bytes.Compare(a.Neighbour[:], b.Neighbour[:]) })
	raw, err := routing.SignRecord(n.key.Sign, rec)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Bytes(), raw
}

// reportRecord sends a report carrying a record and returns the answer: the status, and the
// record's outcome on 202.
func reportRecord(t *testing.T, n *testNode, cert, raw []byte) (int, string) {
	t.Helper()
	sr := api.EncodeSignedRecord("", cert, raw)
	acc, err := n.c.Report(t.Context(), &api.MeshReport{Sequence: 1, Record: &sr})
	var ce *client.Error
	switch {
	case err == nil:
		return 202, acc.Record
	case errors.As(err, &ce):
		return ce.Status, ""
	}
	return 0, err.Error() // refused before HTTP (a revoked node's TLS handshake)
}

// recordsSeen returns the names and sequence numbers of the records in an answer, in order.
func recordsSeen(t *testing.T, m *api.MeshRecords) string {
	t.Helper()
	var out []string
	for _, r := range m.Records {
		_, raw, err := r.Decode()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := routing.ParseRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s#%d", r.Node, rec.Seq))
	}
	return fmt.Sprint(out)
}

// waitForRecordWaiter waits until a request is parked in the records long poll.
func waitForRecordWaiter(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(h.srv.records.waiters) < n {
		if time.Now().After(deadline) {
			t.Fatal("no long poll arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordsAnswer is the answer to a long poll for records.
type recordsAnswer struct {
	m   *api.MeshRecords
	err error
}

// startRecordPoll starts a long poll for records by n after generation after, and returns once it is
// parked; its answer comes on the channel.
func startRecordPoll(t *testing.T, h *harness, n *testNode, after uint64) <-chan recordsAnswer {
	t.Helper()
	polled := make(chan recordsAnswer, 1)
	go func() {
		m, err := n.c.FetchRecords(t.Context(), after, 25*time.Second)
		polled <- recordsAnswer{m, err}
	}()
	waitForRecordWaiter(t, h, 1)
	return polled
}

// TestMeshRecords: a node reports its signed record and another node gets it, at once from a long
// poll and in its enrolment answer; refreshes are stored but not published; bad records are
// refused, stale and superseded ones ignored; a revoked node's record is no longer handed out.
func TestMeshRecords(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		ctx := t.Context()
		admin := h.apiClient(h.adminKey)
		alpha, beta := h.enrollNode(t, admin, "alpha"), h.enrollNode(t, admin, "beta")
		if len(alpha.bundle.Records.Records) != 0 || len(beta.bundle.Records.Records) != 0 {
			t.Fatal("records in an enrolment answer before anyone reported")
		}
		got, err := beta.c.FetchRecords(ctx, 0, 0)
		if err != nil || got.Generation != 0 || len(got.Records) != 0 || got.More {
			t.Fatalf("records before any report: %+v %v", got, err)
		}

		now := time.Now()
		cert, raw := signRecord(t, alpha, nil, 10, now.Add(3*time.Minute), "192.0.2.1:4242")
		if st, out := reportRecord(t, alpha, cert, raw); st != 202 || out != api.RecordPublished {
			t.Fatalf("first record: %d %q", st, out)
		}
		got, err = beta.c.FetchRecords(ctx, 0, 0)
		if err != nil || got.Generation == 0 || recordsSeen(t, got) != "[alpha#10]" {
			t.Fatalf("beta's records: %+v %v", got, err)
		}
		if c, r, _ := got.Records[0].Decode(); !bytes.Equal(c, cert) || !bytes.Equal(r, raw) {
			t.Fatal("the record handed out is not the one reported")
		}
		g1 := got.Generation
		if own, err := alpha.c.FetchRecords(ctx, 0, 0); err != nil || len(own.Records) != 0 || own.Generation != g1 {
			t.Fatalf("alpha is handed its own record: %+v %v", own, err)
		}
		r := h.do("GET", "/api/v1/mesh/records", h.adminKey, nil)
		if r.status != 401 {
			t.Fatalf("records for an operator's key: %d", r.status)
		}

		// A long poll returns when a record is published, with that record only.
		polled := startRecordPoll(t, h, beta, g1)
		cert, raw = signRecord(t, alpha, nil, 11, now.Add(3*time.Minute), "192.0.2.1:4242", beta) // a new neighbour: news
		if st, out := reportRecord(t, alpha, cert, raw); st != 202 || out != api.RecordPublished {
			t.Fatalf("record with a new link: %d %q", st, out)
		}
		a := <-polled
		if a.err != nil || recordsSeen(t, a.m) != "[alpha#11]" || a.m.Generation <= g1 {
			t.Fatalf("long poll: %+v %v", a.m, a.err)
		}
		g2 := a.m.Generation

		// A refresh (new sequence and expiry only) is stored, not published: a full fetch has it,
		// the delta does not.
		cert, raw = signRecord(t, alpha, nil, 12, now.Add(3*time.Minute+time.Second), "192.0.2.1:4242", beta)
		if st, out := reportRecord(t, alpha, cert, raw); st != 202 || out != api.RecordStored {
			t.Fatalf("refresh: %d %q", st, out)
		}
		if m, _ := beta.c.FetchRecords(ctx, g2, 0); len(m.Records) != 0 || m.Generation != g2 {
			t.Fatalf("a refresh was published: %+v", m)
		}
		if m, _ := beta.c.FetchRecords(ctx, 0, 0); recordsSeen(t, m) != "[alpha#12]" {
			t.Fatalf("full fetch after a refresh: %s", recordsSeen(t, m))
		}
		// Published again once the published copy has less than half the new one's lifetime left.
		cert, raw = signRecord(t, alpha, nil, 13, now.Add(10*time.Minute), "192.0.2.1:4242", beta)
		if _, out := reportRecord(t, alpha, cert, raw); out != api.RecordPublished {
			t.Fatalf("record outliving the published copy by far: %q", out)
		}
		// So is a new endpoint.
		cert, raw = signRecord(t, alpha, nil, 14, now.Add(10*time.Minute), "192.0.2.2:4242", beta)
		if _, out := reportRecord(t, alpha, cert, raw); out != api.RecordPublished {
			t.Fatalf("record with a new endpoint: %q", out)
		}

		// Ignored: an older record (validly signed), an expired one.
		cert, raw = signRecord(t, alpha, nil, 5, now.Add(10*time.Minute), "192.0.2.9:4242")
		if st, out := reportRecord(t, alpha, cert, raw); st != 202 || out != api.RecordStale {
			t.Fatalf("older record: %d %q", st, out)
		}
		cert, raw = signRecord(t, alpha, nil, 20, now.Add(-time.Second), "192.0.2.9:4242")
		if st, out := reportRecord(t, alpha, cert, raw); st != 202 || out != api.RecordExpired {
			t.Fatalf("expired record: %d %q", st, out)
		}
		// Refused: a bad signature, another node's record or certificate, a certificate the
		// record does not name.
		cert, raw = signRecord(t, alpha, nil, 21, now.Add(10*time.Minute), "192.0.2.9:4242")
		forged := bytes.Clone(raw)
		forged[len(forged)-1] ^= 1
		betaCert, betaRaw := signRecord(t, beta, nil, 22, now.Add(10*time.Minute), "192.0.2.9:4242")
		for name, c := range map[string][2][]byte{
			"bad signature":                       {cert, forged},
			"another node's record":               {betaCert, betaRaw},
			"another node's certificate":          {betaCert, raw},
			"garbage record":                      {cert, []byte("X6LS not a record")},
			"garbage certificate":                 {[]byte("not a certificate"), raw},
			"record signed by another node's key": {cert, resign(t, beta, raw)},
		} {
			if st, out := reportRecord(t, alpha, c[0], c[1]); st != 400 {
				t.Errorf("%s: %d %q, want 400", name, st, out)
			}
		}
		if m, _ := beta.c.FetchRecords(ctx, 0, 0); recordsSeen(t, m) != "[alpha#14]" {
			t.Fatalf("after the refused and ignored records: %s", recordsSeen(t, m))
		}

		// After a renewal, a record under the old certificate is ignored; the new certificate is news.
		oldCert := alpha.bundle.Certificate
		nb, err := alpha.c.Renew(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cert, raw = signRecord(t, alpha, oldCert, 30, now.Add(10*time.Minute), "192.0.2.2:4242", beta)
		if _, out := reportRecord(t, alpha, cert, raw); out != api.RecordOldCertificate {
			t.Fatalf("record under the old certificate: %q", out)
		}
		cert, raw = signRecord(t, alpha, nb.Certificate, 31, now.Add(10*time.Minute), "192.0.2.2:4242", beta)
		if _, out := reportRecord(t, alpha, cert, raw); out != api.RecordPublished {
			t.Fatalf("record under the renewed certificate: %q", out)
		}

		// A node that enrols now gets the records in its enrolment answer.
		bCert, bRaw := signRecord(t, beta, nil, 40, now.Add(3*time.Minute), "198.51.100.1:4242", alpha)
		if _, out := reportRecord(t, beta, bCert, bRaw); out != api.RecordPublished {
			t.Fatalf("beta's record: %q", out)
		}
		gamma := h.enrollNode(t, admin, "gamma")
		if s := recordsSeen(t, &gamma.bundle.Records); s != "[alpha#31 beta#40]" {
			t.Fatalf("enrolment answer's records: %s", s)
		}
		if gen := h.srv.records.gen.current(); gamma.bundle.Records.Generation != gen {
			t.Fatalf("enrolment answer's generation %d, current %d", gamma.bundle.Records.Generation, gen)
		}

		// A revoked node's record is handed out no more.
		if _, err := admin.Revoke(ctx, "alpha"); err != nil {
			t.Fatal(err)
		}
		if m, _ := gamma.c.FetchRecords(ctx, 0, 0); recordsSeen(t, m) != "[beta#40]" {
			t.Fatalf("records after revoking alpha: %s", recordsSeen(t, m))
		}
		if st, _ := reportRecord(t, alpha, cert, raw); st != 403 && st != 0 {
			t.Fatalf("revoked node's report: %d", st)
		}

		// The answers match the OpenAPI document.
		body := nodeGet(t, h, gamma, "/api/v1/mesh/records")
		conformsTo(t, h, "MeshRecords", body)
	})
}

// resign returns raw's record with the signature replaced by one from another node's key.
func resign(t *testing.T, by *testNode, raw []byte) []byte {
	t.Helper()
	rec, err := routing.ParseRecord(bytes.Clone(raw))
	if err != nil {
		t.Fatal(err)
	}
	// The signature covers everything before its length field (docs/routing.md, "Record").
	sig, err := by.key.Sign.Sign(routing.SignatureContext, raw[:len(raw)-2-len(rec.Signature)])
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(raw)
	copy(out[len(out)-len(sig):], sig)
	return out
}

// nodeGet fetches a node endpoint over the node's mutual TLS and returns the body.
func nodeGet(t *testing.T, h *harness, n *testNode, path string) []byte {
	t.Helper()
	res, err := nodeHTTP(t, n).Get(h.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
	}
	return b.Bytes()
}

// TestRecordsLongPollBounds: long polls beyond limits.max_record_waiters are answered at once, and
// a wait longer than limits.max_crl_wait is refused.
func TestRecordsLongPollBounds(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.Limits.MaxRecordWaiters = 1 })
	admin := h.apiClient(h.adminKey)
	alpha, beta := h.enrollNode(t, admin, "alpha"), h.enrollNode(t, admin, "beta")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go beta.c.FetchRecords(ctx, 0, 25*time.Second)
	waitForRecordWaiter(t, h, 1)
	start := time.Now()
	m, err := alpha.c.FetchRecords(t.Context(), 0, 25*time.Second)
	if err != nil || len(m.Records) != 0 || m.Generation != 0 {
		t.Fatalf("second long poll: %+v %v", m, err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("a long poll beyond the bound waited %s", d)
	}
	res, err := nodeHTTP(t, alpha).Get(h.url + "/api/v1/mesh/records?after=0&wait=61")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("wait=61: %d", res.StatusCode)
	}
}

// TestRecordsPaging: an answer is cut at 256 records or 4 MiB, whichever comes first, and paging
// with after=generation returns every record once, in order.
func TestRecordsPaging(t *testing.T) {
	h := sqliteHarness(t, nil)
	ctx := t.Context()
	st := h.srv.st
	now := time.Now()
	caller := &store.Node{Name: "caller", KeyID: "k", Overlay: "fd74::1", SPIFFEID: "s", PublicKeyPEM: "p", Serial: "caller",
		CertPEM: "c", SVIDPEM: "v", NotBefore: now, NotAfter: now.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: now}
	if err := st.InsertNode(ctx, caller); err != nil {
		t.Fatal(err)
	}
	var want []string
	var gen uint64
	for i := range 400 {
		n := &store.Node{Name: fmt.Sprintf("n%03d", i), KeyID: fmt.Sprint(i), Overlay: "fd74::2", SPIFFEID: "s", PublicKeyPEM: "p",
			Serial: fmt.Sprint(i), CertPEM: "c", SVIDPEM: "v", NotBefore: now, NotAfter: now.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: now}
		if err := st.InsertNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		certSize, recSize := 100, 1
		if i >= 250 { // large records (30 000 bytes with the certificate): the byte limit cuts these pages
			certSize, recSize = 16000, 14000
		}
		err := st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			if gen, err = tx.NextRecordGeneration(ctx); err != nil {
				return err
			}
			_, err = tx.PutRecord(ctx, &store.MeshRecord{NodeID: n.ID, Sequence: 1, Expires: now.Add(time.Hour), ReceivedAt: now,
				Certificate: bytes.Repeat([]byte{1}, certSize), Record: bytes.Repeat([]byte{byte(i)}, recSize), Generation: gen,
				PublishedExpires: now, PublishedDigest: "d"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, n.Name)
		if i == 10 { // the caller's own record is never handed to it
			err := st.InTx(ctx, func(tx *store.Tx) error {
				g, err := tx.NextRecordGeneration(ctx)
				if err != nil {
					return err
				}
				gen = g
				_, err = tx.PutRecord(ctx, &store.MeshRecord{NodeID: caller.ID, Sequence: 1, Expires: now.Add(time.Hour), ReceivedAt: now,
					Certificate: []byte{2}, Record: []byte{2}, Generation: g, PublishedExpires: now, PublishedDigest: "d"})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	h.srv.records.gen.publishMany(gen, nil)
	var got, pages []string
	after := uint64(0)
	for {
		m, err := h.srv.signedFor(ctx, &h.srv.records, caller, after, nil)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, r := range m.Records {
			got = append(got, r.Node)
			c, rec, _ := r.Decode()
			size += len(c) + len(rec)
		}
		if len(m.Records) > api.MaxRecordsPerAnswer || size > api.MaxRecordsAnswerBytes || m.Validate() != nil {
			t.Fatalf("page of %d records, %d bytes: %v", len(m.Records), size, m.Validate())
		}
		pages = append(pages, fmt.Sprint(len(m.Records)))
		if !m.More {
			if m.Generation != gen {
				t.Fatalf("last page's generation %d, want %d", m.Generation, gen)
			}
			break
		}
		if m.Generation <= after {
			t.Fatalf("paging made no progress at generation %d", after)
		}
		after = m.Generation
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paging returned %d records, want %d in order", len(got), len(want))
	}
	// 256 rows, the caller's own skipped; then as many large records as fit in 4 MiB; then the rest.
	if fmt.Sprint(pages) != "[255 139 6]" {
		t.Fatalf("pages %v", pages)
	}
}

// FuzzReportedRecord feeds certificates and records to the checks a reported record goes through:
// each is stored, ignored, or refused as invalid, never an internal error or a panic. The inputs
// are patches over a valid certificate and record made in the fuzzing process (the CA and keys are
// new in every process, so a corpus of whole records would be foreign to all but one): bytes
// written at an offset, and a length to cut to.
func FuzzReportedRecord(f *testing.F) {
	srv, n, alpha := recordServer(f, nil)
	validCert, validRecord := signRecord(f, alpha, nil, 100, time.Now().Add(time.Hour), "192.0.2.1:4242")
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{}, uint16(0), uint16(0xffff))                   // the valid pair
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{0xff}, uint16(40), uint16(0xffff))              // a higher sequence number
	f.Add([]byte{}, uint16(0), uint16(0xffff), []byte{1}, uint16(len(validRecord)-1), uint16(0xffff)) // the signature
	f.Add([]byte{7}, uint16(100), uint16(0xffff), []byte{}, uint16(0), uint16(0xffff))                // the certificate
	f.Add([]byte("X6LS"), uint16(0), uint16(4), []byte("X6LS"), uint16(0), uint16(9))
	fuzzReported(f, srv, n, &srv.records, validCert, validRecord)
}

// fuzzReported runs a fuzz target over patched copies of a valid certificate and record (or proof)
// reported to st.
func fuzzReported(f *testing.F, srv *Server, n *store.Node, st *recordsState, validCert, validRecord []byte) {
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, certPatch []byte, certAt, certCut uint16, recPatch []byte, recAt, recCut uint16) {
		c, r := patched(validCert, certPatch, certAt, certCut), patched(validRecord, recPatch, recAt, recCut)
		sr := api.EncodeSignedRecord("", c, r)
		if _, _, err := sr.Decode(); err != nil {
			return // refused by the report's validation before the server looks
		}
		out, err := srv.acceptSigned(ctx, n, st, &sr)
		var bad *badRecordError
		switch {
		case err == nil && out == "":
			t.Fatal("no outcome and no error")
		case err != nil && !errors.As(err, &bad):
			t.Fatalf("internal error: %v", err)
		}
	})
}

// patched returns a copy of b with patch written at offset at (wrapped into b; b grows when the
// patch runs past its end), cut to cut bytes when that is shorter.
func patched(b, patch []byte, at, cut uint16) []byte {
	out := bytes.Clone(b)
	off := int(at) % (len(out) + 1)
	if end := off + len(patch); end > len(out) {
		out = append(out, make([]byte, end-len(out))...)
	}
	copy(out[off:], patch)
	if int(cut) < len(out) {
		out = out[:cut]
	}
	return out
}

// recordServer is a control plane (not serving) with one enrolled node, alpha, for calling the
// record checks directly; now is its clock (nil: time.Now).
func recordServer(t testing.TB, now func() time.Time) (*Server, *store.Node, *testNode) {
	t.Helper()
	return recordServerOn(t, store.Config{Driver: store.SQLite, Path: filepath.Join(t.TempDir(), "r.db")}, now)
}

// eachRecordServer runs fn on a record server (recordServer) on each database.
func eachRecordServer(t *testing.T, fn func(t *testing.T, srv *Server, an *store.Node, alpha *testNode)) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			srv, an, alpha := recordServerOn(t, b.Config(t), nil)
			fn(t, srv, an, alpha)
		})
	}
}

// recordServerOn is recordServer on the given database.
func recordServerOn(t testing.TB, db store.Config, now func() time.Time) (*Server, *store.Node, *testNode) {
	t.Helper()
	cfg := testConfig(t, db)
	ctx := context.Background()
	if _, err := Init(ctx, cfg, InitOptions{TrustDomain: testTD}, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv, err := New(ctx, cfg, Options{Logger: logger(t), Version: "test", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n, alpha := enrolTestNode(t, srv, "alpha")
	return srv, n, alpha
}

// enrolTestNode enrols a new key as name straight into srv's store.
func enrolTestNode(t testing.TB, srv *Server, name string) (*store.Node, *testNode) {
	t.Helper()
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, svid, err := srv.issue(name, nil, key.Public(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n := &store.Node{Name: name, KeyID: key.Sign.PublicKey().ID().String(), Overlay: cert.Overlay.String(), SPIFFEID: cert.SPIFFEID().String(),
		PublicKeyPEM: string(identity.MarshalNodePublicKey(key.Public())), Serial: cert.Serial.String(),
		CertPEM: string(meshca.EncodeCertificatePEM(cert)), SVIDPEM: x509PEM(svid), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		CertTTL: 24 * time.Hour, EnrolledAt: time.Now()}
	if err := srv.st.InsertNode(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return n, &testNode{name: name, key: key, bundle: &client.Bundle{Certificate: cert}}
}

// TestRecordPublicationRate: a node whose router refreshes its unchanged record every 60 s (180 s
// lifetime) and reports every 10 s has its record published once every 120 s, and the copy last
// published never expires while the node reports (docs/control.md, "Signed records").
func TestRecordPublicationRate(t *testing.T) {
	start := time.Now()
	var clock time.Duration
	srv, n, alpha := recordServer(t, func() time.Time { return start.Add(clock) })
	ctx := t.Context()
	const (
		refresh  = 60 * time.Second
		lifetime = 180 * time.Second
		report   = 10 * time.Second
		run      = 30 * time.Minute
	)
	var (
		cert, raw     []byte
		published     []time.Duration
		lastPublished time.Time // expiry of the copy last published
		outcomes      = map[string]int{}
	)
	for clock = 0; clock < run; clock += report {
		if clock%refresh == 0 { // the router re-originates
			cert, raw = signRecord(t, alpha, nil, uint64(clock/refresh)+1, start.Add(clock+lifetime), "192.0.2.1:4242")
		}
		out, err := srv.acceptSigned(ctx, n, &srv.records, &api.SignedRecord{Certificate: base64.StdEncoding.EncodeToString(cert),
			Record: base64.StdEncoding.EncodeToString(raw)})
		if err != nil {
			t.Fatal(err)
		}
		outcomes[out]++
		if out == api.RecordPublished {
			published = append(published, clock)
			rec, _ := routing.ParseRecord(raw)
			lastPublished = rec.Expires
		}
		if !lastPublished.After(start.Add(clock + report)) {
			t.Fatalf("at %s the published copy expires at %s, before the next report", clock, lastPublished.Sub(start))
		}
	}
	if len(published) != 15 || outcomes[api.RecordStored] != 15 || outcomes[api.RecordStale] != 150 {
		t.Fatalf("outcomes %v, published at %v", outcomes, published)
	}
	for i, at := range published {
		if at != time.Duration(i)*2*refresh {
			t.Fatalf("published at %v, want every %s", published, 2*refresh)
		}
	}
}

// TestRecordGenerationAcrossInstances: a record published through one instance wakes the long polls
// of another instance on the same database at its next refresh, and a refresh never moves an
// instance's generation back.
func TestRecordGenerationAcrossInstances(t *testing.T) {
	a, n, alpha := recordServer(t, time.Now)
	ctx := t.Context()
	b, err := New(ctx, a.cfg, Options{Logger: logger(t), Version: "test-b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	_, before, changed := b.records.gen.wait(0, true) // alpha's record is of area 0
	_, _, otherArea := b.records.gen.wait(5, true)
	cert, raw := signRecord(t, alpha, nil, 1, time.Now().Add(3*time.Minute), "192.0.2.1:4242")
	out, err := a.acceptSigned(ctx, n, &a.records, &api.SignedRecord{Certificate: base64.StdEncoding.EncodeToString(cert),
		Record: base64.StdEncoding.EncodeToString(raw)})
	if err != nil || out != api.RecordPublished {
		t.Fatalf("publish through a: %q %v", out, err)
	}
	published := a.records.gen.current()
	if got := b.records.gen.current(); got != before {
		t.Fatalf("b moved on before refreshing: %d", got)
	}
	if err := b.refreshRecordGeneration(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("b's long polls were not woken by the refresh")
	}
	if woken(otherArea) {
		t.Fatal("the refresh woke the long polls of an area the record is not of")
	}
	if got := b.records.gen.current(); got != published || got <= before {
		t.Fatalf("b's generation %d after refresh, a published %d (b had %d)", got, published, before)
	}
	b.records.gen.publish(published+5, 0) // b's own publication, racing with an older read
	if err := b.refreshRecordGeneration(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.records.gen.current(); got != published+5 {
		t.Fatalf("refresh moved b's generation back to %d", got)
	}
}

// TestRecordsForOwnArea: a node is handed the records of its own routing area only (the others it
// would ignore), in its long polls and in its enrolment answer when its request names its area; a
// node that names none and has reported none gets every area's.
func TestRecordsForOwnArea(t *testing.T) {
	srv, an, alpha := recordServer(t, nil)
	bn, bravo := enrolTestNode(t, srv, "bravo")
	cn, charlie := enrolTestNode(t, srv, "charlie")
	dn, _ := enrolTestNode(t, srv, "delta") // reports nothing
	ctx := t.Context()
	exp := time.Now().Add(3 * time.Minute)
	for _, c := range []struct {
		n    *testNode
		sn   *store.Node
		area uint32
	}{{alpha, an, 1}, {bravo, bn, 2}, {charlie, cn, 1}} {
		cert := c.n.bundle.Certificate
		raw, err := routing.SignRecord(c.n.key.Sign, &routing.Record{Origin: c.n.key.Sign.PublicKey().ID(), Seq: 1, Expires: exp,
			CertFingerprint: cert.Fingerprint(), Area: c.area})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := srv.acceptSigned(ctx, c.sn, &srv.records, report(cert.Bytes(), raw)); err != nil || out != api.RecordPublished {
			t.Fatalf("%s's record: %q %v", c.n.name, out, err)
		}
	}
	names := func(m api.MeshRecords) string {
		var out []string
		for _, r := range m.Records {
			out = append(out, r.Node)
		}
		slices.Sort(out)
		return fmt.Sprint(out)
	}
	for _, c := range []struct {
		caller *store.Node
		want   string
	}{{an, "[charlie]"}, {bn, "[]"}, {cn, "[alpha]"}, {dn, "[alpha bravo charlie]"}} {
		m, err := srv.signedFor(ctx, &srv.records, c.caller, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(m); got != c.want || m.Generation != 3 {
			t.Errorf("%s got the records of %s at generation %d, want %s at 3", c.caller.Name, got, m.Generation, c.want)
		}
	}
	area2, area1 := uint32(2), uint32(1)
	if got := names(srv.enrolmentRecords(ctx, dn, &area2)); got != "[bravo]" {
		t.Errorf("a new node of area 2 enrols with the records of %s, want bravo's only", got)
	}
	if got := names(srv.enrolmentRecords(ctx, dn, &area1)); got != "[alpha charlie]" {
		t.Errorf("a new node of area 1 enrols with the records of %s, want alpha's and charlie's", got)
	}
	// The area a node signs in its record counts over the one its request names.
	if got := names(srv.enrolmentRecords(ctx, an, &area2)); got != "[charlie]" {
		t.Errorf("alpha (area 1 by its record) got the records of %s, want charlie's", got)
	}
}

// TestRecordsAnswerCarriesEveryCommittedRecord: an answer carries every record committed before it,
// even one whose publication this instance has not yet announced to its long polls (the moment
// between a report's transaction and the announcement, or a record another instance stored).
func TestRecordsAnswerCarriesEveryCommittedRecord(t *testing.T) {
	eachRecordServer(t, func(t *testing.T, srv *Server, an *store.Node, alpha *testNode) {
		bn, _ := enrolTestNode(t, srv, "bravo")
		ctx := t.Context()
		cert, raw := signRecord(t, alpha, nil, 1, time.Now().Add(3*time.Minute), "")
		err := srv.st.InTx(ctx, func(tx *store.Tx) error {
			g, err := tx.NextGeneration(ctx, store.Records)
			if err != nil {
				return err
			}
			_, err = tx.PutSigned(ctx, store.Records, &store.MeshRecord{NodeID: an.ID, Sequence: 1, Expires: time.Now().Add(3 * time.Minute),
				Certificate: cert, Record: raw, ReceivedAt: time.Now(), Generation: g, PublishedExpires: time.Now().Add(3 * time.Minute), PublishedDigest: "d"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if g := srv.records.gen.current(); g != 0 {
			t.Fatalf("the instance announced generation %d; this test wants the record committed, not announced", g)
		}
		m, err := srv.signedFor(ctx, &srv.records, bn, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Records) != 1 || m.Records[0].Node != "alpha" || m.Generation != 1 {
			t.Fatalf("bravo got %d records at generation %d, want alpha's at 1", len(m.Records), m.Generation)
		}
	})
}

// TestRecordsAnswerCarriesARecordRepublishedMeanwhile: a record republished between the answer's
// read of the generation counter and its read of the records has left its old generation for a
// newer one. The answer must still carry it (an enrolment answer once lacked a node that had had a
// record all along), and claim the generation it carries. The state the second read sees is built
// here directly: the record at a generation above the counter the first read returned.
func TestRecordsAnswerCarriesARecordRepublishedMeanwhile(t *testing.T) {
	eachRecordServer(t, func(t *testing.T, srv *Server, an *store.Node, alpha *testNode) {
		bn, _ := enrolTestNode(t, srv, "bravo")
		ctx := t.Context()
		cert, raw := signRecord(t, alpha, nil, 2, time.Now().Add(3*time.Minute), "")
		const republishedAt = 7
		_, err := srv.st.PutSigned(ctx, store.Records, &store.MeshRecord{NodeID: an.ID, Sequence: 2, Expires: time.Now().Add(3 * time.Minute),
			Certificate: cert, Record: raw, ReceivedAt: time.Now(), Generation: republishedAt, PublishedExpires: time.Now().Add(3 * time.Minute), PublishedDigest: "d"})
		if err != nil {
			t.Fatal(err)
		}
		if g, err := srv.st.Generation(ctx, store.Records); err != nil || g >= republishedAt {
			t.Fatalf("counter at %d (%v); this test wants it below the record's generation", g, err)
		}
		m, err := srv.signedFor(ctx, &srv.records, bn, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Records) != 1 || m.Records[0].Node != "alpha" || m.Generation != republishedAt {
			t.Fatalf("bravo got %d records at generation %d, want alpha's at %d", len(m.Records), m.Generation, republishedAt)
		}
	})
}

// signAreaRecord signs a link-state record of routing area area for n, with one endpoint.
func signAreaRecord(t *testing.T, n *testNode, seq uint64, area uint32, endpoint string) ([]byte, []byte) {
	t.Helper()
	cert := n.bundle.Certificate
	raw, err := routing.SignRecord(n.key.Sign, &routing.Record{Origin: n.key.Sign.PublicKey().ID(), Seq: seq, Expires: time.Now().Add(3 * time.Minute),
		CertFingerprint: cert.Fingerprint(), Incarnation: 7, Area: area,
		Endpoints: []routing.Endpoint{{Addr: netip.MustParseAddrPort(endpoint), Kind: routing.EndpointLocal}}})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Bytes(), raw
}

// TestRecordsLongPollWokenByOwnArea: a record published in area 2 does not wake the long poll of a
// node of area 3, which waits on until a record of area 3 is published and then gets that record
// alone.
func TestRecordsLongPollWokenByOwnArea(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		ctx := t.Context()
		admin := h.apiClient(h.adminKey)
		waiter, two, three := h.enrollNode(t, admin, "waiter"), h.enrollNode(t, admin, "two"), h.enrollNode(t, admin, "three")
		for _, c := range []struct {
			n    *testNode
			area uint32
		}{{waiter, 3}, {two, 2}, {three, 3}} {
			cert, raw := signAreaRecord(t, c.n, 1, c.area, "192.0.2.1:4242")
			if st, out := reportRecord(t, c.n, cert, raw); st != 202 || out != api.RecordPublished {
				t.Fatalf("%s's first record: %d %q", c.n.name, st, out)
			}
		}
		m, err := waiter.c.FetchRecords(ctx, 0, 0)
		if err != nil || recordsSeen(t, m) != "[three#1]" {
			t.Fatalf("waiter's records: %+v %v", m, err)
		}
		g := m.Generation
		// The channel the waiter's long poll parks on (the polls of one area share it).
		_, _, area3 := h.srv.records.gen.wait(3, true)
		polled := startRecordPoll(t, h, waiter, g)

		cert, raw := signAreaRecord(t, two, 2, 2, "192.0.2.2:4242") // a new endpoint: news
		if _, out := reportRecord(t, two, cert, raw); out != api.RecordPublished {
			t.Fatalf("two's new record: %q", out)
		}
		// The publication is announced before the report is answered: had it woken area 3's polls,
		// their channel would be closed by now.
		if woken(area3) {
			t.Fatal("a record of area 2 woke the long polls of area 3")
		}
		select {
		case a := <-polled:
			t.Fatalf("area 3's long poll answered after area 2's publication: %+v %v", a.m, a.err)
		default:
		}

		cert, raw = signAreaRecord(t, three, 2, 3, "192.0.2.3:4242")
		if _, out := reportRecord(t, three, cert, raw); out != api.RecordPublished {
			t.Fatalf("three's new record: %q", out)
		}
		if !woken(area3) {
			t.Fatal("a record of area 3 did not wake the long polls of area 3")
		}
		a := <-polled
		if a.err != nil || recordsSeen(t, a.m) != "[three#2]" || a.m.Generation != g+2 {
			t.Fatalf("area 3's long poll: %+v %v; want three#2 at generation %d", a.m, a.err, g+2)
		}
		if n := testutil.ToFloat64(h.srv.records.wakeups); n != 1 {
			t.Fatalf("%v long polls counted as woken by a publication, want 1", n)
		}
	})
}

// TestRecordsForEnrolmentArea: a node that named its routing area at enrolment gets that area's
// records before it reports any, in its enrolment answer and in every fetch; once it reports a record
// signed with another area, the record counts. An area beyond 32 bits is refused with the reason.
func TestRecordsForEnrolmentArea(t *testing.T) {
	for _, backend := range storetest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			logs := &warnings{}
			testRecordsForEnrolmentArea(t, newHarnessWith(t, backend.Config(t), nil, Options{Logger: slog.New(logs), Version: "test"}), logs)
		})
	}
}

// listedAreas returns each node's routing area as GET /api/v1/nodes lists it (name:area/source, "-"
// for none), after checking the answer against the OpenAPI document.
func listedAreas(t *testing.T, h *harness) string {
	t.Helper()
	var list api.NodeList
	r := h.must(200, "GET", "/api/v1/nodes", h.adminKey, nil, &list)
	conformsTo(t, h, "NodeList", r.body)
	var got []string
	for _, n := range list.Nodes {
		switch {
		case n.RoutingArea == nil && n.RoutingAreaSource == "":
			got = append(got, n.Name+":-")
		case n.RoutingArea == nil:
			t.Fatalf("%s: routing_area_source %q without an area", n.Name, n.RoutingAreaSource)
		default:
			got = append(got, fmt.Sprintf("%s:%d/%s", n.Name, *n.RoutingArea, n.RoutingAreaSource))
		}
	}
	return fmt.Sprint(got)
}

// warnings is a log handler that keeps the messages of warnings and errors.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}

// count returns how many warnings or errors had the message msg.
func (w *warnings) count(msg string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(slices.DeleteFunc(slices.Clone(w.msgs), func(m string) bool { return m != msg }))
}

func testRecordsForEnrolmentArea(t *testing.T, h *harness, logs *warnings) {
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	two, three := h.enrollNode(t, admin, "two"), h.enrollNode(t, admin, "three")
	for _, c := range []struct {
		n    *testNode
		area uint32
	}{{two, 2}, {three, 3}} {
		cert, raw := signAreaRecord(t, c.n, 1, c.area, "192.0.2.1:4242")
		if _, out := reportRecord(t, c.n, cert, raw); out != api.RecordPublished {
			t.Fatalf("%s's record: %q", c.n.name, out)
		}
	}
	area3 := uint32(3)
	newcomer := h.enrollNodeInArea(t, admin, "newcomer", &area3)
	if s := recordsSeen(t, &newcomer.bundle.Records); s != "[three#1]" {
		t.Fatalf("enrolment answer of a node of area 3: %s", s)
	}
	if m, err := newcomer.c.FetchRecords(ctx, 0, 0); err != nil || recordsSeen(t, m) != "[three#1]" {
		t.Fatalf("a node of area 3 that has reported nothing fetched %+v %v; want three's record only", m, err)
	}
	unnamed := h.enrollNode(t, admin, "unnamed")
	if m, err := unnamed.c.FetchRecords(ctx, 0, 0); err != nil || recordsSeen(t, m) != "[two#1 three#1]" {
		t.Fatalf("a node that named no area fetched %+v %v; want every area's", m, err)
	}
	// The node listing shows each node's area as the control plane acts on it.
	if got := listedAreas(t, h); got != "[newcomer:3/enrolment three:3/record two:2/record unnamed:-]" {
		t.Fatalf("listed areas before the newcomer reports: %s", got)
	}
	// Its own signed record says area 2: that is what it routes in, and what it now gets.
	cert, raw := signAreaRecord(t, newcomer, 1, 2, "192.0.2.9:4242")
	if _, out := reportRecord(t, newcomer, cert, raw); out != api.RecordPublished {
		t.Fatalf("newcomer's record: %q", out)
	}
	if m, err := newcomer.c.FetchRecords(ctx, 0, 0); err != nil || recordsSeen(t, m) != "[two#1]" {
		t.Fatalf("a node enrolled for area 3 that signs area 2 fetched %+v %v; want two's record only", m, err)
	}
	if got := listedAreas(t, h); got != "[newcomer:2/record three:3/record two:2/record unnamed:-]" {
		t.Fatalf("listed areas once the newcomer signed area 2: %s", got)
	}
	var one api.Node
	if h.must(200, "GET", "/api/v1/nodes/newcomer", h.adminKey, nil, &one); one.RoutingArea == nil || *one.RoutingArea != 2 || one.RoutingAreaSource != api.AreaFromRecord {
		t.Fatalf("GET /api/v1/nodes/newcomer: area %v from %q, want 2 from its record", one.RoutingArea, one.RoutingAreaSource)
	}
	// The disagreement is logged once, not at every record of the same area.
	cert, raw = signAreaRecord(t, newcomer, 2, 2, "192.0.2.10:4242")
	if _, out := reportRecord(t, newcomer, cert, raw); out != api.RecordPublished {
		t.Fatalf("newcomer's second record: %q", out)
	}
	const disagreement = "node signs another routing area than it named at enrolment; following its record"
	if n := logs.count(disagreement); n != 1 {
		t.Fatalf("the disagreement was logged %d times, want once", n)
	}

	tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{Description: "too far"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.GenerateNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"token": %q, "name": "far", "public_key": %q, "routing_area": 4294967296}`,
		tok.Token, identity.MarshalNodePublicKey(key.Public()))
	if r := h.do("POST", "/api/v1/enroll", "", body); r.status != 400 || !strings.Contains(string(r.body), "routing_area") {
		t.Fatalf("enrolment naming area 2^32: %d %s", r.status, r.body)
	}
}
