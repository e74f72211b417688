package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/defaultmodel"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/policy"
	"x0tta6bl4/internal/telemetry"
)

// govHarness is a control plane with a genesis roster of n members of weight 1.
func govHarness(t *testing.T, db func(testing.TB) store.Config, n int, appliers ...map[governance.ActionType]governance.Applier) (*harness, *testClock, []*identity.SigningKey, *governance.Roster) {
	t.Helper()
	if len(appliers) == 0 {
		appliers = append(appliers, nil)
	}
	clk := newTestClock(time.Now())
	h := newHarnessWith(t, db(t), nil, Options{Logger: logger(t), Version: "test", Now: clk.Now, Appliers: appliers[0]})
	var keys []*identity.SigningKey
	var ms []governance.Member
	for i := range n {
		k, err := identity.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		ms = append(ms, governance.Member{Name: fmt.Sprintf("m%d", i), Weight: 1, Key: k.PublicKey()})
	}
	genesis, err := governance.Genesis(testTD, ms)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitGovernance(context.Background(), h.srv.Store(), genesis, clk.Now()); err != nil {
		t.Fatal(err)
	}
	// Again: the same roster is no change; another one is refused.
	if err := InitGovernance(context.Background(), h.srv.Store(), genesis, clk.Now()); err != nil {
		t.Fatalf("same genesis again: %v", err)
	}
	return h, clk, keys, genesis
}

