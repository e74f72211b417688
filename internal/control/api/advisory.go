package api

import "time"

// SetAdvisoryRequest is the body of PUT /api/v1/advisories/{node_id}: an admin names a relay by
// hand (docs/control.md, "Cost advisories").
type SetAdvisoryRequest struct {
	Multiplier int    `json:"multiplier"`  // 2 to 16; 0: the configured ai.advisories.multiplier
	Reason     string `json:"reason"`      // 1 to 54 printable ASCII characters
	TTLSeconds int64  `json:"ttl_seconds"` // 60 to 86400; 0: one hour
}

// Advisory is one entry of the list in force.
type Advisory struct {
	Node       string     `json:"node"`
	Multiplier int        `json:"multiplier"`
	Confidence float64    `json:"confidence"`
	Reason     string     `json:"reason"`
	Source     string     `json:"source"`           // "detector" or "operator"
	SetBy      string     `json:"set_by,omitempty"` // operator entries: who
	Until      *time.Time `json:"until,omitempty"`  // operator entries: when it lapses
	// Detector entries: when the naming's hold ends (it is withdrawn then, or at the first judgement
	// after it that is not faulty, or earlier on clean judgements unless suppressed), and the
	// relay's damping penalty (docs/control.md, "Cost advisories").
	HeldUntil  *time.Time `json:"held_until,omitempty"`
	Penalty    float64    `json:"penalty,omitempty"`
	Suppressed bool       `json:"suppressed,omitempty"`
}

// AdvisoryList is GET /api/v1/advisories: the signed list in force, readable.
type AdvisoryList struct {
	Sequence  uint64     `json:"sequence"` // 0: none signed yet
	IssuedAt  *time.Time `json:"issued_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Entries   []Advisory `json:"entries"`
	Signed    string     `json:"signed,omitempty"` // base64 of the meshca.Advisories nodes receive
}
