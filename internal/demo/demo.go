// Package demo is the guided demonstration behind 'x0tta6bl4 demo': it builds a CA and a mesh of real
// nodes in one process on 127.0.0.1, moves real traffic through it, breaks it, and prints what it
// measured.
//
// It must never send a packet anywhere but 127.0.0.1, never need root, and never print a figure it did
// not measure in this run.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// Options configure a run.
type Options struct {
	Dir  string // work directory; empty means a fresh temporary one
	Keep bool   // keep the work directory
}

type env struct {
	ctx    context.Context
	stdout io.Writer
	now    func() time.Time
}

// Run runs the whole demonstration, writing its report to w.
func Run(ctx context.Context, w io.Writer, opts Options) error {
	e := &env{ctx: ctx, stdout: w, now: time.Now}
	work := opts.Dir
	if work == "" {
		tmp, err := os.MkdirTemp("", "x0tta6bl4-demo-")
		if err != nil {
			return err
		}
		work = tmp
		if !opts.Keep {
			defer os.RemoveAll(work)
		}
	}
	started := time.Now()
	fmt.Fprintln(w, "x0tta6bl4 demo — part 1: post-quantum identities")
	if err := pki(e, work); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nx0tta6bl4 demo — part 2: a self-healing mesh on 127.0.0.1")
	if err := mesh(e); err != nil {
		return err
	}
	if opts.Keep || opts.Dir != "" {
		fmt.Fprintf(w, "\nfiles kept in %s\n", work)
	}
	fmt.Fprintf(w, "\ndemo finished in %.1f s: every figure above was measured in this run.\n", time.Since(started).Seconds())
	return nil
}
