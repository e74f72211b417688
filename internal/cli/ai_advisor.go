package cli

import (
	"fmt"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
)

// runAIAdvisor chooses the control plane advisor's flow-conservation threshold on the validation
// runs and measures the advisor's judgements, as deployed (the model's relay judgement, flow
// conservation's, and either), on held-out runs under shift scenarios: relay faults named, false
// alarms on healthy nodes, and nodes with other faults named (docs/intelligence.md, "The advisor's
// flow-conservation judgement").
func runAIAdvisor(e *env, args []string) error {
	fs := newFlags(e, "ai advisor", "--model model.x6m [--val-seeds 51-56] [--seeds 301-305] [--scenarios nominal,intensity,noise,missing,volume×0.1]")
	model := fs.String("model", "", "model file (the control plane's ai.model)")
	valSeeds := fs.String("val-seeds", "51-56", "validation seeds (the threshold)")
	seeds := fs.String("seeds", "301-305", "held-out simulator seeds")
	only := fs.String("scenarios", "", "shift scenarios to measure on (comma-separated names; default all)")
	k := fs.Int("consecutive", experiment.AdvisorPersistence, "the model's judgements in a row before a relay is named (ai.advisories.consecutive)")
	kd := fs.Int("deficit-consecutive", detector.DeficitConsecutive, "flow conservation's judgements in a row before a relay is named (ai.advisories.deficit_consecutive)")
	df := addDataFlags(fs)
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "model", *model); err != nil {
		return err
	}
	if *k < 1 || *k > 100 || *kd < 1 || *kd > 100 {
		return fmt.Errorf("--consecutive and --deficit-consecutive must be 1 to 100, not %d and %d", *k, *kd)
	}
	if *df.features != "all" {
		return fmt.Errorf("--features must be all: flow conservation reads the per-link counters")
	}
	scenarios, err := pickScenarios(*only)
	if err != nil {
		return err
	}
	m, err := detector.Load(*model)
	if err != nil {
		return err
	}
	if s := m.Shape(); s.F != detector.NumRobust || s.E != detector.NumRobustEdge {
		return fmt.Errorf("model has %d node and %d edge features; the advisor reads %d and %d", s.F, s.E, detector.NumRobust, detector.NumRobustEdge)
	}
	perRun := int(*df.duration / time.Second)
	val, err := df.generate(e, "simulating validation runs", *valSeeds, *df.randomise)
	if err != nil {
		return err
	}
	th, cands := experiment.ChooseDeficitThreshold(val, perRun, *kd)
	fmt.Fprintf(e.stdout, "flow-conservation threshold on the unexplained deficit chosen on validation seeds %s (relay-fault event F1, %d judgements in a row): %.2f; shipped default %.2f\n",
		*valSeeds, *kd, th, detector.DefaultDeficitThreshold)
	experiment.PrintDeficitChoice(e.stdout, th, cands)
	if th != detector.DefaultDeficitThreshold {
		fmt.Fprintf(e.stdout, "warning: the choice differs from detector.DefaultDeficitThreshold; the rows below use the choice\n")
	}
	fmt.Fprintf(e.stdout, "\nmodel %s (version %s, threshold %.3f); held-out seeds %s; named after %d of the model's judgements in a row or %d of flow conservation's\n",
		*model, m.Version(), m.DetectionThreshold(), *seeds, *k, *kd)
	fmt.Fprintln(e.stdout, "relay faults named / faults; false alarms: stretches of flags on healthy nodes; other kinds: faults whose node was named (not relay faults: the advisory would move traffic off a node that is not a grey hole)")
	for _, sc := range scenarios {
		test, err := df.scenarioRuns(e, sc, *seeds)
		if err != nil {
			return err
		}
		names, decisions := experiment.AdvisorJudgements(m, th, test, perRun, *k, *kd)
		experiment.PrintAdvisor(e.stdout, sc.Name, experiment.EvaluateAdvisor(names, decisions, test, perRun))
	}
	return nil
}
