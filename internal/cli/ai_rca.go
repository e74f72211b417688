package cli

import (
	"fmt"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/rca"
)

// Root-cause suite defaults: incidents per kind are one per seed (docs/intelligence.md,
// "Root-cause analysis"); validation and test seeds are disjoint, and disjoint from the seeds the
// rankings were developed on (1–6).
const (
	rcaTestSeeds = "301-340"
	rcaValSeeds  = "401-420"
	rcaNodes     = 40
)

// runRCASuite evaluates every root-cause ranking on the validation incidents, names the winner
// (the ranking internal/rca keeps as its default must be that one), then on the test incidents.
func runRCASuite(e *env, m detector.Predictor, model, seeds, valSeeds string, nodes int) error {
	vs, err := parseSeeds(valSeeds)
	if err != nil {
		return err
	}
	ts, err := parseSeeds(seeds)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "model %s (version %s); root-cause incidents on %d-node meshes, one independent incident per seed and kind\n", model, m.Version(), nodes)
	fmt.Fprintln(e.stdout, "hit: the root cause (either end of a failed link) at rank 1 (top-1) or within 3 (top-3); two faults: both within 2 (top-1) or 4 (top-3)")
	run := func(label string, ss []uint64) (*rca.Result, error) {
		bar := newBar(e.stderr, label)
		res, err := rca.EvaluateIncidents(rca.EvalConfig{Seeds: ss, Nodes: nodes, Model: m, Progress: bar.set})
		bar.done()
		return res, err
	}
	val, err := run("rca validation incidents", vs)
	if err != nil {
		return err
	}
	val.Print(e.stdout, fmt.Sprintf("validation incidents (seeds %s)", valSeeds))
	best := val.Best()
	fmt.Fprintf(e.stdout, "best mean top-1 over the incident kinds on validation: %s\n", best)
	if best != rca.DefaultRanking {
		fmt.Fprintf(e.stdout, "warning: internal/rca's default ranking is %s, not the validation winner\n", rca.DefaultRanking)
	}
	test, err := run("rca test incidents", ts)
	if err != nil {
		return err
	}
	test.Print(e.stdout, fmt.Sprintf("held-out test incidents (seeds %s)", seeds))
	return nil
}
