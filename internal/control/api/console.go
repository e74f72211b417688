package api

import "time"

// MeshCAProtocol is an ALPN protocol name that our clients (CLI, client library, nodes) offer and
// the control plane never selects: it asks for the ML-DSA-65 chain from the mesh CA. Browsers now
// offer ML-DSA-65 signatures too but trust only their own roots, so the signature algorithms
// alone cannot tell who pins the mesh CA; in the spirit of TLS trust anchor IDs
// (draft-ietf-tls-trust-anchor-ids), which crypto/tls does not expose, the client names the trust
// anchor it holds. Everyone else gets the classical certificate.
const MeshCAProtocol = "x0tta6bl4-mesh-ca"

// ConsoleSession is the web console's view of its login: who, with which role, and the token
// every state-changing request from the console must carry in X-CSRF-Token. The session token
// itself is only in an HttpOnly cookie.
type ConsoleSession struct {
	User      User      `json:"user"`
	Role      string    `json:"role"`
	CSRFToken string    `json:"csrf_token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Topology is the mesh map: every enrolled node and every link reported up in a fresh report,
// one entry per node pair.
type Topology struct {
	GeneratedAt       time.Time      `json:"generated_at"`
	StaleAfterSeconds int64          `json:"stale_after_seconds"`
	Detector          bool           `json:"detector"` // whether nodes carry anomaly scores
	Nodes             []TopologyNode `json:"nodes"`
	Links             []TopologyLink `json:"links"`
}

// TopologyNode is one node on the map.
type TopologyNode struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"` // online, stale, silent, revoked
	PeersUp    int        `json:"peers_up"`
	LastReport *time.Time `json:"last_report,omitempty"`
	// Score is the detector's 1 − p(normal), when a model is configured and the node is live.
	Score     *float64 `json:"score,omitempty"`
	Anomalous bool     `json:"anomalous,omitempty"`
}

// TopologyLink is a node pair with a link up: the worse of the two ends' figures.
type TopologyLink struct {
	A         string  `json:"a"`
	B         string  `json:"b"`
	RTTMillis float64 `json:"rtt_ms"`
	LossRatio float64 `json:"loss_ratio"`
	Confirmed bool    `json:"confirmed"` // both ends report it up
}