// serveAnother starts a second control-plane instance with cfg (h's database) and returns its URL;
// it stops when the test ends.
func serveAnother(t *testing.T, h *harness, cfg Config, clk *testClock) string {
	t.Helper()
	srv, err := New(context.Background(), cfg, Options{Logger: logger(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	if h.cfg.InsecureDev {
		return "http://" + ln.Addr().String()
	}
	return "https://" + ln.Addr().String()
}

func sign(t *testing.T, k *identity.SigningKey, p api.Proposal, c governance.Choice, seq uint32, at time.Time) api.VoteRequest {
	t.Helper()
	parsed, err := governance.ParseProposal(p.Encoded)
	if err != nil || parsed.ID().String() != p.ID {
		t.Fatalf("the proposal's encoding does not hash to its id: %v", err)
	}
	b, err := governance.SignBallot(k, parsed.ID(), c, seq, at)
	if err != nil {
		t.Fatal(err)
	}
	return api.VoteRequest{Ballot: b.Bytes()}
}

var forbidOpsToWeb = api.ProposalRequest{Title: "ops may no longer reach web", VotingSeconds: 120, TimelockSeconds: 60,
	QuorumBPS: 5000, ThresholdBPS: 6000, Action: api.ProposalAction{Type: "policy", Policy: &policy.Source{
		Grants: []policy.GrantSource{{Src: []string{"group:web"}, Dst: []string{"group:ops"}, Ports: []string{"*"}}}}}}

// TestGovernanceAPI: a policy proposal, ballots and every refusal the issue lists, the enactment
// after the timelock, the decision that verifies against the genesis roster, and a log that
// verifies, then fails at a tampered entry.
func TestGovernanceAPI(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			h, clk, keys, genesis := govHarness(t, b.Config, 3)
			operator := h.user("opal", auth.Operator)
			viewer := h.user("vic", auth.Viewer)

			var p api.Proposal
			h.must(201, "POST", "/api/v1/dao/proposals", operator, forbidOpsToWeb, &p)
			if p.State != "active" || p.PolicyVersion != 1 || p.Action != "policy" {
				t.Fatalf("proposal %+v", p)
			}
			h.must(403, "POST", "/api/v1/dao/proposals", viewer, forbidOpsToWeb, nil)
			// Invalid and oversized actions.
			bad := forbidOpsToWeb
			bad.ThresholdBPS = 5000
			h.must(400, "POST", "/api/v1/dao/proposals", operator, bad, nil)
			bad = forbidOpsToWeb
			bad.Action = api.ProposalAction{Type: "revoke", Node: "nobody"}
			h.must(400, "POST", "/api/v1/dao/proposals", operator, bad, nil)
			bad.Action = api.ProposalAction{Type: "launch-missiles"}
			h.must(400, "POST", "/api/v1/dao/proposals", operator, bad, nil)
			big := policy.Source{}
			for i := range 400 {
				big.Grants = append(big.Grants, policy.GrantSource{Src: []string{fmt.Sprintf("group:g%d", i)}, Dst: []string{"*"}, Ports: []string{"*"}})
			}
			bad.Action = api.ProposalAction{Type: "policy", Policy: &big}
			if r := h.do("POST", "/api/v1/dao/proposals", operator, bad); r.status != 400 {
				t.Fatalf("oversized policy action: %d %s", r.status, r.body)
			}

			// A second proposal, to replay a ballot onto.
			var other api.Proposal
			h.must(201, "POST", "/api/v1/dao/proposals", operator, api.ProposalRequest{Title: "pin a model", VotingSeconds: 120,
				QuorumBPS: 5000, ThresholdBPS: 6000, Action: api.ProposalAction{Type: "model", Model: &api.ModelSpec{SHA256: fmt.Sprintf("%064x", 7), Name: "m"}}}, &other)
			if other.PolicyVersion != 0 {
				t.Fatal("a model proposal reserved a policy version")
			}

			now := clk.Now()
			var rc api.VoteReceipt
			first := sign(t, keys[0], p, governance.Yes, 1, now)
			h.must(200, "POST", "/api/v1/dao/vote", operator, first, &rc)
			if rc.LogSeq == 0 || rc.EntryHash == "" || rc.Tally.Yes != 1 || rc.Tally.Total != 3 || rc.Voter != "m0" {
				t.Fatalf("receipt %+v", rc)
			}
			// The same ballot again is a retry: the same receipt. (Signing is hedged: the same vote signed
			// again is other bytes, and counts as the same sequence with other content, below.)
			var again api.VoteReceipt
			h.must(200, "POST", "/dao/vote", operator, first, &again)
			if again.LogSeq != rc.LogSeq {
				t.Fatalf("a retry got another receipt: %+v", again)
			}
			refused := func(what string, body any) {
				t.Helper()
				if r := h.do("POST", "/api/v1/dao/vote", operator, body); r.status != 409 || r.errCode() != "refused" {
					t.Fatalf("%s: %d %s", what, r.status, r.body)
				}
			}
			// Duplicate beyond the rule: the same sequence with another choice, or a lower one.
			refused("same sequence, other choice", sign(t, keys[0], p, governance.No, 1, now))
			refused("same sequence, signed again", sign(t, keys[0], p, governance.Yes, 1, now))
			// A forged signature.
			forged := sign(t, keys[1], p, governance.Yes, 1, now)
			forged.Ballot[len(forged.Ballot)-3] ^= 1
			refused("forged", forged)
			// A non-member.
			outsider, _ := identity.GenerateSigningKey()
			refused("non-member", sign(t, outsider, p, governance.Yes, 1, now))
			// A ballot for one proposal replayed onto another: the id is signed.
			replay := sign(t, keys[1], other, governance.Yes, 1, now)
			copy(replay.Ballot[5:37], mustID(t, p.ID))
			refused("replayed onto another proposal", replay)
			h.must(400, "POST", "/api/v1/dao/vote", operator, api.VoteRequest{Ballot: []byte("short")}, nil)

			// A changed vote: m1 votes no, then yes with a higher sequence.
			h.must(200, "POST", "/api/v1/dao/vote", operator, sign(t, keys[1], p, governance.No, 1, now), nil)
			h.must(200, "POST", "/api/v1/dao/vote", operator, sign(t, keys[1], p, governance.Yes, 2, now), &rc)
			if rc.Tally.Yes != 2 || rc.Tally.No != 0 {
				t.Fatalf("after m1 changed its vote: %+v", rc.Tally)
			}

			// After the close: refused.
			clk.Advance(121 * time.Second)
			refused("after close", sign(t, keys[2], p, governance.No, 1, clk.Now()))
			h.must(200, "GET", "/api/v1/dao/proposals/"+p.ID, viewer, nil, &p)
			if p.State != "succeeded" {
				t.Fatalf("during the timelock: %s", p.State)
			}
			var ds api.Decisions
			h.must(200, "GET", "/api/v1/dao/decisions", viewer, nil, &ds)
			if len(ds.Decisions) != 0 {
				t.Fatal("enacted before the timelock ended")
			}

			// After the timelock: enacted, served as the policy, verifiable by anyone holding the
			// genesis roster.
			clk.Advance(61 * time.Second)
			h.must(200, "GET", "/api/v1/dao/decisions", viewer, nil, &ds)
			if len(ds.Decisions) != 1 || ds.Decisions[0].Proposal != p.ID {
				t.Fatalf("decisions %+v", ds)
			}
			qc, err := governance.ParseCertificate(ds.Decisions[0].Certificate)
			if err != nil {
				t.Fatal(err)
			}
			if tally, err := qc.Verify(genesis, clk.Now()); err != nil || tally.Yes != 2 {
				t.Fatalf("published certificate: %+v %v", tally, err)
			}
			var pol api.Policy
			h.must(200, "GET", "/api/v1/policy", viewer, nil, &pol)
			if pol.Version != 1 || !bytes.Equal(pol.Signed, qc.Proposal.Action.(governance.PolicyAction).Policy.Bytes()) {
				t.Fatalf("served policy version %d is not the decided one", pol.Version)
			}
			h.must(200, "GET", "/api/v1/dao/proposals/"+p.ID, viewer, nil, &p)
			if p.State != "executed" || p.EnactedSeq == 0 {
				t.Fatalf("after enactment: %+v", p)
			}
			var other2 api.Proposal
			h.must(200, "GET", "/api/v1/dao/proposals/"+other.ID, viewer, nil, &other2)
			if other2.State != "defeated" {
				t.Fatalf("the proposal nobody voted on is %s", other2.State)
			}

			// The log verifies and recomputes the tally; a tampered entry is named.
			var lg api.GovernanceLog
			h.must(200, "GET", "/api/v1/dao/log", viewer, nil, &lg)
			entries := parseEntries(t, lg.Entries)
			sum, err := governance.VerifyLog(entries)
			if err != nil {
				t.Fatal(err)
			}
			if got := sum.Proposals[qc.Proposal.ID()]; !got.Enacted || got.Tally.Yes != 2 {
				t.Fatalf("log summary %+v", got)
			}
			raw := bytes.Clone(lg.Entries[3])
			raw[len(raw)-1] ^= 1
			lg.Entries[3] = raw
			var le *governance.LogError
			if _, err := governance.VerifyLog(parseEntries(t, lg.Entries)); !asLogError(err, &le) || le.Seq != 4 {
				t.Fatalf("tampered entry 4: %v", err)
			}
		})
	}
}

