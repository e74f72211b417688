//go:build race

package agent

// raceEnabled: the test binary runs under the race detector, several times slower; links between
// real nodes on a loaded machine then miss their keepalives and flap.
const raceEnabled = true
