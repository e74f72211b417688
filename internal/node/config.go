package node

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

// File is the node's YAML configuration file (docs/node.md). Relative paths are relative to the file.
type File struct {
	Key         string     `yaml:"key"`
	Cert        string     `yaml:"cert"`
	CA          []string   `yaml:"ca"`
	CRL         string     `yaml:"crl,omitempty"`
	Listen      string     `yaml:"listen"`
	AdminSocket string     `yaml:"admin_socket,omitempty"`
	Metrics     string     `yaml:"metrics_listen,omitempty"` // host:port for Prometheus; empty: off
	Device      DeviceFile `yaml:"device,omitempty"`
	Peers       []PeerFile `yaml:"peers,omitempty"`
	Discovery   []string   `yaml:"discovery,omitempty"` // interfaces for LAN discovery
	// Relay: forward traffic for other nodes (default true); false makes the node a destination only.
	Relay *bool `yaml:"relay,omitempty"`
	// RoutingArea: the node's routing area (docs/routing.md, Areas); 0, the default, for a mesh that
	// is one area.
	RoutingArea uint32 `yaml:"routing_area,omitempty"`
	// RoutingAreaSet says whether the file names routing_area at all, 0 included (ReadFile sets it):
	// enrolment names the area to the control plane only then (ctl join --config).
	RoutingAreaSet bool `yaml:"-"`
	// RoutingGateway: run level 2 and carry traffic between this area and the others
	// (docs/routing.md, "Level 2"); needs routing_area.
	RoutingGateway bool `yaml:"routing_gateway,omitempty"`
	// Punch: make direct links, through NATs, to nodes learnt from routing (default true).
	Punch    *bool           `yaml:"punch,omitempty"`
	Link     LinkFile        `yaml:"link,omitempty"`
	Firewall firewall.Config `yaml:"firewall,omitempty"`
	Control  ControlFile     `yaml:"control,omitempty"`
	LogLevel string          `yaml:"log_level,omitempty"`
	Heal     HealFile        `yaml:"heal,omitempty"`
	DNS      DNSFile         `yaml:"dns,omitempty"`
	EBPF     EBPFFile        `yaml:"ebpf,omitempty"`
	// Governance makes the node follow the members' decisions (docs/governance.md, "Nodes").
	Governance *GovernanceFile `yaml:"governance,omitempty"`
	// Federated is the daemon's part in federated training of the detector (federated_config.go).
	Federated *FederatedFile `yaml:"federated,omitempty"`
}

// EBPFFile is the ebpf section: kernel-side observation (docs/ebpf.md).
type EBPFFile struct {
	Enabled bool `yaml:"enabled"`
}

// GovernanceFile is the governance section.
type GovernanceFile struct {
	Genesis       string   `yaml:"genesis"`                  // the genesis roster file (control init wrote it)
	GenesisSHA256 string   `yaml:"genesis_sha256,omitempty"` // its hash, as control init printed it; a mismatch refuses to start
	Governed      []string `yaml:"governed,omitempty"`       // action types only a quorum certificate applies: policy, revoke, …
	// Decisions keeps the applied decisions; default: governance.pem in the control state directory.
	Decisions string `yaml:"decisions,omitempty"`
}

// maxRosterFile bounds a genesis roster file.
const maxRosterFile = 1 << 20

func (g *GovernanceFile) options(stateDir string) (*GovernanceOptions, error) {
	data, err := secfile.Read(g.Genesis, maxRosterFile)
	if err != nil {
		return nil, fmt.Errorf("governance: %w", err)
	}
	r, err := governance.ParseRosterPEM(data)
	if err != nil {
		return nil, fmt.Errorf("governance: %s: %w", g.Genesis, err)
	}
	if g.GenesisSHA256 != "" {
		h := r.Hash()
		if got := hex.EncodeToString(h[:]); !strings.EqualFold(got, g.GenesisSHA256) {
			return nil, fmt.Errorf("governance: %s has hash %s, the configuration pins %s", g.Genesis, got, g.GenesisSHA256)
		}
	}
	o := &GovernanceOptions{Genesis: r, File: g.Decisions}
	for _, name := range g.Governed {
		t, err := governance.ParseActionType(name)
		if err != nil {
			return nil, err
		}
		o.Governed = append(o.Governed, t)
	}
	if o.File == "" && stateDir != "" {
		o.File = filepath.Join(stateDir, stateGovernanceFile)
	}
	return o, nil
}

