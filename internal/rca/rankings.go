package rca

import (
	"cmp"
	"math"
	"slices"
)

// Window is what a ranking sees of an incident: every interval from the start of the data to the
// moment the ranking is asked, and the interval at which the incident opened.
type Window struct {
	Adj [][]int
	// Metrics[t][v] is what node v reported in interval t (its telemetry vector; all zeros with the
	// missing flag set when it reported nothing).
	Metrics [][][]float64
	// LinkUp[t][v][i] reports whether node v had its link to Adj[v][i] up in interval t (nil: not
	// known).
	LinkUp [][][]bool
	// Scores[t][v] is the detector's anomaly score of node v in interval t, in [0, 1], and
	// Threshold the score at which the detector flags a node.
	Scores    [][]float64
	Threshold float64
	// Open is the interval at which the incident opened; intervals before it are history.
	Open int
}

// Ranking orders a window's nodes from most to least likely root cause.
type Ranking struct {
	Name string
	Rank func(w *Window) []int
}

// Ranking names.
const (
	ScoreRanking  = "score"
	PPRRanking    = "pagerank"
	BARORanking   = "baro"
	OnsetRanking  = "bocpd-onset"
	DetectorOnset = "detector-onset"
)

// DefaultRanking is the ranking kept for root-cause analysis: the one with the highest top-1,
// averaged over the four incident types, on the validation incidents (docs/intelligence.md,
// "Root-cause analysis"; ai eval --suite rca prints the validation table it was chosen from).
const DefaultRanking = LoadShiftRanking

// Rankings returns every ranking, the default first.
func Rankings() []Ranking {
	all := []Ranking{
		{ScoreRanking, rankByScore},
		{PPRRanking, rankByPageRank},
		{BARORanking, rankBARO},
		{OnsetRanking, rankByChangeOnset},
		{DetectorOnset, rankByDetectorOnset},
		{LoadShiftRanking, rankByLoadShift},
	}
	i := slices.IndexFunc(all, func(r Ranking) bool { return r.Name == DefaultRanking })
	all[0], all[i] = all[i], all[0]
	for i := range all {
		all[i].Rank = guarded(all[i].Rank)
	}
	return all
}

// guarded answers a window without intervals, or whose scores and metrics disagree in length, with
// the nodes in index order rather than reading past its end.
func guarded(rank func(w *Window) []int) func(w *Window) []int {
	return func(w *Window) []int {
		if len(w.Metrics) == 0 || len(w.Scores) != len(w.Metrics) || (w.LinkUp != nil && len(w.LinkUp) != len(w.Metrics)) {
			return ByScore(make([]float64, len(w.Adj)))
		}
		return rank(w)
	}
}

// meanScores is each node's mean anomaly score since the incident opened.
func (w *Window) meanScores() []float64 {
	n := len(w.Adj)
	m := make([]float64, n)
	from := min(w.Open, len(w.Scores)-1)
	for t := from; t < len(w.Scores); t++ {
		for v, s := range w.Scores[t] {
			m[v] += s
		}
	}
	for v := range m {
		m[v] /= float64(len(w.Scores) - from)
	}
	return m
}

func rankByScore(w *Window) []int { return ByScore(w.meanScores()) }

// rankByPageRank is personalised PageRank over the mean scores; the incident is every node whose
// mean score reaches the threshold, and at least the 5 highest-scoring.
func rankByPageRank(w *Window) []int {
	s := w.meanScores()
	anom := make([]bool, len(s))
	for i, v := range ByScore(s) {
		anom[v] = i < 5 || s[v] >= w.Threshold
	}
	order, _ := Rank(w.Adj, s, anom, Config{})
	return order
}

// standardised returns node v's metric series over [0, end), each metric centred on its median
// over the history before the incident opened and divided by its interquartile range there (at
// least metricFloor).
func (w *Window) standardised(v, end int) [][]float64 {
	hist := max(1, min(w.Open, end))
	d := len(w.Metrics[0][v])
	out := make([][]float64, end)
	for t := range out {
		out[t] = make([]float64, d)
	}
	col := make([]float64, hist)
	for j := range d {
		for t := range hist {
			col[t] = w.Metrics[t][v][j]
		}
		med, scale := robustScale(col, metricFloor(median(col)))
		for t := range end {
			out[t][j] = (w.Metrics[t][v][j] - med) / scale
		}
	}
	return out
}

