package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCtlDAO: three members make their keys locally, control init writes the genesis roster, an
// operator proposes a policy, two members vote with 'ctl dao vote' (a third's second ballot with the
// same sequence is refused), and once the window and the timelock have passed on the control
// plane's clock the proposal is executed and 'ctl dao verify' recomputes the log.
func TestCtlDAO(t *testing.T) {
	dir := t.TempDir()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	callAt := func(fn func(*env, []string) error, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := fn(&env{ctx: context.Background(), stdout: &out, stderr: &errOut, now: now}, args)
		if err != nil {
			err = fmt.Errorf("%v: %w\nstderr: %s", args, err, errOut.String())
		}
		return out.String(), err
	}
	must := func(fn func(*env, []string) error, args ...string) string {
		t.Helper()
		out, err := callAt(fn, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var members []string
	for _, m := range []string{"alice", "bob", "carol"} {
		out := must(runCtl, "dao", "keygen", "--out", filepath.Join(dir, m+".key"))
		if !strings.Contains(out, "key ID:") {
			t.Fatalf("keygen:\n%s", out)
		}
		members = append(members, "--dao-member", m+"="+filepath.Join(dir, m+".pub"))
	}
	if fi, err := os.Stat(filepath.Join(dir, "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("member key file: %v %v", fi.Mode(), err)
	}

	cp, out := initCLIControl(t, dir, now, members...)
	if !strings.Contains(out, "genesis roster:") || !strings.Contains(out, "(3 members)") {
		t.Fatalf("control init:\n%s", out)
	}
	cp.serve(t, now)

	file := filepath.Join(dir, "policy.yaml")
	os.WriteFile(file, []byte("grants:\n  - src: [group:ops]\n    dst: [group:web]\n    ports: [icmp]\n"), 0o644)
	out = must(runCtl, "dao", "propose", "--title", "ops may ping web", "--action", "policy", "--policy-file", file,
		"--voting", "2m", "--timelock", "1m")
	id := regexp.MustCompile(`proposal\s+([0-9a-f]{64})`).FindStringSubmatch(out)
	if id == nil || !regexp.MustCompile(`policy version\s+1\n`).MatchString(out) {
		t.Fatalf("propose:\n%s", out)
	}
	for _, m := range []string{"alice", "bob"} {
		out = must(runCtl, "dao", "vote", "--key", filepath.Join(dir, m+".key"), "--proposal", id[1], "--choice", "yes")
		if !strings.Contains(out, m+" voted yes") || !strings.Contains(out, "receipt") {
			t.Fatalf("vote %s:\n%s", m, out)
		}
	}
	if _, err := callAt(runCtl, "dao", "vote", "--key", filepath.Join(dir, "bob.key"), "--proposal", id[1], "--choice", "no"); err == nil || !strings.Contains(err.Error(), "409") && !strings.Contains(err.Error(), "sequence") {
		t.Fatalf("bob's second ballot with the same sequence: %v", err)
	}
	must(runCtl, "dao", "vote", "--key", filepath.Join(dir, "carol.key"), "--proposal", id[1], "--choice", "no")

	offset.Add(int64(3*time.Minute + time.Second))
	out = must(runCtl, "dao", "show", id[1])
	if !strings.Contains(out, "executed") || !strings.Contains(out, "yes 2, no 1, abstain 0 of 3") {
		t.Fatalf("show after the timelock:\n%s", out)
	}
	if out := must(runCtl, "policy", "get"); !strings.Contains(out, "version 1") {
		t.Fatalf("the enacted policy is not served:\n%s", out)
	}
	out = must(runCtl, "dao", "verify", "--genesis", filepath.Join(dir, "data", "genesis-roster.pem"))
	if !strings.Contains(out, "governance log verified: 6 entries") || !strings.Contains(out, "1 proposals (1 enacted)") {
		t.Fatalf("verify:\n%s", out)
	}
	// Something that is not the genesis roster is refused.
	if _, err := callAt(runCtl, "dao", "verify", "--genesis", filepath.Join(dir, "alice.pub")); err == nil {
		t.Fatal("verify took a public key file as the genesis roster")
	}
}
