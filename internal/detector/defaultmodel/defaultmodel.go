// Package defaultmodel is the detector model shipped in the binary: the control plane answers
// /ai/predict with it unless ai.model names another file (or "none"). It is a deep ensemble of four
// models, trained by
//
//	x0tta6bl4 ai train --ensemble 4 --out internal/detector/defaultmodel/detector.x6m
//
// (seeds 1–24 drawn from the training distribution, validation seeds 51–56, initialisation seeds
// 1–4, 20 epochs each; docs/intelligence.md gives its version and evaluation). Retrain it, with the
// same command, whenever the derived features change: Load refuses a file that does not match.
//
// It must never hold anything but that file and its loader: no training code, no simulator.
package defaultmodel

import (
	"crypto/sha256"
	_ "embed"
	"fmt"

	"x0tta6bl4/internal/detector"
)

//go:embed detector.x6m
var file []byte

// Load decodes the shipped model and checks it reads this build's derived features.
func Load() (detector.Predictor, error) {
	m, err := detector.UnmarshalModel(file)
	if err != nil {
		return nil, fmt.Errorf("defaultmodel: %w", err)
	}
	if s := m.Shape(); s.F != detector.NumRobust || s.E != detector.NumRobustEdge {
		return nil, fmt.Errorf("defaultmodel: the shipped model reads %d node and %d edge features, this build derives %d and %d: retrain it",
			s.F, s.E, detector.NumRobust, detector.NumRobustEdge)
	}
	return m, nil
}

// Base is the single model a training starts from (federated rounds, fine-tuning on recorded
// reports): the shipped model, or its first member (initialisation seed 1) when it is an ensemble,
// since an ensemble is for inference only.
func Base() (*detector.Model, error) {
	m, err := Load()
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *detector.Ensemble:
		return m.Members[0], nil
	case *detector.Model:
		return m, nil
	}
	return nil, fmt.Errorf("defaultmodel: the shipped model is a %T, not a model or an ensemble", m)
}

// SHA256 is the hash of the shipped model's file, by which governance pins a model.
func SHA256() [32]byte { return sha256.Sum256(file) }
