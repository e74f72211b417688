package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/experiment"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/federated"
	"x0tta6bl4/internal/mapek"
	"x0tta6bl4/internal/sim"
	"x0tta6bl4/internal/telemetry"
)

// runSim runs the mesh simulator and prints a summary.
func runSim(e *env, args []string) error {
	fs := newFlags(e, "sim", "[--nodes 100] [--area-size 0] [--restarts 0] [--topology geometric|grid|scalefree] [--seed 1] [--faults blackhole:3,...] [--duration 60s]")
	nodes := fs.Int("nodes", 100, fmt.Sprintf("number of nodes (2–%d; above 4096 with --area-size)", sim.MaxNodes))
	areaSize := fs.Int("area-size", 0, "split the mesh into routing areas of about this many nodes (0: one area); level 2 then runs and 200 cross-area pairs are routed and checked; telemetry flows stay inside areas")
	topo := fs.String("topology", sim.Geometric, "geometric, grid or scalefree")
	seed := fs.Uint64("seed", 1, "seed: the same seed gives the same run")
	faults := fs.String("faults", "", "faults to inject: kind:count,... (linkdeg, crash, overload, blackhole, greyhole, flapping)")
	dur := fs.Duration("duration", 60*time.Second, "virtual time of telemetry after the cold start")
	heal := fs.String("heal", "", "model file: run the MAPE-K loop with this detector and report MTTD/MTTR (one blackhole or greyhole fault)")
	lossless := fs.Bool("lossless", false, "healthy links lose nothing (default: 0–1 % each)")
	restarts := fs.Int("restarts", 0, "after the cold start, restart this many nodes (not gateways) one at a time, each back before and after its neighbours notice, with an empty database and with its records kept, and report what each restart cost")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	fl, err := sim.ParseFaults(*faults)
	if err != nil {
		return err
	}
	if *heal != "" {
		return runHeal(e, *heal, sim.Config{Nodes: *nodes, Topology: *topo, Seed: *seed, Duration: *dur, Faults: fl, NoBackgroundLoss: *lossless})
	}
	start := time.Now()
	bar := newBar(e.stderr, "simulating")
	r, err := sim.Run(sim.Config{Nodes: *nodes, Topology: *topo, Seed: *seed, Duration: *dur, Faults: fl, Progress: bar.set, NoBackgroundLoss: *lossless, AreaSize: *areaSize, Restarts: *restarts})
	bar.done()
	if err != nil {
		return err
	}
	r.Summary(e.stdout)
	fmt.Fprintf(e.stdout, "wall time %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func runHeal(e *env, modelPath string, cfg sim.Config) error {
	m, err := detector.Load(modelPath)
	if err != nil {
		return err
	}
	if s := m.Shape(); s.F != detector.NumRobust || s.E != detector.NumRobustEdge || s.K != int(sim.NumKinds) {
		return fmt.Errorf("model has %d node features, %d edge features and %d classes, this build derives %d, %d and %d",
			s.F, s.E, s.K, detector.NumRobust, detector.NumRobustEdge, sim.NumKinds)
	}
	if len(cfg.Faults) != 1 || cfg.Faults[0].Count != 1 || (cfg.Faults[0].Kind != sim.Blackhole && cfg.Faults[0].Kind != sim.GreyHole) {
		return fmt.Errorf("--heal needs exactly one fault: --faults blackhole:1 or greyhole:1")
	}
	r, err := mapek.RunSim(mapek.SimConfig{Sim: cfg, Detect: m.Predict})
	if err != nil {
		return err
	}
	r.Print(e.stdout)
	return nil
}

// dataFlags are the simulator settings shared by ai train and ai eval.
type dataFlags struct {
	nodes     *int
	duration  *time.Duration
	faults    *string
	features  *string
	randomise *bool
	noBusy    *bool
	// raw generates the raw telemetry vectors, for a model of the earlier feature set.
	raw bool
	// scenario, if set, shifts the runs (ai eval --suite shift).
	scenario *experiment.Scenario
	// kernel is the fraction of nodes with eBPF kernel evidence (ai eval --kernel-fraction).
	kernel float64
}

func addDataFlags(fs interface {
	Int(string, int, string) *int
	Duration(string, time.Duration, string) *time.Duration
	String(string, string, string) *string
	Bool(string, bool, string) *bool
}) dataFlags {
	return dataFlags{
		nodes:     fs.Int("nodes", 100, "nodes per simulated mesh"),
		duration:  fs.Duration("duration", 60*time.Second, "telemetry per run (one graph per second)"),
		faults:    fs.String("faults", "blackhole:2,greyhole:2,crash:1,overload:1,linkdeg:1,flapping:1", "faults per run"),
		features:  fs.String("features", "all", "all: node and per-link (edge) features; self: node features only, no per-link counters (ablation)"),
		randomise: fs.Bool("randomise", true, "draw training and validation runs from the training distribution (traffic, size, intensities, transient faults, telemetry gaps); false: fixed settings"),
		noBusy:    fs.Bool("no-busy", false, "leave busy processors (CPU used by something else) out of the randomised runs: the training distribution of models trained before they were added"),
	}
}

// generate simulates the runs of seeds; randomise draws them from the training distribution.
func (d dataFlags) generate(e *env, label, seeds string, randomise bool) ([]detector.Graph, error) {
	ss, err := parseSeeds(seeds)
	if err != nil {
		return nil, err
	}
	fl, err := sim.ParseFaults(*d.faults)
	if err != nil {
		return nil, err
	}
	if *d.features != "all" && *d.features != "self" {
		return nil, fmt.Errorf("--features must be all or self, not %q", *d.features)
	}
	bar := newBar(e.stderr, label)
	dc := experiment.DataConfig{Seeds: ss, Nodes: *d.nodes, Duration: *d.duration, Faults: fl,
		SelfOnly: *d.features == "self", Raw: d.raw, Randomise: randomise, NoBusy: *d.noBusy, KernelFraction: d.kernel, Progress: bar.set}
	if sc := d.scenario; sc != nil {
		dc.Sim, dc.Perturb = sc.Sim, sc.Perturb
		if sc.Nodes > 0 {
			dc.Nodes = sc.Nodes
		}
	}
	gs, err := experiment.Generate(dc)
	bar.done()
	return gs, err
}

// scenarioRuns simulates the held-out runs of seeds under one shift scenario.
func (d dataFlags) scenarioRuns(e *env, sc experiment.Scenario, seeds string) ([]detector.Graph, error) {
	d.scenario = &sc
	gs, err := d.generate(e, "scenario "+sc.Name, seeds, false)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	return gs, nil
}

func mustSeeds(s string) []uint64 {
	ss, _ := parseSeeds(s)
	return ss
}

// parseSeeds parses "1-6,9".
func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad seed list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a || b-a > 10000 {
				return nil, fmt.Errorf("bad seed range %q", part)
			}
		}
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
	}
	return out, nil
}

