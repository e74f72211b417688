// Package detector is the mesh anomaly detector: a GraphSAGE node classifier in pure Go (Hamilton
// et al. 2017) with edge features in the first layer's aggregation, E-GraphSAGE style (Lo et al.,
// NOMS 2022). Two layers with the mean aggregator over the full neighbourhood,
//
//	h1_v = ReLU(W1·[x_v ‖ mean_{u∈N(v)} x_u ‖ L(mean_{u∈N(v)} e_{u→v}) ‖ L(mean_{u∈N(v)} e_{v→u})] + b1)
//	h2_v = ReLU(W2·[h1_v ‖ mean_{u∈N(v)} h1_u] + b2)
//
// where e_{u→v} is what u's own counters say about its link to v and L is a fixed symmetric log
// (sign(a)·log(1+|a|)) of the aggregated edge features, then standardised (every input is
// standardised with training statistics), and a softmax over fault classes per node.
//
// It holds what a running system needs: the single model (Model) and the deep ensemble of them
// (Ensemble), which inference reads alike through Predictor (Predict, Scores), and the versioned
// model file format (format.go), which is plain numbers, so loading a model never runs code. The
// control plane and the node link this package alone. Training lives in detector/train, and the
// experiments that produce and judge models (simulated data, baselines, evaluation) in
// detector/experiment.
//
// It must never import the simulator or the training code, read the wall clock, or use unseeded
// randomness: the same file and graph give the same answer everywhere.
package detector
