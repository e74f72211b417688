package node

// The mesh access policy on a node (docs/connectivity.md, "Policy"): a CA-signed, numbered policy
// that arrives from the control plane (UpdatePolicy, called by internal/agent) or from a neighbour
// (overlay frame type 10). The node verifies it, refuses one that is not newer than its own, turns
// it into its firewall's policy layer (a packet needs a local rule and a policy rule), keeps it in
// PolicyFile so a restart cannot roll it back, and passes it on to its neighbours.

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/overlay"
	"x0tta6bl4/internal/policy"
	"x0tta6bl4/internal/secfile"
)

// policyAnnounceInterval is how often a node sends its policy to every neighbour again, so that a
// neighbour that lost the frame (one UDP datagram of a few kilobytes) catches up without the
// control plane.
const policyAnnounceInterval = time.Minute

// policyState is the node's policy and the local rules it is layered with.
type policyState struct {
	// mu serializes changes of the firewall rules (a new policy, new local rules) and writes of
	// the policy file. It is never taken while n.mu is held; n.mu may be taken under it.
	mu    sync.Mutex
	local firewall.Config // the rules of node.yaml, guarded by mu
	file  string          // Options.PolicyFile

	current atomic.Pointer[meshca.Policy] // nil: none yet

	lastAnnounce time.Time               // guarded by n.mu
	links        map[*tunnel]*policyLink // neighbours whose links are up, guarded by n.mu
}

// initPolicy takes the local rules and, if PolicyFile holds a policy the CAs signed, applies it.
// A file that does not load or verify is reported and ignored: the node then starts without a
// policy until one arrives.
func (n *Node) initPolicy(now time.Time) {
	ps := &n.policy
	ps.local, ps.file = n.opts.Firewall, n.opts.PolicyFile
	ps.lastAnnounce, ps.links = now, make(map[*tunnel]*policyLink)
	// A governed policy comes back from the kept decisions (initGovernance), never from a file
	// alone.
	if ps.file == "" || n.opts.Governance != nil && slices.Contains(n.opts.Governance.Governed, governance.ActionPolicy) {
		return
	}
	p, err := meshca.LoadPolicyFile(ps.file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		err = n.verifier.CheckPolicy(p)
	}
	if err == nil {
		err = n.applyPolicy(p)
	}
	if err != nil {
		n.log.Error("kept access policy not applied; waiting for one from the control plane or a neighbour", "file", ps.file, "err", err)
		return
	}
	n.log.Info("access policy applied", "version", p.Version, "from", ps.file)
}

// Policy returns the access policy in force, or nil.
func (n *Node) Policy() *meshca.Policy { return n.policy.current.Load() }

// UpdatePolicy installs a newer access policy: it verifies it against the node's CAs, applies it to
// the firewall (live flows are re-checked at their next packet), keeps it in PolicyFile and sends
// it to every neighbour. It reports whether the policy was newer than the one in force; an older
// one is meshca.ErrPolicyRollback. When the policy is governed, it is governance.ErrGoverned: only
// a quorum certificate (ApplyDecision) changes it.
func (n *Node) UpdatePolicy(p *meshca.Policy) (bool, error) {
	if n.governs(governance.ActionPolicy) {
		return false, fmt.Errorf("node: access policy %d: %w", p.Version, governance.ErrGoverned)
	}
	return n.installPolicy(n.now(), p, nil)
}

// handlePolicyFrame takes a policy frame from a neighbour: an empty one asks for our policy; a copy
// of the policy in force, or an older one, is dropped after a byte comparison, before any signature
// is checked, and an older one is answered with ours.
func (n *Node) handlePolicyFrame(now time.Time, from *tunnel, raw []byte) {
	if len(raw) == 0 {
		n.answerPolicy(now, from)
		return
	}
	p, err := meshca.ParsePolicy(raw)
	if err != nil {
		n.stats.dropMalformed.Add(1)
		return
	}
	if n.governs(governance.ActionPolicy) {
		if ok, _ := meshca.PolicySupersedes(n.policy.current.Load(), p); ok {
			n.log.Debug("access policy without a quorum certificate refused: the policy is governed", "from", from.peer().Name, "version", p.Version)
		} else {
			n.answerPolicy(now, from)
		}
		return
	}
	_, err = n.installPolicy(now, p, from)
	switch {
	case errors.Is(err, meshca.ErrPolicyRollback):
		n.answerPolicy(now, from)
	case err != nil:
		n.log.Debug("access policy refused", "from", from.peer().Name, "version", p.Version, "err", err)
	}
}

