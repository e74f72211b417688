//go:build race

package session

// raceEnabled: under the race detector sync.Pool drops items at random, so allocation counts of code
// that draws scratch memory from a pool mean nothing.
const raceEnabled = true
