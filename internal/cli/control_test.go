package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/meshca"
)

// call runs one of the control-plane commands directly and returns stdout.
func call(t *testing.T, ctx context.Context, fn func(*env, []string) error, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := fn(&env{ctx: ctx, stdout: &out, stderr: &errOut, now: time.Now}, args)
	if err != nil && errOut.Len() > 0 {
		err = fmt.Errorf("%w\nstderr: %s", err, errOut.String())
	}
	return out.String(), err
}

func mustCall(t *testing.T, fn func(*env, []string) error, args ...string) string {
	t.Helper()
	out, err := call(t, context.Background(), fn, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cliControl is a control plane set up through the CLI for a test: its config file, listen address,
// CA pin and the first admin's API key, as 'control init' printed them.
type cliControl struct {
	cfg, addr, pin, key string
}

// initCLIControl writes a control-plane config in dir and runs 'control init' on it with the
// extra arguments; out is what init printed.
func initCLIControl(t *testing.T, dir string, now func() time.Time, args ...string) (c cliControl, out string) {
	t.Helper()
	c.addr = freePort(t)
	c.cfg = filepath.Join(dir, "control.yaml")
	if err := os.WriteFile(c.cfg, []byte(fmt.Sprintf("listen: %q\ndata_dir: data\nauth: {argon2: {time: 1, memory_kib: 64, threads: 1}}\n", c.addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args = append([]string{"init", "--config", c.cfg, "--trust-domain", "mesh.example.org", "--admin", "root"}, args...)
	if err := runControl(&env{ctx: context.Background(), stdout: &stdout, stderr: &stderr, now: now}, args); err != nil {
		t.Fatalf("%v: %v\nstderr: %s", args, err, stderr.String())
	}
	out = stdout.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i, l := range lines {
		if p, ok := strings.CutPrefix(l, "CA pin:"); ok {
			c.pin = strings.TrimSpace(p)
		}
		if strings.HasPrefix(l, "admin ") && i+1 < len(lines) {
			c.key = lines[i+1]
		}
	}
	if len(c.pin) != 64 || !strings.HasPrefix(c.key, "x6k_") {
		t.Fatalf("init output:\n%s", out)
	}
	return c, out
}

// serve runs the control plane until the test ends, points the ctl commands' environment at it
// with the admin's key, and returns once it answers.
func (c cliControl) serve(t *testing.T, now func() time.Time) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		var stderr bytes.Buffer
		err := runControl(&env{ctx: ctx, stdout: &bytes.Buffer{}, stderr: &stderr, now: now}, []string{"--config", c.cfg})
		if err != nil {
			err = fmt.Errorf("%w\nstderr: %s", err, stderr.String())
		}
		served <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("control: %v", err)
		}
	})
	t.Setenv("X0TTA6BL4_CONTROL_URL", "https://"+c.addr)
	t.Setenv("X0TTA6BL4_CA_PIN", c.pin)
	t.Setenv("X0TTA6BL4_API_KEY", c.key)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := call(t, context.Background(), runCtl, "nodes")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("control plane did not come up: %v", err)
		}
	}
}

