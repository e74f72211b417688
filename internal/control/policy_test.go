package control

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/policy"
)

// opsToWeb lets ops reach web on ssh and ping, and tests it.
var opsToWeb = policy.Source{
	Grants: []policy.GrantSource{{Src: []string{"group:ops"}, Dst: []string{"group:web"}, Ports: []string{"tcp:22", "icmp"}}},
	Tests: []policy.Test{{Src: policy.TestNode{Name: "o1", Groups: []string{"ops"}}, Dst: policy.TestNode{Name: "w1", Groups: []string{"web"}},
		Accept: []string{"tcp:22", "icmp"}, Deny: []string{"tcp:80"}}},
}

// TestPolicyAPI: who may read and set the policy, what is refused, versions that only go up, the
// signed policy verifying against the CA, the audit entry, and the policy surviving a restart.
func TestPolicyAPI(t *testing.T) {
	eachBackend(t, nil, func(t *testing.T, h *harness) {
		viewer := h.user("vera", auth.Viewer)
		operator := h.user("otto", auth.Operator)

		var doc api.Policy
		h.must(200, "GET", "/api/v1/policy", viewer, nil, &doc)
		if doc.Version != 0 || doc.Signed != nil || doc.TrustDomain != testTD {
			t.Fatalf("before any policy: %+v", doc)
		}
		if r := h.do("GET", "/api/v1/policy", "", nil); r.status != 401 {
			t.Fatalf("anonymous GET: %d, want 401", r.status)
		}
		for who, key := range map[string]string{"viewer": viewer, "operator": operator} {
			if r := h.do("PUT", "/api/v1/policy", key, opsToWeb); r.status != 403 {
				t.Fatalf("PUT by a %s: %d, want 403: %s", who, r.status, r.body)
			}
		}
		for name, c := range map[string]struct {
			body any
			want string
		}{
			"unknown field":  {`{"grants": [], "rules": []}`, "unknown field"},
			"bad selector":   {policy.Source{Grants: []policy.GrantSource{{Src: []string{"ops"}, Dst: []string{"*"}, Ports: []string{"*"}}}}, `selector \"ops\"`},
			"bad ports":      {policy.Source{Grants: []policy.GrantSource{{Src: []string{"*"}, Dst: []string{"*"}, Ports: []string{"tcp:99999"}}}}, "not a port"},
			"failing test":   {policy.Source{Grants: opsToWeb.Grants, Tests: []policy.Test{{Src: policy.TestNode{Name: "w1", Groups: []string{"web"}}, Dst: policy.TestNode{Name: "o1", Groups: []string{"ops"}}, Accept: []string{"icmp"}}}}, "1 policy test cases failed"},
			"too many rules": {policy.Source{Grants: tooManyRules()}, "firewall rules"},
		} {
			r := h.do("PUT", "/api/v1/policy", h.adminKey, c.body)
			if r.status != 400 || !strings.Contains(string(r.body), c.want) {
				t.Fatalf("%s: %d %s, want 400 mentioning %q", name, r.status, r.body, c.want)
			}
		}
		h.must(200, "GET", "/api/v1/policy", viewer, nil, &doc)
		if doc.Version != 0 {
			t.Fatalf("refused policies changed the version to %d", doc.Version)
		}

		ca, err := meshca.DecodeCertificatePEM([]byte(h.do("GET", "/api/v1/ca", "", nil).caPEM(t)))
		if err != nil {
			t.Fatal(err)
		}
		for want := uint64(1); want <= 3; want++ {
			h.must(200, "PUT", "/api/v1/policy", h.adminKey, opsToWeb, &doc)
			if doc.Version != want {
				t.Fatalf("PUT %d gave version %d", want, doc.Version)
			}
		}
		r := h.must(200, "GET", "/api/v1/policy", viewer, nil, &doc)
		if r.header.Get("X-Policy-Version") != "3" || doc.Version != 3 || doc.Issuer != h.pin || doc.Source == nil || len(doc.Source.Tests) != 1 {
			t.Fatalf("GET after three PUTs: %s %+v", r.header.Get("X-Policy-Version"), doc)
		}
		p, err := meshca.ParsePolicy(doc.Signed)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.CheckSignature(ca.SignPublicKey); err != nil || p.Version != 3 || len(p.Grants) != 1 {
			t.Fatalf("signed policy: %v, version %d", err, p.Version)
		}

		var audit api.AuditList
		h.must(200, "GET", "/api/v1/audit", h.adminKey, nil, &audit)
		sets := 0
		for _, e := range audit.Entries {
			if e.Action == "policy.set" {
				sets++
				if !strings.HasPrefix(e.Actor, "user:"+testAdmin) || !strings.HasPrefix(e.Target, "version ") {
					t.Errorf("audit entry: %+v", e)
				}
			}
		}
		if sets != 3 {
			t.Fatalf("%d policy.set audit entries, want 3", sets)
		}

		// A second process on the same database serves the stored policy and numbers on from it.
		srv2, err := New(context.Background(), h.cfg, Options{Logger: logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Close()
		if got := srv2.policy.cur.Load(); got.Version != 3 || string(got.Signed) != string(doc.Signed) {
			t.Fatalf("restarted server serves version %d", got.Version)
		}
		h.must(200, "PUT", "/api/v1/policy", h.adminKey, opsToWeb, &doc)
		if doc.Version != 4 {
			t.Fatalf("version %d after the restart check, want 4", doc.Version)
		}
	})
}

func (r resp) caPEM(t *testing.T) string {
	var ca api.CABundle
	if err := json.Unmarshal(r.body, &ca); err != nil {
		t.Fatal(err)
	}
	return ca.CAPEM
}

func tooManyRules() []policy.GrantSource {
	var src, ports []string
	for i := range 64 {
		src = append(src, "group:g"+string(rune('a'+i/26))+string(rune('a'+i%26)))
		ports = append(ports, "tcp:"+string(rune('1'+i/9))+string(rune('0'+i%9)))
	}
	g := policy.GrantSource{Src: src, Dst: []string{"*"}, Ports: ports}
	return []policy.GrantSource{g, g}
}

// TestPolicyNodeLongPoll: an enrolled node reads the policy over mutual TLS, verified against its
// CA; a long poll for a newer version returns when an admin sets one, and one with nothing newer
// waits its full time.
func TestPolicyNodeLongPoll(t *testing.T) {
	h := sqliteHarness(t, nil)
	ctx := t.Context()
	admin := h.apiClient(h.adminKey)
	n := h.enrollNode(t, admin, "alpha", "web")

	if p, err := n.c.FetchPolicy(ctx, 0, 0); err != nil || p != nil {
		t.Fatalf("no policy yet: %v %v", p, err)
	}
	if _, err := admin.SetPolicy(ctx, &opsToWeb); err != nil {
		t.Fatal(err)
	}
	p, err := n.c.FetchPolicy(ctx, 0, 0)
	if err != nil || p == nil || p.Version != 1 {
		t.Fatalf("node fetch: %v %v", p, err)
	}

	got := make(chan *meshca.Policy, 1)
	go func() {
		p, err := n.c.FetchPolicy(ctx, 1, 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	// Wait until the poll is parked, so the PUT below is what ends it.
	for len(h.srv.policy.waiters) == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := admin.SetPolicy(ctx, &opsToWeb); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p == nil || p.Version != 2 {
		t.Fatalf("long poll returned %+v", p)
	}

	start := time.Now()
	p, err = n.c.FetchPolicy(ctx, 2, time.Second)
	if err != nil || p.Version != 2 {
		t.Fatalf("poll without news: %v %v", p, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("a poll with nothing newer returned after %s, not after its wait", d)
	}
}

// TestPolicyAllowsReach: the function the records endpoint asks.
func TestPolicyAllowsReach(t *testing.T) {
	h := sqliteHarness(t, nil)
	s := h.srv
	ops, web, other := &store.Node{ID: 1, Name: "o1", Groups: []string{"ops"}}, &store.Node{ID: 2, Name: "w1", Groups: []string{"web"}}, &store.Node{ID: 3, Name: "x1"}
	rec := func(n *store.Node) *store.MeshRecord {
		return &store.MeshRecord{NodeID: n.ID, NodeName: n.Name, NodeGroups: n.Groups}
	}
	if !s.policyAllows("o1", nil, "x1", nil) || !s.mayReach(ops, rec(other)) || s.mayReach(ops, rec(ops)) {
		t.Fatal("without a policy every node reaches every other, and never itself")
	}
	if _, err := h.apiClient(h.adminKey).SetPolicy(t.Context(), &opsToWeb); err != nil {
		t.Fatal(err)
	}
	if !s.policyAllows("o1", []string{"ops"}, "w1", []string{"web"}) || s.policyAllows("w1", []string{"web"}, "o1", []string{"ops"}) ||
		s.policyAllows("x1", nil, "w1", []string{"web"}) {
		t.Fatal("policyAllows disagrees with the policy")
	}
	// Records go both ways along a grant: web needs ops's endpoints to answer its punches.
	if !s.mayReach(ops, rec(web)) || !s.mayReach(web, rec(ops)) || s.mayReach(other, rec(web)) || s.mayReach(web, rec(other)) {
		t.Fatal("mayReach disagrees with the policy")
	}
}
