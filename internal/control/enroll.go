package control

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/auth"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
)

func x509PEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// bundle assembles what a node receives on enrollment and renewal.
func (s *Server) bundle(c *meshca.Certificate, svid *x509.Certificate) api.Bundle {
	crl := s.crl.get()
	life := c.NotAfter.Sub(c.NotBefore)
	return api.Bundle{
		Name: c.Name, SPIFFEID: c.SPIFFEID().String(), Overlay: c.Overlay.String(), Serial: c.Serial.String(),
		Groups: c.Groups, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		RenewAfter:     c.NotBefore.Add(life * 2 / 3).UTC(),
		TrustDomain:    s.td,
		CertificatePEM: string(meshca.EncodeCertificatePEM(c)),
		SVIDPEM:        x509PEM(svid),
		CAPEM:          string(meshca.EncodeCertificatePEM(s.caCert)),
		CAX509PEM:      x509PEM(s.caX509),
		CRLPEM:         string(crl.pem),
		CRLNumber:      crl.list.Number,
	}
}

// issue signs a node certificate and its X.509-SVID.
func (s *Server) issue(name string, groups []string, pub *identity.NodePublicKey, d time.Duration) (*meshca.Certificate, *x509.Certificate, error) {
	c, err := s.ca.Issue(meshca.IssueRequest{Name: name, Groups: groups, PublicKey: pub, Duration: d}, s.now())
	if err != nil {
		return nil, nil, err
	}
	svid, err := s.ca.CA().IssueSVID(s.caX509, c)
	if err != nil {
		return nil, nil, err
	}
	return c, svid, nil
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	writeJSON(w, http.StatusOK, api.CABundle{
		TrustDomain: s.td, CAKeyID: s.caPin,
		CAPEM: string(meshca.EncodeCertificatePEM(s.caCert)), CAX509PEM: x509PEM(s.caX509),
		CRLNumber: s.crl.get().list.Number,
	})
}

// handleCRL serves the signed revocation list. With ?after=N it waits (up to ?wait seconds, at
// most limits.max_crl_wait) until a list newer than N exists, so nodes learn of a revocation
// within moments without polling hard.
func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	after, hasAfter, wait, err := longPollQuery(r, s.cfg.Limits.MaxCRLWait)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	cur, changed := s.crl.wait()
	if hasAfter && cur.list.Number <= after {
		longPoll(r, s.crlWaiters, changed, wait)
		cur = s.crl.get()
	}
	etag := `"crl-` + strconv.FormatUint(cur.list.Number, 10) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("X-CRL-Number", strconv.FormatUint(cur.list.Number, 10))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.WriteHeader(http.StatusOK)
	w.Write(cur.pem)
}

func toAPIJoinToken(t *store.JoinToken) api.JoinToken {
	return api.JoinToken{ID: t.ID, Prefix: t.Prefix, NodeName: t.NodeName, Groups: t.Groups, CertTTLSeconds: int64(t.CertTTL / time.Second),
		Description: t.Description, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		UsedAt: timePtr(t.UsedAt), UsedBy: t.UsedBy}
}