// TestControlCommands drives the control plane through the CLI: init, serve over TLS, create a join
// token, enrol a node with `ctl join`, list, revoke, and manage users and keys.
func TestControlCommands(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("a long enough password\n"), 0o600)
	cp, _ := initCLIControl(t, dir, time.Now, "--password-file", filepath.Join(dir, "pw"))
	if _, err := call(t, context.Background(), runControl, "init", "--config", cp.cfg, "--admin", "root"); err == nil {
		t.Fatal("second init with the same admin succeeded")
	}
	cp.serve(t, time.Now)
	pin := cp.pin

	out := mustCall(t, runCtl, "token", "create", "--groups", "web", "--description", "cli test")
	tok := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if !strings.HasPrefix(tok, "x6j_") || !strings.HasSuffix(tok, pin) {
		t.Fatalf("token create output:\n%s", out)
	}
	mustRun(t, dir, "keys", "generate", "--out", "n1.key")
	os.WriteFile(filepath.Join(dir, "tok"), []byte(tok+"\n"), 0o600)
	out = mustCall(t, runCtl, "join", "--key", filepath.Join(dir, "n1.key"), "--name", "n1", "--token-file", filepath.Join(dir, "tok"), "--out", filepath.Join(dir, "n1"))
	if !strings.Contains(out, "spiffe://mesh.example.org/node/n1") {
		t.Fatalf("join output:\n%s", out)
	}
	// The saved bundle is usable by the existing cert commands.
	if out := mustRun(t, dir, "cert", "verify", "--ca", "n1/ca.crt", "--crl", "n1/crl.pem", "n1/node.crt"); !strings.Contains(out, "n1/node.crt: OK (spiffe://mesh.example.org/node/n1") {
		t.Fatalf("cert verify:\n%s", out)
	}
	if _, err := call(t, context.Background(), runCtl, "join", "--key", filepath.Join(dir, "n1.key"), "--name", "n1", "--token-file", filepath.Join(dir, "tok"), "--out", filepath.Join(dir, "n1b")); err == nil {
		t.Fatal("join token used twice")
	}
	if out := mustCall(t, runCtl, "nodes"); !strings.Contains(out, "n1") || !strings.Contains(out, "active") {
		t.Fatalf("nodes:\n%s", out)
	}
	if out := mustCall(t, runCtl, "status"); !strings.Contains(out, "1 enrolled") || !strings.Contains(out, "silent") {
		t.Fatalf("status:\n%s", out)
	}
	out = mustCall(t, runCtl, "revoke", "n1")
	if !strings.Contains(out, "revocation list 2") {
		t.Fatalf("revoke:\n%s", out)
	}
	if out := mustCall(t, runCtl, "nodes", "--json"); !strings.Contains(out, `"status": "revoked"`) {
		t.Fatalf("nodes --json:\n%s", out)
	}
	// The CA's own revocation list (in the data directory) now refuses the node.
	crl, err := meshca.LoadRevocationListFile(filepath.Join(dir, "data", "ca", "crl.pem"))
	if err != nil || crl.Number != 2 {
		t.Fatalf("CA revocation list: %v", err)
	}
	mustCall(t, runCtl, "user", "add", "--username", "vic", "--role", "viewer", "--password-file", filepath.Join(dir, "pw"))
	if out := mustCall(t, runCtl, "users"); !strings.Contains(out, `"vic"`) {
		t.Fatalf("users:\n%s", out)
	}
	if out := mustCall(t, runCtl, "key", "create", "--name", "ci", "--role", "operator"); !strings.Contains(out, "x6k_") {
		t.Fatalf("key create:\n%s", out)
	}
	if out := mustCall(t, runCtl, "keys"); !strings.Contains(out, `"ci"`) {
		t.Fatalf("keys:\n%s", out)
	}
	if out := mustCall(t, runCtl, "token", "list"); !strings.Contains(out, `"cli test"`) {
		t.Fatalf("token list:\n%s", out)
	}
	if out := mustCall(t, runCtl, "audit"); !strings.Contains(out, "node.revoke") || !strings.Contains(out, "node.enroll") {
		t.Fatalf("audit:\n%s", out)
	}
	// Incident labels and the report archive; recording is off, so the archive has no reports.
	out = mustCall(t, runCtl, "incident", "label", "--node", "n1", "--kind", "greyhole", "--from", "2026-12-06T22:00:00Z", "--to", "2026-12-06T22:10:00Z", "--note", "seen by hand")
	if !strings.Contains(out, "n1 greyhole from 2026-12-06T22:00:00Z") {
		t.Fatalf("incident label:\n%s", out)
	}
	if _, err := call(t, context.Background(), runCtl, "incident", "label", "--node", "n1", "--kind", "gremlins", "--from", "2026-12-06T22:00:00Z", "--to", "2026-12-06T22:10:00Z"); err == nil {
		t.Fatal("unknown incident kind accepted")
	}
	archive := filepath.Join(dir, "reports.json")
	mustCall(t, runCtl, "reports", "export", "--out", archive)
	if b, err := os.ReadFile(archive); err != nil || !strings.Contains(string(b), `"kind":"greyhole"`) || !strings.Contains(string(b), `"reports":[]`) {
		t.Fatalf("reports export: %s, %v", b, err)
	}
	if _, err := call(t, context.Background(), runAITrain, "--from-records", archive, "--out", filepath.Join(dir, "m.x6m")); err == nil || !strings.Contains(err.Error(), "no recorded reports") {
		t.Fatalf("ai train on an empty archive: %v", err)
	}
	if out := mustCall(t, runCtl, "audit"); !strings.Contains(out, "incident.label") {
		t.Fatalf("audit:\n%s", out)
	}
	// Wrong pin: refused before any credential is sent.
	t.Setenv("X0TTA6BL4_CA_PIN", strings.Repeat("0", 64))
	if _, err := call(t, context.Background(), runCtl, "nodes"); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("wrong pin: %v", err)
	}
	if _, err := call(t, context.Background(), runCtl, "frobnicate"); err == nil {
		t.Fatal("unknown verb accepted")
	}
}