// DeviceFile is the device section.
type DeviceFile struct {
	Mode string `yaml:"mode"` // none, netstack, tun
	Name string `yaml:"name"`
	MTU  int    `yaml:"mtu"`
	// Bursts: send TCP bursts from a kernel TUN whole to destinations beyond a neighbour (default
	// true; docs/transport.md, "Bursts").
	Bursts *bool `yaml:"bursts"`
}

// PeerFile is one static peer.
type PeerFile struct {
	Address string `yaml:"address"` // host:port, an IP literal
	Cert    string `yaml:"cert"`    // the peer's mesh certificate
}

// ControlFile connects the node to a control plane (internal/agent). State is the directory that
// holds the node's key and the bundle enrollment returned; key, cert, ca and crl default to the files
// in it.
type ControlFile struct {
	URL   string `yaml:"url,omitempty"`
	State string `yaml:"state,omitempty"`
	// ReportInterval is how often the node reports to the control plane (default 10 s, 1 s to
	// 5 min). The answer to each report carries the control plane's cost advisories, so it is also
	// how late a node can learn of one.
	ReportInterval time.Duration `yaml:"report_interval,omitempty"`
}

// Range of control.report_interval.
const minReportInterval, maxReportInterval = time.Second, 5 * time.Minute

// CheckReportInterval refuses a report interval outside its range (0: the default).
func (c ControlFile) CheckReportInterval() error {
	if d := c.ReportInterval; d != 0 && (d < minReportInterval || d > maxReportInterval) {
		return fmt.Errorf("control.report_interval %s: want %s to %s (or unset for the default 10s)", d, minReportInterval, maxReportInterval)
	}
	return nil
}

// LinkFile tunes failure detection.
type LinkFile struct {
	ProbeInterval time.Duration `yaml:"probe_interval"`
	DeadAfter     time.Duration `yaml:"dead_after"`
}

const maxConfigSize = 1 << 20

