package rca

import (
	"math"
	"slices"
)

// Bayesian online change-point detection (Adams and MacKay, "Bayesian Online Changepoint
// Detection", 2007) over a vector series whose dimensions are modelled as independent Gaussians
// with unknown mean and variance (a Normal-Gamma prior per dimension, Student-t predictive), with a
// constant hazard. BARO (Pham et al., FSE 2024) runs the multivariate version of this model over
// every service's metrics to find when an incident began.

// bocpdConfig are the model's parameters, for standardised inputs (zero median, unit scale).
type bocpdConfig struct {
	Hazard float64 // prior probability of a change at each step
	Kappa0 float64 // prior pseudo-observations of the mean
	Alpha0 float64 // prior shape of the precision
	Beta0  float64 // prior rate of the precision
}

// The prior says a standardised metric has unit variance, firmly (α = β = 3): with a vague prior a
// new regime pays for relearning every quiet dimension, and over hundreds of metrics that cost
// hid every change.
var defaultBOCPD = bocpdConfig{Hazard: 1.0 / 50, Kappa0: 1, Alpha0: 3, Beta0: 3}

// changeProb returns, for every step t ≥ 1, the posterior probability that a change happened at t
// (a new regime began with x[t]) given the observations up to t+lag (or the series' end): the
// run-length posterior P(r_{t+lag} = lag), the standard way to read a change with a short delay.
// x[t][d] is dimension d at step t; all rows have the same length.
func changeProb(x [][]float64, lag int, c bocpdConfig) []float64 {
	n := len(x)
	out := make([]float64, n)
	if n == 0 {
		return out
	}
	d := len(x[0])
	// Per run length r (the current regime holds the last r observations), per dimension: the
	// Normal-Gamma posterior after those observations.
	prior := func() normalGamma {
		s := normalGamma{make([]float64, d), make([]float64, d), make([]float64, d), make([]float64, d)}
		for j := range d {
			s.kappa[j], s.alpha[j], s.beta[j] = c.Kappa0, c.Alpha0, c.Beta0
		}
		return s
	}
	runs := []normalGamma{prior()}
	logR := []float64{0} // log P(r_t = r | x_1..t), r = 0 before any observation
	// hist[t][r] keeps the posterior after step t, to read P(r_{t} = lag) later.
	hist := make([][]float64, n)
	lh, l1h := math.Log(c.Hazard), math.Log1p(-c.Hazard)
	for t := range n {
		// Predictive log-likelihood of x[t] under each run length.
		pred := make([]float64, len(runs))
		for r, s := range runs {
			var lp float64
			for j := range d {
				lp += studentLogPDF(x[t][j], s.mu[j], s.beta[j]*(s.kappa[j]+1)/(s.alpha[j]*s.kappa[j]), 2*s.alpha[j])
			}
			pred[r] = lp
		}
		next := make([]float64, len(runs)+1)
		cp := math.Inf(-1)
		for r := range runs {
			next[r+1] = logR[r] + pred[r] + l1h
			cp = logAdd(cp, logR[r]+pred[r]+lh)
		}
		next[0] = cp
		norm := math.Inf(-1)
		for _, v := range next {
			norm = logAdd(norm, v)
		}
		for r := range next {
			next[r] -= norm
		}
		logR = next
		// Update the statistics: run length r+1 extends r with x[t]; run length 0 (a change just
		// after x[t]: the new regime begins with x[t+1]) is the prior.
		upd := make([]normalGamma, len(runs)+1)
		upd[0] = prior()
		for r, s := range runs {
			upd[r+1] = s.update(x[t])
		}
		runs = upd
		hist[t] = slices.Clone(logR)
	}
	// After step t, a regime that began with x[s] (s ≤ t) has run length t−s+1.
	for s := 1; s < n; s++ {
		t := min(n-1, s+lag)
		r := t - s + 1
		if r < len(hist[t]) {
			out[s] = math.Exp(hist[t][r])
		}
	}
	return out
}

// normalGamma is the posterior of every dimension's mean and precision.
type normalGamma struct{ mu, kappa, alpha, beta []float64 }

func (s normalGamma) update(x []float64) normalGamma {
	o := normalGamma{slices.Clone(s.mu), slices.Clone(s.kappa), slices.Clone(s.alpha), slices.Clone(s.beta)}
	for j, v := range x {
		k := s.kappa[j]
		o.mu[j] = (k*s.mu[j] + v) / (k + 1)
		o.kappa[j] = k + 1
		o.alpha[j] = s.alpha[j] + 0.5
		o.beta[j] = s.beta[j] + k*(v-s.mu[j])*(v-s.mu[j])/(2*(k+1))
	}
	return o
}

// studentLogPDF is the log density at x of a Student-t with nu degrees of freedom, location mu and
// squared scale s2.
func studentLogPDF(x, mu, s2, nu float64) float64 {
	z := (x - mu) * (x - mu) / (s2 * nu)
	lg1, _ := math.Lgamma((nu + 1) / 2)
	lg2, _ := math.Lgamma(nu / 2)
	return lg1 - lg2 - 0.5*math.Log(nu*math.Pi*s2) - (nu+1)/2*math.Log1p(z)
}

func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// robustScale returns the median and the scale (interquartile range, at least floor) of a.
func robustScale(a []float64, floor float64) (med, scale float64) {
	if len(a) == 0 {
		return 0, floor
	}
	s := slices.Clone(a)
	slices.Sort(s)
	q := func(p float64) float64 {
		f := p * float64(len(s)-1)
		i := int(f)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (f-float64(i))*(s[i+1]-s[i])
	}
	return q(0.5), max(q(0.75)-q(0.25), floor)
}

// metricFloor is the smallest scale a metric's change is measured in: 5 % of its typical value plus
// 0.01, so that a metric that never moved before the change (a scale of zero) does not make every
// later wobble infinite.
func metricFloor(med float64) float64 { return 0.05*math.Abs(med) + 0.01 }