func median(a []float64) float64 {
	m, _ := robustScale(a, 0)
	return m
}

// changeLag is how many later intervals confirm a change (changeProb's lag), and changeSure the
// posterior probability above which a change is taken as found.
const (
	changeLag  = 2
	changeSure = 0.5
)

// firstChange is the first interval whose change probability reaches changeSure, or (found false)
// the most probable one.
func firstChange(p []float64) (int, bool) {
	for t := 1; t < len(p); t++ {
		if p[t] >= changeSure {
			return t, true
		}
	}
	best := 1
	for t := 1; t < len(p); t++ {
		if p[t] > p[best] {
			best = t
		}
	}
	return best, false
}

// magnitudes is BARO's RobustScorer: for each node, the largest deviation after the change point
// cp of any of its metrics from its median before cp, in interquartile ranges (at least
// metricFloor) before cp.
func (w *Window) magnitudes(cp int) []float64 {
	n, end := len(w.Adj), len(w.Metrics)
	cp = max(1, min(cp, end-1))
	out := make([]float64, n)
	col := make([]float64, cp)
	for v := range n {
		for j := range w.Metrics[0][v] {
			for t := range cp {
				col[t] = w.Metrics[t][v][j]
			}
			med, scale := robustScale(col, metricFloor(median(col)))
			for t := cp; t < end; t++ {
				out[v] = max(out[v], math.Abs(w.Metrics[t][v][j]-med)/scale)
			}
		}
	}
	return out
}

// globalChange runs BOCPD over every node's standardised metrics at once (BARO's multivariate
// change-point detection) and returns the incident's change point.
func (w *Window) globalChange() int {
	end := len(w.Metrics)
	all := make([][]float64, end)
	for v := range w.Adj {
		s := w.standardised(v, end)
		for j := range s[0] {
			if constant(s, j) {
				continue // no change to find, and a new regime would pay to relearn it
			}
			for t := range end {
				all[t] = append(all[t], s[t][j])
			}
		}
	}
	if len(all[0]) == 0 {
		return w.Open
	}
	cp, _ := firstChange(changeProb(all, changeLag, defaultBOCPD))
	return cp
}

// constant reports whether column j of x never moves.
func constant(x [][]float64, j int) bool {
	for _, row := range x {
		if row[j] != x[0][j] {
			return false
		}
	}
	return true
}

// rankBARO is BARO: multivariate BOCPD finds when the incident began; nodes are ranked by the
// robust deviation of their metrics after that point.
func rankBARO(w *Window) []int { return ByScore(w.magnitudes(w.globalChange())) }

// rankByChangeOnset runs BOCPD on each node's own metrics and ranks nodes by when their change
// began (earliest first: causes precede symptoms), nodes without a change last; ties, frequent at
// one-second telemetry, go to BARO's magnitude.
func rankByChangeOnset(w *Window) []int {
	end := len(w.Metrics)
	mag := w.magnitudes(w.globalChange())
	onset := make([]int, len(w.Adj))
	for v := range w.Adj {
		t, ok := firstChange(changeProb(w.standardised(v, end), changeLag, defaultBOCPD))
		if !ok {
			t = math.MaxInt
		}
		onset[v] = t
	}
	return byOnset(onset, mag)
}

// rankByDetectorOnset ranks nodes by the first interval since the incident opened at which the
// detector flagged them (never flagged: last), ties by mean score.
func rankByDetectorOnset(w *Window) []int {
	onset := make([]int, len(w.Adj))
	for v := range onset {
		onset[v] = math.MaxInt
		for t := min(w.Open, len(w.Scores)-1); t < len(w.Scores); t++ {
			if w.Scores[t][v] >= w.Threshold {
				onset[v] = t
				break
			}
		}
	}
	return byOnset(onset, w.meanScores())
}

// byOnset orders nodes by onset, then by tie (larger first).
func byOnset(onset []int, tie []float64) []int {
	order := ByScore(tie)
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(onset[a], onset[b]) })
	return order
}
