package control

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// Signed records: every report may carry the node's latest signed link-state record with its
// certificate. The control plane checks both and keeps the latest per node; nodes long-poll
// GET /api/v1/mesh/records for the records of the nodes they may reach, and get the current ones
// in their enrolment answer, so that a node that has only a join token can dial at once.
//
// A record is *published* (it takes the next generation number and wakes the long polls) when it
// is news to a node that learns records only from here: the node's first record, a new
// certificate, a restart (incarnation), a change of relaying, endpoints or neighbours, or when the
// copy last published has less than half of the new record's remaining lifetime left, so that
// learnt copies never expire while their originator reports. Refreshes and metric changes in
// between are stored (a full fetch returns the latest) but not published: the flood carries them
// to every node that has a link, and publishing each would cost every node a record per node per
// refresh interval.

// recordsState is the control plane's part in handing out records.
type recordsState struct {
	mu      sync.Mutex // one publication at a time, so that generations become visible in order
	gen     *generation
	waiters chan struct{}
	results *prometheus.CounterVec
	current prometheus.Gauge
}

// Results of a reported record, for metrics: the api.Record* outcomes and "refused".
var recordResults = []string{api.RecordPublished, api.RecordStored, api.RecordStale, api.RecordOldCertificate, api.RecordExpired, "refused"}

func (s *Server) initRecords(ctx context.Context) error {
	g, err := s.st.RecordGeneration(ctx)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	s.records.gen = newGeneration(g)
	s.records.waiters = make(chan struct{}, s.cfg.Limits.MaxRecordWaiters)
	s.records.results = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "x0tta6bl4_control_mesh_records_total", Help: "Signed records received in reports, by result (published, stored, stale, old_certificate, expired, refused).",
	}, []string{"result"})
	s.records.current = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "x0tta6bl4_control_mesh_record_generation", Help: "Generation number of the latest published signed record.",
	})
	s.m.reg.MustRegister(s.records.results, s.records.current)
	for _, r := range recordResults {
		s.records.results.WithLabelValues(r)
	}
	s.records.current.Set(float64(g))
	return nil
}

// mayReach decides whose records a node receives: those of the nodes the mesh access policy lets
// it open flows to, or lets open flows to it (docs/connectivity.md, "Policy"); a flow either way
// needs both ends to find each other, since the one asked to punch dials back. Without a policy
// every live node may reach every other; revoked nodes and expired records never get this far (the
// store leaves them out).
func (s *Server) mayReach(caller *store.Node, target *store.MeshRecord) bool {
	return target.NodeID != caller.ID &&
		(s.policyAllows(caller.Name, caller.Groups, target.NodeName, target.NodeGroups) ||
			s.policyAllows(target.NodeName, target.NodeGroups, caller.Name, caller.Groups))
}

// badRecordError is a reported record refused as invalid (400).
type badRecordError struct{ msg string }

func (e *badRecordError) Error() string { return e.msg }

func badRecord(format string, args ...any) error {
	return &badRecordError{msg: fmt.Sprintf(format, args...)}
}

// reportedRecord handles the record of a report from node n, and takes it out of the report (it is
// stored on its own). It returns what became of it, or writes the error answer and returns ok false.
func (s *Server) reportedRecord(w http.ResponseWriter, r *http.Request, n *store.Node, rep *api.MeshReport) (outcome string, ok bool) {
	if rep.Record == nil {
		return "", true
	}
	outcome, err := s.acceptRecord(r.Context(), n, rep.Record)
	rep.Record = nil
	var bad *badRecordError
	switch {
	case errors.As(err, &bad):
		s.records.results.WithLabelValues("refused").Inc()
		s.log.Warn("reported record refused", "node", n.Name, "err", err)
		badRequest(w, "report: record: "+bad.msg)
		return "", false
	case err != nil:
		s.internal(w, r, err)
		return "", false
	}
	s.records.results.WithLabelValues(outcome).Inc()
	return outcome, true
}

