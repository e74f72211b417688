package api

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/telemetry"
)

// Limits of a node report.
const (
	MaxReportPeers  = 256
	MaxReportRoutes = 1024
	MaxVersionLen   = 64
	MaxEndpointLen  = 262 // "[" + IPv6 with zone + "]:" + port, or host:port
)

// Peer states a node may report.
const (
	PeerUp          = "up"
	PeerDown        = "down"
	PeerHandshaking = "handshaking"
)

// MeshReport is what a node sends to POST /api/v1/mesh/report, authenticated by its X.509-SVID:
// its software version, and the state of its links and routes as it sees them.
type MeshReport struct {
	Sequence      uint64        `json:"sequence"` // increases with every report since the node started
	Version       string        `json:"version"`
	UptimeSeconds int64         `json:"uptime_seconds"`
	Peers         []PeerReport  `json:"peers"`
	Routes        []RouteReport `json:"routes"`
	// Features are the node's anomaly-detector features (internal/telemetry) for its last complete
	// one-second interval, by name; absent until the node has taken two samples.
	Features map[string]float64 `json:"features,omitempty"`
	// KernelFeatures are what the node's eBPF programs counted in the same interval
	// (internal/telemetry, kernel.go), by name; absent when the node runs without eBPF, which
	// means unknown, not zero.
	KernelFeatures map[string]float64 `json:"kernel_features,omitempty"`
	// Record is the node's latest signed link-state record with its certificate, which the control
	// plane hands to the nodes that may reach it (GET /api/v1/mesh/records); absent before the
	// node's first record, and when the control plane already has this one.
	Record *SignedRecord `json:"record,omitempty"`
	// Proof is the node's latest destination proof with its certificate (a node of a routing area:
	// its level-2 record naming its area's gateways, docs/routing.md "Level 2"), which the control
	// plane hands to the nodes of other areas that may reach it (GET /api/v1/mesh/proofs); absent on a
	// node of area 0, before the node reaches a gateway, and when the control plane already has it.
	Proof *SignedRecord `json:"proof,omitempty"`
	// Healing is the node's latest self-healing decisions (`x0tta6bl4 heal` on the node), oldest
	// first, at most MaxHealingEntries; absent when they did not change since the node's last
	// report, so the control plane keeps the journal it has.
	Healing []HealingEntry `json:"healing,omitempty"`
}

// Bounds of a reported self-healing journal.
const (
	MaxHealingEntries  = 32  // decisions per report (the node keeps more; the newest are sent)
	MaxHealingText     = 64  // bytes of a peer, a class or an evidence name
	MaxHealingRule     = 160 // bytes of a rule (text, as the loop words it)
	MaxHealingEvidence = 16  // evidence figures per decision
)

// HealingEntry is one decision of a node's self-healing loop: which neighbour it routed around
// (penalise) or probed again (restore), whose link cost a control-plane advisory raised (advise) or
// stopped raising (unadvise), or which avoided neighbour some destinations are reachable only
// through (no-alternative); by which rule, with the detector's class, confidence and evidence.
type HealingEntry struct {
	Time       time.Time          `json:"time"`
	Peer       string             `json:"peer"`   // node name, or key ID when the name is unknown
	Action     string             `json:"action"` // penalise, restore, advise, unadvise or no-alternative
	Rule       string             `json:"rule"`
	Class      string             `json:"class"`
	Confidence float64            `json:"confidence"` // 0 to 1
	Evidence   map[string]float64 `json:"evidence,omitempty"`
}

// NodeHealing is GET /api/v1/nodes/{name}/healing: the latest journal the node reported.
type NodeHealing struct {
	Node       string         `json:"node"`
	ReportedAt *time.Time     `json:"reported_at,omitempty"` // absent when the node never reported one
	Entries    []HealingEntry `json:"entries"`
}

