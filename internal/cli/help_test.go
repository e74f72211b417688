package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// -h, -help and --help anywhere print help to stdout and exit 0, for every command; help CMD is
// the same; the command groups (ai, ca, cert, keys) list their commands.
func TestHelpEverywhere(t *testing.T) {
	dir := t.TempDir()
	for _, c := range commands() {
		words := strings.Fields(c.name)
		for _, args := range [][]string{
			append(words, "-h"),
			append(words, "--help"),
			append(words, "positional", "--help"), // after a positional argument, where flag parsing stops
			append([]string{"help"}, words...),
		} {
			code, out, errOut := run(t, dir, args...)
			if code != 0 || !strings.Contains(out, "Usage: x0tta6bl4 "+words[0]) {
				t.Errorf("%q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
			}
		}
	}
	for _, g := range groups {
		for _, args := range [][]string{{g}, {g, "--help"}, {g, "-h"}, {"help", g}} {
			code, out, _ := run(t, dir, args...)
			if code != 0 || !strings.Contains(out, "Usage: x0tta6bl4 "+g+" <command>") {
				t.Errorf("%q: exit %d, stdout %q", args, code, out)
			}
		}
	}
	if code, out, _ := run(t, dir, "ai", "--help"); code != 0 || !strings.Contains(out, "ai train") || !strings.Contains(out, "ai eval") {
		t.Errorf("ai --help: exit %d, %q", code, out)
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		if code, out, _ := run(t, dir, args...); code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("%q: exit %d", args, code)
		}
	}
	// Mistakes still exit 2, on stderr.
	for _, args := range [][]string{{"bogus"}, {"ai", "bogus"}, {"version", "--bogus-flag"}} {
		if code, _, errOut := run(t, dir, args...); code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}
}

// The join token comes from a file, the environment, or (with a warning) the command line.
func TestJoinTokenSources(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/token"
	if err := os.WriteFile(path, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut}
	t.Setenv(joinTokenEnv, "tok-from-env")
	for _, c := range []struct{ arg, file, want string }{
		{"", path, "tok-from-file"}, {"tok-from-flag", path, "tok-from-file"}, {"", "", "tok-from-env"},
	} {
		errOut.Reset()
		if got, err := joinToken(e, c.arg, c.file); err != nil || got != c.want || errOut.Len() != 0 {
			t.Errorf("arg %q file %q: %q %v (stderr %q), want %q", c.arg, c.file, got, err, errOut.String(), c.want)
		}
	}
	if got, err := joinToken(e, "tok-from-flag", ""); err != nil || got != "tok-from-flag" || !strings.Contains(errOut.String(), "ps shows it") {
		t.Errorf("flag: %q %v, stderr %q; want the token and a warning", got, err, errOut.String())
	}
	t.Setenv(joinTokenEnv, "")
	if _, err := joinToken(e, "", ""); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("no token: %v", err)
	}
}
