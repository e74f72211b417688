package control

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/meshca"
)

// handleReport stores a node's status report. The node is the one named by its X.509-SVID; the
// report cannot speak for another node.
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var rep api.MeshReport
	if !decodeJSON(w, r, &rep) {
		return
	}
	if err := rep.Validate(rc.node.name); err != nil {
		badRequest(w, "report: "+err.Error())
		return
	}
	n, err := s.st.NodeByName(r.Context(), rc.node.name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("node %q is not enrolled with this control plane", rc.node.name))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if n.Revoked() || n.KeyID != rc.node.keyID.String() {
		writeError(w, http.StatusForbidden, "forbidden", "node certificate is revoked or not the enrolled key")
		return
	}
	record, proof, ok := s.reportedRecord(w, r, n, &rep)
	if !ok {
		return
	}
	// The healing journal is kept apart from the report: the mesh view reads every report often
	// and never needs it.
	healing := rep.Healing
	rep.Healing = nil
	body, err := json.Marshal(rep)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	at := s.now()
	if err := s.st.PutReport(r.Context(), &store.Report{NodeID: n.ID, ReportedAt: at, Sequence: int64(rep.Sequence & (1<<63 - 1)), Body: string(body)}); err != nil {
		s.internal(w, r, err)
		return
	}
	if healing != nil {
		journal, err := json.Marshal(healing)
		if err == nil {
			err = s.st.PutHealing(r.Context(), &store.Healing{NodeID: n.ID, ReportedAt: s.now(), Journal: string(journal)})
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
	}
	rep.Healing = healing // recorded with the report: the labels of ai train --from-records
	s.recordReport(r.Context(), n.ID, at, &rep)
	s.m.reports.Inc()
	s.meshChanged()
	writeJSON(w, http.StatusAccepted, api.ReportAccepted{Accepted: true, CRLNumber: s.crl.get().list.Number, Record: record, Proof: proof,
		Advisories: s.currentAdvisories()})
}

// meshView is the mesh as the stored reports describe it.
type meshView struct {
	gen     uint64
	at      time.Time
	nodes   []api.MeshNode
	counts  api.MeshCounts
	links   []api.MeshLink
	routes  []api.MeshRoute
	expires map[string]time.Time // node -> certificate expiry, for metrics
}

// meshView returns the current view, from the cache when it is less than a second old and no
// report, enrollment, renewal or revocation happened since.
func (s *Server) meshView(ctx context.Context) (*meshView, error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	gen := s.viewGen.Load()
	if v := s.viewCache; v != nil && v.gen == gen && s.now().Sub(v.at) < time.Second {
		return v, nil
	}
	v, err := s.buildMeshView(ctx)
	if err != nil {
		return nil, err
	}
	v.gen = gen
	s.viewCache = v
	return v, nil
}

// meshChanged invalidates the cached mesh view.
func (s *Server) meshChanged() { s.viewEvents.set(s.viewGen.Add(1)); s.kickNodeSD() }

// nodesAndReports reads every enrolled node and every node's latest report.
func (s *Server) nodesAndReports(ctx context.Context) ([]store.Node, []store.Report, error) {
	nodes, err := s.st.ListNodes(ctx, store.MaxList)
	if err != nil {
		return nil, nil, err
	}
	reports, err := s.st.ListReports(ctx, store.MaxList)
	if err != nil {
		return nil, nil, err
	}
	return nodes, reports, nil
}

