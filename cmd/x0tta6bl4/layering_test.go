package main

import (
	"os/exec"
	"strings"
	"testing"
)

const (
	simPkg        = "x0tta6bl4/internal/sim"
	routingsimPkg = "x0tta6bl4/internal/routing/routingsim"
	trainPkg      = "x0tta6bl4/internal/detector/train"
	experimentPkg = "x0tta6bl4/internal/detector/experiment"
)

// mustNotLink lists, for each package of the running system, the packages it must never depend on,
// directly or not. The node and the control plane run the detector but never make one, so the
// simulator and the training code stay out of their dependency graphs; federated training makes
// models on real nodes' data, so it may train but never simulate.
var mustNotLink = map[string][]string{
	"x0tta6bl4/internal/node":             {simPkg, routingsimPkg, trainPkg, experimentPkg},
	"x0tta6bl4/internal/control":          {simPkg, routingsimPkg, trainPkg, experimentPkg},
	"x0tta6bl4/internal/agent":            {simPkg, routingsimPkg, trainPkg, experimentPkg},
	"x0tta6bl4/internal/detector":         {simPkg, routingsimPkg, trainPkg, experimentPkg},
	"x0tta6bl4/internal/detector/reports": {simPkg, routingsimPkg, trainPkg, experimentPkg},
	trainPkg:                              {simPkg, routingsimPkg, experimentPkg},
	"x0tta6bl4/internal/federated":        {simPkg, routingsimPkg, experimentPkg},
}

// TestLayering asks the go command for each package's dependency graph (tests excluded) and fails
// with the import chain when a package links something it must not.
func TestLayering(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; this test reads the import graph with go list")
	}
	for root, banned := range mustNotLink {
		out, err := exec.Command(goCmd, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, root).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("go list -deps %s: %v\n%s", root, err, ee.Stderr)
			}
			t.Fatalf("go list -deps %s: %v", root, err)
		}
		imports := map[string][]string{}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) > 0 {
				imports[f[0]] = f[1:]
			}
		}
		if _, ok := imports[root]; !ok {
			t.Fatalf("go list -deps %s did not list %s itself", root, root)
		}
		for _, b := range banned {
			if _, linked := imports[b]; linked {
				t.Errorf("%s links %s: %s", root, b, strings.Join(chain(imports, root, b), " → "))
			}
		}
	}
}

// chain returns a shortest import path from root to target (breadth first).
func chain(imports map[string][]string, root, target string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == target {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append([]string{p}, path...)
			}
			return path
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{root, "…", target}
}