func mustID(t *testing.T, s string) []byte {
	id, err := governance.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id[:]
}

func asLogError(err error, le **governance.LogError) bool {
	e, ok := err.(*governance.LogError)
	*le = e
	return ok
}

func parseEntries(t *testing.T, raws [][]byte) []*governance.Entry {
	t.Helper()
	var out []*governance.Entry
	for _, r := range raws {
		e, err := governance.ParseEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestGovernanceConcurrentInstances: two control planes on one database take ballots at once. Each
// of eight members sends sequence 1 (yes) to one and sequence 2 (no) to the other, all at the same
// moment. Whatever the order, sequence 2 ends up counted (it replaces 1, and 1 after 2 is refused),
// so the tally is exactly 8 no, and the log verifies with one entry per accepted ballot.
func TestGovernanceConcurrentInstances(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			h, clk, keys, _ := govHarness(t, b.Config, 8)
			operator := h.user("opal", auth.Operator)
			url2 := serveAnother(t, h, h.cfg, clk)

			var p api.Proposal
			h.must(201, "POST", "/api/v1/dao/proposals", operator, api.ProposalRequest{Title: "race", VotingSeconds: 120,
				QuorumBPS: 5000, ThresholdBPS: 6000, Action: api.ProposalAction{Type: "retire", Member: &api.MemberSpec{KeyID: keys[0].PublicKey().ID().String()}}}, &p)

			post := func(base string, body api.VoteRequest) int {
				data, _ := json.Marshal(body)
				req, _ := http.NewRequest("POST", base+"/api/v1/dao/vote", bytes.NewReader(data))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+operator)
				resp, err := h.hc.Do(req)
				if err != nil {
					t.Error(err)
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			now := clk.Now()
			var wg sync.WaitGroup
			var accepted, refused atomic.Int32
			start := make(chan struct{})
			for i, k := range keys {
				for seq, base := range []string{h.url, url2} {
					ballot := sign(t, k, p, []governance.Choice{governance.Yes, governance.No}[seq], uint32(seq+1), now)
					if i%2 == 1 {
						base = []string{url2, h.url}[seq]
					}
					wg.Go(func() {
						<-start
						switch code := post(base, ballot); code {
						case 200:
							accepted.Add(1)
						case 409:
							refused.Add(1)
						default:
							t.Errorf("vote: status %d", code)
						}
					})
				}
			}
			close(start)
			wg.Wait()
			var got api.Proposal
			h.must(200, "GET", "/api/v1/dao/proposals/"+p.ID, operator, nil, &got)
			if got.Tally != (api.Tally{No: 8, Total: 8}) || got.Ballots != 8 {
				t.Fatalf("tally after the race: %+v, %d ballots", got.Tally, got.Ballots)
			}
			var lg api.GovernanceLog
			h.must(200, "GET", "/api/v1/dao/log", operator, nil, &lg)
			if _, err := governance.VerifyLog(parseEntries(t, lg.Entries)); err != nil {
				t.Fatal(err)
			}
			// Genesis, proposal, and one entry per accepted ballot.
			if n := len(lg.Entries); n != 2+int(accepted.Load()) || accepted.Load()+refused.Load() != 16 {
				t.Fatalf("%d log entries, %d accepted, %d refused", n, accepted.Load(), refused.Load())
			}
			t.Logf("%d ballots accepted, %d refused (sequence 1 after 2)", accepted.Load(), refused.Load())
			// The second instance sees the same tally.
			req, _ := http.NewRequest("GET", url2+"/api/v1/dao/proposals/"+p.ID, nil)
			req.Header.Set("Authorization", "Bearer "+operator)
			resp, err := h.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got2 api.Proposal
			err = json.NewDecoder(resp.Body).Decode(&got2)
			resp.Body.Close()
			if err != nil || got2.Tally != got.Tally {
				t.Fatalf("instances disagree: %+v vs %+v", got2.Tally, got.Tally)
			}
		})
	}
}