// TestPrintKernelInputs: ctl predict prints the kernel inputs that were reported, and says so when
// none were.
func TestPrintKernelInputs(t *testing.T) {
	var b bytes.Buffer
	printKernelInputs(&b, map[string]float64{"kernel_drops_per_packet": 0.15, "kernel_drops_present": 1,
		"kernel_rx_unread_frac": 0, "kernel_rx_unread_present": 0})
	if got := b.String(); !strings.Contains(got, "kernel_drops_per_packet 0.1500") || strings.Contains(got, "rx_unread") {
		t.Fatalf("printed %q", got)
	}
	b.Reset()
	printKernelInputs(&b, map[string]float64{"kernel_drops_per_packet": 0, "kernel_drops_present": 0})
	if got := b.String(); !strings.Contains(got, "none reported") {
		t.Fatalf("printed %q", got)
	}
}

// TestCtlJoinRoutingArea: `ctl join --routing-area` refuses out-of-range values before anything is
// sent (the token stays usable), and names a valid area in the enrolment, which the control plane
// records.
func TestCtlJoinRoutingArea(t *testing.T) {
	dir := t.TempDir()
	cp, _ := initCLIControl(t, dir, time.Now)
	cp.serve(t, time.Now)
	out := mustCall(t, runCtl, "token", "create", "--description", "area test")
	os.WriteFile(filepath.Join(dir, "tok2"), []byte(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])+"\n"), 0o600)
	mustRun(t, dir, "keys", "generate", "--out", "n2.key")
	n2 := []string{"join", "--key", filepath.Join(dir, "n2.key"), "--name", "n2", "--token-file", filepath.Join(dir, "tok2"), "--out", filepath.Join(dir, "n2")}
	for _, bad := range []string{"4294967296", "-1", "three", ""} {
		_, err := call(t, context.Background(), runCtl, append(n2, "--routing-area", bad)...)
		if err == nil || !strings.Contains(err.Error(), "want a routing area from 0 to 4294967295") {
			t.Fatalf("ctl join --routing-area %q: %v", bad, err)
		}
	}
	out = mustCall(t, runCtl, append(n2, "--routing-area", "4294967295")...)
	if !strings.Contains(out, "routing area 4294967295 named at enrolment; set routing_area: 4294967295") {
		t.Fatalf("join --routing-area output:\n%s", out)
	}
	if out := mustCall(t, runCtl, "audit"); !strings.Contains(out, "routing area 4294967295") {
		t.Fatalf("the enrolment's routing area is not in the audit log:\n%s", out)
	}
	// ctl nodes shows it: n2 has reported no record, so the area is the one its enrolment named.
	if got := listedArea(t, "n2"); got != "4294967295 (enrolment)" {
		t.Fatalf("ctl nodes shows n2's area as %q", got)
	}
	if out := mustCall(t, runCtl, "nodes", "--json"); !strings.Contains(out, `"routing_area": 4294967295`) || !strings.Contains(out, `"routing_area_source": "enrolment"`) {
		t.Fatalf("nodes --json:\n%s", out)
	}
}