func (s *Server) handleCreateJoinToken(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.CreateJoinTokenRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	ec := s.cfg.Enrollment
	if req.NodeName != "" {
		if err := identity.ValidateNodeName(req.NodeName); err != nil {
			badRequest(w, "node_name: "+err.Error())
			return
		}
		if req.NodeName == api.ControlNodeName {
			badRequest(w, "node_name: "+api.ControlNodeName+" is reserved for the control plane")
			return
		}
	}
	if len(req.Groups) > meshca.MaxGroups {
		badRequest(w, fmt.Sprintf("at most %d groups", meshca.MaxGroups))
		return
	}
	groups := meshca.NormalizeGroups(req.Groups)
	for _, g := range groups {
		if err := identity.ValidateGroup(g); err != nil {
			badRequest(w, "groups: "+err.Error())
			return
		}
		if len(s.caCert.Groups) > 0 && !s.caCert.InGroup(g) {
			badRequest(w, fmt.Sprintf("groups: the CA may grant only %v, not %q", s.caCert.Groups, g))
			return
		}
	}
	if err := validText(req.Description, maxNameLen, true); err != nil {
		badRequest(w, "description: "+err.Error())
		return
	}
	if req.Account != "" || s.bill != nil {
		if err := validUsername(req.Account); err != nil {
			badRequest(w, "account (charged for the nodes this token enrols; required with billing): "+strings.TrimPrefix(err.Error(), "username: "))
			return
		}
	}
	ttl, err := secondsIn("ttl_seconds", req.TTLSeconds, ec.TokenTTL, ec.MaxTokenTTL)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	certTTL, err := secondsIn("cert_ttl_seconds", req.CertTTLSeconds, ec.CertDuration, ec.MaxCertDuration)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	now := s.now()
	if now.Add(ttl).Add(certTTL).After(s.caCert.NotAfter) {
		badRequest(w, fmt.Sprintf("a certificate issued with this token could outlive the CA (valid until %s); ask for shorter durations",
			s.caCert.NotAfter.UTC().Format(time.RFC3339)))
		return
	}
	tok, err := auth.NewToken(auth.KindJoin)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	jt := &store.JoinToken{Prefix: tok.Prefix, Hash: tok.Hash(), NodeName: req.NodeName, Groups: groups, CertTTL: certTTL,
		Description: req.Description, CreatedBy: rc.actor(), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		n, err := tx.CountPendingJoinTokens(r.Context(), now)
		if err != nil {
			return err
		}
		if n >= ec.MaxPendingTokens {
			return errLimit
		}
		if err := tx.CreateJoinToken(r.Context(), jt); err != nil {
			return err
		}
		if req.Account != "" {
			if err := tx.SetJoinTokenAccount(r.Context(), jt.ID, req.Account); err != nil {
				return err
			}
		}
		return s.audit(r.Context(), tx.Ops, rc, "jointoken.create", tok.Prefix,
			fmt.Sprintf("node_name=%q groups=%v cert_ttl=%s expires=%s", req.NodeName, groups, certTTL, jt.ExpiresAt.UTC().Format(time.RFC3339)))
	})
	switch {
	case errors.Is(err, errLimit):
		writeError(w, http.StatusConflict, "limit", fmt.Sprintf("%d unused join tokens are pending, the most allowed", ec.MaxPendingTokens))
	case err != nil:
		s.internal(w, r, err)
	default:
		writeJSON(w, http.StatusCreated, api.JoinTokenCreated{JoinToken: toAPIJoinToken(jt), Token: auth.JoinTokenWithPin(tok, s.caPin), CAPin: s.caPin})
	}
}

func secondsIn(name string, v int64, def, max time.Duration) (time.Duration, error) {
	if v == 0 {
		return def, nil
	}
	if v < 60 || v > int64(max/time.Second) {
		return 0, fmt.Errorf("%s %d: want 60-%d", name, v, int64(max/time.Second))
	}
	return time.Duration(v) * time.Second, nil
}

