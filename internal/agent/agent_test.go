package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"x0tta6bl4/internal/control"
	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/node"
	"x0tta6bl4/internal/telemetry"
)

// TestEnrollMeshRevoke is the control plane's end-to-end check: a control plane on 127.0.0.1 and three
// nodes that enrol with one-time tokens, form a mesh from their bundles, report to it, and keep their
// revocation lists current; when the operator revokes one, the others drop it within seconds.
func TestEnrollMeshRevoke(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	_, url, admin := startControlPlane(t, ctx, "agent.test", func(c *control.Config) {
		// A detector (untrained: this test checks the plumbing, not the model) for /ai/predict.
		model, err := detector.NewModel(detector.NumRobust, detector.NumRobustEdge, 8, 8, len(telemetry.Classes), 1).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		c.AI.Model = filepath.Join(t.TempDir(), "model.x6m")
		if err := os.WriteFile(c.AI.Model, model, 0o600); err != nil {
			t.Fatal(err)
		}
	})

	names := []string{"alpha", "bravo", "charlie"}
	nodes := map[string]*node.Node{}
	bundles := map[string]*client.Bundle{}
	for i, name := range names {
		tok, err := admin.CreateJoinToken(ctx, api.CreateJoinTokenRequest{NodeName: name, Groups: []string{"ops"}})
		if err != nil {
			t.Fatalf("join token: %v", err)
		}
		key, err := identity.GenerateNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		b, err := client.Enroll(ctx, url, tok.Token, key, name, client.EnrollOptions{})
		if err != nil {
			t.Fatalf("enroll %s: %v", name, err)
		}
		bundles[name] = b
		if _, err := client.Enroll(ctx, url, tok.Token, key, name, client.EnrollOptions{}); err == nil {
			t.Fatalf("join token for %s worked twice", name)
		}
		opts := node.Options{Key: key, Cert: b.Certificate, CA: []*meshca.Certificate{b.CA}, CRL: b.CRL,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: quiet,
			// The mesh stays the chain the test builds, bravo relaying between alpha and charlie,
			// rather than alpha and charlie linking directly on learning of each other.
			NoPunch: true,
			Firewall: firewall.Config{
				Inbound:  []firewall.Rule{{Proto: "any", Port: "any", Group: "ops"}},
				Outbound: []firewall.Rule{{Proto: "any", Port: "any", Group: "ops"}},
			}}
		if i > 0 { // a chain: each node dials the one before it
			prev := names[i-1]
			opts.Peers = []node.Peer{{Addr: nodes[prev].UDPAddr(), Cert: bundles[prev].Certificate}}
		}
		n, err := node.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go n.Run(ctx)
		cl, err := client.NewNode(url, key, b, client.NodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		go Run(ctx, Config{Node: n, Client: cl, ReportInterval: 200 * time.Millisecond, CRLWait: 5 * time.Second, Logger: quiet})
		nodes[name] = n
	}

	waitFor(t, 15*time.Second, "alpha routes to charlie over bravo", func() bool {
		for _, r := range nodes["alpha"].Routes() {
			if r.Name == "charlie" && r.Hops == 2 {
				return true
			}
		}
		return false
	})
	ping := func(from, to string) error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := nodes[from].Ping(pctx, bundles[to].Certificate.Overlay)
		return err
	}
	waitFor(t, 15*time.Second, "alpha pings charlie", func() bool { return ping("alpha", "charlie") == nil })
	waitFor(t, 10*time.Second, "the control plane shows the reported links", func() bool {
		st, err := admin.MeshStatus(ctx)
		return err == nil && st.Counts.LinksConfirmed >= 2 && st.Counts.Online == 3
	})

	// The links' byte counters reach /mesh/peers: every link of the chain has carried the pings
	// (and probes) both ways, so each end reports bytes sent and received.
	var links []api.MeshLink
	waitFor(t, 10*time.Second, "/mesh/peers shows bytes on every link both ways", func() bool {
		peers, err := admin.MeshPeers(ctx)
		if err != nil {
			return false
		}
		links = peers.Links
		counted := map[string]bool{}
		for _, l := range links {
			if l.TxBytes > 0 && l.RxBytes > 0 {
				counted[l.From+">"+l.To] = true
			}
		}
		return counted["alpha>bravo"] && counted["bravo>alpha"] && counted["bravo>charlie"] && counted["charlie>bravo"]
	})
	for _, l := range links {
		t.Logf("link %s>%s: tx %d rx %d bytes", l.From, l.To, l.TxBytes, l.RxBytes)
	}

	// The nodes' own telemetry reaches the control plane's detector: bravo's features and both of
	// its links, as bravo counted them.
	var pred *api.Prediction
	waitFor(t, 10*time.Second, "a prediction for bravo from its reported telemetry", func() bool {
		var err error
		pred, err = admin.Predict(ctx, "bravo")
		return err == nil && !pred.TelemetryMissing && len(pred.LinkFeatures) == 2 && pred.Features["degree"] == 2 &&
			pred.LinkFeatures["alpha"]["up"] == 1 && pred.LinkFeatures["charlie"]["up"] == 1
	})
	if pred.GraphNodes != 3 || pred.Score < 0 || pred.Score > 1 || len(pred.TopNeighbours) != 2 {
		t.Fatalf("prediction %+v", pred)
	}

	// The self-healing journal reaches the API: an operator's cost advisory names bravo, alpha's
	// healing loop applies it, the agent reports the journal, and GET /nodes/alpha/healing shows
	// the decision as alpha recorded it. The probe rule's own verdicts are tested on a virtual clock
	// (internal/meshtest) and over real sockets (internal/node's netns tests); on a machine loaded
	// enough to stall these in-process nodes it rightly judges nothing, while an advisory gives the
	// loop a decision that does not depend on timing.
	if h, err := admin.NodeHealing(ctx, "alpha"); err != nil || len(h.Entries) != 0 || h.ReportedAt != nil {
		t.Fatalf("alpha's healing journal before any decision: %+v %v", h, err)
	}
	if _, err := admin.SetAdvisory(ctx, "bravo", api.SetAdvisoryRequest{Reason: "journal check", TTLSeconds: 600}); err != nil {
		t.Fatalf("advisory: %v", err)
	}
	var want node.HealDecision
	waitFor(t, 30*time.Second, "alpha's healing loop applies the advisory against bravo", func() bool {
		for _, d := range nodes["alpha"].HealJournal(api.MaxHealingEntries) {
			if d.Action == "advise" {
				want = d
				return true
			}
		}
		return false
	})
	var got api.HealingEntry
	var reported *api.NodeHealing
	waitFor(t, 10*time.Second, "alpha's decision in GET /api/v1/nodes/alpha/healing", func() bool {
		var err error
		if reported, err = admin.NodeHealing(ctx, "alpha"); err != nil {
			return false
		}
		for _, e := range reported.Entries {
			if e.Time.Equal(want.Time) {
				got = e
				return true
			}
		}
		return false
	})
	if got.Peer != "bravo" || got.Peer != want.Peer || got.Action != want.Action || got.Rule != want.Rule ||
		got.Class != want.Class || got.Confidence != want.Confidence || len(got.Evidence) != len(want.Evidence) || reported.ReportedAt == nil {
		t.Fatalf("reported %+v, alpha decided %+v", reported, want)
	}
	t.Logf("alpha's decision on the API: %s %s (%s, rule %q)", got.Action, got.Peer, got.Class, got.Rule)
	if _, err := admin.ClearAdvisory(ctx, "bravo"); err != nil {
		t.Fatalf("clear advisory: %v", err)
	}

	revoked := time.Now()
	if _, err := admin.Revoke(ctx, "charlie"); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	waitFor(t, 10*time.Second, "bravo drops charlie", func() bool {
		for _, p := range nodes["bravo"].Peers() {
			if p.Name == "charlie" {
				return false
			}
		}
		return true
	})
	t.Logf("charlie revoked at the control plane; bravo dropped its link %s later", time.Since(revoked).Round(time.Millisecond))
	if err := ping("alpha", "charlie"); err == nil {
		t.Fatal("alpha still reaches the revoked node")
	}
	if err := ping("alpha", "bravo"); err != nil {
		t.Fatalf("alpha lost bravo too: %v", err)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
