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
	dir     store.Directory
	mu      sync.Mutex // one publication at a time, so that generations become visible in order
	gen     *areaGenerations
	waiters chan struct{}
	results *prometheus.CounterVec
	current prometheus.Gauge
	wakeups prometheus.Counter // long polls a publication (or shutdown) ended
}

// Results of a reported record, for metrics: the api.Record* outcomes and "refused".
var recordResults = []string{api.RecordPublished, api.RecordStored, api.RecordStale, api.RecordOldCertificate, api.RecordExpired, "refused"}

func (s *Server) initRecords(ctx context.Context) error {
	if err := s.initDirectory(ctx, &s.records, store.Records, "x0tta6bl4_control_mesh_records_total",
		"Signed records received in reports, by result (published, stored, stale, old_certificate, expired, refused).",
		"x0tta6bl4_control_mesh_record_generation", "Generation number of the latest published signed record.",
		"x0tta6bl4_control_mesh_record_wakeups_total", "Record long polls woken by a publication (of the caller's area)."); err != nil {
		return err
	}
	return s.initDirectory(ctx, &s.proofs, store.Proofs, "x0tta6bl4_control_mesh_proofs_total",
		"Destination proofs received in reports, by result (published, stored, stale, old_certificate, expired, refused).",
		"x0tta6bl4_control_mesh_proof_generation", "Generation number of the latest published destination proof.",
		"x0tta6bl4_control_mesh_proof_wakeups_total", "Proof long polls woken by a publication (of another area than the caller's).")
}

// initDirectory sets up the hand-out state of records or proofs, with its metrics.
func (s *Server) initDirectory(ctx context.Context, st *recordsState, d store.Directory, results, resultsHelp, current, currentHelp, wakeups, wakeupsHelp string) error {
	g, err := s.st.Generation(ctx, d)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	st.dir = d
	concerns := recordsConcern
	if d == store.Proofs {
		concerns = proofsConcern
	}
	st.gen = newAreaGenerations(g, concerns)
	st.waiters = make(chan struct{}, s.cfg.Limits.MaxRecordWaiters)
	st.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: results, Help: resultsHelp}, []string{"result"})
	st.current = prometheus.NewGauge(prometheus.GaugeOpts{Name: current, Help: currentHelp})
	st.wakeups = prometheus.NewCounter(prometheus.CounterOpts{Name: wakeups, Help: wakeupsHelp})
	s.m.reg.MustRegister(st.results, st.current, st.wakeups)
	for _, r := range recordResults {
		st.results.WithLabelValues(r)
	}
	st.current.Set(float64(g))
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

// reportedRecord handles the record and the destination proof of a report from node n, and takes
// them out of the report (they are stored on their own). It returns what became of each, or writes
// the error answer and returns ok false.
func (s *Server) reportedRecord(w http.ResponseWriter, r *http.Request, n *store.Node, rep *api.MeshReport) (record, proof string, ok bool) {
	if record, ok = s.reportedSigned(w, r, n, &s.records, &rep.Record); !ok {
		return "", "", false
	}
	if proof, ok = s.reportedSigned(w, r, n, &s.proofs, &rep.Proof); !ok {
		return "", "", false
	}
	return record, proof, true
}

func (s *Server) reportedSigned(w http.ResponseWriter, r *http.Request, n *store.Node, st *recordsState, field **api.SignedRecord) (outcome string, ok bool) {
	if *field == nil {
		return "", true
	}
	outcome, err := s.acceptSigned(r.Context(), n, st, *field)
	*field = nil
	what := "record"
	if st.dir == store.Proofs {
		what = "proof"
	}
	var bad *badRecordError
	switch {
	case errors.As(err, &bad):
		st.results.WithLabelValues("refused").Inc()
		s.log.Warn("reported "+what+" refused", "node", n.Name, "err", err)
		badRequest(w, "report: "+what+": "+bad.msg)
		return "", false
	case err != nil:
		s.internal(w, r, err)
		return "", false
	}
	st.results.WithLabelValues(outcome).Inc()
	return outcome, true
}