func (s *Server) buildMeshView(ctx context.Context) (*meshView, error) {
	now := s.now()
	nodes, reports, err := s.nodesAndReports(ctx)
	if err != nil {
		return nil, err
	}
	v := &meshView{at: now, expires: map[string]time.Time{}}
	live := map[string]bool{}
	for _, n := range nodes {
		if !n.Revoked() {
			live[n.Name] = true
		}
	}
	type parsed struct {
		rep   api.MeshReport
		at    time.Time
		stale bool
	}
	byNode := map[string]*parsed{}
	for _, r := range reports {
		var rep api.MeshReport
		if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
			s.log.Error("stored report unreadable", "node", r.NodeName, "err", err)
			continue
		}
		byNode[r.NodeName] = &parsed{rep: rep, at: r.ReportedAt, stale: now.Sub(r.ReportedAt) > s.cfg.Mesh.StaleAfter}
	}
	// up[a][b]: a reports its link to b up in a fresh report.
	up := map[string]map[string]bool{}
	for name, p := range byNode {
		if p.stale || !live[name] {
			continue
		}
		for _, peer := range p.rep.Peers {
			if peer.State == api.PeerUp {
				if up[name] == nil {
					up[name] = map[string]bool{}
				}
				up[name][peer.Name] = true
			}
		}
	}
	pairs, confirmed := map[[2]string]bool{}, map[[2]string]bool{}
	for _, n := range nodes {
		mn := api.MeshNode{Name: n.Name, Overlay: n.Overlay, CertNotAfter: n.NotAfter}
		p := byNode[n.Name]
		switch {
		case n.Revoked():
			mn.Status = api.NodeRevoked
			v.counts.Revoked++
		case p == nil:
			mn.Status = api.NodeSilent
			v.counts.Silent++
		case p.stale:
			mn.Status = api.NodeStale
			v.counts.Stale++
		default:
			mn.Status = api.NodeOnline
			v.counts.Online++
		}
		if !n.Revoked() {
			v.counts.Enrolled++
			v.expires[n.Name] = n.NotAfter
		}
		if p != nil {
			mn.LastReport = timePtr(p.at)
			mn.Sequence, mn.Version, mn.UptimeSeconds = p.rep.Sequence, p.rep.Version, p.rep.UptimeSeconds
			mn.KernelFeatures = p.rep.KernelFeatures
			mn.Peers, mn.Routes = len(p.rep.Peers), len(p.rep.Routes)
			linkTo := map[string]api.MeshLink{}
			for _, peer := range p.rep.Peers {
				if peer.State == api.PeerUp {
					mn.PeersUp++
				}
				l := api.MeshLink{From: n.Name, To: peer.Name, ToOverlay: peer.Overlay, Endpoint: peer.Endpoint, State: peer.State,
					RTTMillis: peer.RTTMillis, LossRatio: peer.LossRatio, TxBytes: peer.TxBytes, RxBytes: peer.RxBytes,
					LastHandshake: peer.LastHandshake, ReportedAt: p.at, Stale: p.stale || n.Revoked(),
					Confirmed: peer.State == api.PeerUp && up[peer.Name][n.Name] && !p.stale && !n.Revoked(),
					KnownPeer: live[peer.Name]}
				v.links = append(v.links, l)
				linkTo[peer.Name] = l
				if peer.State == api.PeerUp && !l.Stale {
					key := [2]string{min(n.Name, peer.Name), max(n.Name, peer.Name)}
					pairs[key] = true
					if l.Confirmed {
						confirmed[key] = true
					}
				}
			}
			for _, rt := range p.rep.Routes {
				mr := api.MeshRoute{Node: n.Name, Destination: rt.Destination, NextHop: rt.NextHop, Cost: rt.Cost, Hops: rt.Hops,
					ReportedAt: p.at, Stale: p.stale || n.Revoked()}
				if l, ok := linkTo[rt.NextHop]; ok {
					mr.NextHopLink = &l
				}
				v.routes = append(v.routes, mr)
			}
		}
		v.nodes = append(v.nodes, mn)
	}
	v.counts.Links, v.counts.LinksConfirmed = len(pairs), len(confirmed)
	slices.SortFunc(v.links, func(a, b api.MeshLink) int {
		return strings.Compare(a.From+"\x00"+a.To, b.From+"\x00"+b.To)
	})
	if v.links == nil {
		v.links = []api.MeshLink{}
	}
	if v.routes == nil {
		v.routes = []api.MeshRoute{}
	}
	if v.nodes == nil {
		v.nodes = []api.MeshNode{}
	}
	return v, nil
}

func (s *Server) handleMeshStatus(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	v, err := s.meshView(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.MeshStatus{GeneratedAt: v.at.UTC(), TrustDomain: s.td, CRLNumber: s.crl.get().list.Number,
		StaleAfterSeconds: int64(s.cfg.Mesh.StaleAfter / time.Second), Counts: v.counts, Nodes: v.nodes})
}

func (s *Server) handleMeshPeers(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	v, err := s.meshView(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.MeshPeers{GeneratedAt: v.at.UTC(), Links: v.links})
}

func (s *Server) handleMeshRoutes(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	v, err := s.meshView(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.MeshRoutes{GeneratedAt: v.at.UTC(), Routes: v.routes})
}