// ValidateHealing checks a reported journal: bounded counts and lengths, known actions, plain
// characters, finite figures.
func ValidateHealing(entries []HealingEntry) error {
	if len(entries) > MaxHealingEntries {
		return fmt.Errorf(": %d entries, at most %d", len(entries), MaxHealingEntries)
	}
	for i, e := range entries {
		if e.Time.IsZero() {
			return fmt.Errorf("[%d].time is missing", i)
		}
		switch e.Action {
		case "penalise", "restore", "advise", "unadvise", "no-alternative":
		default:
			return fmt.Errorf("[%d].action %q: want penalise, restore, advise, unadvise or no-alternative", i, e.Action)
		}
		for field, v := range map[string]string{"peer": e.Peer, "class": e.Class} {
			if !plainText(v) {
				return fmt.Errorf("[%d].%s: at most %d bytes of a-z, A-Z, 0-9, '-', '_', '.', ':'", i, field, MaxHealingText)
			}
		}
		if len(e.Rule) > MaxHealingRule || !utf8.ValidString(e.Rule) || strings.ContainsFunc(e.Rule, unicode.IsControl) {
			return fmt.Errorf("[%d].rule: at most %d bytes of UTF-8 text without control characters", i, MaxHealingRule)
		}
		if e.Peer == "" {
			return fmt.Errorf("[%d].peer is empty", i)
		}
		if math.IsNaN(e.Confidence) || e.Confidence < 0 || e.Confidence > 1 {
			return fmt.Errorf("[%d].confidence must be between 0 and 1", i)
		}
		if len(e.Evidence) > MaxHealingEvidence {
			return fmt.Errorf("[%d].evidence: %d figures, at most %d", i, len(e.Evidence), MaxHealingEvidence)
		}
		for k, v := range e.Evidence {
			if k == "" || !plainText(k) {
				return fmt.Errorf("[%d].evidence: name %q: at most %d bytes of a-z, A-Z, 0-9, '-', '_', '.', ':'", i, k, MaxHealingText)
			}
			if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > MaxFeatureValue {
				return fmt.Errorf("[%d].evidence[%s] must be a finite number of magnitude at most %g", i, k, MaxFeatureValue)
			}
		}
	}
	return nil
}

