// Package train fits a detector.Model to labelled graphs: input standardisation from feature
// moments (which federated clients can pool without sharing data), per-class loss weights, and
// hand-written back-propagation with Adam.
//
// It is separate from the detector so that the control plane and the node, which only run models,
// do not link it. It must never import the simulator (federated training runs it on real nodes'
// data), read the wall clock, or use unseeded randomness: the same data and seed give the same
// model.
package train