// acceptRecord checks a record reported by node n and stores it if it is newer than the one held.
// The checks are those every node makes of a flooded record (routing.Router): the certificate is
// the one the record names, by the record's originator, verifies against the CA and the current
// revocation list, and its key signed the record. Here it must also be the reporting node's current
// certificate. A record that is not newer than the stored one is ignored before any signature is
// checked.
func (s *Server) acceptRecord(ctx context.Context, n *store.Node, sr *api.SignedRecord) (string, error) {
	certRaw, raw, err := sr.Decode()
	if err != nil {
		return "", badRecord("%v", err)
	}
	rec, err := routing.ParseRecord(raw)
	if err != nil {
		return "", badRecord("%v", err)
	}
	cert, err := meshca.ParseCertificate(certRaw)
	if err != nil {
		return "", badRecord("certificate: %v", err)
	}
	switch {
	case cert.Kind != meshca.KindNode || cert.SignPublicKey == nil:
		return "", badRecord("not a node certificate")
	case cert.Fingerprint() != rec.CertFingerprint:
		return "", badRecord("the certificate is not the one the record names")
	case cert.SignPublicKey.ID() != rec.Origin:
		return "", badRecord("the record's originator is not the certificate's key")
	case cert.Name != n.Name || rec.Origin.String() != n.KeyID:
		return "", badRecord("the record and certificate are not node %q's", n.Name)
	case rec.Seq > math.MaxInt64:
		return "", badRecord("sequence number %d beyond 2^63-1", rec.Seq)
	}
	now := s.now()
	if !rec.Expires.After(now) {
		return api.RecordExpired, nil
	}
	old, err := s.st.RecordOf(ctx, n.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if old != nil && rec.Seq <= old.Sequence {
		return api.RecordStale, nil
	}
	if cert.Serial.String() != n.Serial {
		// An earlier certificate of this node (the node re-signs under a renewed one at once).
		return api.RecordOldCertificate, nil
	}
	if err := s.verifyMeshCert(cert); err != nil {
		return "", badRecord("certificate: %v", err)
	}
	if err := rec.VerifySignature(cert); err != nil {
		return "", badRecord("the signature does not verify with the certificate's key")
	}
	return s.storeRecord(ctx, n, rec, certRaw, raw, now)
}

// storeRecord stores a verified record newer than the one read before, publishing it if it is news.
func (s *Server) storeRecord(ctx context.Context, n *store.Node, rec *routing.Record, certRaw, raw []byte, now time.Time) (string, error) {
	digest := newsDigest(rec)
	s.records.mu.Lock()
	defer s.records.mu.Unlock()
	outcome, gen := api.RecordStored, uint64(0)
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		outcome, gen = api.RecordStored, 0
		old, err := tx.RecordOf(ctx, n.ID) // again: another report of the node may have come first
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if old != nil && rec.Seq <= old.Sequence {
			outcome = api.RecordStale
			return nil
		}
		m := &store.MeshRecord{NodeID: n.ID, Sequence: rec.Seq, Expires: rec.Expires, Certificate: certRaw, Record: raw, ReceivedAt: now}
		if isNews(old, digest, rec.Expires, now) {
			if gen, err = tx.NextRecordGeneration(ctx); err != nil {
				return err
			}
			m.Generation, m.PublishedExpires, m.PublishedDigest = gen, rec.Expires, digest
			outcome = api.RecordPublished
		} else {
			m.Generation, m.PublishedExpires, m.PublishedDigest = old.Generation, old.PublishedExpires, old.PublishedDigest
		}
		stored, err := tx.PutRecord(ctx, m)
		if err != nil {
			return err
		}
		if !stored {
			outcome, gen = api.RecordStale, 0
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if gen != 0 {
		s.records.gen.set(gen)
		s.records.current.Set(float64(gen))
	}
	return outcome, nil
}

// refreshRecordGeneration takes in the records other instances on the same database published: the
// long polls here wait on this instance's generation, which its own publications move on, so
// without this a node long-polling one instance would learn of a record published through another
// only when its poll timed out.
func (s *Server) refreshRecordGeneration(ctx context.Context) error {
	g, err := s.st.RecordGeneration(ctx)
	if err != nil {
		return fmt.Errorf("control: record generation: %w", err)
	}
	if s.records.gen.advance(g) {
		s.records.current.Set(float64(g))
	}
	return nil
}

// isNews reports whether a record with the given digest and expiry must be published, given the
// record stored before (nil: none).
func isNews(old *store.MeshRecord, digest string, expires, now time.Time) bool {
	return old == nil || old.PublishedDigest != digest || old.PublishedExpires.Sub(now) < expires.Sub(now)/2
}

// newsDigest sums up what a node that learns the record only from the control plane must hear of at
// once: the certificate, the incarnation, whether the node relays, where it can be dialled and who
// its neighbours are. The sequence number, the expiry and the links' measurements are left out.
func newsDigest(rec *routing.Record) string {
	h := sha256.New()
	h.Write(rec.CertFingerprint[:])
	var b []byte
	b = binary.BigEndian.AppendUint64(b, rec.Incarnation)
	if rec.NoTransit {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rec.Endpoints)))
	for _, e := range rec.Endpoints {
		a := e.Addr.Addr().As16()
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, e.Addr.Port())
		b = append(b, byte(e.Kind))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rec.Links)))
	for _, l := range rec.Links {
		b = append(b, l.Neighbour[:]...)
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// liveNode returns the calling node's enrolment, or writes 403 (not enrolled here, revoked, or
// not the enrolled key) and returns nil.
func (s *Server) liveNode(w http.ResponseWriter, r *http.Request, rc *reqCtx) *store.Node {
	n, err := s.st.NodeByName(r.Context(), rc.node.name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("node %q is not enrolled with this control plane", rc.node.name))
		return nil
	}
	if err != nil {
		s.internal(w, r, err)
		return nil
	}
	if n.Revoked() || n.KeyID != rc.node.keyID.String() {
		writeError(w, http.StatusForbidden, "forbidden", "node certificate is revoked or not the enrolled key")
		return nil
	}
	return n
}