// acceptSigned checks a record or proof reported by node n and stores it if it is newer than the one
// held. The checks are those every node makes of a flooded record (routing.Router) or of a proof
// (node.LearnProofs): the certificate is the one the record names, by the record's originator,
// verifies against the CA and the current revocation list, and its key signed the record. Here it
// must also be the reporting node's current certificate, and a record of level 1 or a proof of
// level 2 of an area. A record that is not newer than the stored one is ignored before any signature
// is checked.
func (s *Server) acceptSigned(ctx context.Context, n *store.Node, st *recordsState, sr *api.SignedRecord) (string, error) {
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
	proof := st.dir == store.Proofs
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
	case proof && (!rec.Level2 || rec.Area == 0):
		return "", badRecord("a destination proof is a level-2 record of an area")
	case !proof && rec.Level2:
		return "", badRecord("a level-2 record is a destination proof, not a link-state record")
	}
	now := s.now()
	if !rec.Expires.After(now) {
		return api.RecordExpired, nil
	}
	old, err := s.st.SignedOf(ctx, st.dir, n.ID)
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
	return s.storeSigned(ctx, st, n, rec, certRaw, raw, now)
}

// storeSigned stores a verified record or proof newer than the one read before, publishing it if it is news.
func (s *Server) storeSigned(ctx context.Context, st *recordsState, n *store.Node, rec *routing.Record, certRaw, raw []byte, now time.Time) (string, error) {
	digest := newsDigest(rec)
	st.mu.Lock()
	defer st.mu.Unlock()
	outcome, gen := api.RecordStored, uint64(0)
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		outcome, gen = api.RecordStored, 0
		old, err := tx.SignedOf(ctx, st.dir, n.ID) // again: another report of the node may have come first
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if old != nil && rec.Seq <= old.Sequence {
			outcome = api.RecordStale
			return nil
		}
		if st.dir == store.Records && n.EnrolmentArea != nil && *n.EnrolmentArea != rec.Area && (old == nil || old.AreaUnknown || old.Area != rec.Area) {
			// The node's signed record is its own statement of its area, and what its neighbours
			// act on: it counts over the enrolment's (areaOf). Worth an operator's look all the same.
			s.log.Warn("node signs another routing area than it named at enrolment; following its record",
				"node", n.Name, "record_area", rec.Area, "enrolment_area", *n.EnrolmentArea)
		}
		m := &store.MeshRecord{NodeID: n.ID, Sequence: rec.Seq, Expires: rec.Expires, Certificate: certRaw, Record: raw, ReceivedAt: now, Area: rec.Area}
		if isNews(old, digest, rec.Expires, now) {
			if gen, err = tx.NextGeneration(ctx, st.dir); err != nil {
				return err
			}
			m.Generation, m.PublishedExpires, m.PublishedDigest = gen, rec.Expires, digest
			outcome = api.RecordPublished
		} else {
			m.Generation, m.PublishedExpires, m.PublishedDigest = old.Generation, old.PublishedExpires, old.PublishedDigest
		}
		stored, err := tx.PutSigned(ctx, st.dir, m)
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
	// Another instance's publication, taken in by refreshRecordGeneration meanwhile, may have moved
	// the number past this one: publish wakes this area's waiters all the same, and never moves the
	// number back.
	if gen != 0 && st.gen.publish(gen, rec.Area) {
		st.current.Set(float64(gen))
	}
	return outcome, nil
}

