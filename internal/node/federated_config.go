package node

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// FederatedFile is the federated section of the configuration file: the daemon's part in federated
// training of the anomaly detector (internal/federated, docs/intelligence.md "Federated rounds in
// the daemon"). The node package only reads and checks it; cmd's node command hands it to
// federated.RunDaemon.
type FederatedFile struct {
	Enabled bool `yaml:"enabled"`
	// Role is participant (train on this node's own telemetry and send signed updates) or
	// coordinator (run the rounds and aggregate).
	Role string `yaml:"role"`
	// Coordinator is the coordinator node's mesh certificate file (participants): its overlay
	// address is dialled, and only announcements its key signed are accepted.
	Coordinator string `yaml:"coordinator,omitempty"`
	// Port is the coordinator's TCP port on its overlay address.
	Port int `yaml:"port,omitempty"`
	// Group, if set, is the certificate group participants must hold (coordinator).
	Group string `yaml:"group,omitempty"`
	// Window is how much of its own telemetry a participant keeps to train on, one sample a
	// second.
	Window time.Duration `yaml:"window,omitempty"`
	// MaxSamples caps the samples (the newest) a participant trains on per round, and the sample
	// count it reports: its local training budget.
	MaxSamples int `yaml:"max_samples,omitempty"`
	// ModelOut, if set, is where the final model is written (both roles).
	ModelOut string `yaml:"model_out,omitempty"`

	// The coordinator's settings, announced to the participants.
	Participants int           `yaml:"participants,omitempty"`  // updates each round waits for
	Rounds       int           `yaml:"rounds,omitempty"`        // train rounds after the statistics round
	LocalEpochs  int           `yaml:"local_epochs,omitempty"`  // each participant's epochs per round
	LR           float64       `yaml:"lr,omitempty"`            // participants' Adam learning rate
	RoundTimeout time.Duration `yaml:"round_timeout,omitempty"` // a round closes with what arrived by then
	StartAfter   time.Duration `yaml:"start_after,omitempty"`   // the first round opens this long after start, so participants have a window
	Rule         string        `yaml:"rule,omitempty"`          // fedavg, trimmed or median
	Trim         float64       `yaml:"trim,omitempty"`          // trimmed mean: fraction cut at each end
	Krum         int           `yaml:"krum,omitempty"`          // Multi-Krum's assumed Byzantine participants (0: off)
	Clip         *bool         `yaml:"clip,omitempty"`          // clip updates to the round's median norm (default true)
}

// Federated defaults.
const (
	FederatedDefaultPort = 7446
	defaultFLWindow      = 10 * time.Minute
	defaultFLMaxSamples  = 300
	defaultFLRounds      = 10
	defaultFLEpochs      = 1
	defaultFLLR          = 0.005
	defaultFLTimeout     = time.Minute
	defaultFLStartAfter  = time.Minute
	defaultFLTrim        = 0.2
)

// Defaults fills the fields left out with their defaults.
func (f *FederatedFile) Defaults() {
	if f.Role == "" {
		f.Role = "participant"
	}
	if f.Port == 0 {
		f.Port = FederatedDefaultPort
	}
	if f.Window == 0 {
		f.Window = defaultFLWindow
	}
	if f.MaxSamples == 0 {
		f.MaxSamples = defaultFLMaxSamples
	}
	if f.Rounds == 0 {
		f.Rounds = defaultFLRounds
	}
	if f.LocalEpochs == 0 {
		f.LocalEpochs = defaultFLEpochs
	}
	if f.LR == 0 {
		f.LR = defaultFLLR
	}
	if f.RoundTimeout == 0 {
		f.RoundTimeout = defaultFLTimeout
	}
	if f.StartAfter == 0 {
		f.StartAfter = defaultFLStartAfter
	}
	if f.Rule == "" {
		f.Rule = "trimmed"
	}
	if f.Trim == 0 && f.Rule == "trimmed" {
		f.Trim = defaultFLTrim
	}
	if f.Participants == 0 {
		f.Participants = 1
	}
}

// Validate refuses settings outside their ranges, naming the field and the range.
func (f *FederatedFile) Validate() error {
	if !f.Enabled {
		return nil
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("federated.%s %v: want %s", field, v, want)
	}
	switch f.Role {
	case "participant":
		if f.Coordinator == "" {
			return errors.New("federated.coordinator: a participant needs the coordinator's certificate file")
		}
	case "coordinator":
	default:
		return bad("role", f.Role, "participant or coordinator")
	}
	switch {
	case f.Port < 1 || f.Port > 65535:
		return bad("port", f.Port, "1-65535")
	case f.Window < 10*time.Second || f.Window > 24*time.Hour:
		return bad("window", f.Window, "10s to 24h")
	case f.MaxSamples < 1 || f.MaxSamples > 100_000:
		return bad("max_samples", f.MaxSamples, "1 to 100000")
	case f.Participants < 1 || f.Participants > 256:
		return bad("participants", f.Participants, "1 to 256")
	case f.Rounds < 1 || f.Rounds > 10_000:
		return bad("rounds", f.Rounds, "1 to 10000")
	case f.LocalEpochs < 1 || f.LocalEpochs > 100:
		return bad("local_epochs", f.LocalEpochs, "1 to 100")
	case !(f.LR > 0 && f.LR <= 1):
		return bad("lr", f.LR, "above 0, at most 1")
	case f.RoundTimeout < time.Second || f.RoundTimeout > time.Hour:
		return bad("round_timeout", f.RoundTimeout, "1s to 1h")
	case f.StartAfter < 0 || f.StartAfter > 24*time.Hour:
		return bad("start_after", f.StartAfter, "0 to 24h")
	case f.Trim < 0 || f.Trim >= 0.5:
		return bad("trim", f.Trim, "0 to below 0.5")
	case f.Krum < 0 || (f.Krum > 0 && f.Participants < 2*f.Krum+3):
		return bad("krum", f.Krum, fmt.Sprintf("0, or at most (participants − 3) / 2 = %d", max(0, (f.Participants-3)/2)))
	}
	switch f.Rule {
	case "fedavg", "trimmed", "median":
	default:
		return bad("rule", f.Rule, "fedavg, trimmed or median")
	}
	return nil
}

func (f *FederatedFile) resolve(dir string) {
	for _, p := range []*string{&f.Coordinator, &f.ModelOut} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}
