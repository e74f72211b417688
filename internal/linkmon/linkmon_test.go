package linkmon

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"x0tta6bl4/internal/overlay"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRTTAndLoss(t *testing.T) {
	m := New(Config{}, t0)
	now := t0
	// 40 probes, every 4th unanswered, RTT 10 ms.
	for i := range 40 {
		p, ok := m.Probe(now)
		if !ok {
			t.Fatalf("probe %d not due", i)
		}
		if i%4 != 3 {
			if !m.Ack(now.Add(10*time.Millisecond), p) {
				t.Fatalf("ack %d refused", i)
			}
		}
		now = now.Add(defaultProbeInterval)
	}
	now = now.Add(2 * time.Second) // resolve the trailing probes
	got := m.Metrics(now)
	if got.RTT != 10*time.Millisecond {
		t.Errorf("RTT %v, want 10ms", got.RTT)
	}
	if got.Jitter > time.Millisecond {
		t.Errorf("jitter %v on a constant RTT", got.Jitter)
	}
	if math.Abs(got.RoundTripLoss-0.25) > 0.04 {
		t.Errorf("round-trip loss %.3f, want about 0.25", got.RoundTripLoss)
	}
	if want := 1 - math.Sqrt(1-got.RoundTripLoss); math.Abs(got.Loss-want) > 1e-12 {
		t.Errorf("one-way loss %.4f, want %.4f", got.Loss, want)
	}
	if got.Samples != 30 {
		t.Errorf("samples %d, want 30", got.Samples)
	}
}

func TestProbeSchedule(t *testing.T) {
	m := New(Config{ProbeInterval: 100 * time.Millisecond}, t0)
	if _, ok := m.Probe(t0); !ok {
		t.Fatal("first probe not sent at once")
	}
	if _, ok := m.Probe(t0.Add(99 * time.Millisecond)); ok {
		t.Fatal("probe sent before the interval")
	}
	if _, ok := m.Probe(t0.Add(100 * time.Millisecond)); !ok {
		t.Fatal("probe not sent after the interval")
	}
}

func TestAckValidation(t *testing.T) {
	m := New(Config{}, t0)
	p, _ := m.Probe(t0)
	if m.Ack(t0, overlay.Probe{ID: p.ID + 100}) {
		t.Error("ack for a probe never sent accepted")
	}
	// The echoed timestamp is ignored: a neighbour cannot make the RTT look smaller.
	if !m.Ack(t0.Add(50*time.Millisecond), overlay.Probe{ID: p.ID, Sent: t0.Add(49 * time.Millisecond).UnixNano()}) {
		t.Fatal("genuine ack refused")
	}
	if got := m.Metrics(t0.Add(50 * time.Millisecond)).RTT; got != 50*time.Millisecond {
		t.Errorf("RTT %v, want 50ms from our own record", got)
	}
	if m.Ack(t0.Add(60*time.Millisecond), p) {
		t.Error("duplicate ack accepted")
	}
	// A probe given up as lost stays lost.
	q, _ := m.Probe(t0.Add(time.Second))
	m.Metrics(t0.Add(5 * time.Second))
	if m.Ack(t0.Add(5*time.Second), q) {
		t.Error("ack for a probe already counted lost accepted")
	}
}

func TestDeadAfterSilence(t *testing.T) {
	m := New(Config{DeadAfter: 800 * time.Millisecond}, t0)
	if !m.Up(t0.Add(799 * time.Millisecond)) {
		t.Error("down before DeadAfter")
	}
	if m.Up(t0.Add(800 * time.Millisecond)) {
		t.Error("up after DeadAfter of silence")
	}
	m.Heard(t0.Add(time.Second))
	if !m.Up(t0.Add(1500 * time.Millisecond)) {
		t.Error("a packet did not revive the link")
	}
	m.Heard(t0) // an out-of-order earlier timestamp must not move lastHeard back
	if !m.Up(t0.Add(1700 * time.Millisecond)) {
		t.Error("lastHeard moved backwards")
	}
}

func TestWindowBounded(t *testing.T) {
	m := New(Config{Window: 8}, t0)
	now := t0
	for range 1000 {
		m.Probe(now)
		now = now.Add(defaultProbeInterval)
	}
	if len(m.probes) != 8 {
		t.Errorf("%d probes held, want 8", len(m.probes))
	}
	if got := m.Metrics(now.Add(time.Minute)); got.Loss != 1 || got.RoundTripLoss != 1 || got.LossSamples != 8 {
		t.Errorf("%+v with no acks, want both losses 1 over 8 probes", got)
	}
}

// TestLossCountsSettledProbesOnly: every other probe is answered. Whenever it is read, the estimate
// is one half: the recent probes whose fate is still open do not count, neither the answered ones
// nor the silent ones.
func TestLossCountsSettledProbesOnly(t *testing.T) {
	m := New(Config{ProbeInterval: 150 * time.Millisecond}, t0)
	now := t0
	for i := range 200 {
		p, _ := m.Probe(now)
		if i%2 == 0 {
			m.Ack(now.Add(5*time.Millisecond), p)
		}
		now = now.Add(150 * time.Millisecond)
		if i < 40 {
			continue
		}
		got := m.Metrics(now)
		if math.Abs(got.RoundTripLoss-0.5) > 1.0/float64(got.LossSamples) || got.LossSamples < 20 {
			t.Fatalf("after %d probes: %+v, want round-trip loss 0.5 within one probe over ≥ 20 probes", i+1, got)
		}
	}
}

// TestLossUnderHeavyLoss: 30 % loss each way loses 51 % of the round trips. Averaged over a long run
// the round-trip estimate is 0.51 and the one-way estimate 0.30; any authenticated traffic heard in
// between changes neither.
func TestLossUnderHeavyLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := New(Config{ProbeInterval: 150 * time.Millisecond}, t0)
	now := t0
	var rt, oneWay float64
	var reads int
	for i := range 20000 {
		p, _ := m.Probe(now)
		probeArrives := rng.Float64() >= 0.3
		if echoArrives := rng.Float64() >= 0.3; probeArrives && echoArrives {
			m.Ack(now.Add(3*time.Millisecond), p)
		}
		m.Heard(now.Add(50 * time.Millisecond)) // the neighbour's own probes and keepalives
		now = now.Add(150 * time.Millisecond)
		if i >= 100 && i%20 == 0 {
			got := m.Metrics(now)
			rt += got.RoundTripLoss
			oneWay += got.Loss
			reads++
		}
	}
	rt, oneWay = rt/float64(reads), oneWay/float64(reads)
	t.Logf("30 %% each way: mean round-trip loss %.3f, one-way %.3f over %d reads", rt, oneWay, reads)
	if math.Abs(rt-0.51) > 0.02 || math.Abs(oneWay-0.30) > 0.02 {
		t.Fatalf("mean round-trip loss %.3f (want 0.51), one-way %.3f (want 0.30)", rt, oneWay)
	}
}

func TestSince(t *testing.T) {
	if got := New(Config{}, t0.Add(time.Second)).Since(); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("Since %v", got)
	}
}