// TestCtlJoinConfigArea: `ctl join --config node.yaml` names the routing_area the configuration sets
// (0 included), and none when it sets none, as without the flag; a --routing-area that disagrees
// with the configuration is refused before the token is spent.
func TestCtlJoinConfigArea(t *testing.T) {
	dir := t.TempDir()
	cp, _ := initCLIControl(t, dir, time.Now)
	cp.serve(t, time.Now)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "listen: \"[::]:7946\"\nlog_level: info\n"
	unset, zero, six := write("unset.yaml", base), write("zero.yaml", base+"routing_area: 0\n"), write("six.yaml", base+"routing_area: 6\n")
	bad := write("bad.yaml", base+"routing_area: -1\n")
	join := func(name string, args ...string) (string, error) {
		out := mustCall(t, runCtl, "token", "create", "--node-name", name)
		tok := write(name+".tok", strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])+"\n")
		mustRun(t, dir, "keys", "generate", "--out", name+".key")
		return call(t, context.Background(), runCtl, append([]string{"join", "--key", filepath.Join(dir, name+".key"), "--name", name,
			"--token-file", tok, "--out", filepath.Join(dir, name)}, args...)...)
	}
	for _, c := range []struct {
		name string
		args []string
		want string // the refusal
	}{
		{"r1", []string{"--config", six, "--routing-area", "7"}, "--routing-area 7, but " + six + " sets routing_area: 6"},
		{"r2", []string{"--config", unset, "--routing-area", "5"}, "sets no routing_area, so the node signs area 0"},
		{"r3", []string{"--config", bad}, "cannot unmarshal !!int `-1` into uint32"},
		{"r4", []string{"--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		if _, err := join(c.name, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("ctl join %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	// The refused joins sent nothing: their tokens are unused.
	var toks api.JoinTokenList
	if err := json.Unmarshal([]byte(mustCall(t, runCtl, "token", "list", "--json")), &toks); err != nil {
		t.Fatal(err)
	}
	unused := 0
	for _, tk := range toks.Tokens {
		if strings.HasPrefix(tk.NodeName, "r") && tk.UsedAt == nil {
			unused++
		}
	}
	if unused != 4 {
		t.Fatalf("%d of the refused joins' 4 tokens are unused: %+v", unused, toks.Tokens)
	}
	for _, c := range []struct {
		name string
		args []string
		out  string // what join says about the area ("" for nothing)
		area string // as ctl nodes lists it
	}{
		{"unset", []string{"--config", unset}, "", "-"},
		{"zero", []string{"--config", zero}, "routing area 0 named at enrolment, as " + zero + " sets it", "0 (enrolment)"},
		{"six", []string{"--config", six}, "routing area 6 named at enrolment, as " + six + " sets it", "6 (enrolment)"},
		{"agree", []string{"--config", six, "--routing-area", "6"}, "routing area 6 named at enrolment", "6 (enrolment)"},
		{"zeroflag", []string{"--config", unset, "--routing-area", "0"}, "routing area 0 named at enrolment", "0 (enrolment)"},
	} {
		out, err := join(c.name, c.args...)
		if err != nil {
			t.Fatalf("ctl join %v: %v", c.args, err)
		}
		if said := strings.Contains(out, "routing area"); said != (c.out != "") || (c.out != "" && !strings.Contains(out, c.out)) {
			t.Fatalf("ctl join %v said:\n%s\nwant %q", c.args, out, c.out)
		}
		if got := listedArea(t, c.name); got != c.area {
			t.Fatalf("ctl join %v: ctl nodes shows area %q, want %q", c.args, got, c.area)
		}
	}
}

// listedArea returns the AREA column `ctl nodes` shows for a node.
func listedArea(t *testing.T, name string) string {
	t.Helper()
	out := mustCall(t, runCtl, "nodes")
	lines := strings.Split(out, "\n")
	if h := strings.Fields(lines[0]); len(h) < 3 || h[2] != "AREA" {
		t.Fatalf("ctl nodes header: %q", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != name {
			continue
		}
		if strings.HasPrefix(f[3], "(") {
			return f[2] + " " + f[3]
		}
		return f[2]
	}
	t.Fatalf("ctl nodes lists no %s:\n%s", name, out)
	return ""
}

// FuzzRoutingAreaFlag: --routing-area accepts exactly the decimal numbers of 32 bits, and what it
// accepts reads back the same.
func FuzzRoutingAreaFlag(f *testing.F) {
	for _, s := range []string{"0", "3", "4294967295", "4294967296", "-1", "", "+3", "03", "0x10", " 3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var a routingAreaFlag
		err := a.Set(s)
		want, perr := strconv.ParseUint(s, 10, 32)
		switch {
		case (err == nil) != (perr == nil):
			t.Fatalf("Set(%q): %v, ParseUint: %v", s, err, perr)
		case err == nil && (a.area == nil || uint64(*a.area) != want || a.String() != strconv.FormatUint(want, 10)):
			t.Fatalf("Set(%q) read back as %q", s, a.String())
		case err != nil && a.area != nil:
			t.Fatalf("Set(%q) failed but kept an area", s)
		}
	})
}
