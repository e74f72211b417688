// Package console holds the web console's built files (HTML, JavaScript, CSS), embedded so the
// control plane serves them with no network access and `go build` alone needs no npm. The
// sources are in web/ (docs/console.md: `npm ci && npm run build` writes dist/). It must never
// hold anything but build output: the control plane serves every file in dist/ to anyone.
package console

import "embed"

// Files is the build output under dist/.
//
//go:embed dist
var Files embed.FS
