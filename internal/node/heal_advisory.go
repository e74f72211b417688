package node

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/routing"
)

// Cost advisories and cut vertices (docs/node.md, "Self-healing": "Cost advisories" and "No way
// around"). The control plane's detector sees the whole mesh's telemetry and may judge a relay
// faulty that no single neighbour's probes can convict; it says so in a CA-signed, short-lived list
// (meshca.Advisories). A neighbour of the subject weighs it alongside its own evidence, never
// instead of it:
//
//   - the advisory raises the advertised cost of the link to the subject by its multiplier (at most
//     ×16, below the probe rule's own ×400), so traffic goes round the subject where another way
//     exists; it never takes a link down, and a penalty of the probe rule wins over it. The node's
//     probing and verdicts go on unchanged. Clean probes do not veto it: a relay can tell the
//     probes from the data by their size and spare them (the netns test's grey hole does), so
//     answered probes do not prove that it relays the data;
//   - it lapses at the list's expiry, and a newer list (higher sequence) without the subject
//     withdraws it; an older or replayed list is refused.
//
// Whenever the loop starts avoiding a neighbour (a penalty or an advisory), it also asks whether any
// destination is reachable only through it. If so, avoiding it moves nothing there: the journal gets
// a "no-alternative" entry naming those destinations, the log a warning, and the gauge
// x0tta6bl4_heal_cut_vertex{peer} stays 1 while the neighbour is avoided.

// maxCutNames bounds the destinations a no-alternative entry names, and maxCutRuleNames the bytes
// of the neighbour's and those names together.
const maxCutNames, maxCutRuleNames = 8, 96

// UpdateAdvisories verifies a list of cost advisories from the control plane and, if it is newer
// than the one held, installs it; it reports whether it did. A list whose sequence is lower than
// the held one's is meshca.ErrAdvisoriesRollback; an expired one is refused.
func (n *Node) UpdateAdvisories(a *meshca.Advisories) (bool, error) {
	return n.installAdvisories(n.now(), a)
}

func (n *Node) installAdvisories(now time.Time, a *meshca.Advisories) (bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.heal
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok, err := meshca.AdvisoriesSupersede(h.advisories, a); !ok {
		return false, err
	}
	if err := n.verifier.CheckAdvisories(a, now); err != nil {
		return false, err
	}
	h.advisories = a
	n.applyAdvisoriesLocked(now)
	return true, nil
}

// adviceFor is the entry the held advisories have for the neighbour named name at now, or why there
// is none ("withdrawn", "expired"; "" when no list is held).
func (h *healer) adviceFor(now time.Time, name string) (meshca.Advisory, string) {
	a := h.advisories
	if a == nil {
		return meshca.Advisory{}, ""
	}
	e, ok := a.Find(name)
	if !ok {
		return meshca.Advisory{}, "withdrawn"
	}
	if !now.Before(a.ExpiresAt) {
		return meshca.Advisory{}, "expired"
	}
	return e, ""
}

// applyAdvisoriesLocked brings every up link's advisory multiplier in line with the held list, the
// clock and the node's own evidence, recording each change. Node.mu and healer.mu are held.
func (n *Node) applyAdvisoriesLocked(now time.Time) {
	h := n.heal
	for id, t := range n.links {
		if !t.up {
			continue
		}
		name := t.peer().Name
		e, why := h.adviceFor(now, name)
		if e.Multiplier == h.advised[id].Multiplier {
			continue
		}
		if e.Multiplier == 0 {
			prev := h.advised[id]
			delete(h.advised, id)
			n.recordHealDecisionLocked(HealDecision{Time: now, Peer: name, Action: healUnadvise,
				Rule:  fmt.Sprintf("control-plane advisory (%s) lifted: %s", prev.Reason, why),
				Class: adviceClass(prev), Confidence: prev.Confidence, Evidence: map[string]float64{"multiplier": float64(prev.Multiplier)}})
		} else {
			h.advised[id] = e
			n.recordHealDecisionLocked(HealDecision{Time: now, Peer: name, Action: healAdvise,
				Rule: fmt.Sprintf("control-plane advisory %d (%s): link cost ×%d until %s", h.advisories.Sequence, e.Reason,
					e.Multiplier, h.advisories.ExpiresAt.UTC().Format(time.RFC3339)),
				Class: adviceClass(e), Confidence: e.Confidence,
				Evidence: map[string]float64{"multiplier": float64(e.Multiplier)}}) // the sequence is in the rule: it exceeds what a reported figure may be
		}
		n.healApplyLocked(now, id)
		n.checkAlternativeLocked(now, id, name)
	}
	for id := range h.advised {
		if t := n.links[id]; t == nil || !t.up {
			delete(h.advised, id) // applied again, if still in force, when the link is back
		}
	}
}

