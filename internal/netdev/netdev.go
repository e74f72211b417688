// Package netdev opens the device through which the node exchanges IPv6 packets with the host: a
// kernel TUN device (root; golang.zx2c4.com/wireguard/tun with its offloads) or a userspace TCP/IP
// stack (no root; its tun/netstack, gVisor), and gives both the overlay address and route.
//
// It must never touch any route or address outside the overlay prefix, and never leave a device
// half-configured: an open that fails closes what it created.
package netdev

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"x0tta6bl4/internal/identity"
)

// Offset is the headroom, in bytes, that callers leave before each packet in the buffers they pass to
// Read and Write; the kernel device uses it for its virtio-net header.
const Offset = 16

// MaxPacket is the largest packet a Read can return: with offloads the kernel hands over segments of up
// to 64 KiB, which the device splits into MTU-sized packets across the batch.
const MaxPacket = 65535

// Device is an opened packet device.
type Device struct {
	tun.Device
	// Net is the userspace stack for netstack devices (dial and listen on the overlay address); nil
	// for a kernel device.
	Net  *netstack.Net
	Name string

	raw *os.File // the kernel TUN's file when it uses virtio-net headers (Raw)
	now nowReader
}

var errNotRaw = errors.New("netdev: the device does not exchange packets with virtio-net headers")

// Raw reports whether the device is a kernel TUN that exchanges whole offloaded packets with their
// virtio-net header, so that ReadRaw and WriteRaw work (Linux).
func (d *Device) Raw() bool { return d.raw != nil }

// OpenNetstack creates a userspace network stack holding addr, with the given MTU.
func OpenNetstack(addr netip.Addr, mtu int) (*Device, error) {
	if err := checkAddr(addr, mtu); err != nil {
		return nil, err
	}
	dev, n, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, mtu)
	if err != nil {
		return nil, fmt.Errorf("netstack: %w", err)
	}
	return &Device{Device: dev, Net: n, Name: "netstack"}, nil
}

// OpenTUN creates the kernel TUN device name (root), gives it addr with the overlay prefix route, sets
// the MTU and brings it up. It runs iproute2's ip(8).
func OpenTUN(name string, addr netip.Addr, mtu int) (*Device, error) {
	if err := checkAddr(addr, mtu); err != nil {
		return nil, err
	}
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("TUN name %q: 1-15 characters, no '/' or spaces", name)
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN %s (needs root or CAP_NET_ADMIN): %w", name, err)
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("TUN name: %w", err)
	}
	prefix := netip.PrefixFrom(addr, identity.OverlayPrefix.Bits())
	for _, args := range [][]string{
		{"-6", "addr", "add", prefix.String(), "dev", real, "nodad"},
		{"link", "set", "dev", real, "mtu", strconv.Itoa(mtu), "up"},
	} {
		if err := runIP(args...); err != nil {
			dev.Close()
			return nil, err
		}
	}
	d := &Device{Device: dev, Name: real}
	d.raw = rawFile(d)
	return d, nil
}

// LimitSegments caps the TCP segments the kernel puts in one offloaded packet it hands to a kernel
// device (gso_max_segs), so that each such packet fits one UDP_SEGMENT send of the node. It needs a
// kernel that lets gso_max_segs be set (Linux 5.19 and later) and fails clearly elsewhere.
func (d *Device) LimitSegments(n int) error {
	if d.Net != nil {
		return errors.New("gso_max_segs: a userspace stack has no kernel segmentation")
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("gso_max_segs %d: must be between 1 and 65535", n)
	}
	return runIP("link", "set", "dev", d.Name, "gso_max_segs", strconv.Itoa(n))
}

// runIP runs iproute2's ip(8) with args; its error carries the command and what ip printed.
func runIP(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func checkAddr(addr netip.Addr, mtu int) error {
	if !identity.OverlayPrefix.Contains(addr) {
		return fmt.Errorf("address %s is outside the overlay prefix %s", addr, identity.OverlayPrefix)
	}
	if mtu < 1280 || mtu > 65535 {
		return errors.New("MTU must be between 1280 (the IPv6 minimum) and 65535")
	}
	return nil
}
