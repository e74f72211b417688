package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"x0tta6bl4/internal/cli"
)

// The NAT lab's join test (netns_nat_test.go) runs the real command line: a control plane, its
// operator commands and `node --join`. The command line imports this package, so only an external
// test package can call it; this one runs it in this test binary, re-executed with
// X0TTA6BL4_TEST_CLI set to the arguments as a JSON array, before the package's TestMain.
func init() {
	raw := os.Getenv("X0TTA6BL4_TEST_CLI")
	if raw == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "X0TTA6BL4_TEST_CLI:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
