// Package finetune trains or fine-tunes a detector model on samples rebuilt from recorded reports
// (internal/detector/reports). It is training code: the running node and control plane must never
// link it, only the CLI and tests do.
package finetune

import (
	"errors"
	"fmt"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/detector/reports"
	"x0tta6bl4/internal/detector/train"
	"x0tta6bl4/internal/telemetry"
)

// Config configures Train.
type Config struct {
	Epochs int     // [10]
	LR     float64 // Adam learning rate [0.001 when fine-tuning, 0.005 for a new model]
	Hidden int     // hidden units per layer of a new model [32]
	Seed   uint64  // weight initialisation and graph order [1]
	// Progress, if set, is called after every epoch.
	Progress func(epoch, epochs int, loss float64)
}

// Train fine-tunes a copy of base on the labelled graphs, or trains a new model when base is nil.
// Fine-tuning keeps base's normalisation and detection threshold, so the model's inputs mean what
// they meant before and only the weights move; a new model takes its normalisation from the
// graphs and its threshold from them too (there is no separate validation set in one archive:
// the threshold is the one that maximises F1 on the training samples, which flatters it).
func Train(base *detector.Model, gs []detector.Graph, cfg Config) (*detector.Model, float64, error) {
	if len(gs) == 0 {
		return nil, 0, errors.New("finetune: no samples to train on")
	}
	labelled := 0
	for _, g := range gs {
		for _, y := range g.Y {
			if y != 0 {
				labelled++
			}
		}
	}
	if labelled == 0 {
		return nil, 0, errors.New("finetune: no sample is labelled with a fault: label incidents first (ctl incident label)")
	}
	if cfg.Epochs <= 0 {
		cfg.Epochs = 10
	}
	if cfg.Hidden <= 0 {
		cfg.Hidden = 32
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	var m *detector.Model
	if base != nil {
		m = base.Clone()
		if cfg.LR <= 0 {
			cfg.LR = 0.001
		}
	} else {
		m = detector.NewModel(detector.NumRobust, detector.NumRobustEdge, cfg.Hidden, cfg.Hidden, len(telemetry.Classes), cfg.Seed)
		train.Standardise(m, gs)
		if cfg.LR <= 0 {
			cfg.LR = 0.005
		}
	}
	loss, err := train.Run(m, gs, train.Config{Epochs: cfg.Epochs, LR: cfg.LR, Seed: cfg.Seed, Cosine: true, Progress: cfg.Progress})
	if err != nil {
		return nil, 0, fmt.Errorf("finetune: %w", err)
	}
	if base == nil {
		m.Threshold = detector.FitThreshold(m, gs)
	}
	return m, loss, nil
}

// MeanScore is the model's mean score (1 − p(normal)) over the nodes of the samples labelled
// class, and how many there were.
func MeanScore(m detector.Predictor, ss []reports.Sample, class int) (float64, int) {
	var sum float64
	n := 0
	for i := range ss {
		scores := detector.Scores(m, &ss[i].Graph)
		for v, y := range ss[i].Graph.Y {
			if y == class {
				sum += scores[v]
				n++
			}
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / float64(n), n
}
