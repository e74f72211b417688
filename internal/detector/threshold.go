package detector

import (
	"math"
	"slices"
)

// FitThreshold returns p's F1-optimal detection threshold (on 1 − p(normal)) on the labelled
// graphs gs, for the caller to store in its Threshold: the calibration every training path ends
// with (simulated, recorded or federated, single model or ensemble), so it lives with the model
// rather than with the simulator's experiments.
func FitThreshold(p Predictor, gs []Graph) float64 {
	var scores []float64
	var pos []bool
	for i := range gs {
		scores = append(scores, Scores(p, &gs[i])...)
		for _, y := range gs[i].Y {
			pos = append(pos, y != 0)
		}
	}
	return math.Min(1, math.Max(0, BestThreshold(scores, pos)))
}

// BestThreshold returns the threshold (one of the scores) that maximises F1.
func BestThreshold(scores []float64, pos []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	totalPos := 0
	for _, p := range pos {
		if p {
			totalPos++
		}
	}
	best, bestT := -1.0, math.Inf(1)
	tp, fp := 0, 0
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			if pos[idx[j]] {
				tp++
			} else {
				fp++
			}
			j++
		}
		if tp > 0 {
			p, r := float64(tp)/float64(tp+fp), float64(tp)/float64(totalPos)
			if f := 2 * p * r / (p + r); f > best {
				best, bestT = f, scores[idx[i]]
			}
		}
		i = j
	}
	return bestT
}
