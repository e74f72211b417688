package api

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// TestValidateHealing: a report's healing journal is bounded in count, lengths and figures, and
// carries only known actions and plain names.
func TestValidateHealing(t *testing.T) {
	good := HealingEntry{Time: time.Unix(1, 0), Peer: "bravo", Action: "penalise", Rule: "blackhole with p ≥ 0.99 for 2 intervals; hold 10s",
		Class: "blackhole", Confidence: 1, Evidence: map[string]float64{"link_loss": 0, "chance": 1e-9}}
	if err := ValidateHealing([]HealingEntry{good, good}); err != nil {
		t.Fatal(err)
	}
	many := make(map[string]float64)
	for i := range MaxHealingEvidence + 1 {
		many[strings.Repeat("k", i+1)] = 1
	}
	for name, change := range map[string]func(*HealingEntry){
		"no time":          func(e *HealingEntry) { e.Time = time.Time{} },
		"unknown action":   func(e *HealingEntry) { e.Action = "reboot" },
		"markup peer":      func(e *HealingEntry) { e.Peer = "<img src=x onerror=alert(1)>" },
		"empty peer":       func(e *HealingEntry) { e.Peer = "" },
		"long class":       func(e *HealingEntry) { e.Class = strings.Repeat("a", MaxHealingText+1) },
		"long rule":        func(e *HealingEntry) { e.Rule = strings.Repeat("a", MaxHealingRule+1) },
		"control in rule":  func(e *HealingEntry) { e.Rule = "a\x1b[31mb" },
		"invalid UTF-8":    func(e *HealingEntry) { e.Rule = "\xff" },
		"NaN confidence":   func(e *HealingEntry) { e.Confidence = math.NaN() },
		"confidence > 1":   func(e *HealingEntry) { e.Confidence = 1.5 },
		"infinite figure":  func(e *HealingEntry) { e.Evidence = map[string]float64{"x": math.Inf(1)} },
		"huge figure":      func(e *HealingEntry) { e.Evidence = map[string]float64{"x": 2 * MaxFeatureValue} },
		"bad figure name":  func(e *HealingEntry) { e.Evidence = map[string]float64{"a b": 1} },
		"too many figures": func(e *HealingEntry) { e.Evidence = many },
	} {
		e := good
		change(&e)
		if err := ValidateHealing([]HealingEntry{good, e}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := ValidateHealing(make([]HealingEntry, MaxHealingEntries+1)); err == nil {
		t.Error("too many entries accepted")
	}
	r := MeshReport{Healing: []HealingEntry{good, {Time: time.Unix(2, 0), Peer: "bravo", Action: "penalise", Confidence: 2}}}
	if err := r.Validate("alpha"); err == nil || !strings.Contains(err.Error(), "healing[1].confidence") {
		t.Errorf("report with a bad journal: %v", err)
	}
}

// FuzzMeshReportHealing: any report body decodes and validates without a crash, and a report that
// passes carries a journal within its bounds.
func FuzzMeshReportHealing(f *testing.F) {
	f.Add([]byte(`{"sequence":1,"healing":[{"time":"2026-12-06T23:00:00Z","peer":"bravo","action":"penalise","rule":"blackhole with p ≥ 0.99","class":"blackhole","confidence":1,"evidence":{"chance":1e-9}}]}`))
	f.Add([]byte(`{"healing":[{"time":"2026-12-06T23:00:00Z","peer":"<b>","action":"restore","confidence":0.5}]}`))
	f.Add([]byte(`{"healing":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r MeshReport
		if json.Unmarshal(body, &r) != nil {
			return
		}
		if r.Validate("alpha") != nil {
			return
		}
		if len(r.Healing) > MaxHealingEntries {
			t.Fatalf("%d entries passed", len(r.Healing))
		}
		for _, e := range r.Healing {
			if len(e.Peer) > MaxHealingText || len(e.Class) > MaxHealingText || len(e.Rule) > MaxHealingRule || len(e.Evidence) > MaxHealingEvidence ||
				e.Confidence < 0 || e.Confidence > 1 {
				t.Fatalf("entry out of bounds passed: %+v", e)
			}
		}
	})
}
