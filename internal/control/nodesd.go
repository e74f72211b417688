package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/secfile"
)

// NodeSDConfig makes the control plane write a Prometheus file-based service discovery file
// (file_sd_configs) listing every enrolled, unrevoked node's metrics listener at its overlay
// address, so a Prometheus on a mesh host scrapes each node through the mesh.
type NodeSDConfig struct {
	// File is the path written (atomically: a temporary file renamed over it); empty: off.
	File string `yaml:"file"`
	// Port is the nodes' metrics_listen port (default 9474).
	Port int `yaml:"port"`
}

// sdTargetGroup is one entry of a file_sd file.
type sdTargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// nodeSD renders the file_sd document for nodes: one target group per live node, sorted by name
// (ListNodes' order), with its name, SPIFFE ID and groups as labels.
func nodeSD(nodes []store.Node, port int) ([]byte, error) {
	groups := make([]sdTargetGroup, 0, len(nodes))
	for _, n := range nodes {
		if n.Revoked() {
			continue
		}
		groups = append(groups, sdTargetGroup{
			Targets: []string{net.JoinHostPort(n.Overlay, strconv.Itoa(port))},
			Labels: map[string]string{
				"node":      n.Name,
				"spiffe_id": n.SPIFFEID,
				"groups":    strings.Join(n.Groups, ","),
			},
		})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// nodeSDMinInterval bounds how often the file is rewritten: changes (enrolments, revocations, and
// the reports that also wake the writer) within it are coalesced into one rewrite.
const nodeSDMinInterval = time.Second

// runNodeSD rewrites the discovery file at start and after every kick, at most once per
// nodeSDMinInterval, and only when its content changed.
func (s *Server) runNodeSD(ctx context.Context) {
	var last []byte
	for {
		b, err := s.writeNodeSD(ctx, last)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("node service discovery file not written; will retry", "file", s.cfg.Metrics.NodeSD.File, "err", err)
		} else {
			last = b
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(nodeSDMinInterval):
		}
		select {
		case <-ctx.Done():
			return
		case <-s.sdKick:
		}
	}
}

func (s *Server) writeNodeSD(ctx context.Context, last []byte) ([]byte, error) {
	nodes, err := s.st.ListNodes(ctx, store.MaxList)
	if err != nil {
		return nil, err
	}
	b, err := nodeSD(nodes, s.cfg.Metrics.NodeSD.Port)
	if err != nil {
		return nil, err
	}
	if string(b) == string(last) {
		return b, nil
	}
	if err := secfile.Write(s.cfg.Metrics.NodeSD.File, b, 0o644, true); err != nil {
		return nil, fmt.Errorf("node sd: %w", err)
	}
	return b, nil
}

// kickNodeSD asks the writer for a rewrite without ever blocking the caller.
func (s *Server) kickNodeSD() {
	select {
	case s.sdKick <- struct{}{}:
	default:
	}
}