// plainText reports whether s is at most MaxHealingText bytes of the characters rule names,
// classes, node names and key IDs use.
func plainText(s string) bool {
	if len(s) > MaxHealingText {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// PeerReport is one link as its reporting end sees it.
type PeerReport struct {
	Name          string     `json:"name"`              // the peer's node name (from its certificate)
	Overlay       string     `json:"overlay,omitempty"` // the peer's certified overlay address
	Endpoint      string     `json:"endpoint,omitempty"`
	State         string     `json:"state"` // "up", "down" or "handshaking"
	RTTMillis     float64    `json:"rtt_ms"`
	LossRatio     float64    `json:"loss_ratio"` // 0 to 1
	TxBytes       uint64     `json:"tx_bytes"`
	RxBytes       uint64     `json:"rx_bytes"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	// Features are the detector's features of this link as the reporting node counts them
	// (internal/telemetry edge features), by name.
	Features map[string]float64 `json:"features,omitempty"`
}

// RouteReport is one entry of the node's routing table.
type RouteReport struct {
	Destination string  `json:"destination"` // node name
	NextHop     string  `json:"next_hop"`    // node name
	Cost        float64 `json:"cost"`
	Hops        int     `json:"hops"`
}

// Validate checks a report from node self: names, states, finite non-negative metrics, limits.
func (r *MeshReport) Validate(self string) error {
	if len(r.Version) > MaxVersionLen || !utf8.ValidString(r.Version) {
		return fmt.Errorf("version: at most %d bytes of UTF-8", MaxVersionLen)
	}
	if r.UptimeSeconds < 0 {
		return errors.New("uptime_seconds must not be negative")
	}
	if len(r.Peers) > MaxReportPeers {
		return fmt.Errorf("%d peers, at most %d", len(r.Peers), MaxReportPeers)
	}
	if len(r.Routes) > MaxReportRoutes {
		return fmt.Errorf("%d routes, at most %d", len(r.Routes), MaxReportRoutes)
	}
	seen := make(map[string]bool, len(r.Peers))
	for i, p := range r.Peers {
		if err := identity.ValidateNodeName(p.Name); err != nil {
			return fmt.Errorf("peers[%d].name: %w", i, err)
		}
		if p.Name == self {
			return fmt.Errorf("peers[%d]: a node is not its own peer", i)
		}
		if seen[p.Name] {
			return fmt.Errorf("peers[%d]: %q listed twice", i, p.Name)
		}
		seen[p.Name] = true
		if p.Overlay != "" {
			a, err := netip.ParseAddr(p.Overlay)
			if err != nil || !identity.OverlayPrefix.Contains(a) {
				return fmt.Errorf("peers[%d].overlay %q: not an address in %s", i, p.Overlay, identity.OverlayPrefix)
			}
		}
		if len(p.Endpoint) > MaxEndpointLen {
			return fmt.Errorf("peers[%d].endpoint: longer than %d bytes", i, MaxEndpointLen)
		}
		if p.Endpoint != "" {
			if _, err := netip.ParseAddrPort(p.Endpoint); err != nil {
				return fmt.Errorf("peers[%d].endpoint %q: want ip:port", i, p.Endpoint)
			}
		}
		switch p.State {
		case PeerUp, PeerDown, PeerHandshaking:
		default:
			return fmt.Errorf("peers[%d].state %q: want up, down or handshaking", i, p.State)
		}
		if !finiteNonNeg(p.RTTMillis) {
			return fmt.Errorf("peers[%d].rtt_ms must be a finite number >= 0", i)
		}
		if !finiteNonNeg(p.LossRatio) || p.LossRatio > 1 {
			return fmt.Errorf("peers[%d].loss_ratio must be between 0 and 1", i)
		}
		if err := validFeatures(p.Features, telemetry.EdgeNames[:]); err != nil {
			return fmt.Errorf("peers[%d].features: %w", i, err)
		}
	}
	if err := validFeatures(r.Features, telemetry.NodeNames[:]); err != nil {
		return fmt.Errorf("features: %w", err)
	}
	if len(r.KernelFeatures) > telemetry.MaxKernelFeatures {
		return fmt.Errorf("kernel_features: %d, at most %d", len(r.KernelFeatures), telemetry.MaxKernelFeatures)
	}
	if err := validValues(r.KernelFeatures, telemetry.ValidKernelName); err != nil {
		return fmt.Errorf("kernel_features: %w", err)
	}
	if r.Record != nil {
		if r.Record.Node != "" && r.Record.Node != self {
			return fmt.Errorf("record.node %q: a node reports only its own record", r.Record.Node)
		}
		if _, _, err := r.Record.Decode(); err != nil {
			return fmt.Errorf("record: %w", err)
		}
	}
	if r.Proof != nil {
		if r.Proof.Node != "" && r.Proof.Node != self {
			return fmt.Errorf("proof.node %q: a node reports only its own proof", r.Proof.Node)
		}
		if _, _, err := r.Proof.Decode(); err != nil {
			return fmt.Errorf("proof: %w", err)
		}
	}
	if err := ValidateHealing(r.Healing); err != nil {
		return fmt.Errorf("healing%w", err)
	}
	for i, rt := range r.Routes {
		if err := identity.ValidateNodeName(rt.Destination); err != nil {
			return fmt.Errorf("routes[%d].destination: %w", i, err)
		}
		if err := identity.ValidateNodeName(rt.NextHop); err != nil {
			return fmt.Errorf("routes[%d].next_hop: %w", i, err)
		}
		if !finiteNonNeg(rt.Cost) {
			return fmt.Errorf("routes[%d].cost must be a finite number >= 0", i)
		}
		if rt.Hops < 1 || rt.Hops > 255 {
			return fmt.Errorf("routes[%d].hops %d: want 1-255", i, rt.Hops)
		}
	}
	return nil
}

func finiteNonNeg(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 }

// MaxFeatureValue bounds a reported feature's magnitude (rates of packets per second fit easily).
const MaxFeatureValue = 1e12

// validFeatures checks that every feature is a known name with a finite value of bounded size.
func validFeatures(f map[string]float64, names []string) error {
	return validValues(f, func(name string) bool { return slices.Contains(names, name) })
}

// validValues checks that every feature's name is known and its value finite and bounded.
func validValues(f map[string]float64, known func(string) bool) error {
	for name, v := range f {
		if !known(name) {
			return fmt.Errorf("unknown feature %q", name)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > MaxFeatureValue {
			return fmt.Errorf("%s must be a finite number within ±%g", name, MaxFeatureValue)
		}
	}
	return nil
}

// Node statuses in the mesh view.
const (
	NodeOnline  = "online"  // reported within the staleness window
	NodeStale   = "stale"   // reported, but not recently
	NodeSilent  = "silent"  // enrolled, never reported
	NodeRevoked = "revoked" // revoked
)

// MeshNode is one node in GET /mesh/status.
type MeshNode struct {
	Name          string     `json:"name"`
	Overlay       string     `json:"overlay"`
	Status        string     `json:"status"`
	LastReport    *time.Time `json:"last_report,omitempty"`
	Sequence      uint64     `json:"sequence"`
	Version       string     `json:"version"`
	UptimeSeconds int64      `json:"uptime_seconds"`
	PeersUp       int        `json:"peers_up"`
	Peers         int        `json:"peers"`
	Routes        int        `json:"routes"`
	CertNotAfter  time.Time  `json:"cert_not_after"`
	// KernelFeatures are the kernel features of the node's latest report (MeshReport), absent
	// when it runs without eBPF.
	KernelFeatures map[string]float64 `json:"kernel_features,omitempty"`
}

// MeshCounts summarises the mesh.
type MeshCounts struct {
	Enrolled       int `json:"enrolled"` // not revoked
	Revoked        int `json:"revoked"`
	Online         int `json:"online"`
	Stale          int `json:"stale"`
	Silent         int `json:"silent"`
	Links          int `json:"links"`           // distinct node pairs with a link reported up by at least one end
	LinksConfirmed int `json:"links_confirmed"` // of those, reported up by both ends
}

// MeshStatus is GET /mesh/status.
type MeshStatus struct {
	GeneratedAt       time.Time  `json:"generated_at"`
	TrustDomain       string     `json:"trust_domain"`
	CRLNumber         uint64     `json:"crl_number"`
	StaleAfterSeconds int64      `json:"stale_after_seconds"`
	Counts            MeshCounts `json:"counts"`
	Nodes             []MeshNode `json:"nodes"`
}

// MeshLink is one directed link in GET /mesh/peers, as reported by From.
type MeshLink struct {
	From          string     `json:"from"`
	To            string     `json:"to"`
	ToOverlay     string     `json:"to_overlay,omitempty"`
	Endpoint      string     `json:"endpoint,omitempty"`
	State         string     `json:"state"`
	RTTMillis     float64    `json:"rtt_ms"`
	LossRatio     float64    `json:"loss_ratio"`
	TxBytes       uint64     `json:"tx_bytes"`
	RxBytes       uint64     `json:"rx_bytes"`
	LastHandshake *time.Time `json:"last_handshake,omitempty"`
	ReportedAt    time.Time  `json:"reported_at"`
	Stale         bool       `json:"stale"`      // the report is older than the staleness window
	Confirmed     bool       `json:"confirmed"`  // To also reports the link up
	KnownPeer     bool       `json:"known_peer"` // To is an enrolled, unrevoked node
}

// MeshPeers is GET /mesh/peers.
type MeshPeers struct {
	GeneratedAt time.Time  `json:"generated_at"`
	Links       []MeshLink `json:"links"`
}

// MeshRoute is one route in GET /mesh/routes, as reported by Node.
type MeshRoute struct {
	Node        string    `json:"node"`
	Destination string    `json:"destination"`
	NextHop     string    `json:"next_hop"`
	Cost        float64   `json:"cost"`
	Hops        int       `json:"hops"`
	ReportedAt  time.Time `json:"reported_at"`
	Stale       bool      `json:"stale"`
	// NextHopLink is the reporting node's link to NextHop, when it reports one.
	NextHopLink *MeshLink `json:"next_hop_link,omitempty"`
}

// MeshRoutes is GET /mesh/routes.
type MeshRoutes struct {
	GeneratedAt time.Time   `json:"generated_at"`
	Routes      []MeshRoute `json:"routes"`
}

// Prediction is GET /api/v1/ai/predict/{node_id}: the anomaly detector's judgement of one node,
// computed from the latest reports of every node when asked.
type Prediction struct {
	Node         string    `json:"node"`
	ModelVersion string    `json:"model_version"` // first 8 bytes of the model file's SHA-256, hex
	ComputedAt   time.Time `json:"computed_at"`
	GraphNodes   int       `json:"graph_nodes"` // nodes in the graph the model read
	// TelemetryMissing: the node has no fresh report with features, so the model saw it as a node
	// that exported nothing (the "missing" feature), exactly as it would see a dead one.
	TelemetryMissing bool       `json:"telemetry_missing"`
	ReportedAt       *time.Time `json:"reported_at,omitempty"`
	// Score is 1 − p(normal); Anomalous is Score ≥ Threshold (the model's validation-chosen threshold).
	Score         float64            `json:"score"`
	Threshold     float64            `json:"threshold"`
	Anomalous     bool               `json:"anomalous"`
	Class         string             `json:"class"` // the detector's decision (an ensemble's: its members' majority)
	Probabilities map[string]float64 `json:"probabilities"`
	// Features are the node features the model read; LinkFeatures, the features of each of its
	// links as the node counted them.
	Features     map[string]float64            `json:"features"`
	LinkFeatures map[string]map[string]float64 `json:"link_features"`
	// Inputs are the derived node inputs the model read (detector.Robust, by detector.RobustNames):
	// the flow-conservation deficit its neighbours' counters show, among others.
	Inputs map[string]float64 `json:"inputs"`
	// KernelFeatures are the kernel features of the node's fresh report (absent without eBPF);
	// KernelInputs, the detector's kernel block derived from them (detector.KernelInputs: ratios to
	// the node's packets, each with a presence input that is 0 when the feature was not reported),
	// in layout KernelInputsVersion. The model's score does not read the block unless the model was
	// trained with it; the shipped one was not (docs/intelligence.md, "Kernel inputs").
	KernelFeatures      map[string]float64 `json:"kernel_features,omitempty"`
	KernelInputs        map[string]float64 `json:"kernel_inputs"`
	KernelInputsVersion int                `json:"kernel_inputs_version"`
	// TopNeighbours are the neighbours whose removal from the graph changes the node's score most,
	// largest change first (occlusion): positive means the neighbour's evidence raised the score.
	TopNeighbours []NeighbourContribution `json:"top_neighbours"`
}

// NeighbourContribution is one neighbour's part in a prediction.
type NeighbourContribution struct {
	Name         string  `json:"name"`
	Contribution float64 `json:"contribution"` // score − score with the neighbour cut out of the graph
	Score        float64 `json:"score"`        // the neighbour's own score
}

// RecordedReport is a node report the control plane kept for training (ai.record_reports): the
// detector's part of it (features, kernel features, peers with their features), as received.
type RecordedReport struct {
	ID     int64      `json:"id"`
	Node   string     `json:"node"`
	At     time.Time  `json:"at"` // when the control plane received it
	Report MeshReport `json:"report"`
}

// Incident is a labelled fault: node Node was faulty in the way Kind names (a detector class other
// than normal) from From to To.
type Incident struct {
	ID        int64     `json:"id,omitempty"`
	Node      string    `json:"node"`
	Kind      string    `json:"kind"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Note      string    `json:"note,omitempty"`
	Source    string    `json:"source,omitempty"` // "operator" (ctl incident label) or "journal" (the healing journal)
	CreatedBy string    `json:"created_by,omitempty"`
}

// ReportArchive is recorded reports with the incidents that overlap them: an answer of
// GET /api/v1/ai/reports (one page) and the file `ctl reports export` writes and
// `ai train --from-records` reads.
type ReportArchive struct {
	Format    string           `json:"format"` // ReportArchiveFormat
	Reports   []RecordedReport `json:"reports"`
	Incidents []Incident       `json:"incidents"`
	// More says a page limit cut the answer: ask again with after_id = NextAfterID.
	More        bool  `json:"more,omitempty"`
	NextAfterID int64 `json:"next_after_id,omitempty"`
}

// ReportArchiveFormat names the archive's format and version.
const ReportArchiveFormat = "x0tta6bl4-report-archive-1"
