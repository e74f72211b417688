// Command x0tta6bl4 is the post-quantum, self-healing mesh network: node, CA, control plane and tools
// in one binary. All logic lives in internal/cli and the packages it calls.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"x0tta6bl4/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