// adviceClass is the class a journal entry gives an advisory: the detector's class it names, or
// "operator" for one an admin set by hand (whose reason is free text, kept in the rule).
func adviceClass(e meshca.Advisory) string {
	if strings.HasPrefix(e.Reason, "operator:") || strings.ContainsFunc(e.Reason, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return "operator"
	}
	return e.Reason
}

// avoidedLocked reports whether the loop avoids neighbour id, by a penalty or an advisory.
func (h *healer) avoidedLocked(id routing.NodeID) bool {
	return h.penalised[id] || h.advised[id].Multiplier > 0
}

// checkAlternativeLocked looks, when the loop avoids neighbour id, for the destinations that only
// id leads to (from the link-state database: the links both ends confirm), and records a cut vertex
// the first time the set is not empty; it clears the mark when id is no longer avoided. Node.mu
// and healer.mu are held.
func (n *Node) checkAlternativeLocked(now time.Time, id routing.NodeID, name string) {
	h := n.heal
	if !h.avoidedLocked(id) {
		delete(h.cut, id)
		return
	}
	cut := n.onlyThroughLocked(id)
	if len(cut) == 0 {
		delete(h.cut, id)
		return
	}
	if slices.Equal(h.cut[id], cut) {
		return
	}
	h.cut[id] = cut
	h.cutVertices++
	// The names shown are bounded by count and by the rule's length (a reported journal's rule is
	// at most 160 bytes).
	shown := cut[:0:0]
	for _, d := range cut[:min(len(cut), maxCutNames)] {
		if len(name)+len(strings.Join(append(shown, d), ", ")) > maxCutRuleNames {
			break
		}
		shown = append(shown, d)
	}
	rule := fmt.Sprintf("no way around %s: %s reachable only through it", name, strings.Join(shown, ", "))
	if len(cut) > len(shown) {
		rule = fmt.Sprintf("no way around %s: %s and %d more reachable only through it", name, strings.Join(shown, ", "), len(cut)-len(shown))
	}
	hd := HealDecision{Time: now, Peer: name, Action: healNoAlternative, Rule: rule,
		Evidence: map[string]float64{"cut_off": float64(len(cut))}}
	n.appendJournalLocked(hd)
	n.log.Warn("heal: no way around neighbour (cut vertex): avoiding it moves no traffic", "peer", name, "cut_off", len(cut), "destinations", shown)
}

// onlyThroughLocked lists, sorted, the names of the destinations in the forwarding table that no
// path avoiding via reaches: a walk of the link-state database from this node over links that both
// ends report, never entering via. Called with Node.mu held.
func (n *Node) onlyThroughLocked(via routing.NodeID) []string {
	seen := map[routing.NodeID]bool{n.selfID: true, via: true}
	queue := []routing.NodeID{n.selfID}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		rec := n.router.Record(u)
		if rec == nil {
			continue
		}
		for _, l := range rec.Links {
			v := l.Neighbour
			if seen[v] {
				continue
			}
			if vrec := n.router.Record(v); vrec == nil {
				continue
			} else if _, ok := linkTo(vrec, u); !ok {
				continue
			}
			seen[v] = true
			queue = append(queue, v)
		}
	}
	var out []string
	for _, e := range n.fib.Load().byAddr {
		if e.id != via && !seen[e.id] {
			out = append(out, e.cert.Name)
		}
	}
	slices.Sort(out)
	return out
}
