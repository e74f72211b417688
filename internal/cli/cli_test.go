package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in dir and returns exit code, stdout and stderr.
func run(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, dir, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func TestCAWorkflow(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "ca", "init", "--trust-domain", "mesh.example.org", "--groups", "ops,web")
	if info, err := os.Stat(filepath.Join(dir, defaultCADir, "ca.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v", err, info.Mode())
	}
	out := mustRun(t, dir, "ca", "issue", "--name", "web-1", "--groups", "web")
	if !strings.Contains(out, "spiffe://mesh.example.org/node/web-1") {
		t.Errorf("issue output lacks the SPIFFE ID:\n%s", out)
	}
	for _, f := range []string{"web-1.key", "web-1.crt", "web-1-svid.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}

	var cert struct {
		Kind     string   `json:"kind"`
		SPIFFEID string   `json:"spiffe_id"`
		Groups   []string `json:"groups"`
		Overlay  string   `json:"overlay_address"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "cert", "inspect", "--json", "web-1.crt")), &cert); err != nil {
		t.Fatal(err)
	}
	if cert.Kind != "node" || cert.SPIFFEID != "spiffe://mesh.example.org/node/web-1" ||
		len(cert.Groups) != 1 || cert.Groups[0] != "web" || !strings.HasPrefix(cert.Overlay, "fd74:") {
		t.Errorf("inspect --json: %+v", cert)
	}
	if out := mustRun(t, dir, "cert", "inspect", "web-1-svid.pem"); !strings.Contains(out, "X.509-SVID") || !strings.Contains(out, "ML-DSA-65") {
		t.Errorf("SVID inspect:\n%s", out)
	}
	mustRun(t, dir, "cert", "verify", "web-1.crt")

	// Keys made on the node, certificate from the CA.
	mustRun(t, dir, "keys", "generate", "--out", "db-1.key")
	mustRun(t, dir, "ca", "issue", "--name", "db-1", "--pub", "db-1.pub", "--groups", "ops", "--svid=false")
	if out := mustRun(t, dir, "cert", "inspect", "db-1.pub"); !strings.Contains(out, "node public key") {
		t.Errorf("public key inspect:\n%s", out)
	}

	out = mustRun(t, dir, "ca", "revoke", "--name", "web-1")
	if !strings.Contains(out, "revocation list 2") {
		t.Errorf("revoke output:\n%s", out)
	}
	code, _, errOut := run(t, dir, "cert", "verify", "--crl", filepath.Join(defaultCADir, "crl.pem"), "web-1.crt")
	if code != 1 || !strings.Contains(errOut, "revoked") {
		t.Errorf("verify of a revoked certificate: exit %d, %q", code, errOut)
	}
	mustRun(t, dir, "cert", "verify", "--crl", filepath.Join(defaultCADir, "crl.pem"), "db-1.crt")
	list := mustRun(t, dir, "ca", "list")
	if !strings.Contains(list, "revoked") || !strings.Contains(list, "db-1") {
		t.Errorf("ca list:\n%s", list)
	}
	var crl struct {
		Number  uint64   `json:"number"`
		Serials []string `json:"revoked_serials"`
		Keys    []string `json:"revoked_key_ids"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "ca", "crl", "--json")), &crl); err != nil {
		t.Fatal(err)
	}
	if crl.Number != 2 || len(crl.Serials) != 1 || len(crl.Keys) != 1 {
		t.Errorf("crl: %+v", crl)
	}
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "ca", "init", "--trust-domain", "mesh.example.org", "--groups", "web")
	mustRun(t, dir, "ca", "issue", "--name", "a")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"ca", "init"}, 2, "--trust-domain is required"},
		{[]string{"ca", "init", "--dir", "x", "--trust-domain", "Upper"}, 1, "not allowed"},
		{[]string{"ca", "init", "--trust-domain", "mesh.example.org"}, 1, "not empty"},
		{[]string{"ca", "issue", "--name", "N"}, 1, "not allowed"},
		{[]string{"ca", "issue", "--name", "b", "--groups", "db"}, 1, "group not allowed"},
		{[]string{"ca", "issue", "--name", "b", "--duration", "-1h"}, 1, "must be positive"},
		{[]string{"ca", "issue", "--name", "a"}, 1, "already exists"},
		{[]string{"ca", "issue", "--dir", "nowhere", "--name", "c"}, 1, "ca init"},
		{[]string{"ca", "revoke"}, 2, "exactly one of"},
		{[]string{"ca", "revoke", "--serial", "zz"}, 1, "hex"},
		{[]string{"ca", "revoke", "--name", "ghost"}, 1, "no certificate"},
		{[]string{"cert", "inspect"}, 2, "want 1 argument"},
		{[]string{"cert", "inspect", "a.key"}, 1, "private key"},
		{[]string{"cert", "inspect", "missing.crt"}, 1, "no such file"},
		{[]string{"keys", "generate"}, 2, "--out is required"},
		{[]string{"version", "extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, dir, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tt.args, code, tt.code, errOut, tt.want)
		}
	}
	// A refused issue leaves nothing behind.
	for _, f := range []string{"b.key", "b.crt", "N.key"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s left behind by a refused issue", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("ca init with a bad trust domain created its directory")
	}

	// Garbage and a loose private key are refused with clear errors.
	os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("-----BEGIN X0TTA6BL4 CERTIFICATE-----\nAAAA\n-----END X0TTA6BL4 CERTIFICATE-----\n"), 0o644)
	if code, _, errOut := run(t, dir, "cert", "inspect", "junk.crt"); code != 1 || !strings.Contains(errOut, "malformed certificate") {
		t.Errorf("junk: exit %d, %q", code, errOut)
	}
	os.Chmod(filepath.Join(dir, defaultCADir, "ca.key"), 0o644)
	if code, _, errOut := run(t, dir, "ca", "issue", "--name", "d"); code != 1 || !strings.Contains(errOut, "chmod 600") {
		t.Errorf("loose CA key: exit %d, %q", code, errOut)
	}
}