// runAITrain trains the GraphSAGE detector on simulator data and saves it.
func runAITrain(e *env, args []string) error {
	fs := newFlags(e, "ai train", "--out model.x6m [--seeds 1-24] [--val-seeds 51-53] [--epochs 20] [--train-faults ...]\n   or: x0tta6bl4 ai train --out model.x6m --from-records FILE|--control URL [--base shipped|FILE|none]")
	out := fs.String("out", "", "model file to write")
	seeds := fs.String("seeds", "1-24", "simulator seeds of the training runs")
	trainFaults := fs.String("train-faults", experiment.TrainFaults, "faults per training run (validation runs use --faults)")
	valSeeds := fs.String("val-seeds", "51-56", "simulator seeds of the validation runs (detection threshold)")
	epochs := fs.Int("epochs", 20, "training epochs (cosine learning-rate decay; the epoch with the best validation macro-F1 is kept)")
	hidden := fs.Int("hidden", 32, "hidden units per layer")
	lr := fs.Float64("lr", 0.005, "Adam learning rate")
	initSeed := fs.Uint64("init-seed", 1, "seed of the weight initialisation and graph order")
	ensemble := fs.Int("ensemble", 1, fmt.Sprintf("train this many models (init seeds init-seed, init-seed+1, ...) on the same runs and write their deep ensemble: the mean of their class probabilities (1: one model; at most %d)", detector.MaxMembers))
	fed := fs.Bool("federated", false, "federated training: one client per training seed, signed updates; the round with the best validation macro-F1 is kept")
	rounds := fs.Int("rounds", 100, "federated: rounds")
	localEpochs := fs.Int("local-epochs", 1, "federated: local epochs per round")
	localGraphs := fs.Int("local-graphs", 20, "federated: graphs (a random subset of its own, new each round) each client trains on per round; 0: all")
	fedLR := fs.Float64("fed-lr", 0.01, "federated: clients' Adam learning rate (cosine decay over the rounds)")
	serverLR := fs.Float64("server-lr", 1, "federated: server learning rate on the aggregated update")
	momentum := fs.Float64("momentum", 0, "federated: server momentum (FedAvgM); 0: none")
	rule := fs.String("rule", "trimmed", "federated: aggregation rule fedavg, trimmed or median")
	trim := fs.Float64("trim", 0.2, "federated: fraction trimmed at each end")
	robustStats := fs.Bool("robust-stats", false, "federated: aggregate normalisation statistics and class frequencies with the rule (false: pooled sums)")
	poison := fs.Float64("poison", 0, "federated: fraction of clients sending poisoned updates")
	attack := fs.String("attack", "scale", "federated: poisoned update: scale (−10 × the honest update), noise (Gaussian, 10 × its norm), alie (a little is enough) or ipm (inner-product manipulation)")
	poisonStats := fs.Bool("poison-stats", false, "federated: poisoned clients also send false statistics (×100 means)")
	krum := fs.Float64("krum", 0.2, "federated: fraction of clients Multi-Krum assumes Byzantine (f = fraction × clients, rounded down); 0: no Multi-Krum")
	noClip := fs.Bool("no-clip", false, "federated: do not clip update norms (to show what clipping prevents)")
	df := addDataFlags(fs)
	rf := addRecordFlags(fs)
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out", *out); err != nil {
		return err
	}
	if *ensemble < 1 || *ensemble > detector.MaxMembers {
		return fmt.Errorf("--ensemble must be 1–%d, not %d", detector.MaxMembers, *ensemble)
	}
	if *ensemble > 1 && (*fed || rf.used(fs)) {
		return errors.New("--ensemble trains simulated runs centrally: not with --federated or recorded reports")
	}
	if rf.used(fs) {
		return trainFromRecords(e, fs, rf, *out, *epochs, *lr, *hidden, *initSeed)
	}
	tdf := df
	tdf.faults = trainFaults
	trainSet, err := tdf.generate(e, "simulating", *seeds, *df.randomise)
	if err != nil {
		return err
	}
	val, err := df.generate(e, "simulating validation", *valSeeds, *df.randomise)
	if err != nil {
		return err
	}
	start := time.Now()
	var m detector.Predictor
	var save func(path string) error
	var loss float64
	if *fed {
		per := len(trainSet) / len(mustSeeds(*seeds))
		var clients [][]detector.Graph
		for i := 0; i+per <= len(trainSet); i += per {
			clients = append(clients, trainSet[i:i+per])
		}
		bar := newBar(e.stderr, "federated rounds")
		var best []float64
		bestF1, bestRound := -1.0, 0
		fm, rep, err := federated.Train(clients, len(trainSet[0].X[0]), federated.TrainConfig{Hidden: *hidden, Classes: int(sim.NumKinds), Edges: edgeDim(trainSet), Cosine: true,
			Rounds: *rounds, LocalEpochs: *localEpochs, LocalGraphs: *localGraphs, LR: *fedLR, ServerLR: *serverLR, Momentum: *momentum,
			Rule: federated.Rule(*rule), Trim: *trim, RobustStats: *robustStats,
			Poisoned: int(*poison*float64(len(clients)) + 0.5), Attack: federated.Attack(*attack), PoisonStats: *poisonStats,
			Krum: int(*krum * float64(len(clients))), NoClip: *noClip, Seed: *initSeed, Progress: bar.set,
			Validate: func(r int, gm *detector.Model) {
				if f1 := experiment.MacroF1(gm, val); f1 > bestF1 {
					best, bestF1, bestRound = gm.Params(), f1, r
				}
			}})
		bar.done()
		if err != nil {
			return err
		}
		if err := fm.SetParams(best); err != nil {
			return err
		}
		fm.Threshold = detector.FitThreshold(fm, val)
		m, save = fm, fm.Save
		fmt.Fprintf(e.stdout, "kept round %d of %d (validation macro-F1 %.3f)\n", bestRound, *rounds, bestF1)
		fmt.Fprintf(e.stdout, "federated (%s): %s\n", *rule, rep)
	} else {
		var members []*detector.Model
		for i := range *ensemble {
			seed := *initSeed + uint64(i)
			mb, l, err := trainOne(e, trainSet, val, *hidden, *epochs, *lr, seed)
			if err != nil {
				return err
			}
			members, loss = append(members, mb), l
			if *ensemble > 1 {
				fmt.Fprintf(e.stdout, "member %d: init seed %d, version %s\n", i+1, seed, mb.Version())
			}
		}
		m, save = members[0], members[0].Save
		if *ensemble > 1 {
			ens, err := detector.NewEnsemble(members)
			if err != nil {
				return err
			}
			ens.Threshold = detector.FitThreshold(ens, val)
			m, save = ens, ens.Save
		}
	}
	fmt.Fprintf(e.stdout, "validation (seeds %s): %s\n", *valSeeds, experiment.Summary(m, val))
	if err := save(*out); err != nil {
		return err
	}
	lossText := "n/a (federated)"
	if !*fed {
		lossText = fmt.Sprintf("%.4f", loss)
	}
	if *ensemble > 1 {
		lossText += " (last member)"
	}
	fmt.Fprintf(e.stdout, "trained on %d graphs (%d node-intervals) in %s; final loss %s; threshold %.3f\nmodel %s version %s\n",
		len(trainSet), len(trainSet)*len(trainSet[0].X), time.Since(start).Round(time.Millisecond), lossText, m.DetectionThreshold(), *out, m.Version())
	return nil
}

