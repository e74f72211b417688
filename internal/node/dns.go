package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/names"
)

// The node's name responder (internal/names; docs/connectivity.md, "Names"): `<name>.<domain>` for
// every node it can reach, served on its overlay address, port 53, inside the device it opened.

// dnsPort is where the responder listens on the overlay address.
const dnsPort = 53

// DNSConfig turns the name responder on.
type DNSConfig struct {
	Enabled bool
	Domain  string // "mesh" when empty
}

// DNSFile is the dns section of node.yaml.
type DNSFile struct {
	Enabled bool   `yaml:"enabled"`
	Domain  string `yaml:"domain,omitempty"`
}

func (f DNSFile) config() (DNSConfig, error) {
	if _, err := names.CheckDomain(f.Domain); err != nil {
		return DNSConfig{}, fmt.Errorf("dns: %w", err)
	}
	return DNSConfig(f), nil
}

// nameSource gives the responder the certificates the node holds and verified: its own, and for every
// node in the forwarding table the one routing took from its record, or its link's handshake.
type nameSource struct{ n *Node }

func (s nameSource) Certificates() []*meshca.Certificate {
	f := s.n.fib.Load()
	certs := make([]*meshca.Certificate, 0, len(f.byAddr)+1)
	certs = append(certs, s.n.Certificate())
	for _, e := range f.byAddr {
		certs = append(certs, e.cert)
	}
	return certs
}

// dnsServer is the running responder and what it registered with the host.
type dnsServer struct {
	n      *Node
	srv    *names.Server
	revert func() error // undoes the split DNS registration; nil without one
}

// startDNS serves names when the configuration asks for it (nil, nil when it does not): in the
// userspace stack for a netstack device, on a kernel socket bound to the overlay address for a TUN,
// which it also registers with systemd-resolved as the server of the mesh's domain.
func (n *Node) startDNS() (*dnsServer, error) {
	if !n.opts.DNS.Enabled {
		return nil, nil
	}
	if n.netdev == nil {
		return nil, errors.New("dns: needs device mode tun or netstack")
	}
	r, err := names.NewResponder(names.Config{Domain: n.opts.DNS.Domain}, nameSource{n}, n.verifier)
	if err != nil {
		return nil, err
	}
	srv, err := names.NewServer(r, names.ServerConfig{Allow: identity.OverlayPrefix, Logger: n.log})
	if err != nil {
		return nil, err
	}
	at := netip.AddrPortFrom(n.addr, dnsPort)
	pc, ln, err := n.listenDNS(at)
	if err != nil {
		return nil, fmt.Errorf("dns: listen on %s: %w", at, err)
	}
	srv.Start(pc, ln)
	d := &dnsServer{n: n, srv: srv}
	n.log.Info("dns: serving names", "domain", r.Domain(), "addr", at)
	if n.netdev.Net != nil {
		return d, nil // the host cannot reach a userspace stack's address
	}
	revert, err := names.SplitDNS(n.netdev.Name, n.addr, r.Domain(), r.ReverseZone())
	switch {
	case errors.Is(err, names.ErrNoResolved):
		n.log.Info("dns: split DNS not registered: no systemd-resolved", "err", err)
	case err != nil:
		n.log.Warn("dns: split DNS not registered", "err", err)
	default:
		d.revert = revert
		n.log.Info("dns: split DNS registered with systemd-resolved", "interface", n.netdev.Name,
			"domains", []string{r.Domain(), r.ReverseZone()})
	}
	return d, nil
}

func (n *Node) listenDNS(at netip.AddrPort) (net.PacketConn, net.Listener, error) {
	if s := n.netdev.Net; s != nil {
		pc, err := s.ListenUDPAddrPort(at)
		if err != nil {
			return nil, nil, err
		}
		ln, err := s.ListenTCPAddrPort(at)
		if err != nil {
			pc.Close()
			return nil, nil, err
		}
		return pc, ln, nil
	}
	pc, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(at))
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.ListenTCP("tcp6", net.TCPAddrFromAddrPort(at))
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, ln, nil
}

// close reverts the split DNS registration and stops serving; before the device closes, so that
// resolvectl still finds the interface.
func (d *dnsServer) close() {
	if d == nil {
		return
	}
	if d.revert != nil {
		if err := d.revert(); err != nil {
			d.n.log.Warn("dns: reverting split DNS", "err", err)
		}
	}
	d.srv.Close()
}