// refreshRecordGeneration takes in the records and proofs other instances on the same database
// published: the long polls here wait on this instance's generations, which its own publications
// move on, so without this a node long-polling one instance would learn of a record published through
// another only when its poll timed out. The areas of what was published since decide whose polls
// wake, as for this instance's own publications.
func (s *Server) refreshRecordGeneration(ctx context.Context) error {
	for _, st := range []*recordsState{&s.records, &s.proofs} {
		g, err := s.st.Generation(ctx, st.dir)
		if err != nil {
			return fmt.Errorf("control: generation: %w", err)
		}
		known := st.gen.current()
		if g <= known {
			continue
		}
		published, err := s.st.PublishedAreas(ctx, st.dir, known, g)
		if err != nil {
			return fmt.Errorf("control: generation: %w", err)
		}
		if st.gen.publishMany(g, published) {
			st.current.Set(float64(g))
		}
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
	s.handleSigned(w, r, rc, &s.records)
}

// handleSigned answers a long poll for records or proofs.
func (s *Server) handleSigned(w http.ResponseWriter, r *http.Request, rc *reqCtx, st *recordsState) {
	caller := s.liveNode(w, r, rc)
	if caller == nil {
		return
	}
	after, hasAfter, wait, err := longPollQuery(r, s.cfg.Limits.MaxCRLWait)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	area, err := s.callerArea(r.Context(), caller, nil)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	// Wait only while nothing this caller's answer may carry was announced after its generation
	// (an answer claims the database's generation, which may be ahead of the announcements here:
	// such a caller is answered at once, as one whose generation is behind).
	if last, cur, changed := st.gen.wait(derefArea(area)); hasAfter && after >= last && after <= cur {
		if longPoll(r, st.waiters, changed, wait) {
			st.wakeups.Inc()
		}
	}
	out, err := s.signedForArea(r.Context(), st, caller, after, area)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// signedFor returns the records (or proofs) the caller may reach that were published after
// generation after, oldest publication first, cut at the page limits. A generation above the current
// one (from before the database was restored, say) gets everything.
//
// Records go to the nodes of their own area (a node ignores the others: routing.Router.Learn), proofs
// to the nodes of the other areas. The caller's area is the one signed in its stored record; a caller
// that has reported none yet is taken at its word (the area it named at enrolment, or area, a new
// node's enrolment request) or, failing that, gets every area's.
func (s *Server) signedFor(ctx context.Context, st *recordsState, caller *store.Node, after uint64, area *uint32) (api.MeshRecords, error) {
	area, err := s.callerArea(ctx, caller, area)
	if err != nil {
		return api.MeshRecords{}, err
	}
	return s.signedForArea(ctx, st, caller, after, area)
}

// callerArea returns the routing area of a caller: the one signed in its stored record, else named
// (a new node's enrolment request), else nil (unknown: it gets every area's).
func (s *Server) callerArea(ctx context.Context, caller *store.Node, named *uint32) (*uint32, error) {
	a, known, err := s.areaOf(ctx, caller)
	if err != nil {
		return nil, err
	}
	if known {
		return &a, nil
	}
	return named, nil
}

// derefArea turns an area pointer into the (area, known) pair long polls wait by.
func derefArea(area *uint32) (uint32, bool) {
	if area == nil {
		return 0, false
	}
	return *area, true
}

// signedForArea is signedFor for a caller whose area is resolved (nil: unknown).
func (s *Server) signedForArea(ctx context.Context, st *recordsState, caller *store.Node, after uint64, area *uint32) (api.MeshRecords, error) {
	// The generation is read from the database before the records: its counter moves in the
	// transaction that stores a record, so every record committed before the answer is at or below
	// it, including one whose publication this instance has not announced to its long polls yet.
	// The records are then read with no upper bound, in one statement: a record republished in
	// between has left its old generation for a newer one, and bounding the read by upTo would leave
	// it out of this answer (an enrolment answer then lacked a node that had a record all along).
	// Generations commit in order (each transaction holds the counter's row until it commits), so
	// a statement that sees generation g sees every record at or below g, and the answer may claim
	// the highest generation it carries.
	upTo, err := s.st.Generation(ctx, st.dir)
	if err != nil {
		return api.MeshRecords{}, err
	}
	if cur := st.gen.current(); cur > upTo {
		upTo = cur // a database restored to an earlier state: the next publications catch up
	}
	if after > upTo {
		after = 0
	}
	out := api.MeshRecords{Generation: upTo, Records: []api.SignedRecord{}}
	var filter store.AreaFilter
	switch {
	case st.dir == store.Proofs && area != nil && *area == 0:
		return out, nil // a node of area 0 routes by level 1 alone: it needs no proof
	case st.dir == store.Proofs && area != nil:
		filter = store.AreaFilter{Area: *area}
	case area != nil:
		filter = store.AreaFilter{Area: *area, Same: true}
	}
	rows, err := s.st.ListSigned(ctx, st.dir, filter, after, math.MaxInt64, s.now(), api.MaxRecordsPerAnswer+1)
	if err != nil {
		return api.MeshRecords{}, err
	}
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
	if !out.More && len(rows) > 0 {
		out.Generation = max(out.Generation, rows[len(rows)-1].Generation)
	}
	return out, nil
}

// enrolmentRecords returns the records a newly enrolled node may reach: those of area, the routing
// area its request names, or of every area if it names none. The enrolment has been committed by
// then, so a failure here only leaves the node to fetch them itself.
func (s *Server) enrolmentRecords(ctx context.Context, n *store.Node, area *uint32) api.MeshRecords {
	out, err := s.signedFor(ctx, &s.records, n, 0, area)
	if err != nil {
		s.log.Error("records for a new node", "node", n.Name, "err", err)
		return api.MeshRecords{Records: []api.SignedRecord{}}
	}
	return out
}