// trainOne trains one model from initialisation seed on trainSet, keeps the epoch with the best
// validation macro-F1 and sets its threshold on the validation runs. It returns the final epoch's
// mean loss too.
func trainOne(e *env, trainSet, val []detector.Graph, hidden, epochs int, lr float64, seed uint64) (*detector.Model, float64, error) {
	m := detector.NewModel(len(trainSet[0].X[0]), edgeDim(trainSet), hidden, hidden, int(sim.NumKinds), seed)
	train.Standardise(m, trainSet)
	bar := newBar(e.stderr, "training")
	var best []float64
	bestF1, bestEp := -1.0, 0
	loss, err := train.Run(m, trainSet, train.Config{Epochs: epochs, LR: lr, Seed: seed, Cosine: true,
		Progress: func(ep, n int, l float64) {
			f1 := experiment.MacroF1(m, val)
			if f1 > bestF1 {
				best, bestF1, bestEp = m.Params(), f1, ep
			}
			bar.setMsg(ep, n, fmt.Sprintf("loss %.4f, validation macro-F1 %.3f", l, f1))
		}})
	bar.done()
	if err != nil {
		return nil, 0, err
	}
	if err := m.SetParams(best); err != nil {
		return nil, 0, err
	}
	m.Threshold = detector.FitThreshold(m, val)
	fmt.Fprintf(e.stdout, "kept epoch %d of %d (validation macro-F1 %.3f)\n", bestEp, epochs, bestF1)
	return m, loss, nil
}

