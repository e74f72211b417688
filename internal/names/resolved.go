package names

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// ErrNoResolved says the host has no working systemd-resolved to register split DNS with: resolvectl
// is missing, or its first command failed (resolved not running, no D-Bus).
var ErrNoResolved = errors.New("systemd-resolved is not available")

const resolvectlTimeout = 5 * time.Second

// SplitDNS makes systemd-resolved send queries for names under domains (fully qualified, as
// Responder.Domain and ReverseZone give them) to server on the interface iface, and only those:
// `resolvectl dns IFACE ADDR` and `resolvectl domain IFACE ~domain…` (routing-only domains, so the
// link is not used for other names). It returns the function that reverts the interface's DNS
// settings (`resolvectl revert IFACE`).
func SplitDNS(iface string, server netip.Addr, domains ...string) (revert func() error, err error) {
	if _, err := exec.LookPath("resolvectl"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoResolved, err)
	}
	if err := resolvectl("dns", iface, server.String()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoResolved, err)
	}
	revert = func() error { return resolvectl("revert", iface) }
	args := []string{"domain", iface}
	for _, d := range domains {
		args = append(args, "~"+strings.TrimSuffix(d, "."))
	}
	if err := resolvectl(args...); err != nil {
		return nil, errors.Join(err, revert())
	}
	return revert, nil
}

// resolvectl runs resolvectl with args; its error carries the command and what resolvectl printed.
func resolvectl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), resolvectlTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "resolvectl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("resolvectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
