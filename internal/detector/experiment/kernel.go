package experiment

import (
	"math"

	"x0tta6bl4/internal/detector"
	"x0tta6bl4/internal/sim"
)

// absent is the kernel rule's score for a node without kernel evidence: below every score a
// present node can have, so such a node is never flagged by it (absent is not a fault).
const absent = -1

// kernelDiscrepancy is the kernel rule's score of every node of g: how far the daemon's own counts
// disagree with its kernel's, as a fraction of the packets the node handled — the larger of
// |kernel-seen − kernel-dropped − daemon-read| and |daemon-sent − kernel-seen| (detector.KIRxUnread
// less KIDropRatio, and KITxUnseen). Datagrams the kernel itself dropped (a firewall refusing a
// stray datagram, a full socket buffer) are the kernel's decision, not a disagreement, so they
// are taken out of the unread ones. A daemon that claims to have relayed what it dropped, or to have
// read less than reached it, shows here whatever it reports about itself. Nodes without kernel
// evidence score absent.
func kernelDiscrepancy(g *detector.Graph) []float64 {
	s := make([]float64, len(g.X))
	for v := range s {
		s[v] = absent
		if g.K == nil {
			continue
		}
		k := &g.K[v]
		if k[detector.KIRxUnreadPresent] == 0 && k[detector.KITxUnseenPresent] == 0 {
			continue
		}
		s[v] = max(math.Abs(k[detector.KIRxUnread]-k[detector.KIDropRatio]), math.Abs(k[detector.KITxUnseen]))
	}
	return s
}

// hasKernel reports whether any node of gs has kernel evidence.
func hasKernel(gs []detector.Graph) bool {
	for i := range gs {
		for _, s := range kernelDiscrepancy(&gs[i]) {
			if s != absent {
				return true
			}
		}
	}
	return false
}

// KernelRule is the kernel-evidence rule (kernelDiscrepancy) with its validation threshold, or
// false when no validation node has kernel evidence to set a threshold on.
func KernelRule(val []detector.Graph) (Method, bool) {
	if !hasKernel(val) {
		return Method{}, false
	}
	return withThreshold(Method{Name: "kernel rule", Score: kernelDiscrepancy}, val), true
}

// Fusion is how WithKernel combines a method's decision with the kernel rule's.
type Fusion string

// Fusions.
const (
	// FuseOr flags a node that either flags.
	FuseOr Fusion = "OR"
	// FuseAnd flags a node with kernel evidence only when both flag it, and a node without
	// kernel evidence when the method does.
	FuseAnd Fusion = "AND"
)

// Fuse returns base and the kernel rule as one binary method under fusion f. Its score is base's
// margin over its threshold, fused with the kernel rule's margin over its own (OR: the larger, AND:
// the smaller, where the node has kernel evidence), and its threshold 0: each side decides at
// its own validation threshold. A node without kernel evidence gets base's decision unchanged.
func Fuse(base, kernel Method, f Fusion) Method {
	score := func(g *detector.Graph) []float64 {
		b, k := base.Score(g), kernel.Score(g)
		s := make([]float64, len(b))
		for v := range s {
			s[v] = b[v] - base.Threshold
			if k[v] == absent {
				continue
			}
			if f == FuseOr {
				s[v] = max(s[v], k[v]-kernel.Threshold)
			} else {
				s[v] = min(s[v], k[v]-kernel.Threshold)
			}
		}
		return s
	}
	return Method{Name: base.Name + " + kernel (" + string(f) + ")", Score: score}
}

// WithKernel fuses a binary method with the kernel rule, OR or AND, whichever gives the higher
// any-fault F1 per node-interval on the validation graphs (OR on a tie), and returns the choice
// with both validation F1s (OR, AND). Neither the test graphs nor the shift scenarios are read.
func WithKernel(base, kernel Method, val []detector.Graph) (Method, [2]float64) {
	_, ys := rows(val)
	pos := anomalous(ys)
	var f1 [2]float64
	var ms [2]Method
	for i, f := range []Fusion{FuseOr, FuseAnd} {
		ms[i] = Fuse(base, kernel, f)
		var scores []float64
		for j := range val {
			scores = append(scores, ms[i].Score(&val[j])...)
		}
		f1[i] = Evaluate(scores, pos, 0).F1
	}
	if f1[1] > f1[0] {
		return ms[1], f1
	}
	return ms[0], f1
}

// FuseClasses returns a classifier (a method with Classify) and the kernel rule as one classifier.
// The kernel witnesses one thing, a relay whose daemon claims to have handed on what it dropped,
// so it only ever decides between normal and the two lying-relay kinds, and only on nodes with
// kernel evidence. OR: a node the classifier calls normal but the kernel rule flags becomes the
// more probable of blackhole and grey hole; AND: a node the classifier calls a blackhole or grey
// hole but whose kernel sees it relay what it says becomes normal. Every other decision, and every
// node without kernel evidence, is the classifier's own.
func FuseClasses(base, kernel Method, f Fusion) Method {
	fuse := func(g *detector.Graph) ([][]float64, []int) {
		probs, kinds := base.Classify(g)
		k := kernel.Score(g)
		out := make([][]float64, len(probs))
		for v, p := range probs {
			out[v] = p
			if k[v] == absent {
				continue
			}
			a, flagged := kinds[v], k[v] >= kernel.Threshold
			liar := sim.Blackhole
			if p[sim.GreyHole] > p[sim.Blackhole] {
				liar = sim.GreyHole
			}
			switch {
			case f == FuseOr && a == int(sim.Normal) && flagged:
				out[v], kinds[v] = onehot(len(p), int(liar)), int(liar)
			case f == FuseAnd && (a == int(sim.Blackhole) || a == int(sim.GreyHole)) && !flagged:
				out[v], kinds[v] = onehot(len(p), int(sim.Normal)), int(sim.Normal)
			}
		}
		return out, kinds
	}
	return Method{Name: base.Name + " + kernel (" + string(f) + ")", Threshold: base.Threshold, Score: base.Score, Classify: fuse}
}

func onehot(n, k int) []float64 {
	p := make([]float64, n)
	p[k] = 1
	return p
}

// ClassesWithKernel fuses a classifier with the kernel rule, OR or AND (FuseClasses), whichever
// gives the higher macro-F1 over the fault kinds per node-interval on the validation graphs (OR on
// a tie), and returns the choice with both validation figures (OR, AND).
func ClassesWithKernel(base, kernel Method, val []detector.Graph) (Method, [2]float64) {
	_, ys := rows(val)
	var f1 [2]float64
	var ms [2]Method
	for i, f := range []Fusion{FuseOr, FuseAnd} {
		ms[i] = FuseClasses(base, kernel, f)
		probs, kinds := ms[i].classifyAll(val)
		rs := classRows("", probs, kinds, ys)
		for _, r := range rs[1:] {
			f1[i] += r.F1 / float64(len(rs)-1)
		}
	}
	if f1[1] > f1[0] {
		return ms[1], f1
	}
	return ms[0], f1
}