func TestDemo(t *testing.T) {
	out := mustRun(t, t.TempDir(), "demo")
	for _, want := range []string{"X25519MLKEM768", "ML-DSA-65", "has been revoked", "older than the one already held", "demo finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestHelp(t *testing.T) {
	if out := mustRun(t, t.TempDir(), "help"); !strings.Contains(out, "ca issue") {
		t.Errorf("help:\n%s", out)
	}
}

// TestKeygenPublicKeyName: both key generators put the public key where their help says: the
// private key's name with its extension replaced by .pub.
func TestKeygenPublicKeyName(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ cmd []string }{{[]string{"keys", "generate"}}, {[]string{"ctl", "dao", "keygen"}}} {
		for _, out := range []struct{ priv, pub string }{{"a.key", "a.pub"}, {"b", "b.pub"}, {"c.pem", "c.pub"}} {
			prefix := strings.ReplaceAll(strings.Join(c.cmd, "-"), " ", "")
			priv, pub := prefix+"-"+out.priv, prefix+"-"+out.pub
			mustRun(t, dir, append(c.cmd, "--out", priv)...)
			for _, f := range []string{priv, pub} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%v --out %s: %v", c.cmd, priv, err)
				}
			}
		}
		_, help, _ := run(t, dir, append(c.cmd, "--help")...)
		if !strings.Contains(help, "extension replaced by .pub") {
			t.Errorf("%v --help does not say where the public key goes:\n%s", c.cmd, help)
		}
	}
	if code, _, errOut := run(t, dir, "ctl", "dao", "keygen", "--out", "m.pub"); code == 0 || !strings.Contains(errOut, "same name") {
		t.Errorf("dao keygen --out m.pub: exit %d, %s", code, errOut)
	}
}
