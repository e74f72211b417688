package control

import (
	"context"
	"errors"
	"net/http"

	"x0tta6bl4/internal/control/store"
)

// Destination proofs (docs/control.md, "Destination proofs"; docs/routing.md, "Level 2"): a node of a
// routing area reports its destination proof (its own level-2 record, naming the gateways of its area
// and its distance to each) as it reports its record. The control plane checks it as a node would,
// keeps the latest per node (mesh_proofs) and hands it, by the same "may reach" rule and the same
// generation-numbered long poll as records, to the nodes of the other areas: GET /api/v1/mesh/proofs.
// A proof is published (wakes the long polls) when it is news in the sense records are (newsDigest:
// a new certificate, a restart, another set of gateways), or when the copy last published has less
// than half of the new one's lifetime left; a proof whose only change is its distances is stored
// but not published.

// handleMeshProofs answers GET /api/v1/mesh/proofs: the destination proofs of the nodes of other areas
// the caller may reach, published after ?after; with ?wait it long-polls until one is.
func (s *Server) handleMeshProofs(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	s.handleSigned(w, r, rc, &s.proofs)
}

// areaOf returns the routing area a node signed in its stored record, or, before it has reported one
// (or one since the control plane keeps records' areas), the area it named when it enrolled; known is
// false when there is neither (it then gets the records and proofs of every area, and ignores those
// it has no use for). The signed record counts over the enrolment: it is the node's own statement,
// and the one its neighbours act on.
func (s *Server) areaOf(ctx context.Context, n *store.Node) (area uint32, known bool, err error) {
	rec, err := s.st.RecordOf(ctx, n.ID)
	switch {
	case err == nil && !rec.AreaUnknown:
		return rec.Area, true, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return 0, false, err
	case n.EnrolmentArea != nil:
		return *n.EnrolmentArea, true, nil
	}
	return 0, false, nil
}
