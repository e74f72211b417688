//go:build !race

package node

// raceEnabled: the test binary, and so every netns node process, runs under the race detector,
// several times slower.
const raceEnabled = false
