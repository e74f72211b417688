//go:build !unix

package node

// processCPUSeconds is not measured on this platform: the cpu feature stays 0.
func processCPUSeconds() (float64, bool) { return 0, false }