// ReadFile parses a node configuration file without loading what it names. Relative paths in it are
// made absolute against the file's directory, so every reader of the result (enrolment writing the
// state directory, the node loading keys from it) finds the same files whatever its working
// directory.
func ReadFile(path string) (File, error) {
	data, err := secfile.Read(path, maxConfigSize)
	if err != nil {
		return File{}, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	var named struct {
		RoutingArea *uint32 `yaml:"routing_area"`
	}
	if err := yaml.Unmarshal(data, &named); err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	f.RoutingAreaSet = named.RoutingArea != nil
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	f.resolve(dir)
	return f, nil
}

// Identity files inside a control-plane state directory (internal/control/client's bundle).
const (
	StateKeyFile  = "node.key"
	stateCertFile = "node.crt"
	stateCAFile   = "ca.crt"
	stateCRLFile  = "crl.pem"
	// statePolicyFile keeps the newest access policy the node applied (Options.PolicyFile).
	statePolicyFile = "policy.pem"
	// stateGovernanceFile keeps the governance decisions the node applied (GovernanceOptions.File).
	stateGovernanceFile = "governance.pem"
	// stateRecordsFile keeps the link-state records the node held (Options.RecordsFile).
	stateRecordsFile = "routing-records"
)

func (f *File) resolve(dir string) {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	f.Control.State = rel(f.Control.State)
	f.Key, f.Cert, f.CRL, f.AdminSocket = rel(f.Key), rel(f.Cert), rel(f.CRL), rel(f.AdminSocket)
	for i := range f.CA {
		f.CA[i] = rel(f.CA[i])
	}
	// Identity paths derived from the state directory are already resolved: joining them with dir
	// again would name a directory inside the configuration's directory twice.
	if s := f.Control.State; s != "" && f.Key == "" && f.Cert == "" && len(f.CA) == 0 {
		f.Key, f.Cert, f.CA, f.CRL = filepath.Join(s, StateKeyFile), filepath.Join(s, stateCertFile),
			[]string{filepath.Join(s, stateCAFile)}, filepath.Join(s, stateCRLFile)
	}
	for i := range f.Peers {
		f.Peers[i].Cert = rel(f.Peers[i].Cert)
	}
	if g := f.Governance; g != nil {
		g.Genesis, g.Decisions = rel(g.Genesis), rel(g.Decisions)
	}
	if fl := f.Federated; fl != nil {
		fl.resolve(dir)
	}
}

// LoadConfig reads a node configuration file and everything it names.
func LoadConfig(path string) (Options, error) {
	f, err := ReadFile(path)
	if err != nil {
		return Options{}, err
	}
	opts, err := f.options()
	if err != nil {
		return Options{}, fmt.Errorf("%s: %w", path, err)
	}
	return opts, nil
}

func (f *File) options() (Options, error) {
	var o Options
	var err error
	if f.Key == "" || f.Cert == "" || len(f.CA) == 0 {
		return o, errors.New("key, cert and ca are required")
	}
	if o.Key, err = identity.LoadNodeKeyFile(f.Key); err != nil {
		return o, err
	}
	if o.Cert, err = meshca.LoadCertificateFile(f.Cert); err != nil {
		return o, err
	}
	for _, p := range f.CA {
		c, err := meshca.LoadCertificateFile(p)
		if err != nil {
			return o, err
		}
		o.CA = append(o.CA, c)
	}
	if f.CRL != "" {
		if o.CRL, err = meshca.LoadRevocationListFile(f.CRL); err != nil {
			return o, err
		}
	}
	listen := f.Listen
	if listen == "" {
		listen = "[::]:7946" // dual-stack, so LAN discovery's link-local addresses work too
	}
	if o.Listen, err = netip.ParseAddrPort(listen); err != nil {
		return o, fmt.Errorf("listen %q: want ip:port: %w", listen, err)
	}
	o.AdminSocket = f.AdminSocket
	o.MetricsListen = f.Metrics
	o.Device, o.DeviceName, o.MTU = DeviceMode(f.Device.Mode), f.Device.Name, f.Device.MTU
	o.NoBursts = f.Device.Bursts != nil && !*f.Device.Bursts
	for i, p := range f.Peers {
		addr, err := netip.ParseAddrPort(p.Address)
		if err != nil {
			return o, fmt.Errorf("peer %d address %q: want ip:port: %w", i, p.Address, err)
		}
		c, err := meshca.LoadCertificateFile(p.Cert)
		if err != nil {
			return o, fmt.Errorf("peer %d: %w", i, err)
		}
		o.Peers = append(o.Peers, Peer{Addr: addr, Cert: c})
	}
	o.Discovery = f.Discovery
	o.NoTransit = f.Relay != nil && !*f.Relay
	o.RoutingArea = f.RoutingArea
	o.RoutingGateway = f.RoutingGateway
	switch {
	case o.RoutingGateway && o.RoutingArea == 0:
		return o, errors.New("node: routing_gateway needs a routing_area other than 0")
	case o.RoutingGateway && o.NoTransit:
		return o, errors.New("node: routing_gateway relays between areas: it cannot have relay: false")
	}
	o.NoPunch = f.Punch != nil && !*f.Punch
	o.EBPF = f.EBPF.Enabled
	o.ProbeInterval, o.DeadAfter = f.Link.ProbeInterval, f.Link.DeadAfter
	o.Heal = f.Heal.config()
	if err := o.Heal.Validate(); err != nil {
		return o, err
	}
	if o.DNS, err = f.DNS.config(); err != nil {
		return o, err
	}
	if err := f.Firewall.Validate(); err != nil {
		return o, err
	}
	o.Firewall = f.Firewall
	if f.Control.State != "" {
		o.PolicyFile = filepath.Join(f.Control.State, statePolicyFile)
		o.RecordsFile = filepath.Join(f.Control.State, stateRecordsFile)
	}
	if fl := f.Federated; fl != nil {
		fl.Defaults()
		if err := fl.Validate(); err != nil {
			return o, err
		}
	}
	if f.Governance != nil {
		if o.Governance, err = f.Governance.options(f.Control.State); err != nil {
			return o, err
		}
	}
	level := slog.LevelInfo
	if f.LogLevel != "" {
		if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
			return o, fmt.Errorf("log_level %q: use debug, info, warn or error", f.LogLevel)
		}
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return o, nil
}