// edgeDim is the graphs' edge feature dimension (0 without edge data).
func edgeDim(gs []detector.Graph) int {
	for _, links := range gs[0].E {
		if len(links) > 0 {
			return len(links[0])
		}
	}
	return 0
}

// runAIEval evaluates a model and the baselines on held-out simulator runs: the default held-out
// runs, or (--suite shift) every distribution-shift scenario.
func runAIEval(e *env, args []string) error {
	fs := newFlags(e, "ai eval", "--model model.x6m [--suite default|shift|rca] [--seeds 301-305] [--train-seeds 1-24] [--val-seeds 51-56]")
	model := fs.String("model", "", "model file from ai train")
	suite := fs.String("suite", "default", "default: the held-out runs, per-interval and per-fault tables; shift: every distribution-shift scenario (held out from training); rca: root-cause rankings on single, cascade and two-fault incidents (seeds default to "+rcaTestSeeds+", validation "+rcaValSeeds+", nodes to "+fmt.Sprint(rcaNodes)+")")
	seeds := fs.String("seeds", "301-305", "held-out simulator seeds")
	trainSeeds := fs.String("train-seeds", "1-24", "training seeds (to fit the baselines)")
	trainFaults := fs.String("train-faults", experiment.TrainFaults, "faults per training run (as given to ai train)")
	valSeeds := fs.String("val-seeds", "51-56", "validation seeds (every method's threshold)")
	rcaFlag := fs.Bool("rca", true, "default suite: also run the rca suite (its own seeds "+rcaTestSeeds+", validation "+rcaValSeeds+", "+fmt.Sprint(rcaNodes)+" nodes)")
	only := fs.String("scenarios", "", "with --suite shift: only these scenarios (comma-separated names; default all)")
	persistMax := fs.Int("persist-max", 5, "persistence rule: largest k (flag after k consecutive intervals) tried on the validation runs; 1: no persistence table")
	detail := fs.Bool("detail", false, "with --suite shift: also print each scenario's per-kind event table at the chosen k (faults, detected, false-alarm stretches): which kinds fail, by misses or by false alarms")
	kernelFrac := fs.Float64("kernel-fraction", 0.5, "fraction of each run's nodes with eBPF kernel counters, for the kernel rule and the model fused with it (0: no kernel rows)")
	df := addDataFlags(fs)
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if *kernelFrac < 0 || *kernelFrac > 1 || math.IsNaN(*kernelFrac) {
		return fmt.Errorf("--kernel-fraction must be 0–1, not %v", *kernelFrac)
	}
	df.kernel = *kernelFrac
	if err := required(fs, "model", *model); err != nil {
		return err
	}
	scenarios, err := pickScenarios(*only)
	if err != nil {
		return err
	}
	if *suite != "default" && *suite != "shift" && *suite != "rca" {
		return fmt.Errorf("--suite must be default, shift or rca, not %q", *suite)
	}
	m, err := detector.Load(*model)
	if err != nil {
		return err
	}
	// A model of the earlier feature set reads the raw telemetry vectors.
	shape := m.Shape()
	df.raw = shape.F == telemetry.NumNode
	wantF, wantE := detector.NumRobust, detector.NumRobustEdge
	if df.raw {
		wantF, wantE = telemetry.NumNode, telemetry.NumEdge
	}
	if *df.features == "self" {
		wantE = 0
	}
	if shape.F != wantF || shape.E != wantE || shape.K != int(sim.NumKinds) {
		return fmt.Errorf("model has %d node features, %d edge features and %d classes; --features %s gives %d and %d, the simulator %d classes",
			shape.F, shape.E, shape.K, *df.features, wantF, wantE, sim.NumKinds)
	}
	if *suite == "rca" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["seeds"] {
			*seeds = rcaTestSeeds
		}
		if !set["val-seeds"] {
			*valSeeds = rcaValSeeds
		}
		if !set["nodes"] {
			*df.nodes = rcaNodes
		}
		return runRCASuite(e, m, *model, *seeds, *valSeeds, *df.nodes)
	}
	tdf := df
	tdf.faults = trainFaults
	trainSet, err := tdf.generate(e, "simulating training runs", *trainSeeds, *df.randomise)
	if err != nil {
		return err
	}
	val, err := df.generate(e, "simulating validation runs", *valSeeds, *df.randomise)
	if err != nil {
		return err
	}
	ds := append([]experiment.Method{experiment.Classifier(m), experiment.Anomaly(m)}, experiment.Baselines(trainSet, val, 1)...)
	// The persistence rule's k is chosen over the methods that need no kernel, so that it does not
	// depend on how many nodes have eBPF.
	noKernel := slices.Clone(ds)
	if kr, ok := experiment.KernelRule(val); ok {
		fused, f1 := experiment.WithKernel(experiment.Anomaly(m), kr, val)
		classes, macro := experiment.ClassesWithKernel(experiment.Classifier(m), kr, val)
		fmt.Fprintf(e.stdout, "kernel evidence on %.0f %% of the nodes; kernel rule threshold %.4f; fusions with the model chosen on the validation runs: %s (any-fault F1 per node-interval OR %.3f, AND %.3f), %s (macro-F1 OR %.3f, AND %.3f)\n",
			100*df.kernel, kr.Threshold, fused.Name, f1[0], f1[1], classes.Name, macro[0], macro[1])
		ds = append(ds, kr, fused, classes)
	}
	perRun := int(*df.duration / time.Second)
	if *suite == "shift" {
		fmt.Fprintf(e.stdout, "model %s (version %s); shift suite on seeds %s; thresholds from validation seeds %s\n", *model, m.Version(), *seeds, *valSeeds)
		k, kj, dsJoint := 1, 1, ds
		if *persistMax > 1 {
			var means, jmeans []float64
			k, means = experiment.ChoosePersistence(noKernel, val, perRun, *persistMax)
			kj, jmeans, dsJoint = experiment.ChooseJoint(noKernel, val, perRun, *persistMax)
			printChoice(e.stdout, "persistence rule", k, means)
			printChoice(e.stdout, "persistence rule with thresholds chosen jointly with k", kj, jmeans)
			// The gate a retrained model must pass before the held-out runs are looked at: every
			// method on the validation runs, at the chosen k.
			fmt.Fprintf(e.stdout, "validation runs (seeds %s), k = %d:\n", *valSeeds, k)
			experiment.PrintShift(e.stdout, experiment.ShiftRows("validation", k, false, experiment.EvaluatePersistent(noKernel, val, perRun, k, 1)))
		}
		fmt.Fprintln(e.stdout, "event F1 per fault kind (independent faults detected vs false-alarm stretches), without persistence (k = 1) and with the rule; interval any: per node-interval F1 of the same decisions; goals: any ≥ 0.90, every kind ≥ 0.80")
		for _, sc := range scenarios {
			test, err := df.scenarioRuns(e, sc, *seeds)
			if err != nil {
				return err
			}
			// Each scenario's rows as soon as they exist: a long suite shows its progress.
			rows := experiment.ShiftRows(sc.Name, 1, false, experiment.EvaluateEvents(ds, test, perRun, 1))
			var atK []experiment.EventRow
			if *persistMax > 1 {
				atK = experiment.EvaluatePersistent(ds, test, perRun, k, 1)
				rows = append(rows, experiment.ShiftRows(sc.Name, k, false, atK)...)
				rows = append(rows, experiment.ShiftRows(sc.Name, kj, true, experiment.EvaluatePersistent(dsJoint, test, perRun, kj, 1))...)
			}
			experiment.PrintShift(e.stdout, rows)
			if *detail && atK != nil {
				fmt.Fprintf(e.stdout, "%s: per fault kind at k = %d\n", sc.Name, k)
				experiment.PrintEvents(e.stdout, atK)
			}
		}
		return nil
	}
	test, err := df.generate(e, "simulating held-out runs", *seeds, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "model %s (version %s); held-out seeds %s: %d graphs, %d node-intervals\n", *model, m.Version(), *seeds, len(test), len(test)*len(test[0].X))
	fmt.Fprintln(e.stdout, "independent faults: detected if flagged for their kind in any of their intervals; false alarms: stretches of flags on normal nodes")
	fmt.Fprintln(e.stdout, "(every method reads the model's own inputs; thresholds from the validation runs only)")
	before := experiment.EvaluateEvents(ds, test, perRun, 1)
	experiment.PrintEvents(e.stdout, before)
	if *persistMax > 1 {
		k, means := experiment.ChoosePersistence(noKernel, val, perRun, *persistMax)
		fmt.Fprintln(e.stdout)
		printChoice(e.stdout, "persistence rule (flag after k consecutive intervals, same k for every method)", k, means)
		experiment.PrintPersistence(e.stdout, before, experiment.EvaluatePersistent(ds, test, perRun, k, 1), k)
		kj, jmeans, dsJoint := experiment.ChooseJoint(noKernel, val, perRun, *persistMax)
		fmt.Fprintln(e.stdout)
		printChoice(e.stdout, "persistence rule with each binary method's threshold chosen jointly with k (methods without kernel evidence)", kj, jmeans)
		joint := experiment.EvaluatePersistent(dsJoint, test, perRun, kj, 1)
		experiment.PrintPersistence(e.stdout, before[:len(joint)], joint, kj)
		fmt.Fprintf(e.stdout, "\nper fault kind under the joint rule (k = %d)\n", kj)
		experiment.PrintEvents(e.stdout, joint)
	}
	fmt.Fprintln(e.stdout, "\nper node-interval: each fault type against normal nodes")
	experiment.PrintTable(e.stdout, experiment.EvaluateAll(ds, test))
	printConfusion(e.stdout, experiment.Confusion(m, test))
	if *rcaFlag && *df.features == "all" && !df.raw {
		return runRCASuite(e, m, *model, rcaTestSeeds, rcaValSeeds, rcaNodes)
	}
	return nil
}