func (n *Node) installPolicy(now time.Time, p *meshca.Policy, from *tunnel) (bool, error) {
	// Cheap refusals first: neither a replayed old policy nor one more copy of the current one
	// costs a signature check.
	if ok, err := meshca.PolicySupersedes(n.policy.current.Load(), p); !ok {
		return false, err
	}
	if err := n.verifier.CheckPolicy(p); err != nil {
		return false, err
	}
	ps := &n.policy
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// Again under the lock: another copy may have been installed meanwhile.
	if ok, err := meshca.PolicySupersedes(ps.current.Load(), p); !ok {
		return false, err
	}
	if err := n.applyPolicy(p); err != nil {
		return false, err
	}
	n.log.Info("access policy applied", "version", p.Version, "grants", len(p.Grants))
	if ps.file != "" {
		if err := secfile.Write(ps.file, meshca.EncodePolicyPEM(p), 0o644, true); err != nil {
			// The policy is in force; only a restart before the next one could roll it back.
			n.log.Error("keep access policy", "file", ps.file, "err", err)
		}
	}
	frame := policyFrame(p)
	n.mu.Lock()
	for _, t := range n.links {
		if t != from && t.up {
			n.sendFrame(now, t, frame)
		}
	}
	n.mu.Unlock()
	return true, nil
}

// applyPolicy makes p the policy in force: the firewall's policy layer becomes p's rules for this
// node. The caller holds n.policy.mu (or is New).
func (n *Node) applyPolicy(p *meshca.Policy) error {
	cfg := n.policy.local
	cfg.Policy = policy.Rules(p, n.Certificate())
	if err := n.fw.Reload(cfg); err != nil {
		return fmt.Errorf("node: access policy %d: %w", p.Version, err)
	}
	n.policy.current.Store(p)
	return nil
}

// ReloadFirewall replaces the local firewall rules (node.yaml's); the access policy in force stays
// layered on them. Tracked flows are kept and re-checked against the new rules at their next packet
// (docs/firewall.md).
func (n *Node) ReloadFirewall(cfg firewall.Config) error {
	ps := &n.policy
	ps.mu.Lock()
	defer ps.mu.Unlock()
	layered := cfg
	if p := ps.current.Load(); p != nil {
		layered.Policy = policy.Rules(p, n.Certificate())
	}
	if err := n.fw.Reload(layered); err != nil {
		return err
	}
	ps.local = cfg
	n.log.Info("firewall rules reloaded", "inbound", len(cfg.Inbound), "outbound", len(cfg.Outbound))
	return nil
}

// policyLink is what the node remembers of the policy exchange with one neighbour.
type policyLink struct {
	offered  bool      // our policy, or a request for one, went out since the link came up
	answered time.Time // when we last answered the neighbour's request or older policy
}

// policyAnswerInterval bounds how often a neighbour's request or older policy is answered.
const policyAnswerInterval = time.Second

func policyFrame(p *meshca.Policy) []byte {
	return append([]byte{byte(overlay.TypePolicy)}, p.Bytes()...)
}

// tickPolicyLocked sends the policy in force to each neighbour whose link came up since the last
// tick, or an empty policy frame (a request for the neighbour's) when there is none yet; and to
// every neighbour once per policyAnnounceInterval. A link whose session cannot seal yet (the
// responder of a fresh handshake waits for the initiator's first packet) is tried again at the next
// tick.
func (n *Node) tickPolicyLocked(now time.Time) {
	ps := &n.policy
	for t := range ps.links {
		if n.links[t.id] != t || !t.up {
			delete(ps.links, t)
		}
	}
	p := ps.current.Load()
	announce := now.Sub(ps.lastAnnounce) >= policyAnnounceInterval
	if announce {
		ps.lastAnnounce = now
	}
	frame := []byte{byte(overlay.TypePolicy)}
	if p != nil {
		frame = policyFrame(p)
	}
	for _, t := range n.links {
		if !t.up {
			continue
		}
		l := ps.links[t]
		if l == nil {
			l = &policyLink{}
			ps.links[t] = l
		}
		if !l.offered || announce && p != nil {
			l.offered = n.sendFrame(now, t, frame) || l.offered
		}
	}
}

// answerPolicy sends the policy in force to a neighbour that asked for it or offered an older one,
// at most once per policyAnswerInterval.
func (n *Node) answerPolicy(now time.Time, t *tunnel) {
	p := n.policy.current.Load()
	if p == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.policy.links[t]
	if l == nil || now.Sub(l.answered) < policyAnswerInterval {
		return
	}
	l.answered = now
	n.sendFrame(now, t, policyFrame(p))
}

// closedFirewallWarning is the warning a node logs at start when a direction has no local firewall
// rule: local rules are deny by default and the mesh policy can only narrow them, so such a node
// refuses that direction's traffic whatever the policy allows (docs/firewall.md, "No local rules").
// It returns "" when both directions have rules.
func closedFirewallWarning(cfg firewall.Config) string {
	in, out := len(cfg.Inbound) == 0, len(cfg.Outbound) == 0
	switch {
	case in && out:
		return "firewall: no local rules in node.yaml: every packet to and from the mesh will be refused, whatever the mesh policy allows (add a firewall: section, docs/firewall.md)"
	case in:
		return "firewall: no local inbound rules in node.yaml: every flow the mesh opens to this node will be refused, whatever the mesh policy allows (add firewall.inbound, docs/firewall.md)"
	case out:
		return "firewall: no local outbound rules in node.yaml: every flow this node opens will be refused, self-healing probes included, whatever the mesh policy allows (add firewall.outbound, docs/firewall.md)"
	}
	return ""
}
