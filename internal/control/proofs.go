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

// areaOf returns the routing area a node signed in its stored record; known is false when it has
// reported none yet, or none since the control plane keeps records' areas (it then gets the records
// and proofs of every area, and ignores those it has no use for).
func (s *Server) areaOf(ctx context.Context, n *store.Node) (area uint32, known bool, err error) {
	rec, err := s.st.RecordOf(ctx, n.ID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return rec.Area, !rec.AreaUnknown, nil
}
