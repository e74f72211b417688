package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"x0tta6bl4/internal/control/api"
)

// FetchRecords fetches the signed records of the nodes this node may reach that were published
// after generation after (0: all of them). With wait > 0 it long-polls: the control plane answers as
// soon as a record is published after that generation, or when wait has passed. The answer is
// checked against its bounds (api.MeshRecords.Validate); the records themselves are for the node
// to verify (node.LearnRecords). When More is set, ask again at once with the answer's generation.
func (n *Node) FetchRecords(ctx context.Context, after uint64, wait time.Duration) (*api.MeshRecords, error) {
	return n.fetchSigned(ctx, "records", after, wait)
}

// FetchProofs fetches, as FetchRecords does, the destination proofs of the nodes of other routing
// areas this node may reach (GET /api/v1/mesh/proofs); the proofs are for the node to verify
// (node.LearnProofs).
func (n *Node) FetchProofs(ctx context.Context, after uint64, wait time.Duration) (*api.MeshRecords, error) {
	return n.fetchSigned(ctx, "proofs", after, wait)
}

func (n *Node) fetchSigned(ctx context.Context, what string, after uint64, wait time.Duration) (*api.MeshRecords, error) {
	hc, _ := n.client()
	path := "/api/v1/mesh/" + what + "?after=" + strconv.FormatUint(after, 10)
	if wait > 0 {
		path += "&wait=" + strconv.Itoa(int(wait/time.Second))
		ctx2, cancel := context.WithTimeout(ctx, wait+n.timeout)
		defer cancel()
		ctx = ctx2
	}
	var out api.MeshRecords
	if err := call(ctx, hc, http.MethodGet, n.base, path, nil, nil, &out); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", what, err)
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", what, err)
	}
	return &out, nil
}
