package federated_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

// pki is a CA and certified node keys.
type pki struct {
	ca    *meshca.CA
	ver   *meshca.Verifier
	keys  map[string]*identity.NodeKey
	certs map[string]*meshca.Certificate
}

func newPKI(t testing.TB, td string, names map[string][]string) *pki {
	t.Helper()
	now := time.Now()
	caKey, err := identity.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := meshca.NewRootCA(caKey, meshca.CAOptions{TrustDomain: td, Name: "root", Duration: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := meshca.NewVerifier(ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, ver: ver, keys: map[string]*identity.NodeKey{}, certs: map[string]*meshca.Certificate{}}
	for name, groups := range names {
		k := nodeKey(t, td+"/"+name)
		c, err := ca.Issue(meshca.IssueRequest{Name: name, Groups: groups, PublicKey: k.Public(), Duration: 30 * time.Minute}, now)
		if err != nil {
			t.Fatal(err)
		}
		p.keys[name], p.certs[name] = k, c
	}
	return p
}

// nodeKey derives a node's keys from its name, so that runs (whose local training order and
// aggregation order follow the keys) are reproducible.
func nodeKey(t testing.TB, name string) *identity.NodeKey {
	t.Helper()
	seed := sha256.Sum256([]byte("x0tta6bl4 federated test key " + name))
	kem, err := identity.NewKEMPrivateKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	sign, err := identity.NewSigningKey(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return &identity.NodeKey{KEM: kem, Sign: sign}
}

func post(t *testing.T, h http.Handler, src netip.Addr, body []byte) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, federated.PathUpdate, bytes.NewReader(body))
	r.RemoteAddr = netip.AddrPortFrom(src, 40000).String()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, strings.TrimSpace(w.Body.String())
}

// TestCoordinatorRefusals: the coordinator's HTTP handler accepts one update per certified node per
// round from that node's own overlay address, and refuses everything else with a clear status.
func TestCoordinatorRefusals(t *testing.T) {
	p := newPKI(t, "fl.test", map[string][]string{"coord": {"fl"}, "a": {"fl"}, "b": {"fl"}, "c": {"fl"}, "outsider": {"other"}})
	foreign := newPKI(t, "evil.test", map[string][]string{"x": {"fl"}})
	model := detector.NewModel(3, 0, 8, 8, 2, 1)
	co, err := federated.NewCoordinator(federated.CoordinatorConfig{Key: p.keys["coord"].Sign, Verifier: p.ver, Group: "fl", Model: model, FirstRound: 7})
	if err != nil {
		t.Fatal(err)
	}
	h := co.Handler()
	r := httptest.NewRequest(http.MethodGet, federated.PathRound, nil)
	w := httptest.NewRecorder()
	if h.ServeHTTP(w, r); w.Code != http.StatusNotFound {
		t.Fatalf("GET before the first round: %d", w.Code)
	}
	if code, msg := post(t, h, p.certs["a"].Overlay, []byte("x")); code != http.StatusConflict {
		t.Fatalf("update with no round open: %d %s", code, msg)
	}
	round, err := co.Open(federated.KindStats)
	if err != nil || round != 7 {
		t.Fatalf("open: %d %v", round, err)
	}
	data := []detector.Graph{federated.RingTask(1), federated.RingTask(2)}
	ann, err := federated.DecodeAnnouncement(co.Announcement(), p.certs["coord"].SignPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	envelope := func(name, signer string, a *federated.Announcement) []byte {
		u, err := federated.LocalUpdate(a, data, 1)
		if err != nil {
			t.Fatal(err)
		}
		ub, err := federated.Encode(p.keys[signer].Sign, *u)
		if err != nil {
			t.Fatal(err)
		}
		return federated.EncodeEnvelope(p.certs[name], ub)
	}
	good := envelope("a", "a", ann)
	tampered := bytes.Clone(envelope("b", "b", ann))
	tampered[len(tampered)-3400] ^= 1 // a moment, under the signature
	fb := envelope("b", "b", ann)
	unsigned := fb[:len(fb)-3309-2] // the update up to its key ID, then an empty signature
	unsigned = append(bytes.Clone(unsigned), 0, 0)
	u, _ := federated.LocalUpdate(ann, data, 1)
	xb, _ := federated.Encode(foreign.keys["x"].Sign, *u)
	outsider := envelope("outsider", "outsider", ann)

	for _, c := range []struct {
		name string
		src  string
		body []byte
		code int
		want string
	}{
		{"accepted", "a", good, 200, "accepted"},
		{"second update from a", "a", good, 409, "already sent"},
		{"tampered", "b", tampered, 403, "signature"},
		{"unsigned", "b", unsigned, 403, "signature"},
		{"foreign CA", "x", federated.EncodeEnvelope(foreign.certs["x"], xb), 403, "issuer"},
		{"b's update from c's address", "c", envelope("b", "b", ann), 403, "sent from"},
		{"c's certificate, b's signature", "c", envelope("c", "b", ann), 403, "not a known client"},
		{"not in the group", "outsider", outsider, 403, "not in group"},
		{"garbage", "b", []byte{0, 5, 1, 2, 3}, 400, "truncated"},
		{"too large", "b", make([]byte, co.MaxBody()+1), 413, "larger than"},
	} {
		src := p.certs["a"].Overlay
		if c.src == "x" {
			src = foreign.certs["x"].Overlay
		} else if p.certs[c.src] != nil {
			src = p.certs[c.src].Overlay
		}
		code, msg := post(t, h, src, c.body)
		t.Logf("%-32s %d %s", c.name, code, msg)
		if code != c.code || !strings.Contains(msg, c.want) {
			t.Errorf("%s: got %d %q, want %d containing %q", c.name, code, msg, c.code, c.want)
		}
	}
	if code, msg := post(t, h, p.certs["b"].Overlay, fb); code != 200 {
		t.Fatalf("b's good update: %d %s", code, msg)
	}
	res, err := co.Close()
	if err != nil || res.Accepted != 2 || res.Refused != 9 {
		t.Fatalf("close: %+v %v", res, err)
	}
	m := co.Model()
	if m.Mean[0] == 0 || m.Std[0] == 1 {
		t.Fatalf("statistics not applied: mean %v std %v", m.Mean, m.Std)
	}

	// The next round: a's update of round 7 is a replay now.
	if _, err := co.Open(federated.KindTrain); err != nil {
		t.Fatal(err)
	}
	if code, msg := post(t, h, p.certs["a"].Overlay, good); code != 409 || !strings.Contains(msg, "round 7, round 8 is open") {
		t.Fatalf("replayed update: %d %s", code, msg)
	}
	ann8, err := federated.DecodeAnnouncement(co.Announcement(), p.certs["coord"].SignPublicKey)
	if err != nil || ann8.Round != 8 || ann8.Kind != federated.KindTrain || len(ann8.Weights) != 2 {
		t.Fatalf("round 8 announcement: %+v %v", ann8, err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if code, msg := post(t, h, p.certs[n].Overlay, envelope(n, n, ann8)); code != 200 {
			t.Fatalf("%s: %d %s", n, code, msg)
		}
	}
	res, err = co.Close()
	if err != nil || res.Accepted != 3 || res.ClipNorm <= 0 || res.Late != 1 || res.Refused != 0 {
		t.Fatalf("close (the replay of round 7 counted late, not refused): %+v %v", res, err)
	}
	if _, err := federated.DecodeAnnouncement(co.Announcement(), p.certs["a"].SignPublicKey); !errors.Is(err, federated.ErrBadAnnouncement) {
		t.Fatalf("announcement checked with another key: %v", err)
	}
}

// TestParticipantRefusals: a participant takes announcements only from the configured coordinator's
// key, intact, and never an older round than one it has seen.
func TestParticipantRefusals(t *testing.T) {
	p := newPKI(t, "fl.test", map[string][]string{"coord": {"fl"}, "a": {"fl"}, "mallory": {"fl"}})
	model := detector.NewModel(3, 0, 8, 8, 2, 1)
	sign := func(key *identity.SigningKey, kind federated.Kind, round uint32) []byte {
		b, err := federated.EncodeAnnouncement(key, &federated.Announcement{Kind: kind, Round: round, LocalEpochs: 1, LR: 0.01, Model: model})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var serve []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			http.Error(w, "round closed", http.StatusConflict)
			return
		}
		w.Write(serve)
	}))
	defer srv.Close()
	pa, err := federated.NewParticipant(federated.ParticipantConfig{Key: p.keys["a"].Sign, Cert: p.certs["a"], Coordinator: p.certs["coord"],
		Verifier: p.ver, Data: []detector.Graph{federated.RingTask(1)},
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	coord := p.keys["coord"].Sign
	serve = sign(coord, federated.KindStats, 5)
	a, fresh, err := pa.Fetch(ctx)
	if err != nil || !fresh || a.Round != 5 {
		t.Fatalf("good announcement: %v %v", fresh, err)
	}
	var refused *federated.RefusedError
	if err := pa.Answer(ctx, a); !errors.As(err, &refused) || refused.Status != 409 {
		t.Fatalf("answer: %v", err)
	}
	if _, fresh, err := pa.Fetch(ctx); err != nil || fresh {
		t.Fatalf("the same round again: fresh %v, %v", fresh, err)
	}
	tampered := bytes.Clone(sign(coord, federated.KindTrain, 6))
	tampered[len(tampered)-3400] ^= 1 // in the model
	for name, b := range map[string][]byte{
		"signed by another node": sign(p.keys["mallory"].Sign, federated.KindTrain, 6),
		"tampered":               tampered,
		"old round":              sign(coord, federated.KindTrain, 4),
		"truncated":              sign(coord, federated.KindTrain, 6)[:100],
		"bad kind":               append([]byte("X6FR\x01\x09"), make([]byte, 40)...),
	} {
		serve = b
		_, _, err := pa.Fetch(ctx)
		t.Logf("%-24s %v", name, err)
		if !errors.Is(err, federated.ErrBadAnnouncement) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st := pa.Stats(); st.Announcements != 2 || st.Refused != 6 {
		t.Fatalf("stats %+v", st)
	}
	// An announcement with a class weight count that does not match the model.
	b := sign(coord, federated.KindTrain, 9)
	if _, err := federated.DecodeAnnouncement(b[:len(b)-1], coord.PublicKey()); !errors.Is(err, federated.ErrBadAnnouncement) {
		t.Fatal(err)
	}
}
