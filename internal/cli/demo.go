package cli

import "x0tta6bl4/internal/demo"

func runDemo(e *env, args []string) error {
	fs := newFlags(e, "demo", "[--dir DIR] [--keep]")
	dir := fs.String("dir", "", "work directory (default: a new temporary directory)")
	keep := fs.Bool("keep", false, "keep the work directory afterwards")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	return demo.Run(e.ctx, e.stdout, demo.Options{Dir: *dir, Keep: *keep})
}