// handleMeshRecords answers GET /api/v1/mesh/records: the records of the nodes the caller may
// reach, published after ?after (all of them without it); with ?wait it long-polls until one is.
func (s *Server) handleMeshRecords(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	caller := s.liveNode(w, r, rc)
	if caller == nil {
		return
	}
	after, hasAfter, wait, err := longPollQuery(r, s.cfg.Limits.MaxCRLWait)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if cur, changed := s.records.gen.wait(); hasAfter && after == cur {
		longPoll(r, s.records.waiters, changed, wait)
	}
	out, err := s.recordsFor(r.Context(), caller, after)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// recordsFor returns the records the caller may reach that were published after generation after,
// oldest publication first, cut at the page limits. A generation above the current one (from before
// the database was restored, say) gets everything.
func (s *Server) recordsFor(ctx context.Context, caller *store.Node, after uint64) (api.MeshRecords, error) {
	// The generation is read before the records: a record published meanwhile is left for the next
	// answer rather than skipped.
	upTo, _ := s.records.gen.wait()
	if after > upTo {
		after = 0
	}
	rows, err := s.st.ListRecords(ctx, after, upTo, s.now(), api.MaxRecordsPerAnswer+1)
	if err != nil {
		return api.MeshRecords{}, err
	}
	out := api.MeshRecords{Generation: upTo, Records: []api.SignedRecord{}}
	size := 0
	for i := range rows {
		row := &rows[i]
		n := len(row.Certificate) + len(row.Record)
		if i == api.MaxRecordsPerAnswer || (i > 0 && size+n > api.MaxRecordsAnswerBytes) {
			out.More, out.Generation = true, rows[i-1].Generation
			break
		}
		if !s.mayReach(caller, row) {
			continue
		}
		size += n
		out.Records = append(out.Records, api.EncodeSignedRecord(row.NodeName, row.Certificate, row.Record))
	}
	return out, nil
}

// enrolmentRecords returns the records a newly enrolled node may reach. The enrolment has been
// committed by then, so a failure here only leaves the node to fetch them itself.
func (s *Server) enrolmentRecords(ctx context.Context, n *store.Node) api.MeshRecords {
	out, err := s.recordsFor(ctx, n, 0)
	if err != nil {
		s.log.Error("records for a new node", "node", n.Name, "err", err)
		return api.MeshRecords{Records: []api.SignedRecord{}}
	}
	return out
}