// runAIInputs prints where healthy nodes' derived inputs lie under shift scenarios: the diagnostic
// behind the inputs added against shift (docs/intelligence.md). Its default seeds are used by no
// training, validation or test set.
func runAIInputs(e *env, args []string) error {
	fs := newFlags(e, "ai inputs", "[--scenarios nominal,volume×10,noise,missing] [--seeds 901-903] [--kind normal]")
	kindName := fs.String("kind", "normal", "node-intervals of this kind (normal: 50th/95th/99th percentile; a fault kind: 5th/25th/50th)")
	seeds := fs.String("seeds", "901-903", "simulator seeds (none of training 1-24, validation 51-56 or test 301-305)")
	only := fs.String("scenarios", "nominal,volume×10,noise,missing", "shift scenarios (comma-separated names)")
	df := addDataFlags(fs)
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	scenarios, err := pickScenarios(*only)
	if err != nil {
		return err
	}
	kind, err := sim.ParseKind(*kindName)
	if err != nil {
		return err
	}
	var qs [][][3]float64
	for _, sc := range scenarios {
		gs, err := df.scenarioRuns(e, sc, *seeds)
		if err != nil {
			return err
		}
		qs = append(qs, experiment.InputQuantiles(gs, kind))
	}
	levels := "50th / 95th / 99th"
	if kind != sim.Normal {
		levels = "5th / 25th / 50th"
	}
	fmt.Fprintf(e.stdout, "%s node-intervals, seeds %s: %s percentile of each derived input\n", kind, *seeds, levels)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "input\t")
	for _, sc := range scenarios {
		fmt.Fprintf(tw, "%s\t", sc.Name)
	}
	fmt.Fprintln(tw)
	for j, name := range detector.RobustNames {
		fmt.Fprintf(tw, "%s\t", name)
		for _, q := range qs {
			if j < len(q) {
				fmt.Fprintf(tw, "%.3f %.3f %.3f\t", q[j][0], q[j][1], q[j][2])
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// printChoice writes a persistence choice: k, made on the validation runs only, and the methods'
// mean any-fault event F1 there for every k tried.
func printChoice(w io.Writer, what string, k int, means []float64) {
	fmt.Fprintf(w, "%s: k = %d, chosen on the validation runs only; their mean any-fault event F1 for k = 1..%d:", what, k, len(means))
	for _, m := range means {
		fmt.Fprintf(w, " %.3f", m)
	}
	fmt.Fprintln(w)
}

// pickScenarios returns the shift scenarios named in the comma-separated list (all when empty).
func pickScenarios(list string) ([]experiment.Scenario, error) {
	all := experiment.ShiftSuite()
	if list == "" {
		return all, nil
	}
	var out []experiment.Scenario
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(sc experiment.Scenario) bool { return sc.Name == strings.TrimSpace(name) })
		if i < 0 {
			names := make([]string, len(all))
			for j, sc := range all {
				names[j] = sc.Name
			}
			return nil, fmt.Errorf("unknown scenario %q (want %s)", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func printConfusion(w io.Writer, cm [][]int) {
	fmt.Fprintln(w, "\nGraphSAGE fault classification (argmax), rows true, columns predicted:")
	fmt.Fprintf(w, "%10s", "")
	for k := range cm {
		fmt.Fprintf(w, "%10s", sim.Kind(k))
	}
	fmt.Fprintln(w)
	for i, row := range cm {
		fmt.Fprintf(w, "%10s", sim.Kind(i))
		for _, c := range row {
			fmt.Fprintf(w, "%10d", c)
		}
		fmt.Fprintln(w)
	}
}

// bar is a one-line progress bar on stderr.
type bar struct {
	w     io.Writer
	label string
	shown bool
}

func newBar(w io.Writer, label string) *bar { return &bar{w: w, label: label} }

func (b *bar) set(done, total int) { b.setMsg(done, total, "") }

func (b *bar) setMsg(done, total int, msg string) {
	const width = 30
	fill := width * done / max(total, 1)
	fmt.Fprintf(b.w, "\r%-26s [%s%s] %d/%d %s", b.label, strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total, msg)
	b.shown = true
}

func (b *bar) done() {
	if b.shown {
		fmt.Fprintln(b.w)
	}
}
