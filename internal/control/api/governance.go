package api

import (
	"time"

	"x0tta6bl4/internal/policy"
)

// ProposalRequest is the body of POST /api/v1/dao/proposals (docs/governance.md). The control plane
// freezes the current roster, fixes the window from now, and, for a policy action, compiles the
// source and signs it with the CA key under the next free policy version.
type ProposalRequest struct {
	Title           string         `json:"title"`
	VotingSeconds   int64          `json:"voting_seconds"`   // 60 to 30 days
	TimelockSeconds int64          `json:"timelock_seconds"` // 0 to 30 days
	QuorumBPS       uint16         `json:"quorum_bps"`       // of the frozen total weight, 1 to 10000
	ThresholdBPS    uint16         `json:"threshold_bps"`    // yes among yes + no, 5001 to 10000
	Quadratic       bool           `json:"quadratic,omitempty"`
	Action          ProposalAction `json:"action"`
}

// ProposalAction is one action; Type says which of the other fields it uses.
type ProposalAction struct {
	// Type is policy, revoke, admit, retire, heal, model or prices.
	Type   string         `json:"type"`
	Policy *policy.Source `json:"policy,omitempty"` // policy: the new access policy's source
	Node   string         `json:"node,omitempty"`   // revoke: an enrolled node's name
	// Member is the member to admit (name, weight, public key) or retire (key ID).
	Member *MemberSpec `json:"member,omitempty"`
	Heal   *HealSpec   `json:"heal,omitempty"`
	Model  *ModelSpec  `json:"model,omitempty"`
	Prices []PriceSpec `json:"prices,omitempty"`
}

// MemberSpec names a member.
type MemberSpec struct {
	Name      string `json:"name,omitempty"`
	Weight    uint32 `json:"weight,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"` // ML-DSA-65 public key (base64), for admit
	KeyID     string `json:"key_id,omitempty"`     // hex, for retire
}

// HealSpec is a set of self-healing thresholds, durations in milliseconds.
type HealSpec struct {
	ProbeIntervalMS uint32 `json:"probe_interval_ms"`
	ProbeTimeoutMS  uint32 `json:"probe_timeout_ms"`
	HoldMS          uint32 `json:"hold_ms"`
	MaxHoldMS       uint32 `json:"max_hold_ms"`
	GraceMS         uint32 `json:"grace_ms"`
	ConfidencePPM   uint32 `json:"confidence_ppm"`
	Consecutive     uint8  `json:"consecutive"`
}

// ModelSpec pins a detector model by the SHA-256 of its file.
type ModelSpec struct {
	SHA256 string `json:"sha256"` // hex
	Name   string `json:"name"`
}

// PriceSpec is one plan's price.
type PriceSpec struct {
	Plan       string `json:"plan"`
	MicroUSDT  uint64 `json:"micro_usdt"`
	PeriodDays uint16 `json:"period_days"`
}

// Proposal is one proposal as GET /api/v1/dao/proposals[/{id}] shows it.
type Proposal struct {
	ID            string    `json:"id"`
	Title         string    `json:"title"`
	Action        string    `json:"action"`
	State         string    `json:"state"` // active, defeated, succeeded (timelock running), queued (executable), executed, stale (roster changed)
	Start         time.Time `json:"start"`
	End           time.Time `json:"end"`
	ExecutableAt  time.Time `json:"executable_at"`
	QuorumBPS     uint16    `json:"quorum_bps"`
	ThresholdBPS  uint16    `json:"threshold_bps"`
	Quadratic     bool      `json:"quadratic"`
	RosterHash    string    `json:"roster_hash"`
	PolicyVersion uint64    `json:"policy_version,omitempty"`
	CreatedBy     string    `json:"created_by"`
	Tally         Tally     `json:"tally"`
	Ballots       int       `json:"ballots"`
	LogSeq        uint64    `json:"log_seq"`
	EnactedSeq    uint64    `json:"enacted_seq,omitempty"`
	// Encoded is the canonical proposal (base64); its labelled SHA-256 is the id, which a member's
	// CLI recomputes before it signs a ballot.
	Encoded []byte `json:"encoded"`
}

// Tally is the integer count of a proposal's counted ballots.
type Tally struct {
	Yes     uint64 `json:"yes"`
	No      uint64 `json:"no"`
	Abstain uint64 `json:"abstain"`
	Total   uint64 `json:"total"`
}

// Proposals is GET /api/v1/dao/proposals.
type Proposals struct {
	Proposals []Proposal `json:"proposals"`
}

// VoteRequest is the body of POST /api/v1/dao/vote: a ballot signed by the member's own key.
type VoteRequest struct {
	Ballot []byte `json:"ballot"` // canonical signed ballot (base64)
}

// VoteReceipt answers POST /api/v1/dao/vote: the log entry that holds the ballot. A member who
// keeps it can show that a published log left the ballot out.
type VoteReceipt struct {
	Proposal  string `json:"proposal"`
	Voter     string `json:"voter"`
	Choice    string `json:"choice"`
	Sequence  uint32 `json:"sequence"`
	LogSeq    uint64 `json:"log_seq"`
	EntryHash string `json:"entry_hash"`
	Tally     Tally  `json:"tally"`
}

// GovernanceLog is GET /api/v1/dao/log: canonical log entries, oldest first.
type GovernanceLog struct {
	Entries [][]byte `json:"entries"`
	More    bool     `json:"more"` // a page limit cut the answer: ask again with after= the last sequence
}

// Decisions is GET /api/v1/dao/decisions: the quorum certificates of enacted proposals, in order.
type Decisions struct {
	Decisions []Decision `json:"decisions"`
}

// Decision is one enacted proposal.
type Decision struct {
	LogSeq      uint64 `json:"log_seq"`
	Proposal    string `json:"proposal"`
	Action      string `json:"action"`
	Certificate []byte `json:"certificate"` // canonical quorum certificate (base64)
}
