// Package gcpace lets a command set the garbage collector's percentage
// (GOGC) for a phase: higher while a phase makes much short-lived garbage,
// lower while the heap holds much at once.
package gcpace

import (
	"runtime/debug"
	"sync"
)

// A Phase is a time during which the collector runs at a percentage
// SetUntil set.
type Phase struct {
	mu   sync.Mutex
	old  int
	over bool
}

// SetUntil sets the collector's percentage (GOGC) to percent until done
// is closed, and then back, and returns the phase; nil if it left the
// percentage alone: one the user chose with GOGC, or another phase set.
func SetUntil(percent int, done <-chan struct{}) *Phase {
	old := debug.SetGCPercent(percent)
	if old != 100 {
		debug.SetGCPercent(old)
		return nil
	}
	p := &Phase{old: old}
	go func() {
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		p.over = true
		debug.SetGCPercent(p.old)
	}()
	return p
}

// Set changes the percentage for the rest of the phase p. It does nothing
// on a nil phase (one SetUntil did not start) or once the phase is over.
func (p *Phase) Set(percent int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.over {
		debug.SetGCPercent(percent)
	}
}
