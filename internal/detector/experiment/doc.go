// Package experiment runs the detector's experiments (docs/intelligence.md): labelled graphs from
// simulated meshes with injected faults, the baselines the model is compared with (robust z-score,
// isolation forest, a flow-conservation rule), and the evaluation metrics and tables behind
// `x0tta6bl4 ai train` and `ai eval`.
//
// It is the only part of the detector that links the simulator, which is why it is a package of its
// own: nothing a running node or control plane imports may import it. It must never read the wall
// clock or use unseeded randomness: the same seeds give the same data, thresholds and tables.
package experiment
