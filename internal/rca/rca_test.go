package rca

import (
	"testing"
)

// A faulty hub whose neighbours all look somewhat anomalous must outrank a neighbour that scores a
// little higher than the hub itself: the walk concentrates where anomalous neighbours meet.
func TestRankHub(t *testing.T) {
	// 0 is the hub of 1..5; 5 connects to 6, 7.
	adj := [][]int{{1, 2, 3, 4, 5}, {0}, {0}, {0}, {0}, {0, 6, 7}, {5}, {5}}
	scores := []float64{0.6, 0.5, 0.5, 0.5, 0.5, 0.65, 0, 0}
	anom := []bool{true, true, true, true, true, true, false, false}
	order, r := Rank(adj, scores, anom, Config{})
	if order[0] != 0 {
		t.Fatalf("order %v, mass %v", order, r)
	}
	if ByScore(scores)[0] != 5 {
		t.Fatal("baseline order")
	}
	var sum float64
	for _, v := range r {
		sum += v
	}
	if sum < 0.999 || sum > 1.001 {
		t.Fatalf("mass %v", sum)
	}
}
