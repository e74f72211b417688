package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"x0tta6bl4/internal/meshca"
)

// LAN discovery (opt-in per interface): every node with discovery on an interface multicasts a beacon
// there every few seconds, carrying its UDP port and its certificate, to [ff02::7874]:7947 (link-local
// scope: a beacon never leaves the link). A node that hears a beacon from a certified node it has no
// link with dials it at the beacon's source address. The beacon is not trusted for anything but "try
// this address": the handshake authenticates the peer, and the initiator needs the certificate the
// beacon carries (pqIK, docs/protocol.md).

const (
	beaconMagic     = "X6DB"
	beaconVersion   = 1
	beaconHeader    = 4 + 1 + 1 + 2 // magic, version, reserved, port
	beaconInterval  = 2 * time.Second
	discoveryPort   = 7947
	redialFound     = 10 * time.Second // one dial per discovered node per this long
	maxDialsPerTick = 4                // bounds the handshakes spoofed beacons can trigger
	maxBeaconSize   = beaconHeader + meshca.MaxCertificateSize
)

var discoveryGroup = netip.MustParseAddr("ff02::7874")

func encodeBeacon(port uint16, cert *meshca.Certificate) []byte {
	b := make([]byte, 0, beaconHeader+len(cert.Bytes()))
	b = append(b, beaconMagic...)
	b = append(b, beaconVersion, 0)
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, cert.Bytes()...)
}

var errBeacon = errors.New("discovery: not a beacon")

// parseBeacon decodes a beacon; the certificate is parsed but not yet verified. It shares no memory
// with b, the discovery socket's one receive buffer, so the loop may keep it in found.
func parseBeacon(b []byte) (uint16, *meshca.Certificate, error) {
	if len(b) < beaconHeader || len(b) > maxBeaconSize || !bytes.Equal(b[:4], []byte(beaconMagic)) || b[4] != beaconVersion || b[5] != 0 {
		return 0, nil, errBeacon
	}
	port := binary.BigEndian.Uint16(b[6:8])
	if port == 0 {
		return 0, nil, errBeacon
	}
	c, err := meshca.ParseCertificate(b[beaconHeader:])
	if err != nil {
		return 0, nil, fmt.Errorf("discovery: %w", err)
	}
	return port, c, nil
}

type discoverySocket struct {
	iface string
	conn  *net.UDPConn
	group netip.AddrPort // ff02::7874%iface:7947
}

// found is a node heard on the LAN.
type found struct {
	addr     netip.AddrPort
	cert     *meshca.Certificate
	lastDial time.Time
}

// startDiscovery joins the discovery group on each named interface.
func (n *Node) startDiscovery(ifaces []string) error {
	for _, name := range ifaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("discovery on %s: %w", name, err)
		}
		conn, err := net.ListenMulticastUDP("udp6", ifi, &net.UDPAddr{IP: discoveryGroup.AsSlice(), Port: discoveryPort})
		if err != nil {
			return fmt.Errorf("discovery on %s: %w", name, err)
		}
		s := &discoverySocket{iface: name, conn: conn, group: netip.AddrPortFrom(discoveryGroup.WithZone(name), discoveryPort)}
		n.discovery = append(n.discovery, s)
		n.writers.Add(1)
		go n.discoveryLoop(s)
	}
	return nil
}

func (n *Node) discoveryLoop(s *discoverySocket) {
	defer n.writers.Done()
	buf := make([]byte, maxBeaconSize+1)
	for {
		size, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if n.isClosed() {
				return
			}
			n.log.Debug("discovery read", "iface", s.iface, "err", err)
			continue
		}
		port, cert, err := parseBeacon(buf[:size])
		if err != nil || cert.Kind != meshca.KindNode || cert.SignPublicKey.ID() == n.selfID {
			continue
		}
		if err := n.verifier.Verify(cert, n.now()); err != nil {
			n.log.Debug("discovery: beacon with a certificate we do not accept", "from", from, "err", err)
			continue
		}
		addr := netip.AddrPortFrom(from.Addr().WithZone(s.iface), port)
		n.mu.Lock()
		f := n.found[cert.SignPublicKey.ID()]
		if f == nil && len(n.found) < maxLinks {
			f = &found{}
			n.found[cert.SignPublicKey.ID()] = f
		}
		if f != nil {
			f.addr, f.cert = addr, cert
		}
		n.mu.Unlock()
	}
}

// tickDiscoveryLocked sends beacons when due and dials nodes heard on the LAN that have no live link.
func (n *Node) tickDiscoveryLocked(now time.Time) {
	if len(n.discovery) == 0 {
		return
	}
	if now.Sub(n.lastBeacon) >= beaconInterval {
		n.lastBeacon = now
		beacon := encodeBeacon(n.UDPAddr().Port(), n.self)
		for _, s := range n.discovery {
			if _, err := s.conn.WriteToUDPAddrPort(beacon, s.group); err != nil {
				n.log.Debug("discovery beacon", "iface", s.iface, "err", err)
			}
		}
	}
	dials := 0
	for id, f := range n.found {
		if t := n.links[id]; (t != nil && t.up) || now.Sub(f.lastDial) < redialFound || dials >= maxDialsPerTick {
			continue
		}
		dials++
		f.lastDial = now
		n.log.Info("discovered on the LAN, dialling", "peer", f.cert.Name, "addr", f.addr)
		out, err := n.linkHS.Initiate(now, f.addr, f.cert)
		n.handleLinkOutputLocked(now, out, err)
	}
}

func (n *Node) closeDiscovery() {
	for _, s := range n.discovery {
		s.conn.Close()
	}
}
