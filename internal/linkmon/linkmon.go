// Package linkmon measures one link to a neighbour: it decides when to send a probe, turns probe
// acknowledgements into round-trip time, jitter and loss, and declares the link down when the
// neighbour falls silent.
//
// It is a pure state machine over an injected clock: no sockets, no goroutines, no time.Now. It must
// never believe an acknowledgement for a probe it did not send, and never hold more than Window probes.
//
// Loss is measured on round trips: a probe counts as answered only when the neighbour's echo of that
// very probe comes back, so a probe is lost if either the probe or its echo is. Any other
// authenticated packet from the neighbour keeps the link up (Heard) but says nothing about loss.
package linkmon

import (
	"math"
	"time"

	"x0tta6bl4/internal/overlay"
)

// Config tunes a Monitor. Zero fields take the defaults.
type Config struct {
	ProbeInterval time.Duration // 200 ms between probes
	DeadAfter     time.Duration // 800 ms of silence (no authenticated packet) and the link is down
	Window        int           // 32 probes remembered for the loss estimate
}

const (
	defaultProbeInterval = 200 * time.Millisecond
	defaultDeadAfter     = 800 * time.Millisecond
	defaultWindow        = 32
	maxWindow            = 1024
	// A probe counts as lost when unanswered for max(lostAfterRTTs × smoothed RTT, minLostAfter).
	lostAfterRTTs = 4
	minLostAfter  = time.Second
)

// Metrics is what the monitor measured.
type Metrics struct {
	RTT    time.Duration // smoothed round-trip time (RFC 6298 SRTT)
	Jitter time.Duration // smoothed RTT variation (RFC 6298 RTTVAR)
	// RoundTripLoss is the fraction of the settled probes in the window that went unanswered: the
	// probe or its echo was lost, 0..1. A probe is settled once it is older than the loss timeout,
	// answered or not, so the estimate does not lean towards the answers that come back first.
	RoundTripLoss float64
	// Loss is the one-way loss, 1 − √(1 − RoundTripLoss): exact when both directions lose alike,
	// and in any case such that (1 − Loss)² is the measured round-trip delivery, which is what a
	// link cost built on ETX needs (routing.LinkCost).
	Loss float64
	// LossSamples is the number of settled probes the loss fractions come from (at most Window).
	// With few samples they are coarse: a consumer that acts on them should weigh them by it.
	LossSamples int
	// Samples is the number of RTT samples so far; RTT and Jitter mean nothing while it is 0.
	Samples uint64
}

type probe struct {
	id       uint32
	sent     time.Time
	answered bool
	resolved bool // answered, or given up as lost
}

// Monitor measures one link.
type Monitor struct {
	cfg       Config
	since     time.Time // the link came up: the monitor's start
	nextID    uint32
	lastSent  time.Time
	lastHeard time.Time
	probes    []probe // ring of the last Window probes, oldest first
	srtt      time.Duration
	rttvar    time.Duration
	samples   uint64
}

// New returns a monitor for a link that came up at now (its handshake just completed).
func New(cfg Config, now time.Time) *Monitor {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = defaultProbeInterval
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = defaultDeadAfter
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultWindow
	}
	cfg.Window = min(cfg.Window, maxWindow)
	return &Monitor{cfg: cfg, since: now, lastHeard: now, nextID: 1}
}

// Since is when the link came up: the time New was given. A new monitor means a new adjacency.
func (m *Monitor) Since() time.Time { return m.since }

// Heard records that an authenticated packet of any kind arrived from the neighbour.
func (m *Monitor) Heard(now time.Time) {
	if now.After(m.lastHeard) {
		m.lastHeard = now
	}
}

// Up reports whether the neighbour has been heard from within DeadAfter.
func (m *Monitor) Up(now time.Time) bool { return now.Sub(m.lastHeard) < m.cfg.DeadAfter }

// Silence is how long the neighbour has not been heard from.
func (m *Monitor) Silence(now time.Time) time.Duration { return now.Sub(m.lastHeard) }

// Probe returns the probe to send now, if one is due. The neighbour echoes it back unchanged; the
// monitor matches the echo by ID against its own record, so it never trusts the echoed timestamp.
func (m *Monitor) Probe(now time.Time) (overlay.Probe, bool) {
	if !m.lastSent.IsZero() && now.Sub(m.lastSent) < m.cfg.ProbeInterval {
		return overlay.Probe{}, false
	}
	m.expire(now)
	if len(m.probes) == m.cfg.Window {
		m.probes = append(m.probes[:0], m.probes[1:]...)
	}
	id := m.nextID
	m.nextID++
	m.probes = append(m.probes, probe{id: id, sent: now})
	m.lastSent = now
	return overlay.Probe{ID: id, Sent: now.UnixNano()}, true
}

// Ack records a probe acknowledgement. Acks for unknown, repeated or already-lost probes are ignored
// and reported false.
func (m *Monitor) Ack(now time.Time, p overlay.Probe) bool {
	m.Heard(now)
	for i := range m.probes {
		pr := &m.probes[i]
		if pr.id != p.ID {
			continue
		}
		if pr.resolved {
			return false
		}
		pr.answered, pr.resolved = true, true
		m.sample(now.Sub(pr.sent))
		return true
	}
	return false
}

// sample folds one RTT measurement in, as RFC 6298 does for TCP.
func (m *Monitor) sample(rtt time.Duration) {
	if rtt < 0 {
		rtt = 0
	}
	if m.samples == 0 {
		m.srtt, m.rttvar = rtt, rtt/2
	} else {
		diff := m.srtt - rtt
		if diff < 0 {
			diff = -diff
		}
		m.rttvar = (3*m.rttvar + diff) / 4
		m.srtt = (7*m.srtt + rtt) / 8
	}
	m.samples++
}

// lostAfter is how long a probe may go unanswered before it counts as lost.
func (m *Monitor) lostAfter() time.Duration { return max(lostAfterRTTs*m.srtt, minLostAfter) }

// expire marks probes unanswered for too long as lost.
func (m *Monitor) expire(now time.Time) {
	limit := m.lostAfter()
	for i := range m.probes {
		if pr := &m.probes[i]; !pr.resolved && now.Sub(pr.sent) >= limit {
			pr.resolved = true
		}
	}
}

// Metrics returns the current measurements. The loss counts only settled probes (sent at least the
// loss timeout ago): counting the recent answered probes but not the recent unanswered ones, whose
// fate is still open, would make a lossy link look better than it is.
func (m *Monitor) Metrics(now time.Time) Metrics {
	m.expire(now)
	limit := m.lostAfter()
	var settled, lost int
	for _, pr := range m.probes {
		if now.Sub(pr.sent) >= limit {
			settled++
			if !pr.answered {
				lost++
			}
		}
	}
	out := Metrics{RTT: m.srtt, Jitter: m.rttvar, Samples: m.samples, LossSamples: settled}
	if settled > 0 {
		out.RoundTripLoss = float64(lost) / float64(settled)
		out.Loss = 1 - math.Sqrt(1-out.RoundTripLoss)
	}
	return out
}
