//go:build !race

package agent

// raceEnabled: the test binary runs under the race detector (race_test.go).
const raceEnabled = false