// Algorithm names reported with a node's keys (docs/identity.md, docs/control.md).
const (
	algKEM       = "ML-KEM-768+X25519 (X-Wing)"
	algSignature = "ML-DSA-65"
	algTLS       = "TLS 1.3 X25519MLKEM768 / ML-DSA-65"
	algMesh      = "PQNoise pqIK (X-Wing KEM authentication, mesh certificates)"
)

// handleNodeKeys returns a node's certified public keys and the algorithms they are used with.
// handleNodeHealing answers the latest self-healing journal the node reported.
func (s *Server) handleNodeHealing(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	n := s.nodeFromPath(w, r)
	if n == nil {
		return
	}
	out := api.NodeHealing{Node: n.Name, Entries: []api.HealingEntry{}}
	h, err := s.st.HealingOf(r.Context(), n.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.internal(w, r, err)
		return
	default:
		if err := json.Unmarshal([]byte(h.Journal), &out.Entries); err != nil {
			s.internal(w, r, fmt.Errorf("stored healing journal of %s: %w", n.Name, err))
			return
		}
		out.ReportedAt = timePtr(h.ReportedAt)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleNodeKeys(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	n := s.nodeFromPath(w, r)
	if n == nil {
		return
	}
	if k, ok := s.nodeKeys(w, r, n); ok {
		writeJSON(w, http.StatusOK, k)
	}
}

// handleHandshake serves the seed API's POST /security/handshake, kept for its clients: the same
// answer as GET /api/v1/nodes/{name}/keys with a live_check that says no handshake took place. The
// control plane has no mesh identity or path to a node's UDP socket, so it reports certified keys
// rather than pretending to have checked them against the running node.
func (s *Server) handleHandshake(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.HandshakeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	n := s.nodeNamed(w, r, req.Node)
	if n == nil {
		return
	}
	k, ok := s.nodeKeys(w, r, n)
	if !ok {
		return
	}
	w.Header().Set("Link", "</api/v1/nodes/"+n.Name+`/keys>; rel="successor-version"`)
	writeJSON(w, http.StatusOK, api.HandshakeResponse{NodeKeys: k, LiveCheck: api.LiveCheck{Performed: false,
		Reason: "this deprecated endpoint performs no handshake; it returns the node's certified keys, verified now, as GET /api/v1/nodes/{name}/keys does"}})
}

// nodeKeys reads the keys from the node's current issued certificate, which it verifies now
// against the CA and the current revocation list. Every field comes from the signed certificate.
func (s *Server) nodeKeys(w http.ResponseWriter, r *http.Request, n *store.Node) (api.NodeKeys, bool) {
	c, err := meshca.DecodeCertificatePEM([]byte(n.CertPEM))
	if err != nil {
		s.internal(w, r, fmt.Errorf("stored certificate of %q: %w", n.Name, err))
		return api.NodeKeys{}, false
	}
	verr := s.verifyMeshCert(c)
	k := api.NodeKeys{
		Node: c.Name, SPIFFEID: c.SPIFFEID().String(), Overlay: c.Overlay.String(), Serial: c.Serial.String(),
		Fingerprint: c.Fingerprint().String(), Groups: c.Groups, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		CertificateOK: verr == nil, Verification: "ok",
		KEM: api.PublicKeyInfo{Algorithm: algKEM, PublicKey: base64.StdEncoding.EncodeToString(c.KEMPublicKey.Bytes()),
			Size: len(c.KEMPublicKey.Bytes())},
		Signature: api.PublicKeyInfo{Algorithm: algSignature, PublicKey: base64.StdEncoding.EncodeToString(c.SignPublicKey.Bytes()),
			Size: len(c.SignPublicKey.Bytes()), KeyID: c.SignPublicKey.ID().String()},
		Algorithms: api.KeyAlgorithms{KEM: algKEM, Signature: algSignature, TLS: algTLS, MeshHandshake: algMesh},
	}
	if k.Groups == nil {
		k.Groups = []string{}
	}
	if verr != nil {
		k.Verification = verr.Error()
	}
	return k, true
}

// verifyMeshCert runs the mesh verifier over a certificate with the current revocation list.
func (s *Server) verifyMeshCert(c *meshca.Certificate) error {
	v, err := meshca.NewVerifier(s.caCert)
	if err != nil {
		return err
	}
	if _, err := v.UpdateCRL(s.crl.get().list); err != nil {
		return err
	}
	return v.Verify(c, s.now())
}
