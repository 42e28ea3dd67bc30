// Package gcpace lets a command set the garbage collector's percentage
// (GOGC) for a phase: higher while a phase makes much short-lived garbage,
// lower while the heap holds much at once.
package gcpace

import "runtime/debug"

// SetUntil sets the collector's percentage (GOGC) to percent until done
// is closed, and then back, and says whether it did: a percentage the user
// chose with GOGC, or another phase set, is left alone.
func SetUntil(percent int, done <-chan struct{}) bool {
	old := debug.SetGCPercent(percent)
	if old != 100 {
		debug.SetGCPercent(old)
		return false
	}
	go func() {
		<-done
		debug.SetGCPercent(old)
	}()
	return true
}
