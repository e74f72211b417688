package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"x0tta6bl4/internal/firewall"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/secfile"
)

// File is the node's YAML configuration file (docs/node.md). Relative paths are relative to the file.
type File struct {
	Key         string          `yaml:"key"`
	Cert        string          `yaml:"cert"`
	CA          []string        `yaml:"ca"`
	CRL         string          `yaml:"crl,omitempty"`
	Listen      string          `yaml:"listen"`
	AdminSocket string          `yaml:"admin_socket,omitempty"`
	Device      DeviceFile      `yaml:"device,omitempty"`
	Peers       []PeerFile      `yaml:"peers,omitempty"`
	Discovery   []string        `yaml:"discovery,omitempty"` // interfaces for LAN discovery
	Link        LinkFile        `yaml:"link,omitempty"`
	Firewall    firewall.Config `yaml:"firewall,omitempty"`
	LogLevel    string          `yaml:"log_level,omitempty"`
}

// DeviceFile is the device section.
type DeviceFile struct {
	Mode string `yaml:"mode"` // none, netstack, tun
	Name string `yaml:"name"`
	MTU  int    `yaml:"mtu"`
}

// PeerFile is one static peer.
type PeerFile struct {
	Address string `yaml:"address"` // host:port, an IP literal
	Cert    string `yaml:"cert"`    // the peer's mesh certificate
}

// LinkFile tunes failure detection.
type LinkFile struct {
	ProbeInterval time.Duration `yaml:"probe_interval"`
	DeadAfter     time.Duration `yaml:"dead_after"`
}

const maxConfigSize = 1 << 20

// LoadConfig reads a node configuration file and everything it names.
func LoadConfig(path string) (Options, error) {
	data, err := secfile.Read(path, maxConfigSize)
	if err != nil {
		return Options{}, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return Options{}, fmt.Errorf("%s: %w", path, err)
	}
	opts, err := f.options(filepath.Dir(path))
	if err != nil {
		return Options{}, fmt.Errorf("%s: %w", path, err)
	}
	return opts, nil
}

func (f *File) options(dir string) (Options, error) {
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var o Options
	var err error
	if f.Key == "" || f.Cert == "" || len(f.CA) == 0 {
		return o, errors.New("key, cert and ca are required")
	}
	if o.Key, err = identity.LoadNodeKeyFile(rel(f.Key)); err != nil {
		return o, err
	}
	if o.Cert, err = meshca.LoadCertificateFile(rel(f.Cert)); err != nil {
		return o, err
	}
	for _, p := range f.CA {
		c, err := meshca.LoadCertificateFile(rel(p))
		if err != nil {
			return o, err
		}
		o.CA = append(o.CA, c)
	}
	if f.CRL != "" {
		if o.CRL, err = meshca.LoadRevocationListFile(rel(f.CRL)); err != nil {
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
	o.AdminSocket = rel(f.AdminSocket)
	o.Device, o.DeviceName, o.MTU = DeviceMode(f.Device.Mode), f.Device.Name, f.Device.MTU
	for i, p := range f.Peers {
		addr, err := netip.ParseAddrPort(p.Address)
		if err != nil {
			return o, fmt.Errorf("peer %d address %q: want ip:port: %w", i, p.Address, err)
		}
		c, err := meshca.LoadCertificateFile(rel(p.Cert))
		if err != nil {
			return o, fmt.Errorf("peer %d: %w", i, err)
		}
		o.Peers = append(o.Peers, Peer{Addr: addr, Cert: c})
	}
	o.Discovery = f.Discovery
	o.ProbeInterval, o.DeadAfter = f.Link.ProbeInterval, f.Link.DeadAfter
	o.Firewall = f.Firewall
	level := slog.LevelInfo
	if f.LogLevel != "" {
		if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
			return o, fmt.Errorf("log_level %q: use debug, info, warn or error", f.LogLevel)
		}
	}
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return o, nil
}