func (s *Server) handleListJoinTokens(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	toks, err := s.st.ListJoinTokens(r.Context(), store.MaxList)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.JoinTokenList{Tokens: make([]api.JoinToken, 0, len(toks))}
	for i := range toks {
		out.Tokens = append(out.Tokens, toAPIJoinToken(&toks[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// errEnroll carries an HTTP status out of the enrollment transaction.
type errEnroll struct {
	status int
	msg    string
}

func (e *errEnroll) Error() string { return e.msg }

// errBilling is an enrolment or renewal refused for billing, noted after the transaction ends.
type errBilling struct{ account, reason, msg string }

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	var req api.EnrollRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	tokStr, _, err := auth.SplitJoinToken(req.Token)
	if err != nil {
		s.enrollFail(w, http.StatusUnauthorized, "invalid join token")
		return
	}
	if err := identity.ValidateNodeName(req.Name); err != nil {
		s.enrollFail(w, http.StatusBadRequest, "name: "+err.Error())
		return
	}
	if req.Name == api.ControlNodeName {
		s.enrollFail(w, http.StatusBadRequest, "name: "+api.ControlNodeName+" is reserved for the control plane")
		return
	}
	pub, err := identity.ParseNodePublicKey([]byte(req.PublicKey))
	if err != nil {
		s.enrollFail(w, http.StatusBadRequest, "public_key: "+err.Error())
		return
	}
	keyID := pub.Sign.ID()
	if s.crl.get().list.RevokesKey(keyID) {
		s.enrollFail(w, http.StatusForbidden, "this public key has been revoked; generate new keys")
		return
	}
	prefix, secret, _ := auth.ParseToken(auth.KindJoin, tokStr)
	jt, err := s.st.JoinTokenByPrefix(r.Context(), prefix)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !auth.CheckSecret(auth.KindJoin, secret, jt.Hash)) {
		s.enrollFail(w, http.StatusUnauthorized, "invalid join token")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	now := s.now()
	switch {
	case !jt.UsedAt.IsZero():
		s.enrollFail(w, http.StatusUnauthorized, "join token already used")
		return
	case !now.Before(jt.ExpiresAt):
		s.enrollFail(w, http.StatusUnauthorized, "join token expired")
		return
	case jt.NodeName != "" && jt.NodeName != req.Name:
		s.enrollFail(w, http.StatusForbidden, fmt.Sprintf("this join token is for node %q", jt.NodeName))
		return
	}
	rc.node = &nodePeer{name: req.Name, keyID: keyID}
	var (
		cert     *meshca.Certificate
		svid     *x509.Certificate
		enrolled *store.Node
		billErr  *errBilling
	)
	err = s.st.InTx(r.Context(), func(tx *store.Tx) error {
		// Consuming is the first write: a concurrent enrollment with the same token finds it used.
		ok, err := tx.ConsumeJoinToken(r.Context(), jt.ID, req.Name, now)
		if err != nil {
			return err
		}
		if !ok {
			return &errEnroll{http.StatusUnauthorized, "join token already used or expired"}
		}
		if other, err := tx.LiveNodeByKeyID(r.Context(), keyID.String()); err == nil {
			return &errEnroll{http.StatusConflict, fmt.Sprintf("this public key is already enrolled as node %q", other.Name)}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if existing, err := tx.NodeByName(r.Context(), req.Name); err == nil && !existing.Revoked() {
			return &errEnroll{http.StatusConflict, fmt.Sprintf("node %q is already enrolled; revoke it first to replace it", req.Name)}
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		account, err := tx.JoinTokenAccount(r.Context(), jt.ID)
		if err != nil {
			return err
		}
		if s.bill != nil {
			// Refusing rolls the transaction back: the token stays usable once the account pays.
			if reason, msg, err := s.billingRefusal(r.Context(), tx.Ops, account, false); err != nil {
				return err
			} else if reason != "" {
				billErr = &errBilling{account: account, reason: reason, msg: msg}
				return &errEnroll{http.StatusPaymentRequired, msg}
			}
		}
		if cert, svid, err = s.issue(req.Name, jt.Groups, pub, jt.CertTTL); err != nil {
			return &errEnroll{http.StatusBadRequest, "cannot issue: " + err.Error()}
		}
		n := &store.Node{Name: req.Name, KeyID: keyID.String(), Overlay: cert.Overlay.String(), SPIFFEID: cert.SPIFFEID().String(),
			Groups: cert.Groups, PublicKeyPEM: string(identity.MarshalNodePublicKey(pub)), Serial: cert.Serial.String(),
			CertPEM: string(meshca.EncodeCertificatePEM(cert)), SVIDPEM: x509PEM(svid), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
			CertTTL: jt.CertTTL, EnrolledAt: now, EnrolmentArea: req.RoutingArea}
		if err := tx.InsertNode(r.Context(), n); err != nil {
			return err
		}
		if account != "" {
			if err := tx.SetNodeAccount(r.Context(), n.ID, account); err != nil {
				return err
			}
		}
		enrolled = n
		detail := fmt.Sprintf("join token %s serial %s key %s groups %v", jt.Prefix, cert.Serial, keyID, cert.Groups)
		if req.RoutingArea != nil {
			detail += fmt.Sprintf(" routing area %d", *req.RoutingArea)
		}
		return s.audit(r.Context(), tx.Ops, rc, "node.enroll", req.Name, detail)
	})
	if billErr != nil {
		s.noteBillingRefusal(r.Context(), rc, "enroll", req.Name, billErr.account, billErr.reason, billErr.msg)
	}
	var ee *errEnroll
	switch {
	case errors.As(err, &ee):
		s.enrollFail(w, ee.status, ee.msg)
	case errors.Is(err, store.ErrConflict):
		s.enrollFail(w, http.StatusConflict, fmt.Sprintf("node %q is already enrolled", req.Name))
	case err != nil:
		s.internal(w, r, err)
	default:
		s.m.enrollments.WithLabelValues("ok").Inc()
		s.meshChanged()
		s.log.Info("node enrolled", "node", req.Name, "serial", cert.Serial.String(), "remote", rc.ip)
		writeJSON(w, http.StatusCreated, api.Enrolment{Bundle: s.bundle(cert, svid), Records: s.enrolmentRecords(r.Context(), enrolled, req.RoutingArea)})
	}
}

func (s *Server) enrollFail(w http.ResponseWriter, status int, msg string) {
	s.m.enrollments.WithLabelValues("refused").Inc()
	writeError(w, status, http.StatusText(status), msg)
}

// handleRenew issues a node a new certificate for the same keys, name and groups. The node proves
// who it is with the X.509-SVID it still holds (mutual TLS; the TLS 1.3 CertificateVerify is an
// ML-DSA-65 signature with the node's key), so renewal needs no token, and an expired or revoked
// node cannot renew.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if r.ContentLength > 0 {
		var empty struct{}
		if !decodeJSON(w, r, &empty) {
			return
		}
	}
	var (
		cert    *meshca.Certificate
		svid    *x509.Certificate
		billErr *errBilling
	)
	err := s.st.InTx(r.Context(), func(tx *store.Tx) error {
		n, err := tx.NodeByName(r.Context(), rc.node.name)
		if errors.Is(err, store.ErrNotFound) {
			return &errEnroll{http.StatusForbidden, fmt.Sprintf("node %q is not enrolled with this control plane", rc.node.name)}
		}
		if err != nil {
			return err
		}
		if n.Revoked() {
			return &errEnroll{http.StatusForbidden, "node has been revoked"}
		}
		if n.KeyID != rc.node.keyID.String() {
			return &errEnroll{http.StatusForbidden, "the presented certificate's key is not the enrolled key of this node"}
		}
		if s.bill != nil {
			// Nodes enrolled before billing was enabled count against no account and renew freely.
			account, err := tx.NodeAccount(r.Context(), n.ID)
			if err != nil {
				return err
			}
			if account != "" {
				if reason, msg, err := s.billingRefusal(r.Context(), tx.Ops, account, true); err != nil {
					return err
				} else if reason != "" {
					billErr = &errBilling{account: account, reason: reason, msg: msg}
					return &errEnroll{http.StatusPaymentRequired, msg}
				}
			}
		}
		pub, err := identity.ParseNodePublicKey([]byte(n.PublicKeyPEM))
		if err != nil {
			return fmt.Errorf("stored public key of %q: %w", n.Name, err)
		}
		if cert, svid, err = s.issue(n.Name, n.Groups, pub, n.CertTTL); err != nil {
			return &errEnroll{http.StatusConflict, "cannot issue: " + err.Error()}
		}
		n.Serial, n.CertPEM, n.SVIDPEM = cert.Serial.String(), string(meshca.EncodeCertificatePEM(cert)), x509PEM(svid)
		n.NotBefore, n.NotAfter = cert.NotBefore, cert.NotAfter
		if err := tx.UpdateNodeCertificate(r.Context(), n, s.now()); err != nil {
			return err
		}
		return s.audit(r.Context(), tx.Ops, rc, "node.renew", n.Name, "serial "+cert.Serial.String())
	})
	if billErr != nil {
		s.noteBillingRefusal(r.Context(), rc, "renew", rc.node.name, billErr.account, billErr.reason, billErr.msg)
	}
	var ee *errEnroll
	switch {
	case errors.As(err, &ee):
		s.m.renewals.WithLabelValues("refused").Inc()
		writeError(w, ee.status, http.StatusText(ee.status), ee.msg)
	case err != nil:
		s.internal(w, r, err)
	default:
		s.m.renewals.WithLabelValues("ok").Inc()
		s.meshChanged()
		writeJSON(w, http.StatusOK, s.bundle(cert, svid))
	}
}

func (s *Server) nodeStatus(n *store.Node) string {
	switch {
	case n.Revoked():
		return "revoked"
	case !s.now().Before(n.NotAfter):
		return "expired"
	}
	return "active"
}

func (s *Server) toAPINode(n *store.Node) api.Node {
	out := api.Node{Name: n.Name, SPIFFEID: n.SPIFFEID, Overlay: n.Overlay, KeyID: n.KeyID, Groups: n.Groups, Serial: n.Serial,
		NotBefore: n.NotBefore, NotAfter: n.NotAfter, Status: s.nodeStatus(n), EnrolledAt: n.EnrolledAt,
		RenewedAt: timePtr(n.RenewedAt), RevokedAt: timePtr(n.RevokedAt), CertificatePEM: n.CertPEM, SVIDPEM: n.SVIDPEM}
	if area, fromRecord, known := n.RoutingArea(); known {
		out.RoutingArea, out.RoutingAreaSource = &area, api.AreaFromEnrolment
		if fromRecord {
			out.RoutingAreaSource = api.AreaFromRecord
		}
	}
	return out
}

func (s *Server) handleListNodes(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	nodes, err := s.st.ListNodes(r.Context(), store.MaxList)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := api.NodeList{Nodes: make([]api.Node, 0, len(nodes))}
	for i := range nodes {
		out.Nodes = append(out.Nodes, s.toAPINode(&nodes[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) nodeFromPath(w http.ResponseWriter, r *http.Request) *store.Node {
	return s.nodeNamed(w, r, r.PathValue("name"))
}

// nodeNamed looks up an enrolled node, answering 400 for an invalid name and 404 for an unknown one.
func (s *Server) nodeNamed(w http.ResponseWriter, r *http.Request, name string) *store.Node {
	if err := identity.ValidateNodeName(name); err != nil {
		badRequest(w, "node name: "+err.Error())
		return nil
	}
	n, err := s.st.NodeByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no node %q is enrolled", name))
		return nil
	}
	if err != nil {
		s.internal(w, r, err)
		return nil
	}
	return n
}

func (s *Server) handleGetNode(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if n := s.nodeFromPath(w, r); n != nil {
		writeJSON(w, http.StatusOK, s.toAPINode(n))
	}
}

// handleRevokeNode revokes every certificate ever issued to the node and its signing key: the CA
// signs the next revocation list, long-polling nodes get it at once, and the node's own mutual TLS
// connections to the API are refused from this moment.
func (s *Server) handleRevokeNode(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	n := s.nodeFromPath(w, r)
	if n == nil {
		return
	}
	if n.Revoked() {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("node %q was already revoked at %s", n.Name, n.RevokedAt.Format(time.RFC3339)))
		return
	}
	crl, serialHex, err := s.revokeNode(r.Context(), n, func(tx *store.Tx, crl *meshca.RevocationList, serials int) error {
		return s.audit(r.Context(), tx.Ops, rc, "node.revoke", n.Name,
			fmt.Sprintf("revocation list %d: %d serials, key %s", crl.Number, serials, n.KeyID))
	})
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.log.Warn("node revoked", "node", n.Name, "crl_number", crl.Number, "by", rc.actor())
	slices.Sort(serialHex)
	writeJSON(w, http.StatusOK, api.RevokeResponse{Node: n.Name, CRLNumber: crl.Number, RevokedSerials: serialHex, RevokedKeyID: n.KeyID})
}

// revokeNode puts every serial of the node and its key on the CA's next revocation list. Signing,
// storing and announcing the list, marking the node and audit's entry commit together: an
// acknowledged revocation is in the database, and every instance serves it.
func (s *Server) revokeNode(ctx context.Context, n *store.Node, audit func(tx *store.Tx, crl *meshca.RevocationList, serials int) error) (*meshca.RevocationList, []string, error) {
	s.revokeMu.Lock()
	defer s.revokeMu.Unlock()
	serialHex, err := s.st.NodeSerials(ctx, n.ID)
	if err != nil {
		return nil, nil, err
	}
	serials := make([]meshca.Serial, 0, len(serialHex))
	for _, h := range serialHex {
		sn, err := meshca.ParseSerial(h)
		if err != nil {
			return nil, nil, fmt.Errorf("stored serial of %q: %w", n.Name, err)
		}
		serials = append(serials, sn)
	}
	keyID, err := parseKeyID(n.KeyID)
	if err != nil {
		return nil, nil, fmt.Errorf("stored key ID of %q: %w", n.Name, err)
	}
	var crl *meshca.RevocationList
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if crl, err = s.signRevocation(ctx, tx, serials, []identity.KeyID{keyID}); err != nil {
			return err
		}
		if err := tx.MarkNodeRevoked(ctx, n.ID, s.now()); err != nil {
			return err
		}
		return audit(tx, crl, len(serials))
	})
	if err != nil {
		return nil, nil, err
	}
	s.installCRL(crl)
	s.m.revocations.Inc()
	s.meshChanged()
	return crl, serialHex, nil
}

func parseKeyID(s string) (identity.KeyID, error) {
	var id identity.KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("key ID %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}
