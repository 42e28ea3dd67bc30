// Package gcpace lets a command run the garbage collector less often while
// a phase that makes much short-lived garbage runs.
package gcpace

import "runtime/debug"

// RelaxUntil sets the collector's percentage (GOGC) to percent until done
// is closed, and then back, and says whether it did: a percentage the user
// chose with GOGC, or another phase set, is left alone.
func RelaxUntil(percent int, done <-chan struct{}) bool {
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
