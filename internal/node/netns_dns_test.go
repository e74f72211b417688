package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNetnsDNS: in n1's namespace, ping resolves n3.mesh through the C library's stub resolver, which
// asks n1's responder on n1's overlay address, and reaches n3 through relay n2.
func TestNetnsDNS(t *testing.T) {
	l := newLab(t, 3, [][2]int{{0, 1}, {1, 2}})
	l.kill(0)
	l.extra = "dns: {enabled: true}\n"
	l.startNode(0)
	l.waitLinks(20 * time.Second)
	l.waitRoute(0, 2, 20*time.Second, func(RouteStatus) bool { return true })

	// ip netns exec puts /etc/netns/NS/resolv.conf over /etc/resolv.conf for what it runs.
	n1, n3 := l.nodes[0], l.nodes[2]
	dir := filepath.Join("/etc/netns", n1.ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove("/etc/netns") // only if no other namespace uses it
	})
	conf := fmt.Sprintf("nameserver %s\noptions timeout:1 attempts:3\n", n1.cert.Overlay)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n1.ns, "getent", "ahostsv6", "n3.mesh").CombinedOutput()
	if err != nil || !strings.Contains(string(out), n3.cert.Overlay.String()) {
		t.Fatalf("getent ahostsv6 n3.mesh in n1's namespace: %v: %s; want %s", err, out, n3.cert.Overlay)
	}
	// The first echo waits for the end-to-end handshake with n3; -w waits for one reply.
	out, err = exec.Command("ip", "netns", "exec", n1.ns, "ping", "-6", "-c", "1", "-w", "10", "n3.mesh").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "("+n3.cert.Overlay.String()+")") || !strings.Contains(string(out), "1 received") {
		t.Fatalf("ping n3.mesh from n1's namespace: %v: %s", err, out)
	}
	t.Logf("%s", strings.SplitN(string(out), "\n", 3)[1])
}
