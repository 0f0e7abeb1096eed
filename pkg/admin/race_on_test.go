//go:build race

package admin

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = true