// TestGovernanceRevocation: a revoke proposal names an enrolled node by name and freezes its key;
// once enacted, another node fetches the decision over mutual TLS (and could verify it), and the
// control plane revokes the node itself: its own calls are refused from then on.
func TestGovernanceRevocation(t *testing.T) {
	h, clk, keys, genesis := govHarness(t, func(tb testing.TB) store.Config {
		return store.Config{Driver: store.SQLite, Path: tb.TempDir() + "/c.db"}
	}, 3)
	admin := h.apiClient(h.adminKey)
	n1, n2 := h.enrollNode(t, admin, "n1"), h.enrollNode(t, admin, "n2")
	var p api.Proposal
	h.must(201, "POST", "/api/v1/dao/proposals", h.adminKey, api.ProposalRequest{Title: "revoke n1", VotingSeconds: 60,
		QuorumBPS: 5000, ThresholdBPS: 6000, Action: api.ProposalAction{Type: "revoke", Node: "n1"}}, &p)
	parsed, err := governance.ParseProposal(p.Encoded)
	if err != nil {
		t.Fatal(err)
	}
	if a := parsed.Action.(governance.RevokeNode); a.Key != n1.key.Sign.PublicKey().ID() {
		t.Fatal("the proposal does not name n1's key")
	}
	for _, k := range keys[:2] {
		h.must(200, "POST", "/api/v1/dao/vote", h.adminKey, sign(t, k, p, governance.Yes, 1, clk.Now()), nil)
	}
	ds, err := n2.c.FetchDecisions(t.Context(), 0)
	if err != nil || len(ds) != 0 {
		t.Fatalf("decisions before the window closed: %v %v", ds, err)
	}
	clk.Advance(61 * time.Second)
	if ds, err = n2.c.FetchDecisions(t.Context(), 0); err != nil || len(ds) != 1 {
		t.Fatalf("decisions after the window: %v %v", ds, err)
	}
	qc, err := governance.ParseCertificate(ds[0].Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qc.Verify(genesis, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.c.FetchDecisions(t.Context(), 0); err == nil {
		t.Fatal("the revoked node still calls the control plane")
	}
	var node api.Node
	h.must(200, "GET", "/api/v1/nodes/n1", h.adminKey, nil, &node)
	if node.RevokedAt == nil {
		t.Fatalf("n1 not revoked on the control plane: %+v", node)
	}
}

// TestGovernancePrices: an enacted plan-prices decision changes the plans' USDT prices in billing,
// exactly once and with an audit entry; a proposal naming an unknown plan or the wrong period is
// refused when it is made.
func TestGovernancePrices(t *testing.T) {
	h, clk, keys, _ := govHarness(t, func(tb testing.TB) store.Config {
		return store.Config{Driver: store.SQLite, Path: tb.TempDir() + "/c.db"}
	}, 2)
	ctx := context.Background()
	st := h.srv.Store()
	for _, p := range []*store.Plan{
		{Name: "basic", PriceUSDT: 1_000_000, PriceTON: 7, NodeQuota: 1, Duration: 30 * 24 * time.Hour},
		{Name: "pro", PriceUSDT: 9_000_000, NodeQuota: 5, Duration: 30 * 24 * time.Hour},
	} {
		if err := st.CreatePlan(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	propose := func(prices ...api.PriceSpec) api.ProposalRequest {
		return api.ProposalRequest{Title: "new prices", VotingSeconds: 60, QuorumBPS: 10000, ThresholdBPS: 10000,
			Action: api.ProposalAction{Type: "prices", Prices: prices}}
	}
	h.must(400, "POST", "/api/v1/dao/proposals", h.adminKey, propose(api.PriceSpec{Plan: "gold", MicroUSDT: 1, PeriodDays: 30}), nil)
	h.must(400, "POST", "/api/v1/dao/proposals", h.adminKey, propose(api.PriceSpec{Plan: "pro", MicroUSDT: 1, PeriodDays: 31}), nil)
	var p api.Proposal
	h.must(201, "POST", "/api/v1/dao/proposals", h.adminKey, propose(
		api.PriceSpec{Plan: "pro", MicroUSDT: 20_000_000, PeriodDays: 30}, api.PriceSpec{Plan: "basic", MicroUSDT: 5_000_000, PeriodDays: 30}), &p)
	for _, k := range keys {
		h.must(200, "POST", "/api/v1/dao/vote", h.adminKey, sign(t, k, p, governance.Yes, 1, clk.Now()), nil)
	}
	clk.Advance(61 * time.Second)
	for range 2 {
		h.must(200, "GET", "/api/v1/dao/decisions", h.adminKey, nil, nil)
	}
	plans, err := st.ListPlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, pl := range plans {
		got[pl.Name] = [2]int64{pl.PriceUSDT, pl.PriceTON}
	}
	if got["basic"] != [2]int64{5_000_000, 7} || got["pro"] != [2]int64{20_000_000, 0} {
		t.Fatalf("plans after the decision: %v", got)
	}
	audit, err := st.ListAudit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	changes := 0
	for _, e := range audit {
		if e.Action == "billing.plan.price" && e.Actor == "governance" {
			changes++
		}
	}
	if changes != 2 {
		t.Fatalf("%d governance price changes in the audit log, want 2 (one per plan, once)", changes)
	}
}

// TestGovernanceDetectorModel: once the members enact a detector model, /ai/predict serves only a
// model file of that SHA-256. The instance running the shipped model refuses with a 503 naming both
// hashes; an instance whose ai.model is the governed file serves; with no model decision the shipped
// model serves.
func TestGovernanceDetectorModel(t *testing.T) {
	h, clk, keys, _ := govHarness(t, func(tb testing.TB) store.Config {
		return store.Config{Driver: store.SQLite, Path: tb.TempDir() + "/c.db"}
	}, 2)
	viewer := h.user("vic", auth.Viewer)
	governed := writeModel(t, detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 4, 4, len(telemetry.Classes), 5))
	raw, err := os.ReadFile(governed)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	// A second instance, on the same database, whose operator points ai.model at the file the
	// members will pin.
	cfg := h.cfg
	cfg.AI.Model = governed
	h2 := *h
	h2.url = serveAnother(t, h, cfg, clk)
	if r := h2.do("GET", "/api/v1/ai/predict/alpha", viewer, nil); r.status != 404 {
		t.Fatalf("ai.model before any decision: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/api/v1/ai/predict/alpha", viewer, nil); r.status != 404 {
		t.Fatalf("shipped model before any decision: %d %s", r.status, r.body)
	}

	var p api.Proposal
	h.must(201, "POST", "/api/v1/dao/proposals", h.adminKey, api.ProposalRequest{Title: "detector v2", VotingSeconds: 60,
		QuorumBPS: 10000, ThresholdBPS: 10000, Action: api.ProposalAction{Type: "model", Model: &api.ModelSpec{SHA256: hex.EncodeToString(sum[:]), Name: "v2"}}}, &p)
	for _, k := range keys {
		h.must(200, "POST", "/api/v1/dao/vote", h.adminKey, sign(t, k, p, governance.Yes, 1, clk.Now()), nil)
	}
	if r := h.do("GET", "/api/v1/ai/predict/alpha", viewer, nil); r.status != 404 {
		t.Fatalf("shipped model while the vote is open: %d %s", r.status, r.body)
	}
	clk.Advance(61 * time.Second)
	r := h.do("GET", "/api/v1/ai/predict/alpha", viewer, nil)
	shipped := defaultmodel.SHA256()
	if r.status != 503 || !strings.Contains(string(r.body), hex.EncodeToString(sum[:])) || !strings.Contains(string(r.body), hex.EncodeToString(shipped[:])) {
		t.Fatalf("shipped model after the members pinned another: %d %s", r.status, r.body)
	}

	if r := h2.do("GET", "/api/v1/ai/predict/alpha", viewer, nil); r.status != 404 {
		t.Fatalf("the governed model: %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/api/v1/ai/predict/alpha", viewer, nil); r.status != 503 {
		t.Fatalf("the shipped model is still not the governed one: %d %s", r.status, r.body)
	}
}
