// Package netnstest builds the network namespaces and veths of the real-networking tests
// (internal/node, internal/ebpf): it checks that the machine can run them, creates namespaces and
// veth pairs whose names carry the test process's pid so that parallel runs never collide, runs code
// inside a namespace, and deletes what it created when the test ends.
//
// Only tests import it. It must never touch a namespace or link it did not create (except one of
// its own names a killed run of the same pid left behind), and it must never let a test that CI is
// meant to run skip quietly: under CI a missing prerequisite fails the test.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// Require skips t, with "<what> needs <why>", unless the test runs as root with iproute2 and has
// every one of needs: a need starting with "/" is a file that must exist (/dev/net/tun,
// /sys/kernel/btf/vmlinux), any other a command that must be on PATH (nft, conntrack). Under CI (CI
// set) it fails instead: a skip there would hide that nothing ran.
func Require(t testing.TB, what string, needs ...string) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2 (ip)"
	} else {
		for _, n := range needs {
			var err error
			if strings.HasPrefix(n, "/") {
				_, err = os.Stat(n)
			} else {
				_, err = exec.LookPath(n)
			}
			if err != nil {
				why = "needs " + n
				break
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s %s, and CI must run it", what, why)
	}
	t.Skip(what + " " + why)
}

// Tag returns prefix followed by this process's pid (mod 100000): a namespace-name prefix no
// parallel test process shares. Keep prefix short: with the names built on it, interface names
// must fit the kernel's 15 bytes.
func Tag(prefix string) string { return fmt.Sprintf("%s%d", prefix, os.Getpid()%100000) }

// Run runs a command, failing t with its output if it fails.
func Run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// IP runs ip with args, failing t with its output if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	Run(t, "ip", args...)
}

// Namespace creates namespace name (deleting first one of that name a killed run left), brings
// its loopback up and turns IPv6 duplicate address detection off, so addresses are usable at once.
// The namespace is deleted when the test ends; callers that start processes inside it must stop
// them in a cleanup registered after this call (cleanups run last-in, first-out).
func Namespace(t testing.TB, name string) {
	t.Helper()
	exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run with the same pid, or nothing
	IP(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	Run(t, "ip", "netns", "exec", name, "sh", "-c",
		"echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad")
}

var veths atomic.Uint64

// Veth joins namespace nsA and namespace nsB with a veth pair, named devA in nsA and devB in nsB,
// both down and without addresses. The pair is created under temporary pid-tagged names in the
// test's own namespace, then moved; it goes when either namespace is deleted.
func Veth(t testing.TB, nsA, devA, nsB, devB string) {
	t.Helper()
	tmp := Tag("x6v") + fmt.Sprintf("n%d", veths.Add(1))
	a, b := tmp+"a", tmp+"b"
	IP(t, "link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() }) // only if the move failed
	IP(t, "link", "set", a, "netns", nsA, "name", devA)
	IP(t, "link", "set", b, "netns", nsB, "name", devB)
}
