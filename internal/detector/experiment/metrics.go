package experiment

import (
	"math"
	"slices"
)

// Binary holds detection metrics at a threshold, and the threshold-free ROC-AUC.
type Binary struct {
	TP, FP, FN, TN        int
	Precision, Recall, F1 float64
	AUC                   float64
}

// Evaluate computes metrics of scores against positive labels with the rule score ≥ threshold.
func Evaluate(scores []float64, pos []bool, threshold float64) Binary {
	var b Binary
	for i, s := range scores {
		switch p := s >= threshold; {
		case p && pos[i]:
			b.TP++
		case p:
			b.FP++
		case pos[i]:
			b.FN++
		default:
			b.TN++
		}
	}
	if b.TP+b.FP > 0 {
		b.Precision = float64(b.TP) / float64(b.TP+b.FP)
	}
	if b.TP+b.FN > 0 {
		b.Recall = float64(b.TP) / float64(b.TP+b.FN)
	}
	if b.Precision+b.Recall > 0 {
		b.F1 = 2 * b.Precision * b.Recall / (b.Precision + b.Recall)
	}
	b.AUC = AUC(scores, pos)
	return b
}

// AUC is the ROC area: the probability that a random positive scores above a random negative
// (ties count one half). NaN without positives or negatives.
func AUC(scores []float64, pos []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	// Mann–Whitney U with average ranks for ties.
	var rankSum float64
	np, nn := 0, 0
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // ranks i+1..j
		for k := i; k < j; k++ {
			if pos[idx[k]] {
				rankSum += avg
				np++
			} else {
				nn++
			}
		}
		i = j
	}
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	return (rankSum - float64(np*(np+1))/2) / float64(np*nn)
}
